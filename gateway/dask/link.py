"""The gateway's link to the Dask scheduler: one long-lived client, checked every second.

:meth:`DaskLink.check` (re)connects, replaces a client whose reconnection never ends,
registers the keep-alive plugin and the event subscriptions on each new scheduler, and
refreshes the cached :class:`ClusterState` (workers, their Python versions). It also
wraps the keep-alive plugin's RPCs the other parts use (task states, releases).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from distributed import Client

from scheduler.config import send_interval, shorten_stream
from scheduler.plugin import KEY_PREFIX, RANK_SEPARATOR, KeepJobsAlive
from wire.envelope import RESULT_TOPIC, STARTED_TOPIC

log = logging.getLogger(__name__)

# The gateway's Dask client only ever needs raw bytes back from workers: refuse
# pickle on the data path so a result can never be unpickled here.
GATEWAY_DESERIALIZERS = ("dask", "msgpack")
CONNECT_TIMEOUT = 5.0
# Dask's client gives up reconnecting after CONNECT_TIMEOUT and closes itself; one that
# is still "connecting" well after that never will be (its reconnection died: Dask
# iterates the client's futures while request threads add to them), so it is replaced.
STUCK_RECONNECT = 4 * CONNECT_TIMEOUT
RPC_CHUNK = 1000  # keys per RPC to the keep-alive plugin

EventHandler = Callable[[tuple[float, dict[str, Any]]], None]


def dask_key(job_id: str) -> str:
    """The Dask key of a job's task."""
    return f"{KEY_PREFIX}{job_id}"


def rank_key(job_id: str, rank: int) -> str:
    """The Dask key of rank ``rank`` of an SPMD job (rank 0's is the job's key)."""
    return dask_key(job_id) if rank == 0 else f"{dask_key(job_id)}{RANK_SEPARATOR}{rank}"


def job_id_of(key: Any) -> str:
    """The job id of a task's Dask key."""
    return str(key).removeprefix(KEY_PREFIX)


@dataclass(frozen=True)
class ClusterState:
    """A cached view of the cluster, refreshed in the background."""

    connected: bool
    scheduler: str | None
    workers: dict[str, dict[str, Any]]
    python_versions: frozenset[str]


DISCONNECTED = ClusterState(False, None, {}, frozenset())


class Link(enum.Enum):
    """The outcome of one connection check."""

    DOWN = "down"  # no usable client (yet): nothing can be sent
    UP = "up"  # the same stream to the same scheduler as at the last check
    RENEWED = "renewed"  # a new client, scheduler or stream: events may have been lost


class DaskLink:
    """Owns the Dask client and the cached cluster view; see the module docstring.

    ``on_tasks_lost`` is called whenever the tasks sent so far may be gone (a new
    client, or a new scheduler), before anything is sent on the new link.
    """

    def __init__(self, scheduler: Any, on_tasks_lost: Callable[[], None]) -> None:
        self.scheduler = scheduler  # an address or a Dask cluster object
        self.client: Client | None = None
        self.cluster = DISCONNECTED
        self._on_tasks_lost = on_tasks_lost
        self._handlers: dict[str, EventHandler] = {}
        self._scheduler_id: str | None = None
        self._not_running_since: float | None = None  # monotonic time the client left "running"
        self._stream: Any = None  # the client's stream to the scheduler at the last check

    def listen(self, topic: str, handler: EventHandler) -> None:
        """Have ``handler`` called with each event on ``topic`` (subscribed on every new
        scheduler; a reconnecting client keeps its subscriptions). Call before checks."""
        self._handlers[topic] = handler

    def close(self) -> None:
        """Close the client: unblocks the threads waiting on the scheduler."""
        if self.client is not None:
            self.client.close(timeout=5)

    def check(self) -> Link:
        """One connection check: (re)connect and refresh the cluster view."""
        client = self.client
        if self._needs_new_client(client):
            self.cluster = DISCONNECTED
            client = self._open_client()
            if client is None:
                return Link.DOWN
        if client.status != "running":  # Dask is reconnecting by itself
            self.cluster = DISCONNECTED
            return Link.DOWN
        try:
            info = client.scheduler_info(n_workers=-1)
        except Exception as exc:
            log.warning("scheduler unreachable: %s", exc)
            self.cluster = DISCONNECTED
            return Link.DOWN
        new_scheduler = info.get("id") != self._scheduler_id
        # Dask makes a new stream on each (re)connection: events sent while the link was
        # down are lost, so the caller reconciles to look for their outcomes.
        reconnected = client.scheduler_comm is not self._stream
        self._stream = client.scheduler_comm
        # Dask makes the stream anew on each reconnection, with its own 10 ms interval.
        shorten_stream(client.scheduler_comm, send_interval())
        if new_scheduler:
            # Before anything is submitted: the plugin must hold every job's task.
            log.info("connected to scheduler %s", info.get("address"))
            client.register_plugin(KeepJobsAlive(send_interval()))
            self._on_tasks_lost()  # an earlier scheduler's tasks died with it
            # A reconnecting client keeps its subscriptions on the scheduler (by client id).
            for topic, handler in self._handlers.items():
                client.subscribe_topic(topic, handler)
            self._scheduler_id = info.get("id")
        self._update_cluster(client, info)
        return Link.RENEWED if new_scheduler or reconnected else Link.UP

    # -- the keep-alive plugin's RPCs ---------------------------------------------

    def task_states(self, keys: list[str]) -> dict[str, str]:
        """The scheduler's state of each key it knows; the client is (again) subscribed
        to the outcome events first, so none sent after the states were read is missed."""
        client = self.client
        assert client is not None
        states: dict[str, str] = {}
        for start in range(0, len(keys), RPC_CHUNK):
            states.update(
                client.sync(
                    client.scheduler.computethis_states,
                    keys=keys[start : start + RPC_CHUNK],
                    client_id=client.id,
                    topics=[STARTED_TOPIC, RESULT_TOPIC],
                )
            )
        return states

    def release(self, keys: list[str]) -> None:
        """Let the scheduler forget recorded/cancelled keys held by the keep-alive plugin."""
        client = self.client
        if not keys or client is None or client.status != "running":
            return
        try:
            for start in range(0, len(keys), RPC_CHUNK):
                client.sync(
                    client.scheduler.computethis_release, keys=keys[start : start + RPC_CHUNK]
                )
        except Exception as exc:
            log.warning("could not release %d keys: %s", len(keys), exc)

    # -- connecting ---------------------------------------------------------------

    def _needs_new_client(self, client: Client | None) -> bool:
        """No client, a closed one, or one whose reconnection never ends (STUCK_RECONNECT)."""
        if client is None or client.status in ("closing", "closed", "failed"):
            return True
        if client.status == "running":
            self._not_running_since = None
            return False
        now = time.monotonic()
        if self._not_running_since is None:
            self._not_running_since = now
        if now - self._not_running_since <= STUCK_RECONNECT:
            return False
        log.warning("Dask's reconnection is stuck; opening a new client")
        return True

    def _open_client(self) -> Client | None:
        old = self.client
        if old is not None:
            old.close(timeout=1)
        try:
            client = Client(
                self.scheduler,
                timeout=CONNECT_TIMEOUT,
                set_as_default=False,
                deserializers=list(GATEWAY_DESERIALIZERS),
            )
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):  # the address took the connection, no scheduler
                reason += f": no answer in {CONNECT_TIMEOUT:g} s"
            log.warning("scheduler %s not reachable (%s); retrying", self.scheduler, reason)
            return None
        self.client = client
        self._on_tasks_lost()  # the reconciliation finds them again
        self._scheduler_id = None
        self._not_running_since = None
        return client

    def _update_cluster(self, client: Client, info: dict[str, Any]) -> None:
        workers = info.get("workers", {})
        versions = self.cluster.python_versions
        if set(workers) != set(self.cluster.workers):
            versions = _worker_python_versions(client) or versions
        self.cluster = ClusterState(True, info.get("address"), workers, versions)


def _worker_python_versions(client: Client) -> frozenset[str]:
    """The workers' Python versions as "major.minor" (empty if they cannot be read)."""
    try:
        reported = client.get_versions(check=False).get("workers", {})
    except Exception:
        return frozenset()
    versions = set()
    for info in reported.values():
        python = (info or {}).get("host", {}).get("python", "")
        versions.add(".".join(python.split(".")[:2]))
    return frozenset(v for v in versions if v)
