"""A memory-bounded LRU of loaded model artifacts, keyed by their SHA-256.

The size of an entry is counted as the size of the artifact's bytes (what the loaded
model holds, roughly). The bound is ``COMPUTETHIS_MODEL_CACHE_BYTES`` (default 2 GiB);
the least recently used models are dropped past it (a replica that still uses one
keeps it alive; the cache only stops holding it).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

DEFAULT_BYTES = 2 << 30


class ModelCache:
    """Loaded models by SHA-256, at most ``max_bytes`` of them (by artifact size)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times a model was loaded (not found here)

    @property
    def nbytes(self) -> int:
        """Bytes held (the sum of the artifacts' sizes)."""
        with self._lock:
            return sum(size for _, size in self._entries.values())

    def get(self, digest: str, load: Callable[[], tuple[Any, int]]) -> Any:
        """The model of ``digest``; ``load()`` (returning the model and its size) if absent."""
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                self._entries.move_to_end(digest)
                return entry[0]
        model, size = load()
        with self._lock:
            self.loads += 1
            self._entries[digest] = (model, size)
            self._entries.move_to_end(digest)
            total = sum(entry_size for _, entry_size in self._entries.values())
            while total > self.max_bytes and len(self._entries) > 1:
                _, (_, dropped) = self._entries.popitem(last=False)
                total -= dropped
        return model


LOADED = ModelCache(int(os.environ.get("COMPUTETHIS_MODEL_CACHE_BYTES", DEFAULT_BYTES)))
