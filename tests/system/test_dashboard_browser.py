"""The dashboard in a real headless Chromium, through the real stack: sign in, a job
appears without reloading, its live logs, cancel and the worker going idle, a failed
job's traceback, another tenant's job out of reach, sign out. A failing test keeps a
screenshot and the page's source in its temporary directory."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from client_sdk import compute_this
from tests.stack import Stack
from tests.system.browser import (
    click,
    evidence,
    script_errors,
    sign_in,
    start_browser,
    text_of,
    wait_for,
)
from tests.system.test_security import new_tenant


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module's tests."""
    driver = start_browser()
    yield driver
    driver.quit()


@pytest.fixture
def signed_in(browser: webdriver.Chrome, sdk: Stack, tmp_path: Path) -> Iterator[Stack]:
    """The browser signed in as the admin (and its page kept if the test fails)."""
    browser.delete_all_cookies()
    script_errors(browser)  # forget the earlier tests'
    with evidence(browser, tmp_path):
        sign_in(browser, sdk.url, sdk.token)
        yield sdk
        assert script_errors(browser) == []


@compute_this(name="ticker")
def ticker(count: int) -> int:
    for index in range(count):
        print(f"tick {index} <b>not bold</b>", flush=True)
        time.sleep(0.5)
    return count


@compute_this(name="failing")
def failing(text: str) -> None:
    raise ValueError(f"it broke: {text}")


def test_a_job_submitted_by_the_sdk_appears_without_reloading(
    browser: webdriver.Chrome, signed_in: Stack
):
    assert browser.current_url.endswith("/dashboard/")  # `/` led to the overview
    browser.find_element(By.LINK_TEXT, "Jobs").click()
    wait_for(lambda: "live" in text_of(browser, "#live"), "the jobs page to go live")
    browser.execute_script("window.notReloaded = true;")
    name = f"appears-{uuid.uuid4().hex[:8]}"
    job = compute_this(name=name)(abs).submit(-5)
    row = f'tr[data-job="{job.id}"]'
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, row), "the new job's row")
    wait_for(lambda: name in text_of(browser, row), "its name in the row")
    assert browser.execute_script("return window.notReloaded;") is True
    assert job.result(timeout=60) == 5
    wait_for(lambda: "finished" in text_of(browser, row), "the row to say finished")
    click(browser, f"{row} a")
    browser.find_element(By.ID, "rerun").click()  # run again: a new job, same payload
    wait_for(lambda: text_of(browser, "#job-id") != job.id, "the new job's page")
    assert "run again" in text_of(browser, "#notice")
    wait_for(lambda: text_of(browser, "[data-field=status]") == "finished", "it finished")
    wait_for(lambda: browser.find_elements(By.ID, "download-result"), "the download link")


def test_live_logs_then_cancel_and_the_worker_goes_idle(
    browser: webdriver.Chrome, signed_in: Stack
):
    browser.get(f"{signed_in.url}/dashboard/jobs")
    job = ticker.submit(200)
    link = f'tr[data-job="{job.id}"] a'
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, link), "the job in the list")
    click(browser, link)
    wait_for(lambda: text_of(browser, "#job-id") == job.id, "the job's page")
    wait_for(lambda: "tick 2" in text_of(browser, "#logs"), "the live logs")
    assert "<b>not bold</b>" in text_of(browser, "#logs")  # shown as text
    assert not browser.find_elements(By.CSS_SELECTOR, "#logs b")
    address = text_of(browser, "[data-field=worker]")
    browser.find_element(By.LINK_TEXT, "Workers").click()

    def worker_row(match: str) -> list[str]:
        """The cells of the workers table's row holding ``match`` (read at once: the
        table is replaced every second)."""
        for line in browser.find_elements(By.CSS_SELECTOR, "#workers tbody tr"):
            cells = [cell.text for cell in line.find_elements(By.TAG_NAME, "td")]
            if match in (line.get_attribute("data-worker"), cells[1]):
                return cells
        return []

    cells = wait_for(lambda: worker_row(address), "its worker's row")
    name = cells[1]
    assert cells[2] == "busy" and cells[3] == job.id[:12]  # its state and current job
    browser.back()
    wait_for(lambda: browser.find_elements(By.ID, "cancel"), "the job's page again")
    browser.find_element(By.ID, "cancel").click()
    wait_for(lambda: text_of(browser, "[data-field=status]") == "cancelled", "cancelled")
    browser.find_element(By.LINK_TEXT, "Workers").click()
    # Restarted by the cancel: the same name on a new address.
    wait_for(lambda: worker_row(name)[2] == "idle", "its worker idle", 60)


def test_a_failed_jobs_traceback(browser: webdriver.Chrome, signed_in: Stack):
    job = failing.submit("<i>oops</i>")
    with pytest.raises(ValueError):
        job.result(timeout=60)
    browser.get(f"{signed_in.url}/dashboard/")
    failure = f'#failures a[href$="{job.id}"]'
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, failure), "the overview's failure")
    click(browser, failure)
    wait_for(lambda: text_of(browser, "#error-type") == "ValueError", "the error")
    assert "it broke: <i>oops</i>" in text_of(browser, "#error-message")
    assert "Traceback" in text_of(browser, "#traceback")
    assert "in failing" in text_of(browser, "#traceback")
    assert not browser.find_elements(By.CSS_SELECTOR, "#error i")


def test_a_tenant_cannot_reach_another_tenants_job_then_signs_out(
    browser: webdriver.Chrome, signed_in: Stack
):
    admins = compute_this(name="admins-own")(abs).submit(-1)
    tenant = new_tenant(signed_in, f"t{uuid.uuid4().hex[:8]}")
    token = tenant["Authorization"].split()[1]
    browser.find_element(By.ID, "signout").click()
    wait_for(lambda: browser.find_elements(By.ID, "token"), "the sign-in form")
    browser.get(f"{signed_in.url}/dashboard/jobs")
    assert "/dashboard/signin" in browser.current_url  # signed out: no way back in
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "signin").click()
    wait_for(lambda: browser.find_elements(By.ID, "signout"), "signed in as the tenant")
    assert "/dashboard/jobs" in browser.current_url  # back where it was going
    browser.get(f"{signed_in.url}/dashboard/jobs/{admins.id}")
    assert admins.id in text_of(browser, "#problem")
    assert "404" in browser.title
    browser.get(f"{signed_in.url}/dashboard/jobs")
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-job="{admins.id}"]')
    browser.find_element(By.ID, "signout").click()
    wait_for(lambda: browser.find_elements(By.ID, "token"), "signed out")


def test_without_event_streams_the_pages_poll(browser: webdriver.Chrome, signed_in: Stack):
    hide = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.EventSource;"}
    )
    try:
        browser.get(f"{signed_in.url}/dashboard/jobs")
        wait_for(lambda: text_of(browser, "#live") == "live (polling)", "polling")
        job = compute_this(name="polled")(abs).submit(-2)
        row = f'tr[data-job="{job.id}"]'
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, row), "the polled row")
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": hide["identifier"]}
        )
