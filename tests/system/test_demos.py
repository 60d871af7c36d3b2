"""The demos in demos/ run as scripts against a real ``computethis up`` and print what they say."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import REPO, Stack

DEMOS = REPO / "demos"
TIMEOUT = 120


def run_demo(
    stack: Stack, name: str, *args: str, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run ``python demos/<name> args...`` (``name`` "-m": ``python -m args...``) in
    ``cwd``, pointed at ``stack`` via the environment; it must exit 0."""
    env = {
        **os.environ,
        "COMPUTETHIS_URL": stack.url,
        "COMPUTETHIS_TOKEN": stack.token,
        "PYTHONUNBUFFERED": "1",
    }
    program = [name] if name == "-m" else [str(DEMOS / name)]
    result = subprocess.run(
        [sys.executable, *program, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, f"{name} exited {result.returncode}:\n{result.stderr}"
    return result


def test_challenge(stack):
    result = run_demo(stack, "challenge.py")
    assert result.stdout.strip().splitlines()[-1] == "func(2) = 4"


def test_main_demo(stack):
    result = run_demo(stack, "main_demo.py")
    assert result.stdout.strip().splitlines()[-1] == "square(25) = 625"


def test_main_easy(stack):
    result = run_demo(stack, "main_easy.py")
    assert result.stdout.strip().splitlines()[-1].endswith("= [49995001, 49995002, 49995003]")


def test_main_hard(stack):
    result = run_demo(stack, "main_hard.py", "--n", "20000", "--calls", "3")
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"cluster: 3 calls in \d+\.\d\d s", lines[0]), lines
    assert re.fullmatch(r"local: +3 calls in \d+\.\d\d s", lines[1]), lines
    assert re.fullmatch(r"speed-up: \d+\.\d\dx", lines[2]), lines
    # primes below 20000, 21000, 22000
    assert lines[3] == "results agree: True [2262, 2360, 2464]", lines


def test_main_hard_rejects_bad_arguments():
    result = subprocess.run(
        [sys.executable, "demos/main_hard.py", "--calls", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert "--calls" in result.stderr


@pytest.mark.parametrize("path", sorted(DEMOS.glob("*.py")), ids=lambda path: path.name)
def test_demo_is_documented_and_guarded(path: Path):
    source = path.read_text()
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree)
    assert docstring and "make up" in docstring and f"demos/{path.name}" in docstring
    assert "COMPUTETHIS_TOKEN" in docstring
    assert 'if __name__ == "__main__":' in source


def test_folder_job_demo_runs_downloads_and_its_chart_is_a_png(stack: Stack, tmp_path: Path):
    done = run_demo(stack, "folder_job/run.py", cwd=tmp_path)
    lines = done.stdout.splitlines()
    job_id = lines[0].removeprefix("job ")
    assert "Singapore  mean  27.8 C over 120 days" in lines
    assert lines[-1].startswith("exit 0; downloaded ")
    out = tmp_path / "outputs" / job_id / "out"
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0] == "city,readings,mean_c,min_c,max_c" and len(rows) == 6


def test_folder_job_demo_runs_from_the_command_line(stack: Stack, tmp_path: Path):
    done = run_demo(
        stack, "-m", "gateway.cli", "run", str(DEMOS / "folder_job"), "--output", "out/**",
        cwd=tmp_path,
    )  # fmt: skip
    assert "wrote out/summary.csv and out/chart.png" in done.stdout
    job_id = done.stderr.splitlines()[0].removeprefix("job ")
    out = tmp_path / "outputs" / job_id / "out"
    assert sorted(path.name for path in out.iterdir()) == ["chart.png", "summary.csv"]


def test_spmd_ring(stack):
    result = run_demo(stack, "spmd_ring.py", "--ranks", "2")
    assert result.stdout.splitlines() == [
        "rank 0 heard: hello: next to 1 is 0",
        "rank 1 heard: hello: next to 0 is 1",
    ]


def test_spmd_ring_program(stack: Stack, tmp_path: Path):
    folder = str(DEMOS / "spmd_ring_program")
    done = run_demo(stack, "-m", "gateway.cli", "run", folder, "--ranks", "2", cwd=tmp_path)
    assert done.stdout.startswith("My ID is 0 of 2, on ")
    assert "\nNext to 1 is 0\nTotal time : " in done.stdout
    assert "\n[rank 1]\nMy ID is 1 of 2, on " in done.stdout
    assert done.stdout.endswith("\nNext to 0 is 1\n")


def test_spmd_pi(stack):
    result = run_demo(stack, "spmd_pi.py", "--ranks", "2", "--steps", "100000")
    lines = result.stdout.splitlines()
    assert lines[0] == "2 ranks agree: True"
    assert re.fullmatch(r"pi ~ 3\.14159265\d+ \(error \d\.\de-\d+\)", lines[1]), lines


def test_model_counter(stack):
    result = run_demo(stack, "model_counter.py", "--load-seconds", "0.5")
    lines = result.stdout.splitlines()
    assert lines[1:5] == [
        "c.add.compute(1) = 11",
        "c.add.compute(1) = 12",
        "c.add.submit(5).result() = 17",
        "c.add.map([1, 2, 3]) = [18, 20, 23]",
    ]
    assert re.fullmatch(r"20 more calls in \d+\.\d\d s \(no load again\)", lines[5]), lines
    assert lines[6].startswith("after close: ") and "was closed" in lines[6]


def test_model_xgboost(stack):
    result = run_demo(stack, "model_xgboost.py")
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"artifact uploaded: \d+ bytes", lines[0]), lines
    assert lines[1:] == [
        "predicted 418 passengers on a worker",
        "same as predicting here: True",
        "second artifacts(): 0 bytes uploaded",
    ]
