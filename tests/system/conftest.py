"""System fixtures: a real `computethis up` stack (LocalCluster + gateway on a real port)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

import client_sdk
from tests.stack import Stack, start_stack

WORKERS = 2
GANG_WORKERS = 4  # the workers of the SPMD tests' stack


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


@pytest.fixture(scope="session")
def wide_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One `computethis up --workers 4` for the SPMD tests (functions and programs)."""
    stack = start_stack(tmp_path_factory.mktemp("spmd") / "save", workers=GANG_WORKERS)
    yield stack
    stack.stop()


@pytest.fixture
def gang_stack(wide_stack: Stack) -> Iterator[Stack]:
    """The 4-worker stack, with the SDK's default client pointed at it for one test."""
    previous = client_sdk.set_default_client(client_sdk.Client(wide_stack.url, wide_stack.token))
    yield wide_stack
    client_sdk.set_default_client(previous)


def idle_workers(stack: Stack) -> int:
    """How many of the stack's workers run no job now."""
    body = requests.get(stack.api("/workers"), headers=stack.headers(), timeout=10).json()
    return sum(1 for worker in body["workers"] if not worker["busy"])


def wait_all_idle(stack: Stack, timeout: float = 60) -> None:
    """Every worker of the gang stack idle (those restarted back, and connected a while)."""
    deadline = time.monotonic() + timeout
    while idle_workers(stack) < GANG_WORKERS:
        assert time.monotonic() < deadline, "workers still busy"
        time.sleep(0.1)
    stack.wait_for_workers(GANG_WORKERS, timeout=timeout, steady=2.0)
