"""Folder jobs: a trivial command end to end against a function job plus a bare
interpreter start; a large folder's upload against the gateway's raw body path; and the
second run of the same folder (nothing uploaded)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dill
import requests

from benchmarks.config import Sizes
from benchmarks.harness import TOKEN, Runner
from benchmarks.results import BenchResult, Row, median, ratio
from benchmarks.workloads import noop
from client_sdk import compute_this, default_client, run_folder
from client_sdk.folder import upload_bundle
from wire.bundle import pack_folder
from wire.http import PAYLOAD_MEDIA_TYPE

NAME = "folders"
TRIVIAL = ["python", "-c", "pass"]
FILE_BYTES = 8 << 20  # the large folder is made of files this size


def run(runner: Runner, sizes: Sizes) -> BenchResult:
    """The three measurements, on the shared cluster."""
    harness = runner.harness(sizes.workers)
    assert harness.gateway is not None
    result = BenchResult(NAME)
    with tempfile.TemporaryDirectory(prefix="computethis-bench-folders-") as scratch:
        root = Path(scratch)
        result.data["trivial"] = _trivial(root, sizes, result)
        result.data["upload"] = _upload(root, sizes, harness.gateway.url, result)
    return result


def _trivial(root: Path, sizes: Sizes, result: BenchResult) -> dict[str, list[float]]:
    """``python -c pass`` as a folder job, against a function job plus starting the same
    interpreter locally: what running it by hand on a worker would cost."""
    folder = root / "trivial"
    folder.mkdir()
    (folder / "main.py").write_text("pass\n")
    remote = compute_this(noop)
    run_folder(folder, TRIVIAL).result()  # uploads the folder, warms the worker
    remote.compute(0)
    timings: dict[str, list[float]] = {"folder": [], "function": [], "interpreter": []}
    for i in range(sizes.folder_runs):
        start = time.perf_counter()
        assert run_folder(folder, TRIVIAL).result().returncode == 0
        timings["folder"].append(time.perf_counter() - start)
        start = time.perf_counter()
        remote.compute(i)
        timings["function"].append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        timings["interpreter"].append(time.perf_counter() - start)
    ours = median(timings["folder"]) * 1e3
    theirs = (median(timings["function"]) + median(timings["interpreter"])) * 1e3
    result.rows.append(
        Row(
            "folder job p50 (vs function job + python start)",
            ratio(ours, theirs),
            "<=",
            1.5,
            "ms",
            ours,
            theirs,
        )
    )
    return {key: [round(s * 1e3, 3) for s in values] for key, values in timings.items()}


def _upload(root: Path, sizes: Sizes, url: str, result: BenchResult) -> dict[str, float]:
    """Upload a folder of ``folder_megabytes`` MB (PUT, after packing), against posting a
    call payload of the same size (the raw body path); then the same folder again."""
    folder = root / "large"
    folder.mkdir()
    total = sizes.folder_megabytes << 20
    for index in range(max(1, total // FILE_BYTES)):
        (folder / f"part-{index:03d}.bin").write_bytes(os.urandom(min(FILE_BYTES, total)))
    client = default_client()
    start = time.perf_counter()
    packed = pack_folder(folder, root / "large.tar")
    pack_seconds = time.perf_counter() - start
    start = time.perf_counter()
    sent = upload_bundle(client, packed)
    upload_seconds = time.perf_counter() - start
    assert sent == packed.size
    payload = dill.dumps((len, (packed.path.read_bytes(),), {}))
    start = time.perf_counter()
    posted = requests.post(
        f"{url}/api/v1/jobs",
        data=payload,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": PAYLOAD_MEDIA_TYPE},
        timeout=600,
    )
    raw_seconds = time.perf_counter() - start
    posted.raise_for_status()
    requests.delete(
        f"{url}/api/v1/jobs/{posted.json()['id']}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
    )
    del payload
    start = time.perf_counter()
    again = upload_bundle(client, pack_folder(folder, root / "again.tar"))
    again_seconds = time.perf_counter() - start
    mb = packed.size / 1e6
    ours, theirs = mb / upload_seconds, mb / raw_seconds
    result.rows.append(
        Row(
            "folder upload (vs POST /jobs body)",
            ratio(ours, theirs),
            ">=",
            0.8,
            "MB/s",
            ours,
            theirs,
        )
    )
    result.rows.append(Row("second upload, bytes sent", float(again), "<=", 0.0, "B"))
    return {
        "megabytes": round(mb, 1),
        "pack_s": round(pack_seconds, 3),
        "upload_s": round(upload_seconds, 3),
        "raw_body_s": round(raw_seconds, 3),
        "second_pack_and_check_s": round(again_seconds, 3),
    }
