"""Folder jobs through the real stack: `computethis up`, the SDK's run_folder, the REST API."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from client_sdk import (
    Client,
    CommandFailed,
    FolderJob,
    JobCancelled,
    JobTimeout,
    RemoteError,
    RunResult,
    SizeLimitExceeded,
    run_folder,
)
from tests.stack import Stack, scrape_metrics, start_stack
from tests.system.test_security import new_tenant

pytestmark = pytest.mark.usefixtures("sdk")

MAIN = textwrap.dedent(
    """
    import csv, os, sys
    from pathlib import Path
    numbers = [int(line) for line in Path("input.txt").read_text().split()]
    Path("out").mkdir(exist_ok=True)
    with open("out/squares.csv", "w", newline="") as file:
        csv.writer(file).writerows([n, n * n] for n in numbers)
    print("squared", len(numbers), "numbers on", os.environ["COMPUTETHIS_JOB_ID"])
    print("a warning", file=sys.stderr)
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "analysis"
    folder.mkdir()
    (folder / "main.py").write_text(MAIN)
    (folder / "input.txt").write_text("1 2 3 4\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return folder


def test_a_folder_runs_its_main_and_its_outputs_download(project: Path, tmp_path: Path):
    job = run_folder(project)
    assert isinstance(job, FolderJob)
    result = job.result(timeout=120)
    assert isinstance(result, RunResult)
    assert result.returncode == 0
    assert f"squared 4 numbers on {job.id}" in result.stdout
    assert "a warning" in result.stderr
    assert result.outputs == ["out/squares.csv"]  # created files only: not main.py
    assert job.files() == [("out/squares.csv", len("1,1\r\n2,4\r\n3,9\r\n4,16\r\n"))]
    written = job.download(tmp_path / "results")
    assert written == [tmp_path / "results" / "out" / "squares.csv"]
    assert written[0].read_bytes() == b"1,1\r\n2,4\r\n3,9\r\n4,16\r\n"
    info = job.info()
    assert info["kind"] == "folder" and info["status"] == "finished"
    assert "squared 4 numbers" in job.logs()


def test_an_unchanged_folder_is_uploaded_once(sdk: Stack, project: Path):
    run_folder(project).result(timeout=120)
    before = scrape_metrics(sdk)["computethis_bundle_bytes_received_total"]
    (project / ".git" / "HEAD").write_text("changed, but left out of the bundle\n")
    os.utime(project / "main.py")  # a new mtime alone does not change the bundle
    run_folder(project).result(timeout=120)
    assert scrape_metrics(sdk)["computethis_bundle_bytes_received_total"] == before
    (project / "input.txt").write_text("5\n")
    assert "squared 1 numbers" in run_folder(project).result(timeout=120).stdout
    assert scrape_metrics(sdk)["computethis_bundle_bytes_received_total"] > before


def test_a_command_with_arguments_env_and_output_patterns(project: Path):
    (project / "make.py").write_text(
        textwrap.dedent(
            """
            import os, sys
            from pathlib import Path
            Path("keep").mkdir()
            Path("keep/a.txt").write_text(sys.argv[1] * 3)
            Path("keep/deep").mkdir()
            Path("keep/deep/b.txt").write_text(os.environ["SEED"])
            Path("skip.log").write_text("not kept")
            """
        )
    )
    job = run_folder(
        project,
        command=["python", "make.py", "x"],
        outputs=["keep/**"],
        env={"SEED": "42"},
    )
    assert job.result(timeout=120).outputs == ["keep/a.txt", "keep/deep/b.txt"]
    shell = run_folder(project, command="echo $SEED > seed.txt && cat seed.txt", env={"SEED": "7"})
    outcome = shell.result(timeout=120)
    assert outcome.stdout == "7\n" and outcome.outputs == ["seed.txt"]


def test_a_failing_command_raises_and_keeps_its_outputs(project: Path, tmp_path: Path):
    job = run_folder(project, command="echo partial > part.txt; echo 'no such thing' >&2; exit 3")
    with pytest.raises(CommandFailed) as raised:
        job.result(timeout=120)
    assert raised.value.returncode == 3
    assert "no such thing" in raised.value.stderr
    assert "exited with status 3" in str(raised.value)
    assert job.status() == "failed"
    assert [path.read_text() for path in job.download(tmp_path / "got")] == ["partial\n"]


def test_no_main_py_is_refused_before_uploading(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no main.py"):
        run_folder(tmp_path)


def test_a_timeout_kills_the_whole_process_tree(project: Path, tmp_path: Path):
    pid_file = tmp_path / "grandchild.pid"
    job = run_folder(
        project,
        command=f"sleep 300 & echo $! > {pid_file}; wait",
        timeout=3,
    )
    with pytest.raises(JobTimeout):
        job.result(timeout=120)
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 15
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_download_resumes_with_a_range(sdk: Stack, project: Path):
    job = run_folder(
        project, command="python -c \"open('big.bin','wb').write(bytes(range(256))*40)\""
    )
    job.result(timeout=120)
    url = sdk.api(f"/jobs/{job.id}/outputs/big.bin")
    whole = requests.get(url, headers=sdk.headers(), timeout=30)
    assert whole.content == bytes(range(256)) * 40
    part = requests.get(url, headers={**sdk.headers(), "Range": "bytes=100-299"}, timeout=30)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == "bytes 100-299/10240"
    assert part.content == whole.content[100:300]
    archive = requests.get(
        sdk.api(f"/jobs/{job.id}/outputs.zip"), headers=sdk.headers(), timeout=30
    )
    assert archive.headers["Content-Type"] == "application/zip"
    import zipfile

    with zipfile.ZipFile(io.BytesIO(archive.content)) as opened:
        assert opened.read("outputs/big.bin") == whole.content
    missing = requests.get(
        sdk.api(f"/jobs/{job.id}/outputs/../x"), headers=sdk.headers(), timeout=30
    )
    assert missing.status_code in (404, 400)


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            content = (data or {}).get(member.name, b"")
            member.size = len(content) if member.isfile() else 0
            tar.addfile(member, io.BytesIO(content) if member.isfile() else None)
    return buffer.getvalue()


def _put(stack: Stack, body: bytes, digest: str | None = None, headers=None) -> requests.Response:
    digest = digest or hashlib.sha256(body).hexdigest()
    return requests.put(
        stack.api(f"/bundles/{digest}"),
        data=body,
        headers={**(headers or stack.headers()), "Content-Type": "application/x-tar"},
        timeout=30,
    )


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, target
    return member


@pytest.mark.parametrize(
    "members",
    [
        [tarfile.TarInfo("../evil.py")],
        [tarfile.TarInfo("/etc/evil.py")],
        [_link("passwd", "/etc/passwd")],
        [_link("up", "a/../../outside")],
        [_link("hard", "/etc/shadow", tarfile.LNKTYPE)],
        [_link("device", "", tarfile.CHRTYPE)],
    ],
    ids=["dotdot", "absolute", "symlink-absolute", "symlink-out", "hardlink-out", "device"],
)
def test_unsafe_bundles_are_refused_and_not_kept(sdk: Stack, members):
    body = _tar(members)
    answer = _put(sdk, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_bundle"
    digest = hashlib.sha256(body).hexdigest()
    assert (
        requests.head(sdk.api(f"/bundles/{digest}"), headers=sdk.headers(), timeout=30).status_code
        == 404
    )


def test_bad_uploads_and_runs_get_clear_errors(sdk: Stack):
    good = _tar([tarfile.TarInfo("main.py")], {"main.py": b"print(1)\n"})
    wrong = _put(sdk, good, digest="0" * 64)
    assert wrong.status_code == 400 and wrong.json()["error"] == "bundle_digest_mismatch"
    noise = _put(sdk, os.urandom(3000))
    assert noise.status_code == 400 and noise.json()["error"] == "invalid_bundle"
    big = _tar([tarfile.TarInfo("data.txt")], {"data.txt": b"x" * 5000})
    cut = _put(sdk, big[:3000])  # ends inside data.txt
    assert cut.status_code == 400 and cut.json()["error"] == "invalid_bundle"
    assert _put(sdk, good).status_code == 201
    digest = hashlib.sha256(good).hexdigest()

    def run(body) -> requests.Response:
        return requests.post(sdk.api("/runs"), json=body, headers=sdk.headers(), timeout=30)

    unknown = run({"bundle": "1" * 64})
    assert unknown.status_code == 404 and unknown.json()["error"] == "bundle_not_found"
    for command in ([1, 2], [], "", {"a": 1}, ["python", None]):
        answer = run({"bundle": digest, "command": command})
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_command", command
    assert run({"bundle": digest, "outputs": ["../x"]}).json()["error"] == "invalid_outputs"
    assert run({"bundle": digest, "env": {"1X": "y"}}).json()["error"] == "invalid_env"
    assert run({"bundle": "nothex"}).json()["error"] == "invalid_bundle_digest"
    created = run({"bundle": digest})
    assert created.status_code == 201 and created.json()["kind"] == "folder"
    job = FolderJob(created.json()["id"])
    assert job.result(timeout=120).stdout == "1\n"


def test_other_tenants_cannot_see_or_use_a_bundle_or_its_outputs(sdk: Stack):
    alice, bob = new_tenant(sdk, "folder-alice"), new_tenant(sdk, "folder-bob")
    body = _tar([tarfile.TarInfo("main.py")], {"main.py": b"open('o.txt','w').write('x')\n"})
    digest = hashlib.sha256(body).hexdigest()
    assert _put(sdk, body, headers=alice).status_code == 201
    assert requests.head(sdk.api(f"/bundles/{digest}"), headers=bob, timeout=30).status_code == 404
    refused = requests.post(sdk.api("/runs"), json={"bundle": digest}, headers=bob, timeout=30)
    assert refused.status_code == 404
    created = requests.post(sdk.api("/runs"), json={"bundle": digest}, headers=alice, timeout=30)
    job_id = created.json()["id"]
    done = requests.get(
        sdk.api(f"/jobs/{job_id}/outputs"), params={"wait": 60}, headers=alice, timeout=90
    ).json()
    assert done["files"] == [{"path": "o.txt", "size": 1}]
    for path in ("/outputs", "/outputs/o.txt", "/outputs.zip"):
        answer = requests.get(sdk.api(f"/jobs/{job_id}{path}"), headers=bob, timeout=30)
        assert answer.status_code == 404, path


def test_logs_follow_a_running_job_line_by_line(project: Path):
    (project / "slow.py").write_text(
        "import time\nfor i in range(3):\n    print('tick', i)\n    time.sleep(1)\n"
    )
    job = run_folder(project, command=["python", "slow.py"])
    arrivals = []
    for line in job.logs(follow=True):
        arrivals.append((time.monotonic(), line))
    assert [line for _, line in arrivals] == ["tick 0\n", "tick 1\n", "tick 2\n"]
    # Each line came as it was printed, a second apart, not all at the end.
    assert arrivals[2][0] - arrivals[0][0] > 1.5
    assert job.status() == "finished"
    assert "".join(job.logs(follow=True)) == "tick 0\ntick 1\ntick 2\n"  # done: stored


def test_cancel_stops_the_whole_process_tree(project: Path, tmp_path: Path):
    pid_file = tmp_path / "grandchild.pid"
    job = run_folder(project, command=f"sleep 300 & echo $! > {pid_file}; echo up; wait")
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, job.info()
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    assert psutil.pid_exists(pid)
    assert job.cancel() == "cancelled"
    deadline = time.monotonic() + 30
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"process {pid} outlived its cancelled job"
        time.sleep(0.1)
    with pytest.raises(JobCancelled):
        job.result(timeout=30)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway that takes folders up to 20 kB and keeps 1 kB of outputs per job."""
    extra = ["--max-bundle", "20000", "--max-outputs", "1000"]
    stack = start_stack(tmp_path_factory.mktemp("limited") / "save", workers=1, extra=extra)
    yield stack
    stack.stop()


def test_limits_say_what_is_too_large_and_what_to_do(limited: Stack, project: Path):
    client = Client(limited.url, limited.token)
    (project / "weights.bin").write_bytes(os.urandom(50_000))
    with pytest.raises(SizeLimitExceeded) as refused:
        run_folder(project, client=client)
    message = str(refused.value)
    assert "20000" in message and "weights.bin (50000 bytes)" in message
    assert "exclude" in message
    job = run_folder(
        project,
        command=["python", "-c", "open('big.out','wb').write(b'x' * 5000)"],
        exclude=["weights.bin"],
        client=client,
    )
    with pytest.raises(RemoteError) as failed:
        job.result(timeout=120)
    assert failed.value.type == "OutputsTooLarge"
    assert "1,000 bytes" in str(failed.value) and "big.out" in str(failed.value)


def test_outputs_survive_a_gateway_restart(tmp_path: Path, project: Path):
    save_dir = tmp_path / "save"
    stack = start_stack(save_dir, workers=1)
    try:
        job = run_folder(project, client=Client(stack.url, stack.token))
        job.result(timeout=120)
    finally:
        stack.stop()
    again = start_stack(save_dir, workers=1)
    try:
        client = Client(again.url, again.token)
        reattached = FolderJob.from_id(job.id, client=client)
        assert reattached.result(timeout=60).outputs == ["out/squares.csv"]
        written = reattached.download(tmp_path / "after")
        assert written[0].read_bytes() == b"1,1\r\n2,4\r\n3,9\r\n4,16\r\n"
        # The bundle is still there: a second run uploads nothing.
        before = scrape_metrics(again)["computethis_bundle_bytes_received_total"]
        run_folder(project, client=client).result(timeout=120)
        assert scrape_metrics(again)["computethis_bundle_bytes_received_total"] == before
    finally:
        again.stop()


def test_a_function_job_s_output_is_followed_live_too():
    from client_sdk import compute_this

    @compute_this
    def chatty(n):
        import time

        for i in range(n):
            print("step", i, flush=True)
            time.sleep(0.5)
        return n

    job = chatty.submit(4)
    arrivals = [(time.monotonic(), line) for line in job.follow_logs()]
    assert [line for _, line in arrivals] == [f"step {i}\n" for i in range(4)]
    assert arrivals[-1][0] - arrivals[0][0] > 1.0  # as printed, not all at the end
    assert job.result(timeout=30) == 4
    assert job.logs() == "step 0\nstep 1\nstep 2\nstep 3\n"
