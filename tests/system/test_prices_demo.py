"""The price-history demo (``demos/prices``) through the real stack: the command line
and its page in a headless Chromium, on a small generated file whose low and high the
test works out on its own."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from benchmarks.ports import free_port
from demos.prices.generate import generate
from tests.stack import REPO, Stack
from tests.system.browser import evidence, start_browser, text_of, wait_for
from tests.system.test_demos import run_demo

ROWS = 30_000
CHUNK = 200_000  # bytes per job: the small file still makes several chunks


def expected(path: Path, column: str) -> tuple[float, str, float, str, int]:
    """Low, its time, high, its time, invalid rows: read plainly with the csv module."""
    low = high = None
    low_at = high_at = ""
    invalid = 0
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            try:
                value = float(row[column])
            except (TypeError, ValueError):
                invalid += 1
                continue
            if value < 0 or not math.isfinite(value):
                invalid += 1
                continue
            if low is None or value < low:
                low, low_at = value, row["Timestamp"]
            if high is None or value > high:
                high, high_at = value, row["Timestamp"]
    assert low is not None and high is not None
    return low, low_at, high, high_at, invalid


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prices") / "ticks.csv"
    assert generate(path, ROWS, seed=7, invalid=12) == 12
    return path


def test_the_command_line_finds_the_low_and_high(stack: Stack, ticks: Path):
    for column in ("Ask", "BidVolume"):
        low, low_at, high, high_at, invalid = expected(ticks, column)
        done = run_demo(
            stack, "-m", "demos.prices", str(ticks), "--column", column,
            "--chunk-bytes", str(CHUNK),
        )  # fmt: skip
        lines = done.stdout.splitlines()
        assert lines[0] == f"low  {column} {low:g} at {low_at}"
        assert lines[1] == f"high {column} {high:g} at {high_at}"
        assert lines[2] == f"rows: {ROWS - invalid} valid, {invalid} invalid skipped"
        assert lines[3].startswith("cluster: ") and "chunks on the cluster" in lines[3]
        assert lines[4].startswith("baseline: ") and lines[4].endswith("same answer")


def test_a_column_that_is_not_there_is_named(stack: Stack, ticks: Path):
    env = {**os.environ, "COMPUTETHIS_URL": stack.url, "COMPUTETHIS_TOKEN": stack.token}
    done = subprocess.run(
        [sys.executable, "-m", "demos.prices", str(ticks), "--column", "Price"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "no price column 'Price': pick one of Ask, Bid, AskVolume, BidVolume" in done.stderr


@pytest.fixture
def page(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """``python -m demos.prices --serve`` on a free port, pointed at the stack."""
    port = free_port()
    env = {**os.environ, "COMPUTETHIS_URL": stack.url, "COMPUTETHIS_TOKEN": stack.token}
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "demos.prices", "--serve", "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: _answers(url), "the prices page to start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    driver = start_browser()
    yield driver
    driver.quit()


def test_the_page_computes_the_low_and_high(
    browser: webdriver.Chrome, page: str, ticks: Path, tmp_path: Path
):
    low, low_at, high, high_at, invalid = expected(ticks, "Bid")
    with evidence(browser, tmp_path):
        browser.get(page)
        browser.find_element(By.ID, "file").send_keys(str(ticks))
        browser.find_element(By.ID, "upload").click()
        wait_for(lambda: text_of(browser, "#filename") == "ticks.csv", "the upload")
        Select(browser.find_element(By.ID, "column")).select_by_visible_text("Bid")
        browser.find_element(By.ID, "low").click()
        wait_for(lambda: browser.find_elements(By.ID, "answer"), "the low", 90)
        assert text_of(browser, "#value") == f"{low:g}"
        assert text_of(browser, "#at") == low_at
        assert text_of(browser, "#invalid") == str(invalid)
        assert float(text_of(browser, "#seconds")) > 0
        browser.find_element(By.ID, "high").click()
        wait_for(lambda: text_of(browser, "#answer").startswith("High Bid"), "the high", 90)
        assert text_of(browser, "#value") == f"{high:g}"
        assert text_of(browser, "#at") == high_at
