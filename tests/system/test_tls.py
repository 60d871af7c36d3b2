"""HTTPS: `computethis up --certfile/--keyfile` with a certificate from a CA made in the test.

The SDK verifies the gateway's certificate: against ``COMPUTETHIS_CA`` (or
``configure(ca=...)``) for a private CA, else against the system's CAs, which fail
fast with a message that says what to set.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme

import client_sdk
from client_sdk import UntrustedCertificate, compute_this
from tests.stack import COMPUTETHIS, REPO, Stack, start_stack


@compute_this
def square(x: int) -> int:
    return x * x


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A private CA and a certificate it signed for 127.0.0.1 and localhost, as PEM files."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(paths["ca"])
    cert.private_key_pem.write_to_path(paths["key"])
    with open(paths["cert"], "wb") as chain:
        for blob in cert.cert_chain_pems:
            chain.write(blob.bytes())
    return {name: str(path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def https_stack(
    tmp_path_factory: pytest.TempPathFactory, ca_files: dict[str, str]
) -> Iterator[Stack]:
    extra = ["--certfile", ca_files["cert"], "--keyfile", ca_files["key"]]
    stack = start_stack(
        tmp_path_factory.mktemp("https") / "save", workers=1, extra=extra, ca=ca_files["ca"]
    )
    yield stack
    stack.stop()


@pytest.fixture
def default_from_environment() -> Iterator[None]:
    """The SDK's default client is built from the environment when first used in the
    test (a ``configure`` there overrides it), and put back afterwards."""
    previous = client_sdk.set_default_client(None)
    yield
    client_sdk.set_default_client(previous)


def test_gateway_prints_an_https_url(https_stack: Stack):
    assert f"computethis gateway at {https_stack.url}" in https_stack.log()
    assert https_stack.url.startswith("https://")


def test_sdk_runs_jobs_over_https_with_a_private_ca(
    https_stack: Stack, ca_files: dict[str, str], default_from_environment: None
):
    client_sdk.configure(url=https_stack.url, token=https_stack.token, ca=ca_files["ca"])
    assert square.compute(7) == 49
    job = square.submit(8)
    assert job.result(timeout=60) == 64
    assert square.map(range(5)) == [0, 1, 4, 9, 16]


def test_sdk_reads_the_ca_from_the_environment(
    https_stack: Stack,
    ca_files: dict[str, str],
    default_from_environment: None,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("COMPUTETHIS_URL", https_stack.url)
    monkeypatch.setenv("COMPUTETHIS_TOKEN", https_stack.token)
    monkeypatch.setenv("COMPUTETHIS_CA", ca_files["ca"])
    assert square.compute(5) == 25


def test_an_untrusted_certificate_fails_at_once_and_says_what_to_set(
    https_stack: Stack, default_from_environment: None, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("COMPUTETHIS_CA", raising=False)
    client_sdk.configure(url=https_stack.url, token=https_stack.token)
    started = time.monotonic()
    with pytest.raises(UntrustedCertificate, match="COMPUTETHIS_CA"):
        square.compute(2)
    # Not ridden out like a connection error (that would take a minute).
    assert time.monotonic() - started < 20


def test_the_certificate_is_really_checked(https_stack: Stack, ca_files: dict[str, str]):
    """Another CA's certificate must not pass: verification is not switched off."""
    other = trustme.CA()
    context = ssl.create_default_context()
    other.configure_trust(context)
    host, port = https_stack.url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname=host)


def test_health_and_auth_work_the_same_over_https(https_stack: Stack, ca_files: dict[str, str]):
    health = requests.get(https_stack.api("/health"), timeout=10, verify=ca_files["ca"])
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    denied = requests.get(https_stack.api("/jobs"), timeout=10, verify=ca_files["ca"])
    assert denied.status_code == 401


def test_a_client_that_never_starts_its_handshake_holds_up_no_one(
    https_stack: Stack, ca_files: dict[str, str]
):
    host, port = https_stack.url.removeprefix("https://").split(":")
    silent = [socket.create_connection((host, int(port)), timeout=30) for _ in range(3)]
    try:
        time.sleep(0.3)  # accepted by now: they wait for a ClientHello that never comes
        started = time.monotonic()
        health = requests.get(https_stack.api("/health"), timeout=10, verify=ca_files["ca"])
        assert health.status_code == 200
        assert time.monotonic() - started < 2  # not the silent ones' timeout
    finally:
        for sock in silent:
            sock.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--keyfile", "key.pem"], "--keyfile needs --certfile"),
        (["--certfile", "missing-cert.pem"], "no such file: missing-cert.pem"),
    ],
)
def test_tls_option_mistakes_stop_before_anything_starts(
    tmp_path: Path, options: list[str], message: str
):
    done = subprocess.run(
        [*COMPUTETHIS, "up", "--workers", "1", "--save-dir", str(tmp_path), *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert message in done.stderr
