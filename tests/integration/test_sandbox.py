"""``worker.sandbox``: one command in a directory of its own, with real processes.

Every process a test starts is stopped by pid in a ``finally``, also when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from worker.outputs import OutputsTooLarge, collect_outputs, member_span, snapshot
from worker.sandbox import CUT_NOTE, cancel_all, run_command

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Writes the pid of a backgrounded grandchild and the process group of the shell.
BACKGROUND = "sleep 300 & echo $! > pid; cut -d' ' -f5 /proc/$$/stat > pgid"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return state.split()[1] != "Z"


def _group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _gone(pids: list[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not any(map(_alive, pids))


def _read_int(path: Path, within: float = 10.0) -> int:
    """The number a command writes to ``path``, once it is there."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written within {within} s")


def _stop(pids: list[int]) -> None:
    """SIGKILL what a test started and is still there, by pid."""
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def started(tmp_path: Path):
    """The pids a test reads from the files ``pid`` and ``pgid`` its command writes, all
    killed at the end (the group's live members too)."""
    pids: list[int] = []
    yield pids
    for name in ("pid", "pgid"):
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int((tmp_path / name).read_text())
            pids.extend([pid, *_group(pid)] if name == "pgid" else [pid])
    _stop(pids)


# --- running -------------------------------------------------------------------------


def test_a_list_runs_without_a_shell_and_python_is_this_interpreter(tmp_path: Path) -> None:
    code = "import os, sys; print(sys.executable); print(os.getcwd()); print(os.environ['X'])"
    done = run_command(["python", "-c", code], tmp_path, env={"X": "x $HOME"})
    assert done.returncode == 0 and not done.timed_out
    assert done.stdout.splitlines() == [sys.executable, str(tmp_path), "x $HOME"]
    assert done.stderr == "" and done.duration > 0


def test_a_string_runs_with_the_shell_and_keeps_codes_and_streams(tmp_path: Path) -> None:
    done = run_command("echo out; echo err >&2; echo $((6 * 7)); exit 3", tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n42\n", "err\n")


def test_stdin_is_empty(tmp_path: Path) -> None:
    done = run_command(["python", "-c", "import sys; print(repr(sys.stdin.read()))"], tmp_path)
    assert done.stdout == "''\n"


def test_killed_by_a_signal_is_a_negative_code(tmp_path: Path) -> None:
    assert run_command("kill -TERM $$", tmp_path).returncode == -signal.SIGTERM
    assert run_command("kill -KILL $$", tmp_path).returncode == -signal.SIGKILL


def test_a_missing_program_is_code_127(tmp_path: Path) -> None:
    done = run_command(["computethis-no-such-program"], tmp_path)
    assert done.returncode == 127 and "computethis-no-such-program" in done.stderr


@pytest.mark.parametrize("command", [[], "", ["echo", 1], None, ("echo",)])
def test_a_bad_command_is_a_type_error(tmp_path: Path, command: object) -> None:
    with pytest.raises(TypeError, match="non-empty list of str"):
        run_command(command, tmp_path)  # type: ignore[arg-type]


def test_only_the_tail_of_the_output_is_kept(tmp_path: Path) -> None:
    code = "import sys; sys.stdout.write('a' * 300000 + 'é' + 'z' * 9); sys.stderr.write('e')"
    done = run_command(["python", "-c", code], tmp_path, keep=10)
    assert done.stdout == CUT_NOTE + "z" * 9  # the half of é is dropped
    assert done.stderr == "e"


def test_output_is_offered_live(tmp_path: Path) -> None:
    chunks: list[tuple[float, str]] = []
    code = (
        "import sys, time; print('first', flush=True); time.sleep(1); sys.stdout.write('second\\n')"
    )
    done = run_command(
        ["python", "-c", code],
        tmp_path,
        on_output=lambda text: chunks.append((time.monotonic(), text)),
        flush_every=0.05,
    )
    ended = time.monotonic()
    assert done.returncode == 0 and done.stdout == "first\nsecond\n"
    assert "".join(text for _, text in chunks) == "first\nsecond\n"
    first = next(when for when, text in chunks if "first" in text)
    assert "second" not in chunks[0][1] and ended - first > 0.7, chunks


def test_stdout_and_stderr_are_interleaved_live_and_a_bad_consumer_is_dropped(
    tmp_path: Path,
) -> None:
    chunks: list[str] = []

    def consume(text: str) -> None:
        chunks.append(text)
        raise RuntimeError("consumer broken")

    done = run_command(
        "echo a; sleep 0.3; echo b >&2; sleep 0.3; echo c", tmp_path, on_output=consume
    )
    assert chunks == ["a\n"]  # not called again once it raised
    assert (done.returncode, done.stdout, done.stderr) == (0, "a\nc\n", "b\n")
    seen: list[str] = []
    run_command("echo a; sleep 0.3; echo b >&2", tmp_path, on_output=seen.append, flush_every=0.01)
    assert seen == ["a\n", "b\n"]


# --- no process left behind ----------------------------------------------------------


def test_a_backgrounded_grandchild_does_not_survive(tmp_path: Path, started: list[int]) -> None:
    done = run_command(BACKGROUND + "; echo started", tmp_path)
    assert (done.returncode, done.stdout) == (0, "started\n")
    pid, pgid = int((tmp_path / "pid").read_text()), int((tmp_path / "pgid").read_text())
    started.extend([pid, *_group(pgid)])
    assert done.duration < 5  # the reader did not wait for the sleep's end of the pipe
    assert _gone([pid], within=2.0)
    assert _group(pgid) == []


def test_a_timeout_ends_the_whole_group(tmp_path: Path, started: list[int]) -> None:
    begun = time.monotonic()
    done = run_command(BACKGROUND + "; sleep 300", tmp_path, timeout=1.0)
    took = time.monotonic() - begun
    pid, pgid = int((tmp_path / "pid").read_text()), int((tmp_path / "pgid").read_text())
    started.extend([pid, *_group(pgid)])
    assert done.timed_out and done.returncode == -signal.SIGTERM
    assert 1.0 <= took < 4.0
    assert _gone([pid], within=2.0) and _group(pgid) == []


def test_a_timeout_kills_what_ignores_sigterm_after_the_grace(
    tmp_path: Path, started: list[int]
) -> None:
    done = run_command("trap '' TERM; " + BACKGROUND + "; sleep 300", tmp_path, timeout=0.5)
    pid, pgid = int((tmp_path / "pid").read_text()), int((tmp_path / "pgid").read_text())
    started.extend([pid, *_group(pgid)])
    assert done.timed_out and done.returncode == -signal.SIGKILL
    assert 2.4 <= done.duration < 5.5
    assert _gone([pid], within=2.0) and _group(pgid) == []


_HELPER = """
import sys
sys.path.insert(0, sys.argv[1])
from worker.sandbox import run_command
run_command(sys.argv[3], sys.argv[2])
"""


def test_the_group_dies_with_the_worker_even_by_sigkill(tmp_path: Path, started: list[int]) -> None:
    command = BACKGROUND + "; wait"
    helper = subprocess.Popen([sys.executable, "-c", _HELPER, str(ROOT), str(tmp_path), command])
    started.append(helper.pid)
    try:
        pid, pgid = _read_int(tmp_path / "pid"), _read_int(tmp_path / "pgid")
        started.extend([pid, *_group(pgid)])
        assert _alive(pid) and pgid != os.getpgid(0)
        helper.kill()
        helper.wait(timeout=10)
        assert _gone([pid], within=3.0)
        assert _gone(_group(pgid), within=1.0)
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait()


def test_cancel_all_kills_a_running_command(tmp_path: Path, started: list[int]) -> None:
    def cancel_once_started() -> None:
        _read_int(tmp_path / "pgid")
        cancel_all()

    canceller = threading.Thread(target=cancel_once_started, daemon=True)
    canceller.start()
    done = run_command(BACKGROUND + "; sleep 300", tmp_path, timeout=60)
    canceller.join(timeout=10)
    pid, pgid = int((tmp_path / "pid").read_text()), int((tmp_path / "pgid").read_text())
    started.extend([pid, *_group(pgid)])
    assert done.returncode == -signal.SIGKILL and not done.timed_out
    assert done.duration < 10
    assert _gone([pid], within=2.0) and _group(pgid) == []


# --- outputs -------------------------------------------------------------------------


def _write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def _members(zip_path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zip_path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def test_new_or_changed_files_are_the_outputs(tmp_path: Path) -> None:
    job = tmp_path / "job"
    _write(job, {"kept.txt": b"same", "grown.txt": b"1", "touched.txt": b"abc", "in/x": b"x"})
    before = snapshot(job)
    assert before["in/x"][0] == 1 and set(before) == {
        "kept.txt",
        "grown.txt",
        "touched.txt",
        "in/x",
    }
    done = run_command("echo 2 >> grown.txt; mkdir -p out/deep; echo new > out/deep/n.txt", job)
    assert done.returncode == 0
    size, mtime = before["touched.txt"]
    os.utime(job / "touched.txt", ns=(mtime + 10**9, mtime + 10**9))  # same size, later
    listed = collect_outputs(job, tmp_path / "o.zip", before=before)
    assert listed == [("grown.txt", 3), ("out/deep/n.txt", 4), ("touched.txt", 3)]
    assert _members(tmp_path / "o.zip") == {
        "outputs/grown.txt": b"12\n",
        "outputs/out/deep/n.txt": b"new\n",
        "outputs/touched.txt": b"abc",
    }
    # Without a snapshot every file is an output.
    assert len(collect_outputs(job, tmp_path / "all.zip")) == 5


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["out/**"], ["out/a.csv", "out/x/y.csv"]),
        (["**/*.csv"], ["deep/z/w.csv", "out/a.csv", "out/x/y.csv", "top.csv"]),
        (["*.csv"], ["top.csv"]),
        (["out"], ["out/a.csv", "out/x/y.csv"]),
        (["./deep/**/w.csv", "read?e.[tm][xd]t"], ["deep/z/w.csv", "readme.txt"]),
        (["**"], ["deep/z/w.csv", "out/a.csv", "out/x/y.csv", "readme.txt", "top.csv"]),
    ],
)
def test_patterns_choose_the_outputs(
    tmp_path: Path, patterns: list[str], expected: list[str]
) -> None:
    job = tmp_path / "job"
    _write(
        job,
        {
            p: p.encode()
            for p in ["out/a.csv", "out/x/y.csv", "top.csv", "deep/z/w.csv", "readme.txt"]
        },
    )
    before = snapshot(job)  # patterns take what matches, changed or not
    listed = collect_outputs(job, tmp_path / "o.zip", patterns=patterns, before=before)
    assert listed == [(p, len(p)) for p in expected]


@pytest.mark.parametrize("pattern", ["../x", "/etc/*", "a/../../b", ""])
def test_a_pattern_must_stay_in_the_job_dir(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(ValueError, match="relative to the job dir"):
        collect_outputs(tmp_path, tmp_path / "o.zip", patterns=[pattern])


def test_outputs_over_the_limit_are_refused_before_writing(tmp_path: Path) -> None:
    job = tmp_path / "job"
    _write(job, {f"f{i}.bin": b"x" * (100 * i) for i in range(1, 8)})
    with pytest.raises(OutputsTooLarge) as caught:
        collect_outputs(job, tmp_path / "o.zip", max_bytes=1000)
    message = str(caught.value)
    assert "f7.bin (700 bytes)" in message and "1,000 bytes" in message
    assert "f2.bin" not in message  # the five largest only
    assert "--max-outputs" in message and caught.value.total == 2800
    assert not (tmp_path / "o.zip").exists() and os.listdir(tmp_path) == ["job"]
    assert len(collect_outputs(job, tmp_path / "o.zip", max_bytes=2800)) == 7


def test_the_zip_is_stored_fixed_and_served_by_spans(tmp_path: Path) -> None:
    job = tmp_path / "job"
    files = {"out/a.csv": b"a,b\n1,2\n", "big.bin": os.urandom(200_000), "empty": b""}
    _write(job, files)
    os.chmod(job / "big.bin", 0o755)
    dest = tmp_path / "o.zip"
    listed = collect_outputs(job, dest, extra={"computethis-run.json": b'{"ok": true}'})
    assert listed == sorted((name, len(data)) for name, data in files.items())
    with zipfile.ZipFile(dest) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == [
            "computethis-run.json",
            "outputs/big.bin",
            "outputs/empty",
            "outputs/out/a.csv",
        ]
        assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert zf.getinfo("outputs/big.bin").external_attr >> 16 & 0o777 == 0o755
        assert zf.testzip() is None
    raw = dest.read_bytes()
    for name, data in {
        **{"outputs/" + k: v for k, v in files.items()},
        "computethis-run.json": b'{"ok": true}',
    }.items():
        span = member_span(dest, name)
        assert span is not None and span[1] == len(data)
        assert raw[span[0] : span[0] + span[1]] == data
    assert member_span(dest, "outputs/missing") is None
    deflated = tmp_path / "d.zip"
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a", b"a" * 1000)
    assert member_span(deflated, "a") is None


def test_the_same_outputs_give_the_same_zip(tmp_path: Path) -> None:
    job = tmp_path / "job"
    _write(job, {"a": b"1", "b/c": b"2"})
    collect_outputs(job, tmp_path / "1.zip")
    os.utime(job / "a", ns=(1, 1))
    collect_outputs(job, tmp_path / "2.zip")
    assert (tmp_path / "1.zip").read_bytes() == (tmp_path / "2.zip").read_bytes()


def test_symlinks_are_skipped(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _write(outside, {"secret": b"s", "dir/deep": b"d"})
    job = tmp_path / "job"
    _write(job, {"real.txt": b"r"})
    before = snapshot(job)
    (job / "to_secret").symlink_to(outside / "secret")
    (job / "to_dir").symlink_to(outside / "dir", target_is_directory=True)
    (job / "to_real").symlink_to(job / "real.txt")
    (job / "new.txt").write_bytes(b"n")
    assert set(snapshot(job)) == {"real.txt", "new.txt"}
    assert collect_outputs(job, tmp_path / "o.zip", before=before) == [("new.txt", 1)]
    listed = collect_outputs(job, tmp_path / "p.zip", patterns=["**"])
    assert listed == [("new.txt", 1), ("real.txt", 1)]


def test_a_zip_inside_the_job_dir_is_not_its_own_output(tmp_path: Path) -> None:
    _write(tmp_path, {"a": b"1"})
    collect_outputs(tmp_path, tmp_path / "o.zip")
    assert collect_outputs(tmp_path, tmp_path / "o.zip") == [("a", 1)]
