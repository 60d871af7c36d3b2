"""Run one command for a job in a directory of its own and collect what it wrote.

``run_command`` starts the command through a tiny guard (``GUARD_CODE``) that leads a
new session and process group, captures stdout and stderr (the last ``keep`` bytes of
each, also offered live) and leaves no process behind: the group is killed at the end;
on timeout it gets SIGTERM, ``TERM_GRACE`` seconds, SIGKILL; if the worker dies, even by
SIGKILL, the kernel sends the guard SIGTERM and the guard kills the group; ``cancel_all``
kills every group. (A process that leaves the group with ``setsid`` is killed by the
guard when the command ends by itself, not when the guard is killed.)

Return codes are those of ``subprocess``: -N means killed by signal N. The guard exits
with 128 + N for a command killed by signal N, as a shell does, and ``run_command`` maps
that back to -N (so a command that itself exits with 129..128+NSIG reads as killed). A
killed guard (``cancel_all``, SIGTERM ignored past the grace) gives its own signal: -9.

``collect_outputs`` zips the outputs uncompressed: ``member_span`` lets a server answer
HTTP Range requests from the zip with plain file reads.
"""

from __future__ import annotations

import codecs
import contextlib
import fnmatch
import os
import select
import shutil
import signal
import stat
import struct
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from subprocess import DEVNULL, PIPE, Popen, TimeoutExpired
from typing import IO

TERM_GRACE = 2.0  # seconds between SIGTERM and SIGKILL on timeout
DRAIN_GRACE = 2.0  # seconds to read what is left in the pipes once the group is dead
CUT_NOTE = "[earlier output cut]\n"
PARENT_ENV = "COMPUTETHIS_SANDBOX_PARENT"  # the pid the guard must stay the child of
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
OUTPUTS_PREFIX = "outputs/"

# `python -I -S -c GUARD_CODE argv...`, the group leader: asks for SIGTERM when its parent
# dies and to be the subreaper of the command's orphans, runs the command, kills what is
# left and exits with the command's code (128 + N: killed by signal N). On SIGTERM it
# kills all only if its parent is gone: the SIGTERM of a timeout reached the command too,
# the grace is left to it; the parent *thread* ending sends it too, getppid() unchanged.
GUARD_CODE = r"""
import ctypes, os, signal, sys
PARENT = int(os.environ.pop("COMPUTETHIS_SANDBOX_PARENT"))
def sweep():  # kill the children, whose orphans become ours, until there are none
    for _ in range(1000):
        try:
            kids = open("/proc/self/task/%d/children" % os.getpid()).read().split()
        except OSError:
            return
        for kid in map(int, kids):
            try: os.kill(kid, 9); os.waitpid(kid, 0)
            except OSError: pass
        if not kids: return
def on_term(signum, frame):
    if os.getppid() != PARENT: sweep(); os.killpg(0, signal.SIGKILL)
signal.signal(signal.SIGTERM, on_term)
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
if os.getppid() != PARENT: os._exit(137)
try:
    pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ,
                          setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM))
except OSError as e:
    os.write(2, ("computethis: cannot run %r: %s\n" % (sys.argv[1], e.strerror)).encode())
    os._exit(127 if isinstance(e, FileNotFoundError) else 126)
while True:
    got, status = os.waitpid(-1, 0)
    if got == pid: break
code = os.waitstatus_to_exitcode(status); sweep()
os._exit(code if code >= 0 else 128 - code)
"""

OnOutput = Callable[[str], None] | None
_lock = threading.Lock()
_running: set[int] = set()  # process groups started here and not yet reaped


@dataclass
class Finished:
    """How a command ended: its code (negative: killed by that signal), the tails of
    its output (prefixed with ``CUT_NOTE`` when cut), whether it timed out, seconds."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    duration: float


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group ``pgid``; a group that is gone is no error."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def cancel_all() -> None:
    """SIGKILL every process group currently running from ``run_command``."""
    with _lock:
        for pgid in list(_running):
            kill_group(pgid)


def _tail_text(buf: bytearray, keep: int) -> str:
    """The last ``keep`` bytes of ``buf`` as text, after ``CUT_NOTE`` if cut."""
    if len(buf) <= keep:
        return buf.decode("utf-8", "replace")
    data = bytes(buf[len(buf) - keep :])
    for _ in range(3):  # do not start in the middle of a character
        if data[:1] and 0x80 <= data[0] < 0xC0:
            data = data[1:]
    return CUT_NOTE + data.decode("utf-8", "replace")


class _Reader(threading.Thread):
    """Reads both pipes into tails and hands text to ``on_output`` in batches."""

    def __init__(self, pipes: list[IO[bytes]], keep: int, on_output: OnOutput, every: float):
        super().__init__(name="computethis-sandbox-reader", daemon=True)
        self.pipes, self.keep, self.on_output, self.every = pipes, keep, on_output, every
        self.tails = [bytearray() for _ in pipes]
        self.decoders = [codecs.getincrementaldecoder("utf-8")("replace") for _ in pipes]
        self.pending: list[str] = []
        self.last_flush, self.stop = float("-inf"), False

    def flush(self) -> None:
        text, self.pending, self.last_flush = "".join(self.pending), [], time.monotonic()
        if text and self.on_output is not None:
            try:
                self.on_output(text)
            except Exception:  # a broken consumer must not stop the reading
                self.on_output = None

    def run(self) -> None:
        poller, streams = select.poll(), {p.fileno(): i for i, p in enumerate(self.pipes)}
        for fd in streams:
            poller.register(fd, select.POLLIN)
        try:
            while streams and not self.stop:
                due = self.last_flush + self.every - time.monotonic() if self.pending else 0.25
                for fd, _ in poller.poll(max(0.0, min(due, 0.25)) * 1000):
                    data, i = os.read(fd, 1 << 16), streams[fd]
                    if not data:
                        poller.unregister(fd)
                        del streams[fd]
                        continue
                    tail = self.tails[i]
                    tail += data
                    if len(tail) > 2 * self.keep + (1 << 16):  # amortized trimming
                        del tail[: len(tail) - self.keep - 1]  # one more byte: it was cut
                    if self.on_output is not None:
                        self.pending.append(self.decoders[i].decode(data))
                if self.pending and time.monotonic() - self.last_flush >= self.every:
                    self.flush()
        finally:
            if self.on_output is not None:
                self.pending.extend(decoder.decode(b"", final=True) for decoder in self.decoders)
            self.flush()

    def finish(self) -> tuple[str, str]:
        """Drain the pipes (for ``DRAIN_GRACE`` at most), close them: the tails as text."""
        self.join(DRAIN_GRACE)
        if self.is_alive():  # a writer left the group and keeps a pipe open
            self.stop = True
            self.join()
        for pipe in self.pipes:
            pipe.close()
        return _tail_text(self.tails[0], self.keep), _tail_text(self.tails[1], self.keep)


def _argv(command: list[str] | str) -> list[str]:
    if isinstance(command, str) and command:
        return ["/bin/sh", "-c", command]
    if not (isinstance(command, list) and command and all(isinstance(a, str) for a in command)):
        raise TypeError(f"command must be a non-empty list of str or a non-empty str: {command!r}")
    return [sys.executable if command[0] == "python" else command[0], *command[1:]]


def _wait_exit(proc: Popen, timeout: float | None) -> bool:
    """Whether ``proc`` exits within ``timeout`` seconds. It is not reaped, so its pid,
    the group's id, cannot be reused meanwhile (unless there is no pidfd: Linux < 5.3)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        with contextlib.suppress(TimeoutExpired):
            proc.wait(timeout)
        return proc.returncode is not None
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else timeout * 1000))
    finally:
        os.close(fd)


def run_command(
    command: list[str] | str,
    cwd: str | os.PathLike,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    on_output: Callable[[str], None] | None = None,
    flush_every: float = 0.2,
    keep: int = 1 << 20,
) -> Finished:
    """Run ``command`` in ``cwd`` and return how it ended, leaving no process behind.

    A list runs without a shell (a first element ``"python"`` is ``sys.executable``),
    a str runs with ``/bin/sh -c``. ``env`` is added to ``os.environ``; stdin is
    /dev/null. ``on_output`` gets stdout and stderr text as it comes, from a reader
    thread, at most every ``flush_every`` seconds and at the end; it is no longer called
    once it raises. A program that cannot be started gives code 127 (126 if not
    executable) and a message on stderr.
    """
    argv = _argv(command)
    if keep < 0:
        raise ValueError(f"keep must be >= 0, not {keep}")
    env = {**os.environ, **(env or {}), PARENT_ENV: str(os.getpid())}
    started = time.monotonic()
    guard = [sys.executable, "-I", "-S", "-c", GUARD_CODE, *argv]
    proc = Popen(
        guard, cwd=cwd, env=env, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, start_new_session=True
    )
    pgid = proc.pid
    with _lock:
        _running.add(pgid)
    assert proc.stdout is not None and proc.stderr is not None
    reader = _Reader([proc.stdout, proc.stderr], keep, on_output, flush_every)
    reader.start()
    timed_out = False
    try:
        if not _wait_exit(proc, timeout):
            timed_out = True
            kill_group(pgid, signal.SIGTERM)
            _wait_exit(proc, TERM_GRACE)
    finally:
        kill_group(pgid)  # what the leader left behind, before the pipes are drained
        with _lock:
            _running.discard(pgid)
        proc.wait()
        stdout, stderr = reader.finish()
    code = proc.returncode
    if 128 < code <= 128 + signal.NSIG:  # the guard's report of a signal
        code = 128 - code
    return Finished(code, stdout, stderr, timed_out, time.monotonic() - started)


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
