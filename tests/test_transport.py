"""How the SDK's HTTP pools are set up from the environment (no connection is made)."""

from __future__ import annotations

import pytest
import urllib3

from client_sdk.transport import new_pool


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_a_direct_pool_without_a_proxy():
    pool = new_pool("http://gateway.example:5000", None)
    assert not isinstance(pool, urllib3.ProxyManager)


def test_the_environment_proxy_is_used_unless_no_proxy_names_the_host(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    pool = new_pool("http://gateway.example:5000", None)
    assert isinstance(pool, urllib3.ProxyManager)
    assert pool.proxy.host == "proxy.example"
    monkeypatch.setenv("NO_PROXY", "gateway.example")
    assert not isinstance(new_pool("http://gateway.example:5000", None), urllib3.ProxyManager)


def test_https_verifies_against_computethis_ca_then_the_requests_bundle(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/bundle.pem")
    assert new_pool("https://gateway.example", None).connection_pool_kw["ca_certs"] == (
        "/etc/bundle.pem"
    )
    pool = new_pool("https://gateway.example", "/my/ca.pem")
    assert pool.connection_pool_kw["ca_certs"] == "/my/ca.pem"
    assert pool.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
