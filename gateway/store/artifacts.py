"""Model artifacts: a framework's own serialization of a model (XGBoost UBJSON, a PyTorch
``state_dict``, a skops file), named by its SHA-256 and kept once per tenant.

Like bundles (:mod:`gateway.store.bundles`), each tenant has a directory of its own,
so one tenant can neither use nor learn of another's artifacts. The gateway checks the
bytes' SHA-256 and nothing else: it never loads an artifact.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import IO

from gateway.store.blobs import sync_dir
from gateway.store.bundles import DIGEST, BundleMismatch, Bundles


class Artifacts(Bundles):
    """Artifact files under ``save_dir/artifacts/<tenant's directory>/<sha256>.bin``."""

    def __init__(self, save_dir: Path, tmp_dir: Path, *, durable: bool = True) -> None:
        super().__init__(save_dir, tmp_dir, durable=durable)
        self.root = save_dir / "artifacts"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, tenant: str, digest: str) -> Path:
        """Where ``tenant``'s artifact ``digest`` is (ValueError if not a SHA-256 in hex)."""
        if not DIGEST.match(digest):
            raise ValueError(f"{digest!r} is not a SHA-256 in lower-case hex")
        return self._tenant_dir(tenant) / f"{digest}.bin"

    def receive(
        self, tenant: str, digest: str, stream: IO[bytes], length: int | None, max_bytes: int
    ) -> int:
        """Read an uploaded artifact and keep it for ``tenant`` if its SHA-256 is
        ``digest``; returns its size. Raises :class:`BundleMismatch` otherwise, and
        ``PayloadTooLarge`` / ``IncompleteBody`` as bundles do; nothing is kept then."""
        target = self.path(tenant, digest)
        tmp = self.tmp_dir / f"artifact.{uuid.uuid4().hex}.bin"
        try:
            size, actual = self._write(stream, tmp, length, max_bytes)
            if actual != digest:
                raise BundleMismatch(
                    f"the body's SHA-256 is {actual}, not {digest}: the artifact was changed "
                    "or cut short on its way; upload its exact bytes under its own digest"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            if self.durable:
                sync_dir(target.parent)
            return size
        finally:
            tmp.unlink(missing_ok=True)

    def expire(self, unused_since: float) -> int:
        """Artifacts do not expire with bundles: deployments keep using them."""
        return 0
