"""The dashboard through the app factory, no cluster: sign-in and its cookie, CSRF,
tenants kept apart, escaping, the jobs list's pages and filters, and clear answers to
bad input."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dill
import pytest
from flask.testing import FlaskClient

from gateway.dashboard.sessions import COOKIE
from gateway.services import Services
from gateway.store import FOLDER, SPMD, Job, Outcome
from tests.integration.unstarted import ADMIN_TOKEN, PAYLOAD, stored_job, unstarted_app
from wire.http import DEPLOYMENTS_PATH

EVIL = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


@dataclass
class Gateway:
    client: FlaskClient
    shared: Services
    alice_token: str

    def job_of(self, tenant: str, **options: object) -> Job:
        return stored_job(self.shared, tenant, **options)

    def sign_in(self, token: str, client: FlaskClient | None = None) -> str:
        """Sign ``client`` in; the CSRF token of its session."""
        client = client or self.client
        answer = client.post("/dashboard/signin", data={"token": token})
        assert answer.status_code == 302, answer.text
        page = client.get("/dashboard/jobs")
        return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with unstarted_app(tmp_path / "save") as (client, shared):
        yield Gateway(client, shared, shared.tokens.create("alice"))


def test_the_root_leads_to_the_dashboard_and_no_cookie_to_sign_in(gateway: Gateway):
    assert gateway.client.get("/").headers["Location"] == "/dashboard/"
    assert gateway.client.get("/dashboard").headers["Location"] == "/dashboard/"
    for path in ("/dashboard/", "/dashboard/jobs?status=failed", "/dashboard/workers"):
        answer = gateway.client.get(path)
        assert answer.status_code == 302
        assert answer.headers["Location"].startswith("/dashboard/signin?next=")
    feed = gateway.client.get("/dashboard/feed/overview")
    assert feed.status_code == 401 and feed.json["error"] == "signed_out"
    form = gateway.client.get("/dashboard/signin")
    assert form.status_code == 200 and 'name="token"' in form.text


def test_a_token_in_the_url_signs_nobody_in(gateway: Gateway):
    answer = gateway.client.get(f"/dashboard/?token={ADMIN_TOKEN}")
    assert answer.status_code == 302 and "signin" in answer.headers["Location"]
    answer = gateway.client.get("/dashboard/", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 302  # the dashboard takes its session cookie only


def test_the_session_cookie_is_http_only_strict_and_expires(gateway: Gateway):
    answer = gateway.client.post("/dashboard/signin", data={"token": ADMIN_TOKEN})
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    secure = gateway.client.post(
        "/dashboard/signin", data={"token": ADMIN_TOKEN}, base_url="https://localhost"
    )
    assert "Secure" in secure.headers["Set-Cookie"]


def test_a_wrong_token_is_told_what_to_use(gateway: Gateway):
    answer = gateway.client.post("/dashboard/signin", data={"token": "nope"})
    assert answer.status_code == 401
    assert "computethis token create" in answer.text
    assert "Set-Cookie" not in answer.headers


def test_sign_in_from_another_site_and_redirects_elsewhere_are_refused(gateway: Gateway):
    answer = gateway.client.post(
        "/dashboard/signin",
        data={"token": ADMIN_TOKEN},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    for target in ("//evil.example/x", "https://evil.example/", "/elsewhere"):
        answer = gateway.client.post(
            "/dashboard/signin", data={"token": ADMIN_TOKEN, "next": target}
        )
        assert answer.headers["Location"] == "/dashboard/"


def test_state_changes_need_the_csrf_token(gateway: Gateway):
    job = gateway.job_of("admin")
    csrf = gateway.sign_in(ADMIN_TOKEN)
    refused = gateway.client.post(f"/dashboard/jobs/{job.id}/cancel")
    assert refused.status_code == 403 and "CSRF" in refused.text
    wrong = gateway.client.post(f"/dashboard/jobs/{job.id}/cancel", data={"csrf": "x" + csrf})
    assert wrong.status_code == 403
    assert gateway.shared.store.get(job.id).status == "queued"
    done = gateway.client.post(f"/dashboard/jobs/{job.id}/cancel", data={"csrf": csrf})
    assert done.status_code == 302
    assert gateway.shared.store.get(job.id).status == "cancelled"
    assert gateway.client.post("/dashboard/signout").status_code == 403  # sign-out too
    deleted = gateway.client.post(
        f"/dashboard/jobs/{job.id}/delete", headers={"X-CSRF-Token": csrf}
    )
    assert deleted.status_code == 302 and gateway.shared.store.get(job.id) is None


def test_html_in_names_errors_and_logs_is_shown_as_text(gateway: Gateway):
    job = gateway.job_of("admin", name=EVIL)
    gateway.shared.store.mark_started(job.id, "tcp://w:1", 1.0)
    error = {"type": "ValueError", "message": EVIL, "traceback": f"Traceback...\n{EVIL}"}
    outcome = Outcome(job.id, ok=False, worker="tcp://w:1", error=error, logs=EVIL.encode())
    assert gateway.shared.store.record([outcome]) == [job.id]
    gateway.sign_in(ADMIN_TOKEN)
    pages = [
        gateway.client.get(f"/dashboard/jobs/{job.id}").text,
        gateway.client.get("/dashboard/jobs").text,
        gateway.client.get("/dashboard/").text,
        # the feeds' HTML (their JSON data is placed with textContent by the scripts)
        gateway.client.get("/dashboard/feed/jobs").json["rows_html"],
        gateway.client.get("/dashboard/feed/overview").json["failures_html"],
    ]
    for text in pages:
        assert "<script>alert" not in text and "<img src=x" not in text
    job_page = pages[0]
    assert job_page.count("&lt;script&gt;alert(2)&lt;/script&gt;") >= 3  # name, error, logs
    assert "Content-Security-Policy" in gateway.client.get("/dashboard/").headers


def test_a_tenant_sees_only_its_own_jobs(gateway: Gateway):
    theirs, mine = gateway.job_of("admin", name="admins"), gateway.job_of("alice", name="alices")
    alice = gateway.client.application.test_client()
    csrf = gateway.sign_in(gateway.alice_token, alice)
    missing = alice.get(f"/dashboard/jobs/{theirs.id}")
    assert missing.status_code == 404 and f"no job with id &#39;{theirs.id}" in missing.text
    assert alice.get(f"/dashboard/jobs/{mine.id}").status_code == 200
    listing = alice.get("/dashboard/jobs").text
    assert mine.id[:12] in listing and theirs.id[:12] not in listing
    assert alice.get(f"/dashboard/jobs?q={theirs.id}").status_code == 200  # not found, no redirect
    for action in ("cancel", "delete", "rerun"):
        refused = alice.post(f"/dashboard/jobs/{theirs.id}/{action}", data={"csrf": csrf})
        assert refused.status_code == 404
    assert alice.get(f"/dashboard/feed/jobs/{theirs.id}").status_code == 404
    failed = gateway.job_of("admin", name="admins-failure")
    gateway.shared.store.mark_started(failed.id, "tcp://w:1", 1.0)
    error = {"type": "ValueError", "message": "no", "traceback": ""}
    gateway.shared.store.record([Outcome(failed.id, ok=False, worker="tcp://w:1", error=error)])
    overview = alice.get("/dashboard/feed/overview").text
    assert failed.id[:12] not in overview and "admins-failure" not in overview
    assert gateway.shared.store.get(theirs.id).status == "queued"
    admin_listing = (gateway.sign_in(ADMIN_TOKEN), gateway.client.get("/dashboard/jobs").text)[1]
    assert mine.id[:12] in admin_listing and theirs.id[:12] in admin_listing
    assert failed.id[:12] in gateway.client.get("/dashboard/feed/overview").text


def test_sign_out_and_a_revoked_token_end_the_session(gateway: Gateway):
    csrf = gateway.sign_in(ADMIN_TOKEN)
    assert gateway.client.post("/dashboard/signout", data={"csrf": csrf}).status_code == 302
    assert gateway.client.get("/dashboard/").status_code == 302
    alice = gateway.client.application.test_client()
    gateway.sign_in(gateway.alice_token, alice)
    assert alice.get("/dashboard/").status_code == 200
    gateway.shared.tokens.revoke("alice")
    assert alice.get("/dashboard/").status_code == 302


def test_the_jobs_list_pages_by_keyset_and_filters(gateway: Gateway):
    jobs = [gateway.job_of("admin", name=f"n{index % 3}") for index in range(120)]
    folder = gateway.job_of("admin", kind=FOLDER, name="folder")
    gateway.sign_in(ADMIN_TOKEN)
    seen: list[str] = []
    path = "/dashboard/jobs"
    while path:
        page = gateway.client.get(path).text
        seen += re.findall(r'<tr data-job="([0-9a-f]{32})">', page)
        older = re.search(r'<a href="([^"]+)" id="older">', page)
        path = older.group(1).replace("&amp;", "&") if older else ""
    assert seen == [folder.id] + [job.id for job in reversed(jobs)]
    first = gateway.client.get("/dashboard/jobs?before=" + str(jobs[60].seq)).text
    newer = re.search(r'<a href="([^"]+)" id="newer">', first).group(1).replace("&amp;", "&")
    back = re.findall(r'<tr data-job="([0-9a-f]{32})">', gateway.client.get(newer).text)
    assert back == [job.id for job in reversed(jobs[60:110])]
    named = gateway.client.get("/dashboard/jobs?name=n1").text
    assert set(re.findall(r'<tr data-job="([0-9a-f]{32})">', named)) <= {
        job.id for job in jobs if job.name == "n1"
    }
    kinds = gateway.client.get("/dashboard/jobs?kind=folder").text
    assert re.findall(r'<tr data-job="([0-9a-f]{32})">', kinds) == [folder.id]
    found = gateway.client.get(f"/dashboard/jobs?q={jobs[5].id[:20]}")
    assert found.headers["Location"] == f"/dashboard/jobs/{jobs[5].id}"


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/jobs?status=bogus",
        "/dashboard/jobs?kind=nope",
        "/dashboard/jobs?since=yesterday",
        "/dashboard/jobs?before=-1",
        "/dashboard/jobs?q=not-hex",
        "/dashboard/jobs/" + "0" * 32,
        "/dashboard/jobs/<script>",
        "/dashboard/no/such/page",
    ],
)
def test_bad_input_gets_a_clear_page_not_a_500(gateway: Gateway, path: str):
    gateway.sign_in(ADMIN_TOKEN)
    answer = gateway.client.get(path)
    assert answer.status_code in (400, 404), answer.text
    assert 'id="problem"' in answer.text and "<script>" not in answer.text.split("<main>")[1]


def test_run_again_makes_a_new_job_of_the_same_kind(gateway: Gateway):
    job = gateway.job_of("admin", name="again", timeout=30.0)
    csrf = gateway.sign_in(ADMIN_TOKEN)
    answer = gateway.client.post(f"/dashboard/jobs/{job.id}/rerun", data={"csrf": csrf})
    assert answer.status_code == 302
    new_id = answer.headers["Location"].split("/")[-1].split("?")[0]
    new = gateway.shared.store.get(new_id)
    assert new.id != job.id and (new.kind, new.name, new.timeout) == (job.kind, "again", 30.0)
    assert bytes(gateway.shared.store.read_payload(new.id)) == PAYLOAD


def test_gang_jobs_have_their_page_and_show_their_ranks(gateway: Gateway):
    single = gateway.job_of("admin")
    gang = gateway.job_of("admin", kind=SPMD, ranks=3, name="ring")
    gateway.sign_in(ADMIN_TOKEN)
    page = gateway.client.get("/dashboard/jobs?gang=1").text
    assert re.findall(r'<tr data-job="([0-9a-f]{32})">', page) == [gang.id]
    assert "spmd ×3" in page and single.id[:12] not in page
    assert "3 ranks" in gateway.client.get(f"/dashboard/jobs/{gang.id}").text


def test_a_finished_jobs_result_downloads(gateway: Gateway):
    job = gateway.job_of("admin")
    gateway.shared.store.mark_started(job.id, "tcp://w:1", 1.0)
    result = dill.dumps(42)
    gateway.shared.store.record([Outcome(job.id, ok=True, worker="tcp://w:1", body=result)])
    gateway.sign_in(ADMIN_TOKEN)
    page = gateway.client.get(f"/dashboard/jobs/{job.id}").text
    assert 'id="download-result"' in page
    download = gateway.client.get(f"/dashboard/jobs/{job.id}/result")
    assert download.status_code == 200 and dill.loads(download.data) == 42
    assert f"{job.id}.dill" in download.headers["Content-Disposition"]


def test_event_streams_send_data_and_end_when_signed_out_or_done(gateway: Gateway):
    csrf = gateway.sign_in(ADMIN_TOKEN)
    stream = gateway.client.get("/dashboard/feed/overview/events", buffered=False)
    assert stream.mimetype == "text/event-stream"
    events = iter(stream.response)
    first = next(events)
    assert first.startswith(b"data: {") and b'"counts"' in first
    gateway.client.post("/dashboard/signout", data={"csrf": csrf})
    assert b"event: signedout" in b"".join(events)  # the next look ends it
    stream.close()

    job = gateway.job_of("admin")
    gateway.shared.store.mark_started(job.id, "tcp://w:1", 1.0)
    outcome = Outcome(job.id, ok=True, worker="tcp://w:1", body=b"r", logs=b"printed\n")
    gateway.shared.store.record([outcome])
    gateway.sign_in(ADMIN_TOKEN)
    done = gateway.client.get(f"/dashboard/feed/jobs/{job.id}/events").data
    assert done.startswith(b"data: {") and b'"status":"finished"' in done
    assert done.endswith(b"event: end\ndata: {}\n\n")
    polled = gateway.client.get(f"/dashboard/feed/jobs/{job.id}").json
    assert polled["done"] and polled["log_text"] == "printed\n"


class Echo:
    def echo(self, value: object) -> object:
        return value


def deploy(gateway: Gateway, token: str, name: str) -> str:
    """A deployment made through the API (its construct job stays queued: no cluster)."""
    answer = gateway.client.post(
        f"{DEPLOYMENTS_PATH}?name={name}&replicas=2",
        data=dill.dumps((Echo, (), {})),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 201, answer.text
    return answer.json["id"]


def test_deployments_have_their_pages_and_a_tenant_sees_only_its_own(gateway: Gateway):
    theirs, mine = (
        deploy(gateway, ADMIN_TOKEN, "admins"),
        deploy(gateway, gateway.alice_token, "alices"),
    )
    alice = gateway.client.application.test_client()
    csrf = gateway.sign_in(gateway.alice_token, alice)
    listing = alice.get("/dashboard/deployments").text
    assert mine[:12] in listing and theirs[:12] not in listing
    assert alice.get(f"/dashboard/deployments/{theirs}").status_code == 404
    page = alice.get(f"/dashboard/deployments/{mine}").text
    assert page.count('href="/dashboard/jobs/') >= 2  # each replica's construct job
    construct = re.search(r'href="/dashboard/jobs/([0-9a-f]{32})"', page).group(1)
    job_page = alice.get(f"/dashboard/jobs/{construct}").text
    assert "model" in job_page and 'id="rerun"' not in job_page  # a model call: no run again
    assert (
        alice.post(f"/dashboard/deployments/{theirs}/close", data={"csrf": csrf}).status_code == 404
    )
    assert alice.post(f"/dashboard/deployments/{mine}/close").status_code == 403  # no CSRF
    closed = alice.post(f"/dashboard/deployments/{mine}/close", data={"csrf": csrf})
    assert closed.status_code == 302
    assert 'id="deployment-status">closed<' in alice.get(closed.headers["Location"]).text
    assert mine[:12] in alice.get("/dashboard/deployments?closed=1").text
    gateway.sign_in(ADMIN_TOKEN)
    assert theirs[:12] in gateway.client.get("/dashboard/deployments").text
    assert gateway.client.get("/dashboard/jobs?kind=model").status_code == 200
