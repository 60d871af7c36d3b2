"""A worker handler telling the gateway what the worker is doing with a task.

A cancel restarts the worker running the job (the only way to stop a Python thread).
A task only given to a worker, waiting there behind another (a model call pinned to its
replica's worker), is dropped by the cancel alone: restarting that worker would stop
the job it does run, and lose every model replica it holds. The gateway asks this
handler which of the two it is (:meth:`gateway.dask.submit.Submitter.cancel`).
"""

from __future__ import annotations

from typing import Any

HANDLER = "computethis_task_state"
# Worker task states in which the task's code is (still) running on a thread.
RUNNING_STATES = frozenset({"executing", "long-running", "cancelled", "resumed"})


def install(worker: Any) -> None:
    """Register the handler on ``worker`` (from the worker preload)."""

    def task_state(key: str) -> str | None:
        """The worker's state of ``key``'s task; None if it has none."""
        task = worker.state.tasks.get(key)
        return None if task is None else task.state

    worker.handlers[HANDLER] = task_state
