"""Deployed classes: build an instance once on a worker, call its methods many times.

    @compute_this
    class Counter:
        def __init__(self, start): self.n = start
        def add(self, k): self.n += k; return self.n

    c = Counter.deploy(10, replicas=2)   # a Deployment: __init__ runs on the workers
    c.add.compute(1)                     # a method call is a job on a replica
    c.close()

The class goes by value with its constructor's arguments (the *constructor payload*);
each call is dill bytes of ``(method name, args, kwargs)``. See docs/models.md.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterable
from typing import Any

from client_sdk import outcomes
from client_sdk.adapters import to_wire
from client_sdk.client import Client, default_client
from client_sdk.errors import SerializationError
from client_sdk.job import Job
from client_sdk.serialization import dumps_call
from wire.http import JOB_HEADER

POLL_WAIT = 30.0


def public_methods(cls: type) -> list[str]:
    """The names of ``cls``'s public methods (those a deployment can call); of an
    ``@artifacts`` class, those it made remote."""
    remote = getattr(cls, "__computethis_local_methods__", None)
    if remote is not None:
        return sorted(remote)
    return sorted(
        name
        for name, value in inspect.getmembers(cls)
        if not name.startswith("_") and inspect.isfunction(value)
    )


def pickled(what: str, value: tuple) -> Any:
    """dill bytes of the 3-tuple ``value``; SerializationError naming the type that
    cannot be pickled, before anything is sent."""
    first, args, kwargs = value
    args, kwargs = to_wire(args), to_wire(kwargs)
    try:
        return dumps_call(first, args, kwargs)
    except Exception as exc:
        culprit = _unpicklable(list(args) + list(kwargs.values()))
        name = type(culprit).__name__ if culprit is not None else type(first).__name__
        raise SerializationError(
            {
                "type": "SerializationError",
                "message": f"{what}: a {name} cannot be sent to a worker "
                f"({type(exc).__name__}: {exc}); pass plain data (arrays, lists) instead",
            }
        ) from None


def _unpicklable(values: list[Any]) -> Any:
    for value in values:
        try:
            dumps_call(None, (value,), {})
        except Exception:
            return value
    return None


class RemoteMethod:
    """One method of a deployment: ``compute``, ``submit``, ``map``; calling it is
    ``compute``."""

    def __init__(self, deployment: Deployment, name: str) -> None:
        self.deployment = deployment
        self.name = name

    def __repr__(self) -> str:
        return f"<method {self.name} of deployment {self.deployment.id}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.compute(*args, **kwargs)

    def compute(self, *args: Any, **kwargs: Any) -> Any:
        """Run the method on a replica and return its result (or raise its exception)."""
        transport = self.deployment.client.transport
        payload = pickled(f"{self.name}()", (self.name, args, kwargs))
        response = transport.post_call(
            self.deployment.calls_path,
            payload,
            {**self.deployment.call_options(self.name), "wait": POLL_WAIT},
            timeout=POLL_WAIT + 30,
            key=uuid.uuid4().hex,
        )
        job_id = response.headers[JOB_HEADER]
        done, value = outcomes.read_outcome(job_id, response)
        return value if done else outcomes.wait_for_result(transport, job_id)

    def submit(self, *args: Any, **kwargs: Any) -> Job:
        """Queue the call and return its :class:`~client_sdk.job.Job` at once."""
        client = self.deployment.client
        payload = pickled(f"{self.name}()", (self.name, args, kwargs))
        params = self.deployment.call_options(self.name)
        info = client.transport.post_call(self.deployment.calls_path, payload, params).json()
        return Job(info["id"], info, client=self.deployment.bound_client)

    def map(self, items: Iterable[Any]) -> list[Any]:
        """Call the method on each item (one call per item, spread over the replicas);
        the results in input order. The first failed call raises its exception."""
        jobs = [self.submit(item) for item in items]
        return [job.result() for job in jobs]


class Deployment:
    """A deployed class on a gateway: its methods are attributes (``d.add.compute(1)``).

    Get one from ``Cls.deploy(...)`` or reattach with :meth:`from_id`.
    """

    def __init__(
        self,
        deployment_id: str,
        info: dict[str, Any] | None = None,
        *,
        client: Client | None = None,
        methods: list[str] | None = None,
        timeout: float | None = None,
        retries: int = 0,
    ) -> None:
        self.id = deployment_id
        self.bound_client = client
        self.timeout = timeout  # of each call (seconds), None: no limit
        self.retries = retries  # re-runs of a call whose method raised
        self._info = info or {}
        self._methods = methods if methods is not None else self._info.get("methods")

    @classmethod
    def from_id(
        cls,
        deployment_id: str,
        *,
        client: Client | None = None,
        timeout: float | None = None,
        retries: int = 0,
    ) -> Deployment:
        """Reattach to a deployment made earlier, possibly by another process."""
        deployment = cls(deployment_id, client=client, timeout=timeout, retries=retries)
        deployment.info()
        return deployment

    def __repr__(self) -> str:
        return f"<Deployment {self.id} of {self._info.get('name')}>"

    def __getattr__(self, name: str) -> RemoteMethod:
        if name.startswith("_") or (self._methods is not None and name not in self._methods):
            raise AttributeError(
                f"deployment {self.__dict__.get('id')} has no public method {name!r}"
                + (f" (it has {', '.join(self._methods)})" if self._methods else "")
            )
        return RemoteMethod(self, name)

    @property
    def client(self) -> Client:
        """The client whose gateway has the deployment."""
        return self.bound_client or default_client()

    @property
    def calls_path(self) -> str:
        """Where its calls are posted."""
        return f"/deployments/{self.id}/calls"

    def call_options(self, method: str) -> dict[str, Any]:
        """The query parameters of a call: its job's name (``Class.method``), timeout
        and retries."""
        params: dict[str, Any] = {
            "name": f"{self._info.get('name') or 'deployment'}.{method}"[:200]
        }
        if self.timeout is not None:
            params["timeout"] = self.timeout
        if self.retries:
            params["retries"] = self.retries
        return params

    def info(self) -> dict[str, Any]:
        """The deployment's record from the gateway (status, replicas, their workers)."""
        self._info = self.client.transport.request("GET", f"/deployments/{self.id}").json()
        self._methods = self._info.get("methods")
        return self._info

    def status(self) -> str:
        """``starting``, ``ready``, ``failed`` or ``closed``."""
        return self.info()["status"]

    def wait_ready(self, timeout: float | None = None) -> Deployment:
        """Wait until every replica is built; raises the constructor's exception (and
        closes the deployment) if one failed."""
        info = self._info if self._info.get("replica_info") else self.info()
        try:
            for replica in info["replica_info"]:
                Job(replica["construct_job"], client=self.bound_client).result(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Close the deployment: its replicas are dropped from the workers' memory, its
        queued calls cancelled; calls afterwards fail (HTTP 410, ``deployment_closed``)."""
        self.client.transport.request("DELETE", f"/deployments/{self.id}")

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def deploy(
    cls: type,
    args: tuple,
    kwargs: dict,
    *,
    replicas: int = 1,
    name: str | None = None,
    client: Client | None = None,
    artifacts: dict[str, dict[str, Any]] | None = None,
    wait: bool = True,
    timeout: float | None = None,
    retries: int = 0,
) -> Deployment:
    """Deploy ``cls(*args, **kwargs)`` on ``replicas`` workers (see :class:`Deployment`);
    ``artifacts``: name → ``{"format", "sha256", "skeleton"}`` of artifacts uploaded
    before. With ``wait``, returns once every replica is built. ``timeout`` and
    ``retries`` apply to each construct step and each method call."""
    if not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"replicas must be a positive int, not {replicas!r}")
    methods = public_methods(cls)
    payload = pickled(
        f"{cls.__name__}.deploy()",
        (cls, args, {"kwargs": kwargs, "artifacts": artifacts or {}}),
    )
    params: dict[str, Any] = {
        "replicas": replicas,
        "name": (name or cls.__qualname__)[:200],
        "methods": ",".join(methods),
    }
    digests = sorted({item["sha256"] for item in (artifacts or {}).values()})
    if digests:
        params["artifacts"] = ",".join(digests)
    if timeout is not None:
        params["timeout"] = timeout
    if retries:
        params["retries"] = retries
    transport = (client or default_client()).transport
    info = transport.request(
        "POST",
        "/deployments",
        params=params,
        data=payload,
        headers={"Content-Type": "application/octet-stream"},
        timeout=120,
    ).json()
    deployment = Deployment(
        info["id"], info, client=client, methods=methods, timeout=timeout, retries=retries
    )
    return deployment.wait_ready() if wait else deployment


class RemoteClass:
    """A class decorated with ``@compute_this``: :meth:`deploy` builds it on workers.
    ``Cls.local(*a)`` builds it here; the class itself is :attr:`cls`."""

    def __init__(
        self,
        cls: type,
        *,
        name: str | None = None,
        client: Client | None = None,
        timeout: float | None = None,
        retries: int = 0,
    ) -> None:
        self.cls = cls
        self.name = name or cls.__qualname__
        self.client = client
        self.timeout = timeout
        self.retries = retries
        self.__doc__ = cls.__doc__
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__

    def __repr__(self) -> str:
        return f"<computethis class {self.name}>"

    def deploy(self, *args: Any, replicas: int = 1, wait: bool = True, **kwargs: Any) -> Deployment:
        """Build ``replicas`` instances (``cls(*args, **kwargs)``) on workers; returns the
        :class:`Deployment` once they are built (raises ``__init__``'s exception if one
        failed: the deployment is closed then)."""
        try:
            inspect.signature(self.cls).bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None
        return deploy(
            self.cls,
            args,
            kwargs,
            replicas=replicas,
            name=self.name,
            client=self.client,
            wait=wait,
            timeout=self.timeout,
            retries=self.retries,
        )

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """An instance built here, in this process."""
        return self.cls(*args, **kwargs)
