"""``@compute_this``: turn a function into one that runs on the cluster."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from client_sdk.bulk_submit import submit_many
from client_sdk.client import Client, default_client
from client_sdk.deployment import RemoteClass
from client_sdk.job import Job
from client_sdk.mapping import run_map
from client_sdk.serialization import dumps_call


class RemoteFunction:
    """A function that runs on a computethis worker.

    ``f.compute(*a)`` returns the result; ``f.submit(*a)`` returns a :class:`Job`;
    ``f(*a)`` returns a :class:`DeferredCall` (nothing runs yet); ``f.map(items)``
    runs ``f`` on every item, in chunks of items per job, results in input order;
    ``f.submit_many(items)`` queues one job per item in a few requests;
    ``f.local(*a)`` runs here, in this process.

    Its jobs go to the gateway of :attr:`client` (a :class:`~client_sdk.client.Client`),
    or if that is None to the default client's at the time of each call (see
    :func:`~client_sdk.client.configure`); so do the requests of the :class:`Job` s it
    returns. :meth:`with_client` makes a copy bound to another client.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        timeout: float | None = None,
        retries: int = 0,
        name: str | None = None,
        client: Client | None = None,
        ranks: int | None = None,
    ) -> None:
        if ranks is not None and (not isinstance(ranks, int) or ranks < 1):
            raise ValueError(f"ranks must be a positive int, not {ranks!r}")
        functools.update_wrapper(self, func)
        self.func = func
        self.timeout = timeout
        self.retries = retries
        self.ranks = ranks  # an SPMD function: on this many workers at once
        self.name = name or getattr(func, "__qualname__", None)
        self.client = client
        self._signature = inspect.signature(func)

    def __call__(self, *args: Any, **kwargs: Any) -> DeferredCall:
        """The call, checked against the signature but not sent."""
        self._check_arguments(args, kwargs)
        return DeferredCall(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<computethis function {self.name}>"

    def with_client(self, client: Client | None) -> RemoteFunction:
        """This function with the same options, its jobs sent to ``client``'s gateway
        (``None``: the default client's)."""
        return RemoteFunction(
            self.func,
            timeout=self.timeout,
            retries=self.retries,
            name=self.name,
            client=client,
            ranks=self.ranks,
        )

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function in this process (no cluster, no network)."""
        self._not_spmd("local")
        return self.func(*args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Job:
        """Send one call to the gateway and return its :class:`Job` at once."""
        self._check_arguments(args, kwargs)
        client = self.client or default_client()
        payload = dumps_call(self.func, args, kwargs)
        info = client.transport.post_call("/jobs", payload, self.options()).json()
        return Job(info["id"], info, client=self.client)

    def compute(self, *args: Any, **kwargs: Any) -> Any:
        """Run one call on a worker and return its result (or raise its exception).
        Ctrl-C (``KeyboardInterrupt``) while it waits cancels the job.

        The call is posted with ``?wait=``, so a quick job's result comes back in the
        same HTTP exchange; a longer one is then long-polled. Calls that other threads
        make meanwhile to the same client travel together, one request per group (see
        :mod:`client_sdk.coalesce`).
        """
        self._check_arguments(args, kwargs)
        if self.ranks:  # one job on several workers: not coalesced with others
            job = self.submit(*args, **kwargs)
            try:
                return job.result()
            except KeyboardInterrupt:
                job.cancel()
                raise
        client = self.client or default_client()
        return client.coalescer.compute(self.options(), dumps_call(self.func, args, kwargs))

    def submit_many(self, items: Iterable[Any]) -> list[Job]:
        """Queue ``func(item)`` for each item, one job per item; their :class:`Job` s in
        input order.

        The calls go to the gateway in slices (up to 1000 calls and 16 MiB per request,
        stored in one transaction and sent to Dask in one graph update), so F jobs cost
        a few requests rather than F. A call whose pickle is over 64 KiB is posted on
        its own. Unlike :meth:`map`, every item is its own job: use this for long calls
        whose jobs you want to follow, cancel or collect one by one.
        """
        self._not_spmd("submit_many")
        client = self.client or default_client()
        infos = submit_many(
            client.transport,
            self.func,
            items,
            params=self.options(),
            check_arguments=self._check_arguments,
        )
        return [Job(info["id"], info, client=self.client) for info in infos]

    def options(self, wait: float | None = None) -> dict[str, Any]:
        """The query parameters of this function's jobs."""
        params: dict[str, Any] = {}
        if self.timeout is not None:
            params["timeout"] = self.timeout
        if self.retries:
            params["retries"] = self.retries
        if self.name:
            params["name"] = self.name[:200]
        if self.ranks:
            params["ranks"] = self.ranks
        if wait:
            params["wait"] = wait
        return params

    def map(
        self,
        items: Iterable[Any],
        *,
        chunksize: int | None = None,
        return_exceptions: bool = False,
        progress: bool = False,
    ) -> list[Any]:
        """Run ``func(item)`` for each item on the cluster; results in input order.

        Items are cut into chunks, one job per chunk, run in parallel; results are
        collected as chunks finish. ``chunksize=None`` picks the size: about 4 chunks
        per worker when ``len(items)`` is known (at most 10,000 items and about 8 MiB
        of pickled input per chunk); without ``len`` (a generator is read lazily)
        chunks start at 1 item and double after every ``workers`` chunks up to that
        cap. ``chunksize=1`` runs one job per item.

        Each item fails on its own: with ``return_exceptions=True`` its exception is
        put in its place in the list; otherwise the first failed item (in input order)
        raises its exception, as ``compute`` would, and chunks not yet sent are
        dropped (jobs already sent finish on the cluster). An exception that could not
        be pickled arrives as a :class:`~client_sdk.errors.RemoteError`. A chunk job
        that fails as a whole (worker died, timeout) fails each of its items.
        ``retries`` re-runs a failed item; ``timeout`` applies per item (a chunk job
        gets ``timeout`` times its item count). ``progress=True`` shows a tqdm bar of
        items done on stderr. Ctrl-C (``KeyboardInterrupt``) cancels the chunk jobs not
        yet collected.
        """
        self._not_spmd("map")
        return run_map(
            self.client or default_client(),
            self.func,
            items,
            timeout=self.timeout,
            retries=self.retries,
            name=self.name,
            check_arguments=self._check_arguments,
            chunksize=chunksize,
            return_exceptions=return_exceptions,
            progress=progress,
        )

    def _check_arguments(self, args: tuple, kwargs: dict) -> None:
        try:  # an SPMD function's first parameter is the communicator, not the caller's
            self._signature.bind(*((None,) if self.ranks else ()), *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None

    def _not_spmd(self, what: str) -> None:
        if self.ranks:
            raise TypeError(
                f"{self.name} runs on {self.ranks} workers at once (ranks={self.ranks}): "
                f"use .compute() or .submit(), not .{what}()"
            )


class DeferredCall:
    """A call not yet sent: ``.run()``/``.compute()`` runs it, ``.submit()`` queues it."""

    def __init__(self, function: RemoteFunction, args: tuple, kwargs: dict) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"<deferred call of {self.function.name}>"

    def submit(self) -> Job:
        """Queue the call as a job (see :meth:`RemoteFunction.submit`)."""
        return self.function.submit(*self.args, **self.kwargs)

    def compute(self) -> Any:
        """Run the call and return its result (see :meth:`RemoteFunction.compute`)."""
        return self.function.compute(*self.args, **self.kwargs)

    run = compute


def compute_this(
    func: Callable[..., Any] | None = None,
    *,
    timeout: float | None = None,
    retries: int = 0,
    name: str | None = None,
    client: Client | None = None,
    ranks: int | None = None,
) -> Any:
    """Decorate a function so it runs on the cluster.

    Works bare (``@compute_this``), called (``@compute_this()``) or with options
    (``@compute_this(timeout=60, retries=2)``). ``timeout`` stops a job that runs
    longer (seconds); ``retries`` re-runs a job that raised; ``name`` labels its jobs
    (default: the function's qualified name); ``client`` sends them to that
    :class:`~client_sdk.client.Client`'s gateway (default: the default client's).
    ``ranks=N`` runs each call on N workers at once (an SPMD job): the function's first
    parameter is then a communicator (``comm.rank``, ``comm.size``, ``comm.send``,
    ``comm.recv``, collectives) and the result is the list of every rank's return value.
    """

    def wrap(target: Callable[..., Any]) -> RemoteFunction | RemoteClass:
        if inspect.isclass(target):  # a class: deployed once, its methods called many times
            return RemoteClass(target, name=name, client=client, timeout=timeout, retries=retries)
        return RemoteFunction(
            target, timeout=timeout, retries=retries, name=name, client=client, ranks=ranks
        )

    return wrap(func) if func is not None else wrap
