"""Uploaded folders (bundles): tar files named by their SHA-256, kept per tenant.

A bundle is stored once per tenant however many folder jobs run it: the SDK asks
whether the tenant has it (``HEAD``) before uploading. Each tenant has a directory of
its own, so one tenant can neither use nor learn of another's bundles. A bundle is
checked entry by entry (:func:`wire.bundle.check_bundle`) before it is kept; the
gateway never extracts it.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import IO

from gateway.store.blobs import body_chunks, sync_dir
from wire.bundle import check_bundle

DIGEST = re.compile(r"[0-9a-f]{64}\Z")


class BundleMismatch(Exception):
    """The uploaded bytes do not have the SHA-256 they were sent under."""


class Bundles:
    """Bundle files under ``save_dir/bundles/<tenant's directory>/<sha256>.tar``.

    Other content named by its SHA-256 and kept per tenant (model artifacts) is kept the
    same way by a subclass: its :attr:`DIRECTORY`, :attr:`SUFFIX`, :attr:`WHAT` and
    :meth:`_check`."""

    DIRECTORY, SUFFIX, WHAT = "bundles", ".tar", "bundle"

    def __init__(self, save_dir: Path, tmp_dir: Path, *, durable: bool = True) -> None:
        self.root = save_dir / self.DIRECTORY
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = tmp_dir
        self.durable = durable

    def path(self, tenant: str, digest: str) -> Path:
        """Where ``tenant``'s file ``digest`` is (ValueError if not a SHA-256 in hex)."""
        if not DIGEST.match(digest):
            raise ValueError(f"{digest!r} is not a SHA-256 in lower-case hex")
        return self._tenant_dir(tenant) / f"{digest}{self.SUFFIX}"

    def exists(self, tenant: str, digest: str) -> bool:
        """Whether ``tenant`` has the bundle; a use keeps it from expiring."""
        path = self.path(tenant, digest)
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        return True

    def receive(
        self, tenant: str, digest: str, stream: IO[bytes], length: int | None, max_bytes: int
    ) -> int:
        """Read an uploaded bundle from ``stream``, check it, and keep it for ``tenant``;
        returns its size. Raises :class:`BundleMismatch`, :class:`wire.bundle.BundleError`,
        and from :func:`~gateway.store.blobs.body_chunks` ``PayloadTooLarge`` past
        ``max_bytes`` or ``IncompleteBody``; nothing is kept then.
        """
        target = self.path(tenant, digest)
        tmp = self.tmp_dir / f"{self.WHAT}.{uuid.uuid4().hex}{self.SUFFIX}"
        try:
            size, actual = self._write(stream, tmp, length, max_bytes)
            if actual != digest:
                raise BundleMismatch(
                    f"the body's SHA-256 is {actual}, not {digest}: the {self.WHAT} was "
                    f"changed or cut short on its way; upload its exact bytes under its own "
                    "digest"
                )
            self._check(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            if self.durable:
                sync_dir(target.parent)
            return size
        finally:
            tmp.unlink(missing_ok=True)

    def remove(self, tenant: str, digest: str) -> bool:
        """Delete ``tenant``'s bundle; False if there was none."""
        try:
            self.path(tenant, digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def expire(self, unused_since: float, keep: Collection[Path] = ()) -> int:
        """Delete the files not uploaded or used since ``unused_since`` (a time), except
        those in ``keep``; how many."""
        removed = 0
        for path in self.root.glob(f"*/*{self.SUFFIX}"):
            try:
                if path not in keep and path.stat().st_mtime < unused_since:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def _check(self, path: Path) -> None:
        """Refuse a received file that is not what it should be (a bundle: entry by entry)."""
        check_bundle(path)

    def _tenant_dir(self, tenant: str) -> Path:
        return self.root / hashlib.sha256(tenant.encode()).hexdigest()[:32]

    def _write(
        self, stream: IO[bytes], path: Path, length: int | None, max_bytes: int
    ) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        with open(path, "wb") as out:
            for chunk in body_chunks(stream, length, max_bytes):
                size += len(chunk)
                digest.update(chunk)
                out.write(chunk)
            if self.durable:
                out.flush()
                os.fsync(out.fileno())
        return size, digest.hexdigest()
