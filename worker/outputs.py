"""A folder job's outputs: what its command created or changed (or what matches its
patterns), zipped uncompressed so that ``member_span`` lets a server answer HTTP Range
requests from the zip with plain file reads."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import stat
import struct
import threading
import zipfile
from collections.abc import Callable, Mapping, Sequence

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
OUTPUTS_PREFIX = "outputs/"


def _walk(root: str) -> list[tuple[str, os.stat_result]]:
    """(relative posix path, stat) of every regular file under ``root``; symlinks to
    files or directories are skipped, never followed."""
    found, todo = [], [""]
    while todo:
        rel = todo.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as entries:
            for entry in entries:
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    todo.append(path)
                elif entry.is_file(follow_symlinks=False):
                    found.append((path, entry.stat(follow_symlinks=False)))
    return found


def snapshot(root: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """relative posix path -> (size, mtime_ns) of every regular file under root."""
    return {path: (st.st_size, st.st_mtime_ns) for path, st in _walk(os.fspath(root))}


def _glob_match(parts: list[str], pattern: list[str]) -> bool:
    """Whether path ``parts`` match glob ``pattern`` parts (``**`` is any number)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    head = bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0])
    return head and _glob_match(parts[1:], pattern[1:])


def _matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """Whether a path, or a directory it is in, matches one of ``patterns``."""
    split = []
    for pattern in patterns:
        parts = [p for p in pattern.strip().split("/") if p not in ("", ".")]
        if not parts or pattern.startswith("/") or ".." in parts:
            raise ValueError(f"output pattern {pattern!r}: use a glob relative to the job dir")
        split.append([p for i, p in enumerate(parts) if p != "**" or parts[i - 1 : i] != [p]])

    def matches(path: str) -> bool:
        parts = path.split("/")
        return any(_glob_match(parts[:n], p) for p in split for n in range(1, len(parts) + 1))

    return matches


class OutputsTooLarge(Exception):
    """The outputs of a job are over the size limit."""

    def __init__(self, limit: int, total: int, largest: list[tuple[str, int]]) -> None:
        self.limit, self.total, self.largest = limit, total, largest
        files = ", ".join(f"{path} ({size:,} bytes)" for path, size in largest)
        super().__init__(
            f"the outputs are {total:,} bytes, over the limit of {limit:,} bytes; the largest: "
            f"{files}; write less or raise --max-outputs"
        )


def collect_outputs(
    root: str | os.PathLike,
    dest_zip: str | os.PathLike,
    *,
    patterns: Sequence[str] = (),
    before: Mapping[str, tuple[int, int]] | None = None,
    max_bytes: int | None = None,
    extra: Mapping[str, bytes] = {},  # noqa: B006 - read only
) -> list[tuple[str, int]]:
    """Write the outputs into a zip at dest_zip and return [(path, size)] of the output
    files (not the extra members), sorted by path.

    Outputs: the regular files under ``root`` matching a pattern of ``patterns`` (globs
    relative to root, matched name by name by ``fnmatch``; a ``**`` name is any number of
    directories: ``out/**``, ``**/*.csv``; a directory matched means all under it) or,
    without patterns, those new or changed (size, mtime) since the snapshot ``before``.
    Symlinks are skipped. Members are STORED, dated 1980: ``extra`` first at top level,
    then ``outputs/<path>``. Raises ``OutputsTooLarge`` before writing if the outputs
    total more than ``max_bytes``. The zip is written aside and renamed into place.
    """
    root, dest = os.fspath(root), os.path.abspath(dest_zip)
    matches = _matcher(patterns) if patterns else None
    old = before or {}
    chosen = [
        (path, st)
        for path, st in sorted(_walk(root))
        if os.path.abspath(os.path.join(root, path)) != dest  # not the zip itself
        and (matches(path) if matches else old.get(path) != (st.st_size, st.st_mtime_ns))
    ]
    total = sum(st.st_size for _, st in chosen)
    if max_bytes is not None and total > max_bytes:
        largest = sorted(((p, st.st_size) for p, st in chosen), key=lambda x: (-x[1], x[0]))
        raise OutputsTooLarge(max_bytes, total, largest[:5])
    written = []
    tmp = f"{dest}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, data in extra.items():  # a ZipInfo is ZIP_STORED unless told
                info = zipfile.ZipInfo(name, ZIP_DATE)
                info.external_attr = 0o100644 << 16
                zf.writestr(info, data)
            for path, st in chosen:
                info = zipfile.ZipInfo(OUTPUTS_PREFIX + path, ZIP_DATE)
                info.external_attr, info.file_size = (
                    (stat.S_IFREG | st.st_mode & 0o7777) << 16,
                    st.st_size,
                )
                fd = os.open(os.path.join(root, path), os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as src, zf.open(info, "w") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                written.append((path, info.file_size))
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return written


def member_span(zip_path: str | os.PathLike, name: str) -> tuple[int, int] | None:
    """(offset of the member's data in the zip file, its size) for a STORED member,
    else None: lets a server answer Range requests with plain file reads."""
    with zipfile.ZipFile(zip_path) as zf:
        try:
            info = zf.getinfo(name)
        except KeyError:
            return None
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            return None
        assert zf.fp is not None
        zf.fp.seek(info.header_offset)
        header = zf.fp.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"{name!r}: no local file header at {info.header_offset}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size
