"""The OpenAPI document: valid, complete, served, and true of the live gateway.

- The document validates against the OpenAPI specification, and it lists exactly the
  routes the Flask app serves under ``/api/v1``.
- Schemathesis generates requests from the document against the live ``stack``
  (examples, coverage and fuzzing phases, positive and negative data) and checks that
  no answer is a 5xx and that every status code, content type, header and JSON body is
  the documented one.
- Real jobs (finished, failed, running, cancelled, deleted) are checked against the
  documented responses too, since generated requests only ever see unknown job ids;
  so are the answers a healthy stack never gives (413, 429, a degraded 503), from an
  app that is built but not started.
- Hypothesis throws random methods, paths, query strings, headers and bodies at every
  endpoint, with and without the token, and a sweep sends values parsers trip on in
  every parameter and header: the gateway must never answer 5xx, and every 4xx must be
  the JSON ``{"error", "message"}`` body. A 5xx failure quotes the gateway's traceback.
"""

from __future__ import annotations

import io
import json
import re
import string
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dill
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.engine import events
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.api.openapi import openapi_document
from gateway.app import create_app
from gateway.config import GatewayConfig
from tests.stack import Stack
from wire.http import API_PREFIX

OCTET = "application/octet-stream"


def _tar_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member = tarfile.TarInfo(name)
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


# Folder uploads: small tars (safe and not) and arbitrary bytes.
schemathesis.openapi.media_type(
    "application/x-tar",
    st.one_of(
        st.builds(_tar_of, st.sampled_from(["main.py", "../up.py", "/abs.py"]), st.binary()),
        st.binary(max_size=2048),
    ),
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Flask adds these to every rule by itself; they are not part of the contract.
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}


def dill_call(func: Any, *args: Any, **kwargs: Any) -> bytes:
    """What a REST client posts: the dill bytes of ``(func, args, kwargs)``."""
    return dill.dumps((func, args, kwargs), recurse=True)


def _fail(message: str) -> None:
    """A job that fails."""
    raise ValueError(message)


def _sleep(seconds: float) -> None:
    """A job that runs a while."""
    time.sleep(seconds)


# -- the document itself -------------------------------------------------------------


def test_document_is_valid_openapi() -> None:
    """The document validates against the OpenAPI 3.0 specification."""
    document = openapi_document()
    validate(document)
    assert document["openapi"].startswith("3.")
    json.dumps(document)  # served as JSON: no tuples, sets or other non-JSON values


def _documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    """``(METHOD, /api/v1/path/{param})`` for every operation in the document."""
    base = document["servers"][0]["url"].rstrip("/")
    return {
        (method.upper(), f"{base}{path}")
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def _served_operations(tmp_path: Path) -> set[tuple[str, str]]:
    """``(METHOD, /api/v1/path/{param})`` for every Flask route of a freshly built app."""
    config = GatewayConfig(save_dir=tmp_path / "save", token="t")
    app = create_app(config, "tcp://127.0.0.1:1")  # never started: no connection made
    try:
        served = set()
        for rule in app.url_map.iter_rules():
            if not rule.rule.startswith(f"{API_PREFIX}/"):
                continue
            # Only string converters: anything else would need its own schema.
            assert re.fullmatch(r"[^<>]*(<(string:|path:)?\w+>[^<>]*)*", rule.rule), rule.rule
            path = re.sub(r"<(?:string:|path:)?(\w+)>", r"{\1}", rule.rule)
            for method in (rule.methods or set()) - AUTOMATIC_METHODS:
                served.add((method, path))
        return served
    finally:
        app.extensions["computethis"].store.close()


def test_every_route_is_documented_and_every_documented_route_is_served(tmp_path: Path) -> None:
    documented = _documented_operations(openapi_document())
    served = _served_operations(tmp_path)
    assert served - documented == set(), "routes the app serves that the document lacks"
    assert documented - served == set(), "operations the document lists that no route serves"


def test_every_operation_documents_its_errors() -> None:
    """401 on every protected operation, 404 wherever a job id is in the path."""
    document = openapi_document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            codes = set(operation["responses"])
            public = operation.get("security", document["security"]) == []
            assert ("401" in codes) != public, (method, path)
            if "{job_id}" in path:
                assert "404" in codes, (method, path)
            for code in codes:
                if code.startswith("4"):
                    response = operation["responses"][code]
                    if "$ref" in response:
                        name = response["$ref"].rsplit("/", 1)[1]
                        response = document["components"]["responses"][name]
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)


def test_served_document_is_the_document_and_public(stack: Stack) -> None:
    """``GET /api/v1/openapi.json`` serves the document, without a token."""
    response = requests.get(stack.api("/openapi.json"), timeout=10)  # no token
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == json.loads(json.dumps(openapi_document()))


# -- schemathesis against the live gateway ---------------------------------------------


# On top of CHECKS, for generated requests only: schema-invalid input must be refused,
# a request without the token must get 401, and a method a path does not list 405.
CHECK_NAMES = [
    *(check.__name__ for check in CHECKS),
    "negative_data_rejection",
    "ignored_auth",
    "unsupported_method",
]


@pytest.fixture
def live_schema(stack: Stack) -> schemathesis.BaseSchema:
    """The document as the live gateway serves it, set up to call that gateway."""
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {stack.token}"},
            "request-timeout": 30,
            "generation": {"max-examples": 25, "database": "none", "deterministic": True},
            "phases": {"stateful": {"enabled": False}},
            "checks": {
                "enabled": False,
                **{name: {"enabled": True} for name in CHECK_NAMES},
            },
        }
    )
    return schemathesis.openapi.from_url(stack.api("/openapi.json"), config=config)


def test_live_gateway_matches_the_document(
    live_schema: schemathesis.BaseSchema, stack: Stack
) -> None:
    """Every generated request is answered as documented, and never with a 5xx.

    Runs schemathesis' engine (examples, coverage and fuzzing phases, positive and
    negative data) over every operation; its pytest plugin does not run on pytest 9.
    """
    problems: list[str] = []
    tested: set[str] = set()
    checked: dict[str, int] = dict.fromkeys(CHECK_NAMES, 0)
    finished = None
    for event in schemathesis.engine.from_schema(live_schema).execute():
        if isinstance(event, events.ScenarioFinished):
            tested.add(event.recorder.label)
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    checked[node.name] = checked.get(node.name, 0) + 1
                    info = node.failure_info
                    if info is not None:
                        problems.append(
                            f"{event.recorder.label}: {node.name}: {info.failure.title}\n"
                            f"{info.failure.message}\n{info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            problems.append(f"schemathesis error: {event!r}")
        elif isinstance(event, events.EngineFinished):
            finished = event
    assert finished is not None and finished.stop_reason == "completed", finished
    assert not problems, "\n\n".join(problems + server_errors(stack))
    documented = {
        f"{method.upper()} {path}"
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    # Schemathesis never tests the operation that serves the schema it loaded.
    assert tested == documented - {"GET /openapi.json"}
    assert all(checked[name] for name in CHECK_NAMES), checked


# -- real jobs against the documented responses -----------------------------------------


def _validated(
    schema: schemathesis.BaseSchema,
    stack: Stack,
    method: str,
    path: str,
    *,
    job_id: str | None = None,
    query: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> schemathesis.Response:
    """Call one documented operation with these values; fail on any undocumented answer."""
    operation = schema[path][method]
    kwargs: dict[str, Any] = {}
    if job_id is not None:
        kwargs["path_parameters"] = {"job_id": job_id}
    if body is not None:
        kwargs["body"] = body
        kwargs["media_type"] = OCTET
    case = operation.Case(query=query or {}, headers=headers or {}, **kwargs)
    response = case.call(headers=stack.headers(), timeout=60)
    case.validate_response(response, checks=CHECKS, headers=stack.headers())
    return response


def _wait_done(stack: Stack, job_id: str) -> dict[str, Any]:
    """Long-poll until the job is done; its JSON."""
    response = requests.get(
        stack.api(f"/jobs/{job_id}/result"),
        params={"wait": 60},
        headers=stack.headers(),
        timeout=90,
    )
    assert response.status_code == 200, response.text
    return requests.get(stack.api(f"/jobs/{job_id}"), headers=stack.headers(), timeout=10).json()


def test_idempotent_submission_is_answered_as_documented(
    live_schema: schemathesis.BaseSchema, stack: Stack
) -> None:
    """A second ``POST`` with the same ``Idempotency-Key``: 200, the same job, same headers."""
    key = f"openapi-{uuid.uuid4().hex}"
    first = _validated(
        live_schema,
        stack,
        "POST",
        "/jobs",
        headers={"Idempotency-Key": key},
        body=dill_call(pow, 2, 5),
    )
    assert first.status_code == 201, first.text
    job_id = first.json()["id"]
    try:
        again = _validated(
            live_schema,
            stack,
            "POST",
            "/jobs",
            headers={"Idempotency-Key": key},
            body=dill_call(pow, 2, 5),
        )
        assert again.status_code == 200 and again.json()["id"] == job_id
    finally:
        _wait_done(stack, job_id)
        requests.delete(stack.api(f"/jobs/{job_id}"), headers=stack.headers(), timeout=30)


def test_real_jobs_are_answered_as_documented(
    live_schema: schemathesis.BaseSchema, stack: Stack
) -> None:
    """Finished and failed jobs through every operation, each answer checked."""
    submitted = _validated(
        live_schema,
        stack,
        "POST",
        "/jobs",
        query={"name": "openapi pow", "timeout": 60, "retries": 1},
        headers={"Idempotency-Key": f"openapi-{uuid.uuid4().hex}"},
        body=dill_call(pow, 2, 10),
    )
    assert submitted.status_code == 201, submitted.text
    finished = submitted.json()["id"]

    failing = _validated(live_schema, stack, "POST", "/jobs", body=dill_call(_fail, "openapi"))
    assert failing.status_code == 201, failing.text
    failed = failing.json()["id"]

    assert _wait_done(stack, finished)["status"] == "finished"
    assert _wait_done(stack, failed)["status"] == "failed"

    # ?wait on the submission: the result bytes (200), or the job with its error (201).
    quick = _validated(
        live_schema, stack, "POST", "/jobs", query={"wait": 60}, body=dill_call(pow, 3, 4)
    )
    assert quick.status_code == 200 and dill.loads(quick.content) == 81
    failed_now = _validated(
        live_schema, stack, "POST", "/jobs", query={"wait": 60}, body=dill_call(_fail, "now")
    )
    assert failed_now.status_code == 201 and failed_now.json()["status"] == "failed"
    extra = [quick.headers["x-computethis-job"][0], failed_now.json()["id"]]

    result = _validated(live_schema, stack, "GET", "/jobs/{job_id}/result", job_id=finished)
    assert result.headers["content-type"] == [OCTET] and dill.loads(result.content) == 1024
    error = _validated(live_schema, stack, "GET", "/jobs/{job_id}/result", job_id=failed)
    assert error.status_code == 200 and error.json()["error"]["type"] == "ValueError"
    for job_id in (finished, failed):
        status = _validated(live_schema, stack, "GET", "/jobs/{job_id}", job_id=job_id)
        assert status.status_code == 200
        cancelled = _validated(live_schema, stack, "POST", "/jobs/{job_id}/cancel", job_id=job_id)
        assert cancelled.json()["status"] in {"finished", "failed"}  # done: left as it is

    page = _validated(live_schema, stack, "GET", "/jobs", query={"limit": 1})
    assert len(page.json()["jobs"]) == 1 and page.json()["next_cursor"]
    _validated(live_schema, stack, "GET", "/jobs", query={"cursor": page.json()["next_cursor"]})
    for status in ("finished", "failed"):
        _validated(live_schema, stack, "GET", "/jobs", query={"status": status, "limit": 1000})
    _validated(live_schema, stack, "GET", "/workers")
    _validated(live_schema, stack, "GET", "/health")
    _validated(live_schema, stack, "GET", "/openapi.json")

    for job_id in (finished, failed, *extra):
        deleted = _validated(live_schema, stack, "DELETE", "/jobs/{job_id}", job_id=job_id)
        assert deleted.json() == {"id": job_id, "deleted": True}
        gone = _validated(live_schema, stack, "GET", "/jobs/{job_id}", job_id=job_id)
        assert gone.status_code == 404


def test_active_jobs_are_answered_as_documented(
    live_schema: schemathesis.BaseSchema, stack: Stack
) -> None:
    """A running job: 202 from the result, then cancelled by ``DELETE`` (deleted: false)."""
    submitted = _validated(live_schema, stack, "POST", "/jobs", body=dill_call(_sleep, 60))
    job_id = submitted.json()["id"]
    try:
        pending = _validated(
            live_schema, stack, "GET", "/jobs/{job_id}/result", job_id=job_id, query={"wait": 0.2}
        )
        assert pending.status_code == 202 and pending.json()["status"] in {"queued", "running"}
        cancelled = _validated(live_schema, stack, "DELETE", "/jobs/{job_id}", job_id=job_id)
        assert cancelled.json()["deleted"] is False
        assert cancelled.json()["status"] == "cancelled"
        outcome = _validated(live_schema, stack, "GET", "/jobs/{job_id}/result", job_id=job_id)
        assert outcome.status_code == 200 and outcome.json()["status"] == "cancelled"
        _validated(live_schema, stack, "POST", "/jobs/{job_id}/cancel", job_id=job_id)
        deleted = _validated(live_schema, stack, "DELETE", "/jobs/{job_id}", job_id=job_id)
        assert deleted.json()["deleted"] is True
    finally:
        requests.delete(stack.api(f"/jobs/{job_id}"), headers=stack.headers(), timeout=30)
        stack.wait_for_workers(2)  # a cancelled running job restarts its worker


def test_rare_answers_are_answered_as_documented(tmp_path: Path) -> None:
    """413, 429 and a degraded 503, from an app that is built but never connected."""
    offline = schemathesis.openapi.from_dict(openapi_document())
    config = GatewayConfig(save_dir=tmp_path / "save", token="t", max_body=64, max_queued=0)
    app = create_app(config, "tcp://127.0.0.1:1")  # never started: stays degraded
    auth = {"Authorization": "Bearer t"}
    try:
        client = app.test_client()
        answers = {
            ("GET", "/health", 503): client.get(f"{API_PREFIX}/health"),
            ("POST", "/jobs", 429): client.post(
                f"{API_PREFIX}/jobs", data=dill_call(pow, 2, 2), content_type=OCTET, headers=auth
            ),
            ("POST", "/jobs", 415): client.post(f"{API_PREFIX}/jobs", data=b"{}", headers=auth),
            ("GET", "/jobs", 400): client.get(f"{API_PREFIX}/jobs?limit=0", headers=auth),
        }
        app.extensions["computethis"].config.max_queued = 10  # let the 413 through to staging
        answers[("POST", "/jobs", 413)] = client.post(
            f"{API_PREFIX}/jobs", data=b"\x80" * 65, content_type=OCTET, headers=auth
        )
        for (method, path, status), response in answers.items():
            assert response.status_code == status, (method, path, response.get_data())
            case = offline[path][method].Case()
            # A degraded gateway's 503 is documented: not a server error here.
            excluded = [not_a_server_error] if status == 503 else []
            case.validate_response(response, checks=CHECKS, excluded_checks=excluded)
        assert answers[("POST", "/jobs", 429)].headers["Retry-After"].isdigit()
    finally:
        app.extensions["computethis"].store.close()


# -- hypothesis: random requests at every endpoint -------------------------------------

DOCUMENTED = openapi_document()
# Every documented path, with the HTTP methods it lists.
PATHS: dict[str, tuple[str, ...]] = {
    path: tuple(method.upper() for method in item if method in HTTP_METHODS)
    for path, item in DOCUMENTED["paths"].items()
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
PARAMETERS = ("timeout", "retries", "name", "wait", "limit", "cursor", "status")
REQUEST_HEADERS = ("Idempotency-Key", "X-Computethis-Python", "X-Computethis-Dill")
# Values parsers trip on: Unicode digits, superscripts, floats Python reads specially.
TRICKY = (
    "",
    " ",
    "0",
    "-1",
    "1e400",
    "-0",
    "nan",
    "inf",
    "-inf",
    "1_000",
    "0x10",
    "²",
    "١٢",
    "１２",
    "Ⅻ",
    "9" * 19,
    "9" * 400,
    "\x00",
    "%00",
    "null",
    "true",
    "[]",
    "{}",
    "ü" * 201,
    "queued",
    "expired",
)


def assert_answer(method: str, response: requests.Response, sent: str) -> None:
    """No 5xx; a 4xx is JSON ``{"error", "message"}`` (headers only for HEAD)."""
    where = f"{sent} -> {response.status_code} {response.text[:300]!r}"
    assert response.status_code < 500, where
    content_type = response.headers.get("Content-Type", "").split(";")[0]
    if response.status_code < 400:
        if content_type == "application/json" and method != "HEAD":
            response.json()
        return
    assert content_type == "application/json", where
    if method == "HEAD":
        return
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "message"}, where
    assert isinstance(body["error"], str) and body["error"], where
    assert isinstance(body["message"], str) and body["message"], where


def is_field_value(value: str) -> bool:
    """Whether HTTP allows ``value`` in a header: Latin-1, no control characters."""
    return all(0x20 <= ord(char) <= 0xFF and char != "\x7f" for char in value)


def send(stack: Stack, method: str, path: str, **kwargs: Any) -> requests.Response:
    """One request at ``/api/v1{path}``, its answer checked by :func:`assert_answer`."""
    response = requests.request(
        method, f"{stack.url}{API_PREFIX}{path}", timeout=30, allow_redirects=False, **kwargs
    )
    sent = f"{method} {response.request.url} headers={kwargs.get('headers')}"
    assert_answer(method, response, sent)
    return response


segments = st.one_of(
    st.sampled_from(TRICKY).filter(bool),
    st.text(min_size=1, max_size=40),
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
    st.text(alphabet=string.printable, min_size=1, max_size=40),
)
query_values = st.one_of(st.sampled_from(TRICKY), st.text(max_size=30), st.integers().map(str))
queries = st.one_of(
    st.fixed_dictionaries({}, optional=dict.fromkeys(PARAMETERS, query_values)),
    st.dictionaries(st.text(min_size=1, max_size=10), query_values, max_size=3),
    st.text(max_size=60).map(lambda raw: quote(raw, safe="=&")),  # a raw query string
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
bodies = st.one_of(
    st.none(),
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.sampled_from([b"\x80\x04", b"\x80\x05N.", b"\x80\x04\x95" + b"\xff" * 20]),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from([OCTET, "application/json", "text/plain", "multipart/form-data", "x/y; a=b"]),
)
# Visible ASCII and Latin-1 (what HTTP header values carry); requests refuses leading
# whitespace, so values are stripped.
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=220,
).map(str.strip)
AUTHORIZATION = {
    "token": "Bearer {token}",
    "wrong": "Bearer not-the-token",
    "scheme": "Basic {token}",
    "empty": "Bearer ",
    "bare": "{token}",
}


@st.composite
def random_requests(draw: st.DrawFn, path: str, job_ids: tuple[str, ...]) -> dict[str, Any]:
    """A random request at ``path``: any method, job id, query, headers and body."""
    method = draw(st.one_of(st.sampled_from(PATHS[path]), st.sampled_from(METHODS)))
    job_id = draw(st.one_of(st.sampled_from(job_ids), segments))
    url = path.replace("{job_id}", quote(job_id, safe=""))
    if draw(st.integers(0, 5)) == 0:  # a path below the endpoint
        url += "/" + quote(draw(segments), safe="")
    headers: dict[str, str] = {}
    auth = draw(st.sampled_from(("token", "token", "token", "none", *AUTHORIZATION)))
    if auth != "none":
        headers["Authorization"] = AUTHORIZATION[auth]
    content_type = draw(content_types)
    if content_type:
        headers["Content-Type"] = content_type
    for name in REQUEST_HEADERS:
        if draw(st.booleans()):
            headers[name] = draw(header_values)
    return {
        "method": method,
        "path": url,
        "params": draw(queries),
        "headers": headers,
        "data": draw(bodies),
    }


@pytest.fixture(scope="module")
def own_jobs(stack: Stack) -> Iterator[tuple[str, ...]]:
    """A finished and a failed job of this test's own, deleted afterwards."""
    headers = {**stack.headers(), "Content-Type": OCTET}
    ids = []
    for call in (dill_call(pow, 3, 3), dill_call(_fail, "random")):
        response = requests.post(stack.api("/jobs"), data=call, headers=headers, timeout=30)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    for job_id in ids:
        _wait_done(stack, job_id)
    yield tuple(ids)
    for job_id in ids:
        requests.delete(stack.api(f"/jobs/{job_id}"), headers=stack.headers(), timeout=30)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_random_requests_never_get_a_5xx_and_4xx_are_json_errors(
    stack: Stack, own_jobs: tuple[str, ...], path: str
) -> None:
    """Random requests at one documented path (150 of them): never 5xx, 4xx are JSON."""

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=random_requests(path, own_jobs))
    def check(request: dict[str, Any]) -> None:
        headers = {
            name: value.replace("{token}", stack.token)
            for name, value in request["headers"].items()
        }
        send(
            stack,
            request["method"],
            request["path"],
            params=request["params"],
            headers=headers,
            data=request["data"],
        )

    check()


def test_tricky_parameter_and_header_values(stack: Stack, own_jobs: tuple[str, ...]) -> None:
    """Every tricky value in every query parameter and request header of every operation."""
    created: list[str] = []
    problems: list[str] = []
    job_id = own_jobs[0]

    def attempt(method: str, url: str, **kwargs: Any) -> None:
        try:
            response = send(stack, method, url, **kwargs)
        except AssertionError as exc:
            problems.append(str(exc).split("\n")[0])
            return
        if "X-Computethis-Job" in response.headers:
            created.append(response.headers["X-Computethis-Job"])

    for path, item in DOCUMENTED["paths"].items():
        url = path.replace("{job_id}", job_id)
        for method, operation in item.items():
            if method not in HTTP_METHODS or (method, path) == ("delete", "/jobs/{job_id}"):
                continue  # DELETE would remove the job the other requests use
            names = [
                DOCUMENTED["components"]["parameters"][ref["$ref"].rsplit("/", 1)[1]]["name"]
                for ref in operation.get("parameters", [])
            ]
            query = [name for name in names if name not in REQUEST_HEADERS] + ["unknown"]
            header_names = [name for name in names if name in REQUEST_HEADERS]
            headers = {**stack.headers(), "Content-Type": OCTET}
            for value in TRICKY:
                for name in query:
                    # ?wait on a submission is read after the body: send a real call.
                    data = dill_call(pow, 2, 2) if name == "wait" else b"\x80\x04"
                    post = method == "post"
                    attempt(
                        method.upper(),
                        url,
                        params={name: value},
                        headers=headers,
                        data=data if post else None,
                    )
                for name in header_names:
                    if is_field_value(value):  # else the HTTP server refuses it before the app
                        attempt(
                            method.upper(),
                            url,
                            headers={**headers, name: value.strip()},
                            data=b"\x80\x04",
                        )
    for created_id in created:
        requests.delete(stack.api(f"/jobs/{created_id}"), headers=stack.headers(), timeout=30)
    assert not problems, "\n".join(problems) + "\n\n" + "\n".join(server_errors(stack))


def server_errors(stack: Stack) -> list[str]:
    """The tracebacks of the unhandled errors (answered 500) in the gateway's log."""
    pattern = r"gateway\.errors ERROR unhandled error\n(.*?)(?=^\d{4}-\d\d-\d\d |\Z)"
    return re.findall(pattern, stack.log(), flags=re.DOTALL | re.MULTILINE)
