"""Run one job on a Dask worker: deserialize the call, run it, serialize the outcome.

This is the only place in computethis where user bytes are unpickled.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import dill

from client_sdk.pickling import Pickled, dump_buffers, load_buffers
from wire.envelope import RESULT_TOPIC, STARTED_TOPIC, Envelope, pack
from wire.errors import error_info, exception_info
from wire.limits import PUSH_LIMIT
from worker.live_output import LiveOutput

ANNOUNCE_AFTER = 0.05  # seconds a job runs before the gateway is told it is running
MAX_PICKLED_EXCEPTION = 1 << 20


class JobFailed(Exception):
    """The user's function raised. Carries the packed error envelope.

    Raised (rather than returned) so that Dask's own ``retries`` re-run the job.
    """

    def __init__(self, envelope: bytes) -> None:
        super().__init__(envelope)

    @property
    def envelope(self) -> bytes:
        return self.args[0]


def run_job(job_id: str, payload: bytes, publish: bool = True) -> memoryview:
    """Execute the call in ``payload`` (dill bytes of ``(func, args, kwargs)``).

    Returns a packed :class:`Envelope`; raises :class:`JobFailed` if the function raised.
    It is returned as a memoryview because Dask hands a memoryview result to the
    gateway as a view of the bytes it received, where bytes would be copied once more.
    ``publish``: tell the gateway of the outcome as a Dask event (not for a direct call,
    whose answer carries it: :mod:`worker.direct`).
    """

    def load() -> Callable[[], Any]:
        func, args, kwargs = load_call(payload)
        return lambda: func(*args, **kwargs)

    return run_call(job_id, load, "function", publish)


def run_call(
    job_id: str, load: Callable[[], Callable[[], Any]], what: str, publish: bool = True
) -> memoryview:
    """Run one job's user code: ``load()`` deserializes it (a failure there is a
    ``DeserializationError``) into a call, run with its output captured; its return
    value is pickled (a ``SerializationError`` names ``what`` returned it).

    Returns the packed envelope (see :func:`run_job`), told to the gateway as an event
    when ``publish``; raises :class:`JobFailed` if the user code raised.
    """
    worker = worker_address()
    started = time.time()
    announced_done = announce_start(job_id, worker, started)

    def hand_over(outcome: bytes | memoryview) -> memoryview:
        return deliver(job_id, worker, outcome) if publish else memoryview(outcome)

    output = LiveOutput(job_id, current_worker())

    def finish(
        ok: bool, error: dict[str, Any] | None = None, body: bytes | Pickled = b""
    ) -> bytes | memoryview:
        announced_done()
        output.end()
        return pack(Envelope(ok, worker, started, time.time(), error, body, output.encoded()))

    try:
        call = load()
    except Exception as exc:
        return hand_over(finish(False, deserialization_error(exc)))

    failure: bytes | memoryview | None = None
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            value = call()
    except BaseException as exc:  # noqa: BLE001 - every failure of user code is reported
        failure = finish(False, exception_info(exc, skip_frames=2), pickle_exception(exc))
    if failure is not None:
        # Raised outside the except block: no __context__ pointing at user objects
        # that Dask would then fail to pickle.
        raise JobFailed(bytes(failure))

    try:
        body = dump_buffers(value, index=True)
    except Exception as exc:
        error = error_info(
            "SerializationError",
            f"the {what} returned a {type(value).__name__}, which cannot be pickled "
            f"({type(exc).__name__}: {exc}); return plain data instead",
            traceback.format_exc(),
        )
        return hand_over(finish(False, error))
    outcome = finish(True, body=body)
    del body, value
    return hand_over(outcome)


def deliver(job_id: str, worker: str | None, outcome: bytes | memoryview) -> memoryview:
    """Tell the gateway that the job's outcome is ready, and return it as the task's result.

    The gateway learns of outcomes only from these messages (it holds no Dask futures):
    a small outcome travels in the message and is recorded on arrival; for a larger one
    the message asks the gateway to fetch the task's result from this worker. A function
    that raised is reported by the scheduler instead, once Dask's retries are spent
    (:mod:`scheduler.plugin`).
    """
    if worker is not None:
        from distributed import get_worker

        if len(outcome) <= PUSH_LIMIT:
            message: dict[str, Any] = {"job": job_id, "envelope": bytes(outcome)}
        else:
            message = {"job": job_id, "fetch": True}
        get_worker().log_event(RESULT_TOPIC, message)
    return memoryview(outcome)


def load_call(payload: bytes | memoryview) -> tuple[Any, tuple, dict]:
    """Unpickle a call payload and check its shape.

    Large arrays in the arguments are views of ``payload`` (the memory Dask received
    them in) when the SDK indexed them, not copies.
    """
    call = load_buffers(payload)
    if not (isinstance(call, tuple) and len(call) == 3):
        raise TypeError("payload is not a (function, args, kwargs) tuple")
    func, args, kwargs = call
    if not callable(func) or not isinstance(args, tuple) or not isinstance(kwargs, dict):
        raise TypeError("payload is not a (function, args, kwargs) tuple")
    return func, args, kwargs


def deserialization_error(exc: BaseException) -> dict[str, Any]:
    """Explain why a payload could not be unpickled on this worker."""
    version = ".".join(map(str, sys.version_info[:3]))
    if isinstance(exc, ModuleNotFoundError):
        hint = (
            f"the worker cannot import module {exc.name!r}: install it on the workers "
            "or define the function in your script"
        )
    elif isinstance(exc, TypeError) and "payload is not" in str(exc):
        hint = "the payload must be dill bytes of a (function, args, kwargs) tuple"
    else:
        hint = (
            f"the worker (Python {version}, dill {dill.__version__}) could not unpickle the "
            "payload; check that client and workers run the same Python and dill versions"
        )
    return error_info(
        "DeserializationError", f"{hint} ({type(exc).__name__}: {exc})", traceback.format_exc()
    )


def pickle_exception(exc: BaseException) -> bytes:
    try:
        exc.__traceback__ = None
        data = dill.dumps(exc)
    except Exception:
        return b""
    return data if len(data) <= MAX_PICKLED_EXCEPTION else b""


def current_worker() -> Any | None:
    """The Dask worker running this task; None outside one."""
    try:
        from distributed import get_worker

        return get_worker()
    except ValueError:
        return None


def worker_address() -> str | None:
    """The address of the Dask worker running this task; None outside one."""
    worker = current_worker()
    return worker.address if worker is not None else None


def announce_start(job_id: str, worker: str | None, started: float) -> Callable[[], None]:
    """Tell the gateway the job runs, if it is still running after ANNOUNCE_AFTER seconds.

    Quick jobs send nothing: their start time travels in the envelope, and a start
    message would share the worker's batched stream with the task-finished message
    and delay it. Returns the function to call when the job is done.
    """
    if worker is None:
        return lambda: None
    from distributed import get_worker

    dask_worker = get_worker()
    finished = threading.Event()
    message = {"job": job_id, "worker": worker, "time": started}

    def announce() -> None:
        if not finished.is_set():
            dask_worker.log_event(STARTED_TOPIC, message)

    dask_worker.loop.add_callback(lambda: dask_worker.loop.call_later(ANNOUNCE_AFTER, announce))
    return finished.set
