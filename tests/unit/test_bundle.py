"""The folder bundle: deterministic packing, excludes, links and permissions, and
check_bundle refusing every unsafe or broken tar before anything is extracted."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import stat
import tarfile
from pathlib import Path

import pytest

from wire import bundle
from wire.bundle import (
    DEFAULT_EXCLUDES,
    BundleError,
    check_bundle,
    extract_bundle,
    folder_size,
    pack_folder,
)


def make_tree(root: Path) -> Path:
    """A small project folder: nested files, an empty dir, an executable, a long name."""
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "main.py").write_text("print('hi')\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "sub" / "data.bin").write_bytes(bytes(range(256)) * 20)
    (root / "pkg" / "été.txt").write_text("accents\n")
    (root / ("long" * 40 + ".txt")).write_text("a name over 100 characters\n")
    run = root / "run.sh"
    run.write_text("#!/bin/sh\necho ok\n")
    run.chmod(0o755)
    return root


def tree_of(root: Path) -> dict[str, object]:
    """Relative path -> file bytes, ``"dir"`` or ``("link", target)``."""
    found: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            found[rel] = "dir"
        else:
            found[rel] = path.read_bytes()
    return found


def names_in(tar_path: Path) -> list[str]:
    with tarfile.open(tar_path, "r:") as tar:
        return tar.getnames()


# -- pack_folder ---------------------------------------------------------------------------


def test_packing_twice_gives_the_same_bytes_whatever_the_mtimes(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "src")
    first = pack_folder(folder, tmp_path / "a.tar")
    for i, path in enumerate([folder, *folder.rglob("*")]):
        os.utime(path, (1_000_000 + i, 2_000_000 + i))
    second = pack_folder(folder, tmp_path / "b.tar")
    data = (tmp_path / "a.tar").read_bytes()
    assert data == (tmp_path / "b.tar").read_bytes()
    assert first.sha256 == second.sha256 == hashlib.sha256(data).hexdigest()
    assert first.size == len(data)
    assert first.path == tmp_path / "a.tar"


def test_entries_are_sorted_relative_and_carry_no_owner_or_time(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "x").write_text("x")
    (folder / "a-b").write_text("y")
    (folder / "B").write_text("z")
    pack_folder(folder, tmp_path / "out.tar")
    with tarfile.open(tmp_path / "out.tar", "r:") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["B", "a", "a/x", "a-b"]
    assert members[1].isdir()
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")


def test_packed_folder_counts_files_and_names_the_largest(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(8):
        (folder / f"f{i}").write_bytes(b"x" * (i * 10))
    (folder / "same").write_bytes(b"x" * 70)
    packed = pack_folder(folder, tmp_path / "out.tar")
    assert packed.files == 9
    assert packed.largest == [("f7", 70), ("same", 70), ("f6", 60), ("f5", 50), ("f4", 40)]
    total, largest = folder_size(folder)
    assert total == sum(i * 10 for i in range(8)) + 70
    assert largest == packed.largest
    assert check_bundle(packed.path) == 9


def test_default_and_given_excludes_leave_entries_out(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    for d in (
        ".git",
        "sub/__pycache__",
        ".venv/lib",
        "data",
        "sub/data",
        "build/tmp",
        "build/keep",
    ):
        (folder / d).mkdir(parents=True, exist_ok=True)
    (folder / "other" / "tmp").mkdir(parents=True)
    for f in (".git/config", "sub/__pycache__/m.pyc", ".venv/lib/x.py", "data/big.csv"):
        (folder / f).write_text("gone")
    for f in ("app.log", "sub/deep.log", "build/tmp/t.o", "build/keep/k.o", "sub/m.py"):
        (folder / f).write_text("?")
    pack_folder(folder, tmp_path / "out.tar", exclude=["*.log", "data", "build/tmp/"])
    names = names_in(tmp_path / "out.tar")
    assert names == [
        "build",
        "build/keep",
        "build/keep/k.o",
        "other",
        "other/tmp",
        "sub",
        "sub/m.py",
    ]
    assert not set(DEFAULT_EXCLUDES) & {part for n in names for part in n.split("/")}
    assert folder_size(folder, exclude=["*.log", "data", "build/tmp"])[0] == 1 + 1
    pack_folder(folder, tmp_path / "one.tar", exclude="sub")  # one pattern as a string
    assert not any(n.startswith("sub") for n in names_in(tmp_path / "one.tar"))


def test_the_tar_is_not_packed_into_itself(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "src")
    pack_folder(folder, folder / "self.tar")
    assert "self.tar" not in names_in(folder / "self.tar")


def test_extract_reproduces_the_tree_empty_dirs_and_permissions(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "src")
    (folder / "pkg" / "link.py").symlink_to("__init__.py")
    (folder / "pkg" / "sub" / "up").symlink_to("../../main.py")
    packed = pack_folder(folder, tmp_path / "out.tar")
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_bundle(packed.path, dest)
    assert tree_of(dest) == tree_of(folder)
    assert (dest / "empty").is_dir() and not any((dest / "empty").iterdir())
    assert os.access(dest / "run.sh", os.X_OK)
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert not os.access(dest / "main.py", os.X_OK)
    assert (dest / "pkg" / "sub" / "up").read_text() == "print('hi')\n"


def test_the_fallback_extraction_without_a_data_filter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle, "_HAS_DATA_FILTER", False)
    folder = make_tree(tmp_path / "src")
    (folder / "pkg" / "link.py").symlink_to("__init__.py")
    packed = pack_folder(folder, tmp_path / "out.tar")
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_bundle(packed.path, dest)
    assert tree_of(dest) == tree_of(folder)
    assert os.access(dest / "run.sh", os.X_OK)


def test_links_inside_are_kept_and_rewritten_when_they_leave_and_come_back(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "top.txt").write_text("top")
    (folder / "sub" / "abs").symlink_to(folder / "top.txt")  # absolute, inside
    (folder / "sub" / "round").symlink_to("../../src/top.txt")  # leaves, comes back
    (folder / "sub" / "dirlink").symlink_to("..")  # a link to a directory is not followed
    pack_folder(folder, tmp_path / "out.tar")
    with tarfile.open(tmp_path / "out.tar", "r:") as tar:
        links = {m.name: m.linkname for m in tar if m.issym()}
    assert links == {"sub/abs": "../top.txt", "sub/dirlink": "..", "sub/round": "../top.txt"}
    assert check_bundle(tmp_path / "out.tar") == 1


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside.txt", "sub/../../outside.txt"])
def test_a_link_to_outside_the_folder_is_refused_at_pack(tmp_path: Path, target: str) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "escape").symlink_to(target)
    with pytest.raises(BundleError, match="escape") as caught:
        pack_folder(folder, tmp_path / "out.tar")
    assert "copy the file into the folder" in str(caught.value)
    assert "exclude" in str(caught.value)
    assert not (tmp_path / "out.tar").exists()
    assert pack_folder(folder, tmp_path / "out.tar", exclude=["escape"]).files == 0


def test_a_special_file_is_refused_at_pack(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    os.mkfifo(folder / "pipe")
    with pytest.raises(BundleError, match="'pipe'.*exclude"):
        pack_folder(folder, tmp_path / "out.tar")
    with pytest.raises(BundleError, match="'pipe'"):
        folder_size(folder)


def test_a_backslash_in_a_name_is_refused_at_pack(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a\\b").write_text("x")
    with pytest.raises(BundleError, match="backslash"):
        pack_folder(folder, tmp_path / "out.tar")


def test_packing_what_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        pack_folder(tmp_path / "missing", tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="not a directory"):
        folder_size(tmp_path / "file")


# -- check_bundle ----------------------------------------------------------------------------


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def craft(tmp_path: Path, *entries: tuple[tarfile.TarInfo, bytes]) -> Path:
    """A tar of exactly these entries, written by tarfile itself."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    path = tmp_path / "crafted.tar"
    path.write_bytes(buf.getvalue())
    return path


def negative_size() -> tuple[tarfile.TarInfo, bytes]:
    info, data = entry("neg")
    info.pax_headers = {"size": "-5"}
    return info, data


MALICIOUS = {
    "parent": ([entry("../evil", data=b"x")], "../evil"),
    "parent inside": ([entry("a/../../evil", data=b"x")], "a/../../evil"),
    "absolute": ([entry("/abs", data=b"x")], "/abs"),
    "drive": ([entry("C:/win", data=b"x")], "C:/win"),
    "backslash": ([entry("a\\..\\evil", data=b"x")], "evil"),
    "link absolute": ([entry("pw", tarfile.SYMTYPE, link="/etc/passwd")], "/etc/passwd"),
    "link escapes": ([entry("l", tarfile.SYMTYPE, link="a/../../x")], "a/../../x"),
    "nested link escapes": (
        [entry("d", tarfile.DIRTYPE), entry("d/l", tarfile.SYMTYPE, link="../../x")],
        "d/l",
    ),
    "empty link": ([entry("l", tarfile.SYMTYPE, link="")], "'l'"),
    "hardlink outside": ([entry("h", tarfile.LNKTYPE, link="../outside")], "../outside"),
    "hardlink absolute": ([entry("h", tarfile.LNKTYPE, link="/etc/shadow")], "/etc/shadow"),
    "hardlink later": (
        [entry("h", tarfile.LNKTYPE, link="later"), entry("later", data=b"x")],
        "later",
    ),
    "hardlink dir": ([entry("d", tarfile.DIRTYPE), entry("h", tarfile.LNKTYPE, link="d")], "'h'"),
    "char device": ([entry("null", tarfile.CHRTYPE)], "'null'"),
    "block device": ([entry("sda", tarfile.BLKTYPE)], "'sda'"),
    "fifo": ([entry("pipe", tarfile.FIFOTYPE)], "'pipe'"),
    "contiguous": ([entry("cont", tarfile.CONTTYPE)], "'cont'"),
    "dir then file": ([entry("a", tarfile.DIRTYPE), entry("a", data=b"x")], "'a'"),
    "file then dir": ([entry("a", data=b"x"), entry("a", tarfile.DIRTYPE)], "'a'"),
    "file twice": ([entry("a", data=b"x"), entry("./a", data=b"y")], "'./a'"),
    "through a link": (
        [entry("d", tarfile.DIRTYPE), entry("l", tarfile.SYMTYPE, link="d"), entry("l/x")],
        "'l/x'",
    ),
    "inside a file": ([entry("f", data=b"x"), entry("f/x")], "'f/x'"),
    "negative size": ([negative_size()], "'neg'"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_check_bundle_refuses_unsafe_entries(tmp_path: Path, case: str) -> None:
    entries, named = MALICIOUS[case]
    path = craft(tmp_path, *entries)
    with pytest.raises(BundleError) as caught:
        check_bundle(path)
    assert named in str(caught.value)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BundleError):
        extract_bundle(path, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_check_bundle_accepts_safe_links_and_a_root_entry(tmp_path: Path) -> None:
    path = craft(
        tmp_path,
        entry(".", tarfile.DIRTYPE),
        entry("./d", tarfile.DIRTYPE),
        entry("d/f", data=b"abc"),
        entry("d/l", tarfile.SYMTYPE, link="../d/f"),
        entry("h", tarfile.LNKTYPE, link="d/f"),
        entry("d", tarfile.DIRTYPE),  # a directory twice overwrites nothing
    )
    assert check_bundle(path) == 1
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_bundle(path, dest)
    assert (dest / "h").read_bytes() == (dest / "d" / "l").read_bytes() == b"abc"


def test_too_many_entries_is_refused_with_the_limit(tmp_path: Path) -> None:
    path = craft(tmp_path, *(entry(f"f{i}", data=b"x") for i in range(3)))
    assert check_bundle(path, max_files=3) == 3
    with pytest.raises(BundleError, match="more than 2 entries.*split the folder"):
        check_bundle(path, max_files=2)


def test_too_many_bytes_is_refused_with_the_limit(tmp_path: Path) -> None:
    path = craft(tmp_path, entry("a", data=b"x" * 6), entry("b", data=b"x" * 6))
    assert check_bundle(path, max_expanded=12) == 2
    with pytest.raises(BundleError, match="more than 11 bytes.*'b'.*exclude files"):
        check_bundle(path, max_expanded=11)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BundleError, match="11 bytes"):
        extract_bundle(path, dest, max_expanded=11)


def good_tar(tmp_path: Path) -> bytes:
    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(4):
        (folder / f"f{i}").write_bytes(bytes([i]) * 3000)
    return pack_folder(folder, tmp_path / "good.tar").path.read_bytes()


def cut_points(data: bytes) -> dict[str, int]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = tar.getmembers()
    last = members[-1]
    return {
        "half": len(data) // 2,
        "in the data": members[1].offset_data + 100,
        "at a header": members[2].offset,
        "in a header": members[2].offset + 100,
        "before the end blocks": last.offset_data + 3072,
        "one byte": 1,
    }


@pytest.mark.parametrize(
    "where",
    ["half", "in the data", "at a header", "in a header", "before the end blocks", "one byte"],
)
def test_a_cut_bundle_is_refused(tmp_path: Path, where: str) -> None:
    data = good_tar(tmp_path)
    path = tmp_path / "cut.tar"
    path.write_bytes(data[: cut_points(data)[where]])
    with pytest.raises(BundleError, match="upload it again"):
        check_bundle(path)


@pytest.mark.parametrize("kind", ["gzip", "random", "empty", "text"])
def test_what_is_not_an_uncompressed_tar_is_refused(tmp_path: Path, kind: str) -> None:
    data = {
        "gzip": lambda: gzip.compress(good_tar(tmp_path)),
        "random": lambda: random.Random(0).randbytes(4096),
        "empty": lambda: b"",
        "text": lambda: b"print('not a tar')\n" * 100,
    }[kind]()
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    with pytest.raises(BundleError, match="not a bundle" if kind == "gzip" else "upload it again"):
        check_bundle(path)


def test_an_empty_folder_packs_to_a_valid_bundle(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    packed = pack_folder(tmp_path / "src", tmp_path / "out.tar")
    assert packed.files == 0 and packed.largest == []
    assert check_bundle(packed.path) == 0


def test_extract_needs_an_existing_directory(tmp_path: Path) -> None:
    packed = pack_folder(make_tree(tmp_path / "src"), tmp_path / "out.tar")
    with pytest.raises(NotADirectoryError):
        extract_bundle(packed.path, tmp_path / "missing")


@pytest.mark.parametrize("data_filter", [True, False])
def test_extract_refuses_a_link_that_leaves_through_another_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_filter: bool
) -> None:
    """Each link stays inside on its own (check_bundle passes), but 'x' -> 'd/l/..' goes
    through 'd/l' -> '..' to above the root: extraction refuses it."""
    monkeypatch.setattr(bundle, "_HAS_DATA_FILTER", data_filter)
    path = craft(
        tmp_path,
        entry("d", tarfile.DIRTYPE),
        entry("d/l", tarfile.SYMTYPE, link=".."),
        entry("x", tarfile.SYMTYPE, link="d/l/.."),
    )
    assert check_bundle(path) == 0
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BundleError, match="'x'"):
        extract_bundle(path, dest)
    assert not os.path.lexists(dest / "x")
