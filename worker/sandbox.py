"""Run one command for a job in a directory of its own and collect what it wrote.

``run_command`` starts the command as the leader of a new session and process group,
captures stdout and stderr (the last ``keep`` bytes of each, also offered live) and
leaves no process behind: the group is killed when the command ends; on timeout it gets
SIGTERM, ``TERM_GRACE`` seconds, SIGKILL; ``cancel_all`` kills every group. If the worker
process dies, even by SIGKILL, its *reaper* kills the groups it was running: a small
process started once per worker (``REAPER_CODE``) that is told each group as it starts
and ends, and kills those left when its pipe from the worker closes. (A process that
leaves the group with ``setsid`` is not killed.)

Return codes are those of ``subprocess``: -N means killed by signal N; a program that
cannot be started gives 127 (126 if it is not executable).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from subprocess import DEVNULL, PIPE, Popen, TimeoutExpired
from typing import IO

TERM_GRACE = 2.0  # seconds between SIGTERM and SIGKILL on timeout
DRAIN_GRACE = 2.0  # seconds to read what is left in the pipes once the group is dead
CUT_NOTE = "[earlier output cut]\n"

# `python -I -S -c REAPER_CODE`, one per worker process, in a session of its own: reads
# "+PGID" / "-PGID" lines (a group started / ended) from the worker; at the end of that
# pipe (the worker exited or died, however) it kills the groups still running. Its
# parent's death is not signalled (PR_SET_PDEATHSIG follows the thread that started it,
# not the process): the pipe is what ends with the process.
REAPER_CODE = r"""
import os, sys
groups = set()
for line in sys.stdin:
    pgid = int(line[1:])
    if line[0] == "+": groups.add(pgid)
    else: groups.discard(pgid)
for pgid in groups:
    try: os.killpg(pgid, 9)
    except OSError: pass
"""


class Reaper:
    """This worker process's reaper (see ``REAPER_CODE``), started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: Popen | None = None
        self._pid = 0  # the process that started it (a fork must start its own)

    def started(self, pgid: int) -> None:
        """Group ``pgid`` runs: kill it if this process dies."""
        self._tell(f"+{pgid}\n")

    def ended(self, pgid: int) -> None:
        """Group ``pgid`` is gone."""
        self._tell(f"-{pgid}\n")

    def _tell(self, line: str) -> None:
        with self._lock:
            process = self._process
            if process is None or process.poll() is not None or self._pid != os.getpid():
                process = self._process = Popen(
                    [sys.executable, "-I", "-S", "-c", REAPER_CODE],
                    stdin=PIPE,
                    stdout=DEVNULL,
                    stderr=DEVNULL,
                    start_new_session=True,
                    text=True,
                    bufsize=1,
                )
                self._pid = os.getpid()
            assert process.stdin is not None
            with contextlib.suppress(OSError):
                process.stdin.write(line)


_reaper = Reaper()
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
    pass_fds: tuple[int, ...] = (),
    on_start: Callable[[int], None] | None = None,
) -> Finished:
    """Run ``command`` in ``cwd`` and return how it ended, leaving no process behind.

    A list runs without a shell (a first element ``"python"`` is ``sys.executable``),
    a str runs with ``/bin/sh -c``. ``env`` is added to ``os.environ``; stdin is
    /dev/null. ``on_output`` gets stdout and stderr text as it comes, from a reader
    thread, at most every ``flush_every`` seconds and at the end; it is no longer called
    once it raises. A program that cannot be started gives code 127 (126 if not
    executable) and a message on stderr. ``pass_fds`` stay open in the command;
    ``on_start`` is told its process group once it runs (:func:`kill_group` stops it).
    """
    argv = _argv(command)
    if keep < 0:
        raise ValueError(f"keep must be >= 0, not {keep}")
    started = time.monotonic()
    try:
        proc = Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=DEVNULL,
            stdout=PIPE,
            stderr=PIPE,
            start_new_session=True,
            restore_signals=True,
            pass_fds=pass_fds,
        )
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        message = f"computethis: cannot run {argv[0]!r}: {exc.strerror or exc}\n"
        return Finished(code, "", message, False, time.monotonic() - started)
    pgid = proc.pid
    with _lock:
        _running.add(pgid)
    _reaper.started(pgid)
    assert proc.stdout is not None and proc.stderr is not None
    reader = _Reader([proc.stdout, proc.stderr], keep, on_output, flush_every)
    reader.start()
    timed_out = False
    try:
        if on_start is not None:
            on_start(pgid)
        if not _wait_exit(proc, timeout):
            timed_out = True
            kill_group(pgid, signal.SIGTERM)
            _wait_exit(proc, TERM_GRACE)
    finally:
        kill_group(pgid)  # what the leader left behind, before the pipes are drained
        with _lock:
            _running.discard(pgid)
        proc.wait()
        _reaper.ended(pgid)
        stdout, stderr = reader.finish()
    return Finished(proc.returncode, stdout, stderr, timed_out, time.monotonic() - started)
