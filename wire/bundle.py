"""The folder bundle: a folder packed into an uncompressed POSIX tar, shared by SDK, gateway
and workers, and named by the SHA-256 hex digest of the tar's bytes.

The tar is pax format. Its entries are the folder's directories, regular files and
symbolic links, at paths relative to the folder (``/`` separators, no leading ``./``), in
sorted order with each directory before its contents, with mtime 0, owner 0/0, no owner
names and the permission bits of the file: the same tree always packs to the same bytes.
A symbolic link must point inside the folder. Readers never trust a bundle: the gateway
runs :func:`check_bundle` on an upload before accepting it, a worker runs it again (in
:func:`extract_bundle`) before it writes anything.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import re
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git",
    ".venv",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ipynb_checkpoints",
)
MAX_BUNDLE_FILES = 100_000  # entries in one bundle
MAX_BUNDLE_EXPANDED = 4 << 30  # bytes of all regular files, expanded
TAR_FORMAT = tarfile.PAX_FORMAT
LARGEST = 5  # largest files reported by pack_folder and folder_size

_BLOCK = tarfile.BLOCKSIZE
_DRIVE = re.compile(r"^[A-Za-z]:")
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)
_KNOWN = (*_REGULAR, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE)
_TYPE_NAMES = {b"3": "a character device", b"4": "a block device", b"6": "a fifo"}  # by tar type
_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")  # Python 3.10.12+, 3.11.4+
_LINK_HINT = "copy the file into the folder, or exclude the link"
_CUT_HINT = "the upload was cut or it is not a tar made by the SDK; upload it again"
_BIG_HINT = "split the folder or exclude files"


class BundleError(ValueError):
    """A bundle that is not safe or not well formed; the message says what and what to do."""


@dataclass(frozen=True)
class PackedFolder:
    """What :func:`pack_folder` wrote."""

    path: Path  # the tar file written
    sha256: str  # hex digest of the tar bytes
    size: int  # bytes of the tar
    files: int  # regular files in it
    largest: list[tuple[str, int]]  # up to 5 (relative posix path, size), largest first


class _HashingWriter:
    """A write-only file that hashes and counts what goes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.digest, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def _excluded(name: str, rel: str, patterns: tuple[str, ...]) -> bool:
    """Whether the entry ``rel`` (last part ``name``) is left out of the bundle."""
    match = fnmatch.fnmatch
    return name in DEFAULT_EXCLUDES or any(match(name, p) or match(rel, p) for p in patterns)


def _link_target(root: Path, entry_path: str, rel: str, folder: object) -> str:
    """The target to store for the link at ``entry_path``: its own text when that stays
    inside the folder, else the relative path to where it resolves, if that is inside."""
    target = os.readlink(entry_path)
    real = Path(os.path.realpath(entry_path))
    if real != root and root not in real.parents:
        raise BundleError(f"{rel!r} in {folder} links to {target!r}, outside it: {_LINK_HINT}")
    text = target.replace(os.sep, "/")
    parent = posixpath.dirname(rel)
    lexical = posixpath.normpath(posixpath.join(parent, text))
    if os.path.isabs(target) or lexical == ".." or lexical.startswith("../"):
        text = posixpath.relpath(real.relative_to(root).as_posix(), parent or ".")
    return text


def _walk(
    folder: str | os.PathLike, exclude: Iterable[str], skip: tuple[int, ...] = ()
) -> Iterator[tuple[str, str, os.stat_result, str]]:
    """The (relative posix path, path, lstat, link target to store) of the entries of
    ``folder`` to pack, in order: siblings sorted by the bytes of their names, each
    directory before its contents; links are not followed. ``skip`` is the (st_dev,
    st_ino) of a file to leave out (the tar being written)."""
    root = Path(folder)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a directory"
        raise BundleError(f"cannot pack {folder}: it {what}; give the path of a folder")
    root = root.resolve()
    exclude = (exclude,) if isinstance(exclude, str) else exclude
    cleaned = (p.replace("\\", "/").removeprefix("./").rstrip("/") for p in exclude)
    patterns = tuple(p for p in cleaned if p)
    pending: list[tuple[os.DirEntry, str]] = []  # a stack: the next entry is on top

    def push_children(path: str, prefix: str) -> None:
        with os.scandir(path) as it:
            children = sorted(it, key=lambda e: os.fsencode(e.name), reverse=True)
        pending.extend((child, prefix + child.name) for child in children)

    push_children(str(root), "")
    while pending:
        entry, rel = pending.pop()
        if _excluded(entry.name, rel, patterns):
            continue
        st = entry.stat(follow_symlinks=False)
        if (st.st_dev, st.st_ino) == skip:
            continue
        if "\\" in entry.name:  # a POSIX name; bundles refuse it as a Windows separator
            raise BundleError(f"{rel!r} in {folder} has a backslash in its name: rename it")
        if stat.S_ISDIR(st.st_mode):
            yield rel, entry.path, st, ""
            push_children(entry.path, rel + "/")  # its contents come before its siblings
        elif stat.S_ISREG(st.st_mode):
            yield rel, entry.path, st, ""
        elif stat.S_ISLNK(st.st_mode):
            yield rel, entry.path, st, _link_target(root, entry.path, rel, folder)
        else:
            raise BundleError(f"{rel!r} in {folder} is a fifo, socket or device: exclude it")


def _keep_largest(largest: list[tuple[str, int]], final: bool = False) -> None:
    """Trim ``largest`` to the biggest files, ties by path, now and then (cheap)."""
    if final or len(largest) > 64:
        largest.sort(key=lambda item: (-item[1], item[0]))
        del largest[LARGEST:]


def folder_size(
    folder: str | os.PathLike, exclude: Iterable[str] = ()
) -> tuple[int, list[tuple[str, int]]]:
    """Total bytes of the regular files pack_folder would include, and the 5 largest (path,
    size). Cheap: stats only, used to refuse before packing. Raises BundleError for what
    :func:`pack_folder` would refuse."""
    total = 0
    largest: list[tuple[str, int]] = []
    for rel, _, st, _ in _walk(folder, exclude):
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
            largest.append((rel, st.st_size))
            _keep_largest(largest)
    _keep_largest(largest, final=True)
    return total, largest


def pack_folder(
    folder: str | os.PathLike, dest: str | os.PathLike, exclude: Iterable[str] = ()
) -> PackedFolder:
    """Pack ``folder`` into the tar ``dest`` deterministically: the same tree gives the
    same bytes whatever its mtimes and owners. Leaves out ``dest``, the names in
    :data:`DEFAULT_EXCLUDES` and entries whose name or relative path matches an
    ``exclude`` pattern (``fnmatch``). Raises BundleError (and removes ``dest``) when
    ``folder`` is no directory or holds a special file or a link to outside itself."""
    dest = Path(dest)
    files = 0
    largest: list[tuple[str, int]] = []
    with open(dest, "wb") as raw:
        try:
            skip = (os.fstat(raw.fileno()).st_dev, os.fstat(raw.fileno()).st_ino)
            writer = _HashingWriter(raw)
            with tarfile.open(fileobj=writer, mode="w", format=TAR_FORMAT) as tar:
                for rel, path, st, linkname in _walk(folder, exclude, skip):
                    info = tarfile.TarInfo(rel)
                    info.mode = stat.S_IMODE(st.st_mode)
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    if stat.S_ISDIR(st.st_mode):
                        info.type = tarfile.DIRTYPE
                        tar.addfile(info)
                    elif stat.S_ISLNK(st.st_mode):
                        info.type, info.linkname = tarfile.SYMTYPE, linkname
                        tar.addfile(info)
                    else:
                        info.size = st.st_size
                        with open(path, "rb") as data:
                            tar.addfile(info, data)
                        files += 1
                        largest.append((rel, info.size))
                        _keep_largest(largest)
        except BaseException:
            raw.close()
            dest.unlink(missing_ok=True)
            raise
    _keep_largest(largest, final=True)
    return PackedFolder(dest, writer.digest.hexdigest(), writer.size, files, largest)


def _name_problem(raw: str, what: str = "name", dots: bool = False) -> str:
    """What is wrong with ``raw`` as a path inside a bundle, ``..`` parts refused unless
    ``dots``, or ``""``."""
    if not raw:
        return f"has an empty {what}"
    if "\x00" in raw or "\\" in raw:
        return f"has a NUL or backslash in its {what} {raw!r}"
    if raw.startswith("/") or _DRIVE.match(raw):
        return f"has an absolute {what} {raw!r}"
    return f"has a '..' in its {what} {raw!r}" if not dots and ".." in raw.split("/") else ""


def _clean(raw: str) -> str:
    """``raw`` without its ``.`` and empty parts."""
    return "/".join(part for part in raw.split("/") if part not in ("", "."))


def _member_problem(member: tarfile.TarInfo, name: str, kinds: dict[str, bytes]) -> str:
    """What is wrong with ``member`` (clean ``name``) after the entries in ``kinds``
    (clean name -> tar type), or ``""``."""
    if member.type not in _KNOWN or member.sparse is not None:
        kind = _TYPE_NAMES.get(member.type, f"of tar type {member.type!r}")
        kind = "a sparse file" if member.sparse is not None else kind
        return f"is {kind}; a bundle holds only files, directories and links: exclude it"
    if not name and not member.isdir():
        return "has an empty name"
    parts = name.split("/")
    for above in ("/".join(parts[:i]) for i in range(1, len(parts))):
        if kinds.get(above, tarfile.DIRTYPE) != tarfile.DIRTYPE:
            return f"is inside {above!r}, which is not a directory"
    if name in kinds and not (member.isdir() and kinds[name] == tarfile.DIRTYPE):
        return "appears twice, and one would overwrite the other"
    if member.size < 0:
        return "has a negative size"
    if member.issym():
        target = member.linkname
        if problem := _name_problem(target, "link target", dots=True):
            return problem
        lexical = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if lexical == ".." or lexical.startswith("../"):
            return f"is a symbolic link to {target!r}, outside the bundle: {_LINK_HINT}"
    if member.islnk():
        target = member.linkname
        if problem := _name_problem(target, "hard link target"):
            return problem
        if kinds.get(_clean(target)) not in _REGULAR:
            return f"is a hard link to {target!r}, which is not a file earlier in the bundle"
    return ""


def _cut(path: object, detail: object) -> BundleError:
    """The error for a file that is not a whole tar."""
    return BundleError(f"the bundle is cut short or corrupt ({detail}): {_CUT_HINT}")


def check_bundle(
    path: str | os.PathLike,
    *,
    max_files: int = MAX_BUNDLE_FILES,
    max_expanded: int = MAX_BUNDLE_EXPANDED,
) -> int:
    """Check every entry of the tar at ``path`` without extracting; return the number of
    regular files. Raise BundleError for an unsafe entry (absolute or ``..`` name, a link
    to outside the bundle or to no earlier file, a device or fifo, a name used twice),
    more than ``max_files`` entries or ``max_expanded`` bytes of files, and for a file that
    is compressed, cut short or not a tar."""
    with open(path, "rb") as raw:
        magic = raw.read(6)
        if kind := next((k for m, k in _COMPRESSED.items() if magic.startswith(m)), ""):
            raise BundleError(f"the bundle is a {kind} file, not a bundle (an uncompressed tar)")
        raw.seek(0)
        file_size = os.fstat(raw.fileno()).st_size
        kinds: dict[str, bytes] = {}
        files = entries = total = 0
        try:
            with tarfile.open(fileobj=raw, mode="r:") as tar:
                for member in tar:
                    entries += 1
                    if entries > max_files:
                        limit = f"more than {max_files} entries (the limit)"
                        raise BundleError(f"the bundle has {limit}: {_BIG_HINT}")
                    name = _clean(member.name)
                    problem = _name_problem(member.name) or _member_problem(member, name, kinds)
                    if problem:
                        raise BundleError(f"bundle entry {member.name!r} {problem}")
                    kinds[name] = member.type
                    end = member.offset_data
                    if member.type in _REGULAR:
                        files, total = files + 1, total + member.size
                        end += -(-member.size // _BLOCK) * _BLOCK
                    if total > max_expanded:
                        limit = f"more than {max_expanded} bytes of files (the limit)"
                        raise BundleError(f"the bundle has {limit} at {member.name!r}: {_BIG_HINT}")
                    if end > file_size:
                        raise _cut(path, f"entry {member.name!r} runs past the end")
                end = tar.offset
        except BundleError:
            raise
        except (tarfile.TarError, EOFError, ValueError, UnicodeError) as exc:
            raise _cut(path, exc) from exc
        raw.seek(end)
        if raw.read(_BLOCK) != tarfile.NUL * _BLOCK:
            raise _cut(path, f"no end-of-archive block after {entries} entries")
    return files


def _extract_checked(tar: tarfile.TarFile, dest: str) -> None:
    """Extract without ``tarfile``'s data filter (older Pythons): each entry and link
    target must resolve inside ``dest``; files keep ``mode & 0o755``, owner-writable."""
    for member in tar:
        where = os.path.realpath(os.path.join(dest, member.name))
        link = dest
        if member.issym():
            link = os.path.join(dest, os.path.dirname(member.name), member.linkname)
        elif member.islnk():
            link = os.path.join(dest, member.linkname)
        for target in (where, os.path.realpath(link)):
            if os.path.commonpath([target, dest]) != dest:
                raise BundleError(f"bundle entry {member.name!r} would be written outside {dest}")
        tar.extract(member, dest, set_attrs=False)
        if member.isreg():
            os.chmod(where, (member.mode & 0o755) | 0o600)


def extract_bundle(
    path: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    max_files: int = MAX_BUNDLE_FILES,
    max_expanded: int = MAX_BUNDLE_EXPANDED,
) -> None:
    """check_bundle, then extract into the existing directory ``dest`` with ``tarfile``'s
    ``data`` filter (files keep their permission bits minus setuid, setgid and group or
    other write). Never writes outside ``dest``. Raises BundleError for a bundle refused,
    NotADirectoryError when ``dest`` is not an existing directory."""
    check_bundle(path, max_files=max_files, max_expanded=max_expanded)
    if not os.path.isdir(dest):
        raise NotADirectoryError(f"cannot extract a bundle into {dest}: not a directory")
    root = os.path.realpath(dest)
    with tarfile.open(path, mode="r:") as tar:
        try:
            if _HAS_DATA_FILTER:
                tar.extractall(root, filter="data")
            else:
                _extract_checked(tar, root)
        except tarfile.TarError as exc:
            raise BundleError(f"{exc}; not a bundle made by the SDK") from exc
