"""A small soak run (``python -m benchmarks.soak``): nothing lost, nothing duplicated.

Correctness only: the figures it prints (latency, throughput) are not asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.stack import REPO

JOBS = 300


def test_small_soak_loses_and_duplicates_nothing(tmp_path: Path):
    figures_path = tmp_path / "soak.json"
    command = [sys.executable, "-m", "benchmarks.soak", "--jobs", str(JOBS), "--threads", "10"]
    command += ["--workers", "2", "--json", str(figures_path)]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "lost" in done.stdout and "p99" in done.stdout, output

    figures = json.loads(figures_path.read_text())
    assert figures["submitted"] == JOBS, figures
    assert figures["finished"] == JOBS, figures
    assert figures["lost"] == 0, figures
    assert figures["duplicated"] == 0, figures
    assert figures["executions"] == JOBS, figures
    assert figures["record_statuses"] == {"finished": JOBS}, figures
    assert figures["server_exit_code"] == 0, figures
