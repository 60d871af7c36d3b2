"""Tenants, tokens, limits and the gateway's refusal to unpickle, through the real stack."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dill
import pytest
import requests

import client_sdk
from client_sdk import Client, compute_this
from tests.stack import REPO, Stack, start_stack
from tests.system.test_coalesce import at_once, posts, sent
from tests.system.test_collect import frames
from tests.system.test_faults import TOKEN, Processes
from tests.system.test_rest import post
from wire import batch_body

MAX_QUEUED = 2
OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(
        tmp_path_factory.mktemp("secured") / "save",
        workers=1,
        extra=["--max-queued", str(MAX_QUEUED)],
    )
    yield stack
    stack.stop()


def token_command(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "token", *args, "--save-dir", str(stack.save_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def new_tenant(stack: Stack, name: str) -> dict[str, str]:
    created = token_command(stack, "create", name)
    assert created.returncode == 0, created.stderr
    return {"Authorization": f"Bearer {created.stdout.strip()}"}


def submit(stack: Stack, headers: dict[str, str], call=(abs, (-3,), {})) -> requests.Response:
    return requests.post(
        stack.api("/jobs"), data=dill.dumps(call), headers={**headers, **OCTET}, timeout=30
    )


def test_tenants_see_only_their_own_jobs(secured: Stack):
    alice, bob = new_tenant(secured, "alice"), new_tenant(secured, "bob")
    key = "alice-key"
    job = submit(secured, {**alice, "Idempotency-Key": key}).json()
    done = requests.get(
        secured.api(f"/jobs/{job['id']}/result"), params={"wait": 30}, headers=alice, timeout=60
    )
    assert dill.loads(done.content) == 3

    missing = "f" * 32
    routes = (
        ("GET", ""),
        ("GET", "/result"),
        ("GET", "/logs"),
        ("POST", "/cancel"),
        ("DELETE", ""),
    )
    for method, suffix in routes:
        theirs = requests.request(
            method, secured.api(f"/jobs/{job['id']}{suffix}"), headers=bob, timeout=10
        )
        absent = requests.request(
            method, secured.api(f"/jobs/{missing}{suffix}"), headers=bob, timeout=10
        )
        assert theirs.status_code == absent.status_code == 404
        assert theirs.json()["error"] == absent.json()["error"]
        assert theirs.json()["message"].replace(job["id"], missing) == absent.json()["message"]

    for job_id in (job["id"], missing):  # waiting for results: the same 404
        theirs = requests.post(
            secured.api("/results"), json={"jobs": [job_id]}, headers=bob, timeout=10
        )
        assert theirs.status_code == 404 and job_id in theirs.json()["message"]
    mine = requests.post(
        secured.api("/results"), json={"jobs": [job["id"]]}, headers=alice, timeout=10
    )
    assert mine.status_code == 200
    [(info, result)] = frames(mine.content)
    assert info["id"] == job["id"] and dill.loads(result) == 3

    listed = requests.get(secured.api("/jobs"), headers=bob, timeout=10).json()["jobs"]
    assert job["id"] not in {j["id"] for j in listed}
    mine = requests.get(secured.api("/jobs"), headers=alice, timeout=10).json()["jobs"]
    assert job["id"] in {j["id"] for j in mine}
    # Looking a job up by its Idempotency-Key finds only the caller's own.
    by_key = {"idempotency_key": key}
    theirs = requests.get(secured.api("/jobs"), params=by_key, headers=bob, timeout=10)
    assert theirs.json() == {"jobs": [], "next_cursor": None}
    mine = requests.get(secured.api("/jobs"), params=by_key, headers=alice, timeout=10)
    assert [j["id"] for j in mine.json()["jobs"]] == [job["id"]]
    # The admin token sees every tenant's jobs.
    everything = requests.get(secured.api("/jobs"), headers=secured.headers(), timeout=10).json()
    assert job["id"] in {j["id"] for j in everything["jobs"]}
    assert requests.get(secured.api(f"/jobs/{job['id']}"), headers=secured.headers(), timeout=10).ok


def test_revoked_token_is_refused_and_only_hashes_are_stored(secured: Stack):
    headers = new_tenant(secured, "carol")
    token = headers["Authorization"].split()[1]
    assert requests.get(secured.api("/jobs"), headers=headers, timeout=10).status_code == 200
    assert "carol" in token_command(secured, "list").stdout.split()
    database = b"".join(path.read_bytes() for path in secured.save_dir.glob("jobs.sqlite3*"))
    assert token.encode() not in database
    assert token_command(secured, "revoke", "carol").returncode == 0
    refused = requests.get(secured.api("/jobs"), headers=headers, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    assert token_command(secured, "revoke", "carol").returncode == 1
    assert token_command(secured, "create", "admin").returncode == 1


def test_every_tenant_sees_the_workers_load_but_not_others_jobs(secured: Stack):
    dave, erin = new_tenant(secured, "dave"), new_tenant(secured, "dave-peer")
    submitted = submit(secured, dave, (time.sleep, (3,), {}))
    job_id = submitted.json()["id"]

    def workers(headers: dict[str, str]) -> list[dict]:
        body = requests.get(secured.api("/workers"), headers=headers, timeout=10).json()
        assert body["count"] == len(body["workers"]) == 1
        return body["workers"]

    deadline = time.monotonic() + 30
    while not workers(secured.headers())[0]["busy"] and time.monotonic() < deadline:
        time.sleep(0.05)
    admin, own, other = workers(secured.headers()), workers(dave), workers(erin)
    assert admin[0]["address"].startswith("tcp://") and admin[0]["current_job"] == job_id
    assert own[0]["current_job"] == job_id  # its own job
    assert other[0]["busy"] and other[0]["current_job"] is None  # another tenant's: hidden
    for seen in (admin, own, other):
        assert seen[0]["cpu"] is not None and seen[0]["memory"] > 0
    done = requests.get(secured.api(f"/jobs/{job_id}/result?wait=30"), headers=dave, timeout=60)
    assert done.status_code == 200


def test_queued_jobs_per_tenant_are_limited_and_the_sdk_waits(secured: Stack):
    erin = new_tenant(secured, "erin")
    nap = (time.sleep, (1.0,), {})
    accepted = [submit(secured, erin, nap) for _ in range(MAX_QUEUED)]
    assert all(response.status_code == 201 for response in accepted)
    refused = submit(secured, erin, nap)
    assert refused.status_code == 429
    assert refused.json()["error"] == "too_many_queued_jobs"
    assert float(refused.headers["Retry-After"]) > 0
    assert submit(secured, new_tenant(secured, "frank")).status_code == 201  # others unaffected

    as_erin = Client(secured.url, erin["Authorization"].split()[1])

    @compute_this(client=as_erin)
    def nap_then(x):
        time.sleep(0.3)
        return x

    jobs = [nap_then.submit(i) for i in range(2 * MAX_QUEUED + 1)]  # beyond the limit
    assert [job.result(timeout=120) for job in jobs] == list(range(2 * MAX_QUEUED + 1))


def post_batch(stack: Stack, headers: dict[str, str], calls: list[bytes]) -> requests.Response:
    return post(stack, batch_body.encode(calls), headers=headers, path="/batches")


def test_a_batch_past_the_queued_limit_is_refused_whole(secured: Stack):
    grace = new_tenant(secured, "grace")
    calls = [dill.dumps((abs, (-n,), {})) for n in range(MAX_QUEUED + 1)]
    # More calls than may ever be queued at once: retrying cannot help, so not a 429.
    never = post_batch(secured, grace, calls)
    assert never.status_code == 413 and never.json()["error"] == "batch_too_large"
    assert f"at most {MAX_QUEUED} calls" in never.json()["message"]
    assert submit(secured, grace, (time.sleep, (2.0,), {})).status_code == 201
    busy = post_batch(secured, grace, calls[:MAX_QUEUED])  # 1 queued + 2 > 2
    assert busy.status_code == 429
    assert "room for 1 more" in busy.json()["message"]
    assert float(busy.headers["Retry-After"]) > 0
    listing = requests.get(secured.api("/jobs"), headers=grace, timeout=30).json()
    assert len(listing["jobs"]) == 1  # nothing of either batch was stored


def test_submit_many_fits_its_batches_to_the_queued_limit(secured: Stack):
    heidi = new_tenant(secured, "heidi")
    as_heidi = Client(secured.url, heidi["Authorization"].split()[1])
    jobs = compute_this(abs, client=as_heidi).submit_many(range(-5, 0))  # fit, wait out 429s
    assert [job.result(timeout=120) for job in jobs] == [5, 4, 3, 2, 1]


def test_concurrent_calls_past_the_queued_limit_are_posted_one_by_one(secured: Stack):
    ivan = new_tenant(secured, "ivan")
    as_ivan = Client(secured.url, ivan["Authorization"].split()[1])
    calls = 3 * MAX_QUEUED
    # The calls queued while the first is in flight go in one batch: more calls than
    # may be queued (413), so each is posted alone and waits out its 429s.
    before = posts(secured)
    absolute = compute_this(abs, client=as_ivan)
    assert at_once(calls, lambda i: absolute.compute(-i)) == list(range(calls))
    assert sent(before, posts(secured), "batch", "413") >= 1


def test_request_body_limit_is_a_413(tmp_path: Path):
    stack = start_stack(tmp_path / "save", workers=1, extra=["--max-body", "1000"])
    try:
        response = submit(stack, stack.headers(), (abs, (b"x" * 5000,), {}))
        assert response.status_code == 413
        assert response.json()["error"] in ("payload_too_large", "request_entity_too_large")
        body = dill.dumps((abs, (b"x" * 5000,), {}))
        chunked = requests.post(  # no Content-Length: counted as it arrives
            stack.api("/jobs"),
            data=(body[i : i + 100] for i in range(0, len(body), 100)),
            headers={**stack.headers(), **OCTET},
            timeout=30,
        )
        assert chunked.status_code == 413
        assert chunked.json()["error"] in ("payload_too_large", "request_entity_too_large")
        assert submit(stack, stack.headers()).status_code == 201
        # A batch over the limit is sent again by the SDK in halves until it fits.
        client = Client(stack.url, stack.token)
        jobs = compute_this(abs, client=client).submit_many(range(-40, 0))
        assert [job.result(timeout=60) for job in jobs] == list(range(40, 0, -1))
        # A call that no batch can carry fails; the jobs queued before it are named.
        with pytest.raises(client_sdk.ApiError) as refused:
            compute_this(len, client=client).submit_many([b"a", b"x" * 5000])
        assert refused.value.status == 413
        note = "\n".join(refused.value.__notes__)
        assert "1 of the items were already queued as jobs" in note
        queued = client_sdk.Job.from_id(note.rsplit(" ", 1)[-1], client=client)
        assert queued.result(timeout=60) == 1
    finally:
        stack.stop()


def test_a_body_cut_short_is_a_400_and_stores_nothing(tmp_path: Path):
    stack = start_stack(tmp_path / "save", workers=1)
    try:
        body = dill.dumps((abs, (-3,), {}))
        host, port = stack.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(
                b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {stack.token}\r\n".encode()
                + b"Content-Type: application/octet-stream\r\n"
                + f"Content-Length: {len(body) + 50}\r\n\r\n".encode()
                + body
            )
            conn.shutdown(socket.SHUT_WR)  # the client goes away mid-body
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
        status_line, _, rest = reply.partition(b"\r\n")
        assert b" 400 " in status_line, reply
        assert b'"incomplete_body"' in rest
        jobs = requests.get(stack.api("/jobs"), headers=stack.headers(), timeout=10).json()
        assert jobs["jobs"] == []
    finally:
        stack.stop()


class Marker:
    """Unpickling this creates ``path``: proof of where unpickling happened."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_gateway_never_unpickles_payloads(tmp_path: Path):
    marker = tmp_path / "unpickled-here"
    cluster = Processes(tmp_path, workers=1)
    try:
        cluster.start_scheduler()
        cluster.start_gateway_degraded()
        body = dill.dumps((print, (Marker(str(marker)),), {}))
        response = requests.post(
            f"{cluster.url}/api/v1/jobs",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}", **OCTET},
            timeout=30,
        )
        assert response.status_code == 201
        job_id = response.json()["id"]
        time.sleep(2)
        assert not marker.exists(), "the gateway unpickled a payload"
        status = requests.get(
            f"{cluster.url}/api/v1/jobs/{job_id}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        ).json()
        assert status["status"] == "queued"

        cluster.start_workers()  # a worker joins: the job runs there
        client = Client(cluster.url, TOKEN)
        client_sdk.Job.from_id(job_id, client=client).result(timeout=120)
        assert marker.exists()
    finally:
        cluster.stop_all()
