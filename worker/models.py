"""Run the jobs of deployed model classes on a Dask worker.

A *replica* is an instance of a deployed class, built once in a worker process and
kept in :data:`REPLICAS` (keyed by deployment id and replica number): its first job
(the "construct" step, or whichever call comes first on this worker) unpickles the
constructor payload, loads the artifacts and runs ``__init__``; later calls find it
and only run the method. A worker runs one job at a time, so a replica runs one call at
a time. If its worker dies, a call runs on another worker and rebuilds it there from
the stored constructor (the instance's in-memory state starts again).

Artifacts arrive as bytes (Dask keeps them in the worker's memory once fetched) and
are loaded in their framework's own format (:mod:`client_sdk.artifact_formats`) into a
memory-bounded LRU keyed by SHA-256 (:mod:`worker.model_cache`).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
import time
import traceback
from typing import Any

from client_sdk.adapters import from_wire
from client_sdk.pickling import dump_buffers, load_buffers
from wire.envelope import Envelope, pack
from wire.errors import error_info, exception_info
from wire.http import CONSTRUCT_PAYLOAD
from worker.live_output import LiveOutput
from worker.model_cache import LOADED
from worker.runner import (
    JobFailed,
    announce_start,
    current_worker,
    deliver,
    deserialization_error,
    pickle_exception,
    worker_address,
)

REPLICAS: dict[tuple[str, int], Any] = {}
_lock = threading.Lock()
LOCAL_METHODS = "__computethis_local_methods__"  # see client_sdk.models.artifacts


class DeploymentClosed(Exception):
    """The deployment was closed before this call ran."""


def run_model(
    job_id: str,
    payload: bytes | memoryview,
    deployment_id: str,
    replica: int,
    constructor: bytes | None,
    artifacts: dict[str, bytes],
) -> memoryview:
    """Run one job of a deployment on its replica in this worker process.

    ``payload`` is :data:`wire.http.CONSTRUCT_PAYLOAD` for the construct step, else
    dill bytes of ``(method name, args, kwargs)``; ``constructor`` the deployment's
    constructor payload (None once closed); ``artifacts`` the artifacts' bytes by SHA-256.
    Returns a packed envelope like :func:`worker.runner.run_job`; raises
    :class:`JobFailed` if ``__init__`` or the method raised.
    """
    worker = worker_address()
    started = time.time()
    announced_done = announce_start(job_id, worker, started)
    output = LiveOutput(job_id, current_worker())

    def finish(ok: bool, error: dict[str, Any] | None = None, body: Any = b"") -> Any:
        announced_done()
        output.end()
        return pack(Envelope(ok, worker, started, time.time(), error, body, output.encoded()))

    try:
        call = None if bytes(payload[:64]) == CONSTRUCT_PAYLOAD else _load_call(payload)
    except Exception as exc:
        return deliver(job_id, worker, finish(False, deserialization_error(exc)))

    failure = None
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            instance = replica_instance(deployment_id, replica, constructor, artifacts)
            value = None
            if call is not None:
                method, args, kwargs = call
                with _without_gradients(instance):
                    value = getattr(instance, method)(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - every failure of user code is reported
        failure = finish(False, exception_info(exc, skip_frames=1), pickle_exception(exc))
    if failure is not None:
        raise JobFailed(bytes(failure))

    try:
        body = dump_buffers(value, index=True)
    except Exception as exc:
        error = error_info(
            "SerializationError",
            f"the method returned a {type(value).__name__}, which cannot be pickled "
            f"({type(exc).__name__}: {exc}); return plain data instead",
            traceback.format_exc(),
        )
        return deliver(job_id, worker, finish(False, error))
    return deliver(job_id, worker, finish(True, body=body))


def replica_instance(
    deployment_id: str, replica: int, constructor: bytes | None, artifacts: dict[str, bytes]
) -> Any:
    """The replica's instance in this process, built on first use."""
    key = (deployment_id, replica)
    with _lock:
        instance = REPLICAS.get(key)
    if instance is not None:
        return instance
    if constructor is None:
        raise DeploymentClosed(f"deployment {deployment_id} was closed: deploy the class again")
    cls, args, extra = load_buffers(constructor)
    kwargs, specs = extra["kwargs"], extra.get("artifacts", {})
    local = cls.__dict__.get(LOCAL_METHODS)
    if local:  # an NpuModel subclass: its own methods run here, not remotely again
        for name, function in local.items():
            setattr(cls, name, function)
    loaded = {name: _artifact(item, artifacts) for name, item in specs.items()}
    instance = cls.__new__(cls)
    for name, model in loaded.items():
        setattr(instance, name, model)
    instance.__init__(*from_wire(tuple(args)), **from_wire(dict(kwargs)))
    for name, model in loaded.items():  # an __init__ that reset them gets them back
        setattr(instance, name, model)
    with _lock:
        return REPLICAS.setdefault(key, instance)


def drop_deployment(deployment_id: str) -> int:
    """Forget this process's replicas of a closed deployment; how many there were."""
    with _lock:
        keys = [key for key in REPLICAS if key[0] == deployment_id]
        for key in keys:
            del REPLICAS[key]
    return len(keys)


def _artifact(item: dict[str, Any], artifacts: dict[str, bytes]) -> Any:
    digest = item["sha256"]
    data = artifacts.get(digest)
    if data is None:
        raise LookupError(
            f"artifact {digest} is not on the gateway any more (deleted?): upload it again "
            "and deploy the class again"
        )
    return LOADED.get(digest, lambda: _checked(digest, data, item))


def _checked(digest: str, data: bytes, item: dict[str, Any]) -> tuple[Any, int]:
    from client_sdk.artifact_formats import load_artifact

    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ValueError(f"artifact {digest} arrived with SHA-256 {actual}: not loaded")
    return load_artifact(data, item["format"], item.get("skeleton")), len(data)


def _load_call(payload: bytes | memoryview) -> tuple[str, tuple, dict]:
    call = load_buffers(payload)
    if not (
        isinstance(call, tuple)
        and len(call) == 3
        and isinstance(call[0], str)
        and isinstance(call[1], tuple)
        and isinstance(call[2], dict)
    ):
        raise TypeError("payload is not a (method name, args, kwargs) tuple")
    method, args, kwargs = call
    return method, from_wire(args), from_wire(kwargs)


@contextlib.contextmanager
def _without_gradients(instance: Any) -> Any:
    """PyTorch models answer without autograd (its results would not pickle otherwise)."""
    torch = sys.modules.get("torch")
    if torch is None or not any(
        isinstance(value, torch.nn.Module) for value in vars(instance).values()
    ):
        yield
        return
    with torch.no_grad():
        yield
