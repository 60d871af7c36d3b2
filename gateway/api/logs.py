"""A job's output: what it printed (``GET /jobs/<id>/logs``), or, with ``?follow=1``, a
stream of its output as it is printed that ends when the job does."""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Response, request
from flask_restful import Resource

from gateway.api import params
from gateway.api.ownership import found, own_job, visible_tenant
from gateway.live_logs import LiveLogs
from gateway.services import services
from gateway.store import JobStore
from gateway.waiting import Wait, stream_body

LOOK_EVERY = 1.0  # seconds between looks at whether a followed job has ended
END_GRACE = 2.0  # seconds a job's last output may come after its outcome


class JobLogs(Resource):
    """``/jobs/<id>/logs``."""

    def get(self, job_id: str) -> Response:
        """The job's captured stdout and stderr (the last 1 MiB), as plain text; with
        ``?follow=1``, its output as it is printed, until the job ends."""
        shared = services()
        if params.flag(request.args, "follow"):
            job = own_job(job_id)
            if not job.done:
                chunks = follow(shared.store, shared.live_logs, job.id)
                response = Response(stream_body(chunks), mimetype="text/plain")
                response.headers["X-Accel-Buffering"] = "no"  # proxies: pass it on at once
                return response
        logs = found(job_id, shared.store.logs(job_id, tenant=visible_tenant()))
        return Response(logs, mimetype="text/plain")


def follow(store: JobStore, live: LiveLogs, job_id: str) -> Iterator[bytes | Wait]:
    """The output of ``job_id`` as it arrives, ending once the job has ended (its
    outcome is recorded) and its last output is sent (or :data:`END_GRACE` later). A job
    whose output never came live (a function job's, or one followed after the gateway
    dropped it) ends with its stored logs; an SPMD job's (whose rank 0 alone prints
    live) with the other ranks' output from its stored logs."""
    position, ended_at, gang = 0, None, False
    with live.watch(job_id) as mailbox:
        while True:
            text, position, printed_all = live.read(job_id, position)
            if text:
                yield text.encode("utf-8", "replace")
            if mailbox.closed:
                return
            now = time.monotonic()
            if ended_at is None:
                job = store.get(job_id)
                if job is None or job.done:
                    ended_at, gang = now, job is not None and job.gang
            if ended_at is not None:
                if position == 0:
                    yield store.logs(job_id) or b""
                if position == 0 or printed_all or now - ended_at >= END_GRACE:
                    if position and gang:  # the other ranks' output, after rank 0's
                        stored = (store.logs(job_id) or b"").decode("utf-8", "replace")
                        yield stored[position:].encode()
                    return
            deadline = now + LOOK_EVERY if ended_at is None else ended_at + END_GRACE
            yield Wait(mailbox, deadline)
            mailbox.take(0)
