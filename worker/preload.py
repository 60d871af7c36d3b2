"""What every computethis worker process does as it starts (a Dask preload module).

It imports the job runner now, not when the first job arrives (dill and the SDK's
pickling: ~40 ms of CPU, which with many workers on few cores held up the first jobs),
shortens the worker's batched stream to the scheduler
(:func:`scheduler.config.send_interval`), takes direct calls from the gateway
(:mod:`worker.direct`) and answers what it does with a task (:mod:`worker.task_state`).
"""

from __future__ import annotations

from typing import Any

import worker.runner  # noqa: F401 - imported for its cost, as the worker starts
from scheduler.config import send_interval, shorten_stream
from worker import direct, task_state


def dask_setup(worker: Any) -> None:
    """Dask calls this in each worker process it starts with this preload."""
    shorten_stream(worker.batched_stream, send_interval())
    direct.install(worker)
    task_state.install(worker)
