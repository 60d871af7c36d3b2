"""Smoke test of ``python -m benchmarks --quick``: it runs, prints, writes (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.stack import REPO

BENCHMARKS = (
    "latency",
    "many_small",
    "concurrency",
    "bigdata",
    "folders",
    "models",
    "spmd",
    "dashboard",
    "scaling",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_quick_benchmarks_print_table_and_write_json_and_plots(tmp_path: Path):
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    header = next(line for line in done.stdout.splitlines() if line.startswith("benchmark"))
    for column in ("metric", "computethis", "theirs", "target", "result"):
        assert column in header
    for name in BENCHMARKS:
        assert any(line.startswith(name) for line in done.stdout.splitlines()), name
    assert "PASS" in done.stdout or "FAIL" in done.stdout

    document = json.loads((out / "latest.json").read_text())
    assert document["quick"] is True and document["errors"] == {}
    assert set(document["benchmarks"]) == set(BENCHMARKS)
    for name in BENCHMARKS:
        rows = document["benchmarks"][name]["rows"]
        assert rows and all({"metric", "value", "target", "passed"} <= set(row) for row in rows)
    scaling = document["benchmarks"]["scaling"]["data"]
    assert scaling["throughput"] and scaling["timelines"]
    # Both paths' CPU per job, part by part (docs/benchmarks.md, "where the time goes").
    cpu = document["benchmarks"]["concurrency"]["data"]["cpu_ms_per_job"]
    assert set(cpu) == {"computethis", "dask"}
    parts = {"benchmark", "gateway", "scheduler", "workers"}
    assert all(set(by_part) == parts for by_part in cpu.values())
    assert cpu["computethis"]["gateway"] > 0 and cpu["dask"]["workers"] > 0

    for name in ("throughput.png", "timeline.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_the_cpu_speed_up_is_the_median_of_paired_ratios():
    from benchmarks.scaling import paired_speedup

    # A slow spell slows both runs of its pair: its ratio still counts as 2.
    assert paired_speedup([4.0, 6.0, 4.2], [2.0, 3.0, 2.4]) == 2.0
    # Ratios of the fastest runs (4.0 / 2.4) would say 1.67 for these.
    assert paired_speedup([4.0, 6.0], [3.0, 2.4]) == (4.0 / 3.0 + 6.0 / 2.4) / 2
