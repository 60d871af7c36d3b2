"""System fixtures: a real `computethis up` stack (LocalCluster + gateway on a real port)."""

from __future__ import annotations

import pytest

import client_sdk
from tests.stack import Stack, start_stack

WORKERS = 2


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """One `computethis up --workers 2` shared by the end-to-end tests."""
    running = start_stack(tmp_path_factory.mktemp("stack") / "save", workers=WORKERS)
    yield running
    running.stop()


@pytest.fixture
def sdk(stack: Stack) -> Stack:
    """Point the SDK's default client at the shared stack for one test."""
    previous = client_sdk.set_default_client(client_sdk.Client(stack.url, stack.token))
    yield stack
    client_sdk.set_default_client(previous)
