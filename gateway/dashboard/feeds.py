"""Live data for the dashboard's pages: one server-sent-events stream per page (at
most an event a second, only when something changed), and the same data as JSON for
browsers that poll instead.

A stream costs no thread while it waits between events: its body yields a
:class:`~gateway.waiting.Wait` of a second, and the gateway's server parks the
connection (:mod:`gateway.parking`). Each event is built in a request context of the
stream's own request (its tenant and session), from the shared snapshot
(:mod:`gateway.dashboard.snapshot`) or a bounded store query.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, render_template, request

from gateway.api.errors import ApiError
from gateway.api.logs import follow
from gateway.api.ownership import own_job, visible_tenant
from gateway.dashboard import queries
from gateway.dashboard.filters import job_filter, page_cursors
from gateway.dashboard.sessions import current, still_open
from gateway.dashboard.state import DashboardState, dashboard_state
from gateway.services import services
from gateway.waiters import Waiters
from gateway.waiting import Wait, stream_body

log = logging.getLogger(__name__)

EVERY = 1.0  # seconds between events, at the least
KEEP_ALIVE = 15.0  # seconds of silence after which a comment line is sent
STREAM_LIFETIME = 600.0  # seconds a stream lasts; the browser then opens a new one
STOPPING = "computethis.dashboard.stopping"  # a mailbox key: closed when the gateway stops


@dataclass(frozen=True)
class Event:
    """One look at a page's data, and its JSON text (serialized once, for every viewer)."""

    data: dict[str, Any]
    text: str

    @classmethod
    def of(cls, data: dict[str, Any]) -> Event:
        return cls(data, json.dumps(data, separators=(",", ":")))


def overview_event() -> Event:
    """The overview's and workers page's data: the tenant's snapshot, and its tables as
    HTML (rendered and escaped here, so the pages' scripts only place them); built
    once a second for all the tenant's viewers."""
    state, tenant = dashboard_state(), visible_tenant()

    def build() -> Event:
        snapshot = state.snapshots.build(services(), tenant)
        failures = render_template("dashboard/_failures.html", failures=snapshot["failures"])
        workers = render_template("dashboard/_workers.html", workers=snapshot["workers"])
        return Event.of({**snapshot, "failures_html": failures, "workers_html": workers})

    return state.shared.get(("overview", tenant), build)


def overview_data() -> dict[str, Any]:
    """The data of :func:`overview_event`."""
    return overview_event().data


def jobs_event() -> Event:
    """The jobs page's rows (the page asked for); built once a second for all the
    tenant's viewers of the same filters."""
    wanted = job_filter(request.args)
    before, after = page_cursors(request.args)
    tenant = visible_tenant()

    def build() -> Event:
        db = services().store.db.connection()
        page = queries.jobs_page(db, tenant, wanted, before=before, after=after)
        rows = render_template("dashboard/_job_rows.html", jobs=page.jobs)
        return Event.of({"rows_html": rows, "count": len(page.jobs)})

    key = ("jobs", tenant, wanted, before, after)
    return dashboard_state().shared.get(key, build)


def job_data(job_id: str, with_logs: bool = False) -> dict[str, Any]:
    """A job's JSON (404 if it is not the caller's), and whether it is done; with
    ``with_logs`` (polling) its whole output so far as ``log_text``."""
    job = own_job(job_id)
    data: dict[str, Any] = {"job": job.to_json(), "done": job.done}
    if with_logs:
        shared = services()
        if job.done:
            data["log_text"] = (shared.store.logs(job.id) or b"").decode("utf-8", "replace")
        else:
            data["log_text"] = shared.live_logs.read(job.id, 0)[0]
    return data


def poll(look: Callable[[], Event]) -> Response:
    """The JSON answer of one look (the polling fallback)."""
    response = Response(look().text, mimetype="application/json")
    response.cache_control.no_store = True
    return response


def stream(look: Callable[[], Event]) -> Response:
    """An event stream of ``look()``, sent when it changes, at most once per
    :data:`EVERY` seconds."""
    return _event_response(_changes(look))


def job_stream(job_id: str) -> Response:
    """A job's event stream: its JSON when it changes and its output as it is printed
    (``logs``: the text since the last event), ending once it is done and its output
    all sent."""
    job = own_job(job_id)  # 404 before the stream starts
    shared = services()
    printed = follow(shared.store, shared.live_logs, job.id) if not job.done else None

    following = [printed is not None]

    def build() -> Event:
        data = job_data(job_id)
        data["logs"] = ""
        if printed is not None and following[0]:
            data["logs"], following[0] = _drain(printed)
        data["following"] = following[0]
        return Event.of(data)

    return _event_response(_changes(build, until_done=True))


def _changes(build: Callable[[], Event], *, until_done: bool = False) -> Iterator[bytes | Wait]:
    """Events of ``build()``'s data (each built in a request context of the current
    request) while the session lasts, the gateway runs and the stream is young enough."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    environ = request.environ
    session_id = current().id
    state = dashboard_state()
    waiters = services().waiters
    return _events(app, environ, session_id, state, waiters, build, until_done)


def _events(
    app: Flask,
    environ: dict[str, Any],
    session_id: str,
    state: DashboardState,
    waiters: Waiters,
    build: Callable[[], Event],
    until_done: bool,
) -> Iterator[bytes | Wait]:
    ends = time.monotonic() + STREAM_LIFETIME
    last_text, last_sent = None, 0.0
    with waiters.watch([STOPPING]) as mailbox:
        while not mailbox.closed and time.monotonic() < ends:
            ending = _look(app, environ, state, session_id, build)
            if isinstance(ending, bytes):  # nothing is yielded inside the request context
                yield ending
                return
            data, text = ending.data, ending.text
            now = time.monotonic()
            if text != last_text or data.get("logs"):
                yield b"data: " + text.encode() + b"\n\n"
                last_text, last_sent = text, now
            elif now - last_sent >= KEEP_ALIVE:
                yield b": still here\n\n"
                last_sent = now
            if until_done and data.get("done") and not data.get("following"):
                yield b"event: end\ndata: {}\n\n"
                return
            yield Wait(mailbox, now + EVERY)


def _look(
    app: Flask,
    environ: dict[str, Any],
    state: DashboardState,
    session_id: str,
    build: Callable[[], Event],
) -> Event | bytes:
    """The next event, in a request context of the stream's request; or the last
    message to send (signed out, or a problem) when the stream must end."""
    with app.request_context(environ):
        if not still_open(state.sessions, session_id):
            return b"event: signedout\ndata: {}\n\n"
        try:
            return build()
        except ApiError as exc:  # the job was deleted, say
            message = exc.message
        except Exception:
            log.exception("a dashboard stream failed")
            message = "the dashboard could not read this; reload the page"
    return f"event: problem\ndata: {json.dumps({'message': message})}\n\n".encode()


def _drain(printed: Iterator[bytes | Wait]) -> tuple[str, bool]:
    """The output the log follower has now (up to its next wait, or its end), and
    whether it follows on (False once it ended)."""
    chunks = []
    going = True
    while True:
        chunk = next(printed, None)
        if chunk is None:
            going = False
            break
        if isinstance(chunk, Wait):
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace"), going


def _event_response(events: Iterator[bytes | Wait]) -> Response:
    response = Response(stream_body(events), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # proxies: pass each event on at once
    return response
