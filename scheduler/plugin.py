"""Keep computethis tasks alive on the scheduler, and report jobs that failed for good.

Dask forgets a task as soon as no client wants it. The gateway holds no futures for its
jobs (it learns their outcomes from events), and it may crash or restart. This plugin
makes a pseudo-client (the job store) want every ``computethis-*`` key from the moment
it is submitted, the way Dask's published datasets hold their keys, so a restarted
gateway finds its jobs still running (or their results still in memory) instead of
re-running them. The gateway releases a key once its outcome is recorded.
"""

from __future__ import annotations

import time
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from scheduler.config import shorten_stream
from wire.envelope import RESULT_TOPIC, STARTED_TOPIC

KEY_PREFIX = "computethis-"
# An SPMD job's rank r > 0 runs under its job's key plus this and r; rank 0 under the
# job's key. The ranks are held and released with rank 0; only rank 0 reports.
RANK_SEPARATOR = "-rank"
HOLDER = "computethis-job-store"
PLUGIN_NAME = "computethis-keep-jobs"
# Scheduler task states in which a task will still produce (or holds) an outcome.
LIVE_STATES = {"waiting", "queued", "no-worker", "processing", "memory", "erred"}


class KeepJobsAlive(SchedulerPlugin):
    """Holds computethis keys on behalf of the job store; see the module docstring."""

    name = PLUGIN_NAME

    def __init__(self, send_interval: float | None = None) -> None:
        self.scheduler: Any = None
        # Seconds between batched sends on the scheduler's streams to workers and
        # clients (None: Dask's 5 ms and 2 ms); see scheduler.config.send_interval.
        self.send_interval = send_interval
        self.attempts: dict[str, int] = {}
        # A job's key: when (scheduler clock) its task was submitted; the events of an
        # earlier task under the same key (a restarted SPMD job) are older.
        self.submitted_at: dict[str, float] = {}
        self.other_ranks: dict[str, list[str]] = {}  # an SPMD job's key: its ranks' keys

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        scheduler.handlers["computethis_release"] = self.release
        scheduler.handlers["computethis_states"] = self.states
        scheduler.handlers["computethis_attach"] = self.attach
        for stream in [*scheduler.stream_comms.values(), *scheduler.client_comms.values()]:
            shorten_stream(stream, self.send_interval)

    def add_worker(self, scheduler: Any, worker: str) -> None:
        shorten_stream(scheduler.stream_comms.get(worker), self.send_interval)

    def add_client(self, scheduler: Any, client: str) -> None:
        # Called just before Dask makes the client's stream: shorten it once it exists.
        def shorten() -> None:
            shorten_stream(scheduler.client_comms.get(client), self.send_interval)

        scheduler.loop.add_callback(shorten)

    def update_graph(self, scheduler: Any, *, keys: Any, **kwargs: Any) -> None:
        ours = [key for key in keys if isinstance(key, str) and key.startswith(KEY_PREFIX)]
        if ours:
            scheduler.client_desires_keys(keys=ours, client=HOLDER)
        now = time.time()
        for key in ours:
            if RANK_SEPARATOR in key:
                self.other_ranks.setdefault(key.split(RANK_SEPARATOR)[0], []).append(key)
            else:
                self.submitted_at.setdefault(key, now)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        """Count each job's attempts; announce re-runs (a worker died, or Dask retries)
        and final failures.

        A first attempt is announced by the worker itself (only if it runs long enough
        to matter); a re-run is rare, so the scheduler announces it with its number.
        """
        if not (isinstance(key, str) and key.startswith(KEY_PREFIX)):
            return
        root = key.split(RANK_SEPARATOR)[0]
        if finish == "no-worker" and root in self.other_ranks:
            # A rank of an SPMD job can run only on the worker it was placed on: that
            # worker is gone, and so is the job (the gateway records it failed).
            rank = int(key.split(RANK_SEPARATOR)[1]) if root != key else 0
            job = root[len(KEY_PREFIX) :]
            self.scheduler.log_event(RESULT_TOPIC, {"job": job, "lost": True, "rank": rank})
        elif finish == "no-worker" and root == key:
            # A model job pinned to its replica's worker, which is gone: any worker
            # may run it (and rebuild the replica there). Done after this transition.
            self.scheduler.loop.add_callback(self.unpin, key)
        elif root != key:  # another rank: rank 0 reports the job
            return
        elif finish == "forgotten":
            self.attempts.pop(key, None)
            self.submitted_at.pop(key, None)
            self.other_ranks.pop(key, None)
        elif finish == "erred":
            # Final (Dask's retries are spent): the gateway fetches the exception.
            self.scheduler.log_event(RESULT_TOPIC, {"job": key[len(KEY_PREFIX) :], "erred": True})
        elif finish == "processing":
            attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
            task = self.scheduler.tasks.get(key)
            worker = getattr(getattr(task, "processing_on", None), "address", None)
            if attempt > 1 and worker:
                self.scheduler.log_event(
                    STARTED_TOPIC,
                    {
                        "job": key[len(KEY_PREFIX) :],
                        "worker": worker,
                        "time": time.time(),
                        "attempt": attempt,
                    },
                )

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        """A worker left: jobs pinned to it and waiting without a worker may run
        anywhere now (a task may have gone to no-worker while its worker was closing)."""
        for task in list(scheduler.unrunnable):
            key = task.key
            if (
                isinstance(key, str)
                and key.startswith(KEY_PREFIX)
                and RANK_SEPARATOR not in key
                and key not in self.other_ranks
            ):
                scheduler.loop.add_callback(self.unpin, key)

    def unpin(self, key: str) -> None:
        """Let a task stuck without a worker because its pinned workers are gone run
        on any worker (model jobs; see gateway.dask.models)."""
        task = self.scheduler.tasks.get(key)
        if task is None or task.state != "no-worker" or not task.worker_restrictions:
            return
        alive = {worker.address for worker in self.scheduler.running}
        if task.worker_restrictions & alive:
            return  # its worker is there and running (it was only busy)
        task.worker_restrictions = None
        task.loose_restrictions = False
        self.scheduler.transitions({key: "processing"}, stimulus_id=f"computethis-unpin-{key}")

    def release(self, keys: list[str] | None = None) -> int:
        """Stop holding ``keys`` (their outcome is recorded, or the job was cancelled)."""
        keys = [*(keys or ())]
        keys += [rank for key in keys for rank in self.other_ranks.pop(key, ())]
        known = [key for key in keys if key in self.scheduler.tasks]
        if known:
            self.scheduler.client_releases_keys(keys=known, client=HOLDER)
        return len(known)

    def attach(self, keys: list[str] | None = None, client_id: str | None = None) -> list[str]:
        """Make a gateway client want ``keys``, so it hears their outcome (a Future made
        from a key alone does not tell the scheduler); returns the keys it knows."""
        known = [key for key in keys or () if key in self.scheduler.tasks]
        if known and client_id:
            self.scheduler.client_desires_keys(keys=known, client=client_id)
        return known

    def states(
        self,
        keys: list[str] | None = None,
        client_id: str | None = None,
        topics: list[str] | None = None,
    ) -> dict[str, str]:
        """The scheduler state of each known key (unknown keys are left out).

        With ``client_id``, that client is first subscribed to ``topics``, in the same
        step: it hears every event sent after these states were read. (The client's own
        subscription travels on its other connection and may arrive after this call.)
        """
        if client_id:
            for topic in topics or ():
                self.scheduler.subscribe_topic(topic, client_id)
            if RESULT_TOPIC in (topics or ()):
                self._replay_results(keys or [], client_id)
        tasks = self.scheduler.tasks
        return {key: tasks[key].state for key in keys or () if key in tasks}

    def _replay_results(self, keys: list[str], client_id: str) -> None:
        """Send ``client_id`` the outcome events of ``keys`` published before it
        subscribed (from the scheduler's event log): those of a task that still runs,
        published since it was submitted, and those of a direct call.

        A worker reports a job's outcome just before its task finishes: a client that
        subscribes in between reads the task as running and would otherwise wait for
        an event already gone. An event from before the task was submitted belongs to
        an earlier task under the same key (an SPMD job that failed and started again):
        not replayed. A job run as a direct call (:mod:`worker.direct`) has no task: its
        event, marked ``direct``, is all that is left when the gateway that called it
        restarted. Events it hears twice are recorded once."""
        tasks = self.scheduler.tasks
        since: dict[str, float] = {}  # job id: events from then on are replayed
        direct: set[str] = set()  # job ids without a task
        for key in keys:
            job = key[len(KEY_PREFIX) :]
            if key not in tasks:
                direct.add(job)
            elif tasks[key].state not in ("memory", "erred"):
                since[job] = self.submitted_at.get(key, 0.0)
        if not since and not direct:
            return
        replay = []
        for event in self.scheduler.get_events(RESULT_TOPIC):  # (time, message)
            stamp, message = event
            job = message.get("job") if isinstance(message, dict) else None
            if (job in since and stamp >= since[job]) or (job in direct and message.get("direct")):
                replay.append({"op": "event", "topic": RESULT_TOPIC, "event": event})
        if replay:
            self.scheduler.send_all({client_id: replay}, worker_msgs={})
