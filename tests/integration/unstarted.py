"""A gateway app that is never started, for tests of its HTTP surface without a cluster:
its dispatcher makes no connection, its store is real."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import dill
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.services import EXTENSION, Services
from gateway.store import Job, JobSpec

ADMIN_TOKEN = "admin-token"
PAYLOAD = dill.dumps((abs, (-1,), {}))


@contextlib.contextmanager
def unstarted_app(save_dir: Path) -> Iterator[tuple[FlaskClient, Services]]:
    """The app's test client and its services; the store is closed afterwards."""
    app = create_app(GatewayConfig(save_dir=save_dir, token=ADMIN_TOKEN), "tcp://127.0.0.1:1")
    shared: Services = app.extensions[EXTENSION]
    try:
        yield app.test_client(), shared
    finally:
        shared.store.close()


def stored_job(shared: Services, tenant: str, **options: object) -> Job:
    """A queued function job of ``tenant``, stored directly."""
    (job,), created = shared.store.create_many(JobSpec(tenant=tenant, **options), [PAYLOAD])
    assert created
    return job
