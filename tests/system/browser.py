"""A headless Chromium driven by Selenium, for the browser tests (Debian's ``chromium``
and ``chromium-driver``, which ``make test`` installs when root)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

T = TypeVar("T")
WAIT = 30.0  # seconds a page gets to show what a test waits for


def start_browser() -> webdriver.Chrome:
    """A new headless Chromium; the test is skipped, naming what to install, where
    there is none (as the tests of other missing tools are)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(
            "the browser tests need Chromium and its driver: apt-get install chromium "
            "chromium-driver (make test does it when run as root)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(driver), options=options)
    browser.set_page_load_timeout(WAIT)
    return browser


@contextmanager
def evidence(browser: webdriver.Chrome, folder: Path) -> Iterator[None]:
    """On a failure inside the block, keep a screenshot and the page's source in
    ``folder`` (the test's temporary directory) and name them in the error."""
    try:
        yield
    except BaseException as exc:
        folder.mkdir(parents=True, exist_ok=True)
        shot, source = folder / "failure.png", folder / "failure.html"
        try:
            browser.save_screenshot(str(shot))
            source.write_text(browser.page_source)
            exc.add_note(f"browser at {browser.current_url}; kept {shot} and {source}")
        except Exception as again:  # noqa: BLE001 - the first failure is the one to see
            exc.add_note(f"could not keep the page: {again}")
        raise


def wait_for(what: Callable[[], T | None], message: str, timeout: float = WAIT) -> T:
    """``what()`` once it is truthy (it may raise meanwhile: the page is still changing)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = what()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the page may be mid-update
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}" + (f" (last: {last})" if last else ""))


def script_errors(browser: webdriver.Chrome) -> list[str]:
    """The errors the pages' scripts logged since the last call (the console's SEVERE
    entries, but for answers with an error status: some tests ask for those)."""
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]


def text_of(browser: webdriver.Chrome, css: str) -> str:
    """The visible text of the first element matching ``css``."""
    return browser.find_element(By.CSS_SELECTOR, css).text


def click(browser: webdriver.Chrome, css: str) -> None:
    """Click the element matching ``css``, again if the page replaced it meanwhile."""
    wait_for(lambda: browser.find_element(By.CSS_SELECTOR, css).click() or True, f"a {css}")


def sign_in(browser: webdriver.Chrome, url: str, token: str) -> None:
    """Open the gateway's address and sign in to its dashboard with ``token``."""
    browser.get(url)
    wait_for(lambda: browser.find_element(By.ID, "token"), "the sign-in form")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "signin").click()
    wait_for(lambda: browser.find_elements(By.ID, "signout"), "the signed-in page")
