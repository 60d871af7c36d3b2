"""Every bound the OpenAPI declaration states is the one the code enforces, stated once.

- Upper bounds in ``gateway/api/openapi.yaml`` are ``${name}``s, never numbers; lower
  bounds and defaults are 0 or 1. Every name is filled in, and every value has a use.
- The names stand for :mod:`wire.limits`, the :class:`GatewayConfig` the gateway runs
  with, and the API code's constants.
- Each bound of each request parameter and body, as a gateway with its own limits
  serves the document, is answered as documented: the bound itself is accepted, the
  next value past it is refused with a 4xx.
- The few bounds stated in prose (header size, log size, job id) are the code's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.api import deployments, folders, jobs, params, submit
from gateway.api.openapi import declaration, named_values, openapi_document
from gateway.app import create_app
from gateway.config import DEFAULT_MAX_BODY, DEFAULT_MAX_BUNDLE, GatewayConfig
from gateway.connections import MAX_HEADER_BYTES
from gateway.store import JOB_ID, STATUSES
from wire import batch_body, limits
from wire.http import API_PREFIX
from worker.live_output import MAX_LOGS

OCTET = "application/octet-stream"
UPPER = ("maximum", "maxLength", "maxItems", "exclusiveMaximum")
LOWER = ("minimum", "minLength", "minItems", "exclusiveMinimum", "default")
NAME = re.compile(r"\$\{(\w+)\}")
JOB_ID_PATTERN = "^[0-9a-f]{32}$"
DIGEST_PATTERN = "^[0-9a-f]{64}$"  # a bundle's SHA-256
UNKNOWN_JOB = "0" * 32
TOKEN = "t"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# A gateway with limits of its own: the served document must state these.
MAX_WAIT = 42.5
MAX_BODY = limits.MAX_BATCH_BYTES + (1 << 20)  # the batch limit is the smaller one


def _walk(node: Any, where: str = "") -> Iterator[tuple[str, str, Any]]:
    """``(where, key, value)`` of every mapping entry in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield where, key, value
            yield from _walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, f"{where}/{index}")


def _names_in(node: Any) -> set[str]:
    """Every ``${name}`` in ``node``'s strings."""
    if isinstance(node, dict):
        return set().union(*(_names_in(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_names_in(item) for item in node))
    return set(NAME.findall(node)) if isinstance(node, str) else set()


# -- the declaration -------------------------------------------------------------------


def test_upper_bounds_are_named_and_lower_ones_are_zero_or_one() -> None:
    for where, key, value in _walk(declaration()):
        if key in UPPER:
            assert isinstance(value, str) and NAME.fullmatch(value), (where, key, value)
        elif key in LOWER and not (isinstance(value, str) and NAME.fullmatch(value)):
            assert value in (0, 1), (where, key, value)
        elif key == "pattern" and value not in (JOB_ID_PATTERN, DIGEST_PATTERN):
            counts = re.findall(r"\{([^}]*)\}", NAME.sub("N", value))
            assert all(part in ("0", "1", "N") for c in counts for part in c.split(",")), value


def test_every_name_is_filled_in_and_every_value_is_used() -> None:
    assert _names_in(declaration()) == set(named_values())
    assert _names_in(openapi_document()) == set()


def test_the_names_stand_for_the_codes_limits() -> None:
    config = GatewayConfig(save_dir=Path("save"), token="", max_wait=MAX_WAIT, max_body=123)
    assert named_values(config) == {
        "version": named_values()["version"],
        "max_wait": MAX_WAIT,
        "max_body": 123,
        "max_calls": limits.MAX_CALLS,
        "max_call_bytes": limits.MAX_CALL_BYTES,
        "max_batch_bytes": limits.MAX_BATCH_BYTES,
        "max_jobs": limits.MAX_JOBS,
        "min_timeout": submit.MIN_TIMEOUT,
        "max_timeout": submit.MAX_TIMEOUT,
        "max_retries": submit.MAX_RETRIES,
        "max_ranks": submit.MAX_RANKS,
        "max_name": params.MAX_NAME,
        "max_key": params.MAX_KEY,
        "default_limit": jobs.DEFAULT_LIMIT,
        "max_limit": jobs.MAX_LIMIT,
        "max_cursor_digits": jobs.MAX_CURSOR_DIGITS,
        "job_statuses": list(STATUSES),
        "max_bundle": DEFAULT_MAX_BUNDLE,
        "max_run_body": folders.MAX_RUN_BODY,
        "max_replicas": deployments.MAX_REPLICAS,
        "max_artifacts": deployments.MAX_ARTIFACTS,
        "max_methods": deployments.MAX_METHODS,
    }
    defaults = named_values()
    assert defaults["max_wait"] == GatewayConfig(save_dir=Path("save"), token="").max_wait
    assert defaults["max_body"] == DEFAULT_MAX_BODY


def test_bounds_stated_in_prose_are_the_codes() -> None:
    document = openapi_document()
    assert MAX_HEADER_BYTES == 64 * 1024
    assert "431 headers over 64 KiB" in document["info"]["description"]
    assert MAX_LOGS == 1 << 20
    logs = document["paths"]["/jobs/{job_id}/logs"]["get"]["description"]
    assert "the last 1 MiB" in logs
    assert document["components"]["schemas"]["JobId"]["pattern"] == JOB_ID_PATTERN
    assert re.fullmatch(JOB_ID_PATTERN, UNKNOWN_JOB)
    assert JOB_ID.pattern == JOB_ID_PATTERN.strip("^$") + r"\Z"


# -- the bounds as a gateway enforces them ----------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    """An app with limits of its own, built but never started (no cluster needed)."""
    save_dir = tmp_path_factory.mktemp("bounds") / "save"
    config = GatewayConfig(save_dir=save_dir, token=TOKEN, max_wait=MAX_WAIT, max_body=MAX_BODY)
    app = create_app(config, "tcp://127.0.0.1:1")
    try:
        yield app.test_client()
    finally:
        app.extensions["computethis"].store.close()


@pytest.fixture(scope="module")
def served(client: FlaskClient) -> dict[str, Any]:
    document = client.get(f"{API_PREFIX}/openapi.json").get_json()
    config = GatewayConfig(save_dir=Path("save"), token="", max_wait=MAX_WAIT, max_body=MAX_BODY)
    assert document == openapi_document(config)
    return document


# For each operation with bounded parameters: a request that passes every parameter
# check and is then answered with this (status, error), not as an invalid parameter.
ACCEPTED: dict[tuple[str, str], tuple[dict[str, Any], int, str | None]] = {
    ("post", "/jobs"): ({"data": b"", "content_type": OCTET}, 400, "invalid_payload"),
    ("get", "/jobs"): ({}, 200, None),
    ("post", "/batches"): ({"data": b"", "content_type": OCTET}, 400, "invalid_batch"),
    ("post", "/results"): ({"json": {"jobs": [UNKNOWN_JOB]}}, 404, "job_not_found"),
    ("get", "/jobs/{job_id}/result"): ({}, 404, "job_not_found"),
    ("get", "/jobs/{job_id}/outputs"): ({}, 404, "job_not_found"),
    ("post", "/runs"): ({"json": {"bundle": "0" * 64}}, 404, "bundle_not_found"),
    ("post", "/deployments"): ({"data": b"", "content_type": OCTET}, 400, "invalid_payload"),
    ("post", "/deployments/{deployment_id}/calls"): (
        {"data": b"", "content_type": OCTET},
        404,
        "deployment_not_found",
    ),
}


def _resolved(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        kind, name = node["$ref"].split("/")[-2:]
        return _resolved(document, document["components"][kind][name])
    return node


def _bounded_parameters(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(method, path, parameter)`` of every query or header parameter with a bound."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for ref in operation.get("parameters", []):
                parameter = _resolved(document, ref)
                schema = _resolved(document, parameter["schema"])
                if parameter["in"] != "path" and set(schema) & {*UPPER, *LOWER, "pattern"}:
                    yield method, path, {**parameter, "schema": schema}


def _edge_values(schema: dict[str, Any]) -> Iterator[tuple[str, bool]]:
    """``(value, accepted)``: each bound of ``schema``, and the next value past it."""
    if schema["type"] in ("number", "integer"):
        step = 1 if schema["type"] == "integer" else None
        if "minimum" in schema:
            low = schema["minimum"]
            yield repr(low), True
            yield repr(low - (step or (low / 10 if low else 0.001))), False
        if "maximum" in schema:
            high = schema["maximum"]
            yield repr(high), True
            yield repr(high + (step or high / 1000)), False
    elif "pattern" in schema:  # the cursor: decimal digits, up to a count
        digits = int(re.search(r",(\d+)\}", schema["pattern"])[1])
        yield "9" * digits, True
        yield "9" * (digits + 1), False
    else:
        if "minLength" in schema:
            yield "k" * schema["minLength"], True
            yield "k" * (schema["minLength"] - 1), False
        if "maxLength" in schema:
            yield "k" * schema["maxLength"], True
            yield "k" * (schema["maxLength"] + 1), False


def _request(
    client: FlaskClient, method: str, path: str, parameter: dict[str, Any], value: str
) -> Any:
    options, _, _ = ACCEPTED[(method, path)]
    url = API_PREFIX + path.replace("{job_id}", UNKNOWN_JOB).replace("{deployment_id}", UNKNOWN_JOB)
    headers = dict(AUTH)
    query = {}
    if parameter["in"] == "header":
        headers[parameter["name"]] = value
    else:
        query[parameter["name"]] = value
    return client.open(url, method=method.upper(), query_string=query, headers=headers, **options)


def test_every_parameter_bound_is_the_enforced_one(
    client: FlaskClient, served: dict[str, Any]
) -> None:
    checked = set()
    for method, path, parameter in _bounded_parameters(served):
        assert (method, path) in ACCEPTED, f"add a request for {method} {path} to ACCEPTED"
        _, status, error = ACCEPTED[(method, path)]
        for value, accepted in _edge_values(parameter["schema"]):
            response = _request(client, method, path, parameter, value)
            where = (method, path, parameter["name"], value[:30])
            body = response.get_json(silent=True) or {}
            if accepted:
                assert (response.status_code, body.get("error")) == (status, error), where
            else:
                assert response.status_code == 400, where
                assert body["error"] in ("invalid_parameter", "invalid_header"), where
                assert parameter["name"] in body["message"], where
            checked.add((parameter["name"], accepted))
    names = {"wait", "timeout", "retries", "name", "limit", "cursor", "idempotency_key", "ranks"}
    names.add("replicas")
    names.add("Idempotency-Key")
    assert checked == {(name, ok) for name in names for ok in (True, False)}
    wait = _resolved(served, served["components"]["parameters"]["Wait"])["schema"]
    assert wait["maximum"] == MAX_WAIT


def _post(client: FlaskClient, path: str, **options: Any) -> tuple[int, str | None]:
    response = client.post(f"{API_PREFIX}{path}", headers=AUTH, **options)
    return response.status_code, (response.get_json(silent=True) or {}).get("error")


def test_body_bounds_are_the_enforced_ones(client: FlaskClient, served: dict[str, Any]) -> None:
    schemas = served["components"]["schemas"]
    max_jobs = schemas["JobIds"]["properties"]["jobs"]["maxItems"]
    assert max_jobs == limits.MAX_JOBS
    ids = [UNKNOWN_JOB] * max_jobs
    assert _post(client, "/results", json={"jobs": ids}) == (404, "job_not_found")
    assert _post(client, "/results", json={"jobs": [*ids, UNKNOWN_JOB]}) == (400, "invalid_body")
    assert _post(client, "/results", json={"jobs": []}) == (400, "invalid_body")

    batch = served["paths"]["/batches"]["post"]["requestBody"]["description"]
    max_calls = schemas["JobBatch"]["properties"]["jobs"]["maxItems"]
    assert f"at most {max_calls} calls and {limits.MAX_BATCH_BYTES} bytes" in batch
    assert f"(at most {limits.MAX_CALL_BYTES} bytes)" in batch

    def post_batch(calls: list[bytes]) -> tuple[int, str | None]:
        return _post(client, "/batches", data=batch_body.encode(calls), content_type=OCTET)

    assert post_batch([b""] * max_calls) == (400, "invalid_payload")
    assert post_batch([b""] * (max_calls + 1)) == (400, "invalid_batch")
    assert post_batch([b"\x80" * limits.MAX_CALL_BYTES]) == (400, "invalid_payload")
    assert post_batch([b"\x80" * (limits.MAX_CALL_BYTES + 1)]) == (413, "call_too_large")
    whole = b"\0" * limits.MAX_BATCH_BYTES  # zero-length calls: too many of them
    assert _post(client, "/batches", data=whole, content_type=OCTET) == (400, "invalid_batch")
    over = whole + b"\0"
    assert _post(client, "/batches", data=over, content_type=OCTET) == (413, "payload_too_large")

    too_large = served["components"]["responses"]["PayloadTooLarge"]["description"]
    assert f"({MAX_BODY} bytes, see `--max-body`)" in too_large
    body = b"\x80" * MAX_BODY
    assert _post(client, "/jobs", data=body, content_type=OCTET) == (400, "invalid_payload")
    over = body + b"\x80"
    assert _post(client, "/jobs", data=over, content_type=OCTET) == (413, "payload_too_large")
