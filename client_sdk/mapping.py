"""``RemoteFunction.map``: items cut into chunk jobs, results streamed back in order.

Each chunk is one job whose call is ``apply_chunk(func, items)`` (see
:mod:`client_sdk.chunk`). A few daemon threads post chunk jobs and long-poll their
results while the calling thread cuts the input into chunks (lazily, so a generator
is only read as far as the jobs in flight need) and puts results in input order.

How big a chunk is, when ``chunksize`` is not given:

* With ``len(items)`` known: about ``CHUNKS_PER_WORKER`` chunks per worker (the
  worker count comes from ``GET /health``), i.e. ``ceil(len / (4 * workers))``.
* Without ``len``: chunks start at 1 item and double after every ``workers``
  chunks, so work starts at once and large inputs still need few jobs.
* Either way a chunk holds at most ``MAX_CHUNK_ITEMS`` items and, judging by the
  pickled size of the first few items, about ``TARGET_CHUNK_BYTES`` of input. A chunk
  whose payload still comes out above ``SPLIT_CHUNK_BYTES`` is split in halves.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice, repeat
from typing import Any

import dill

from client_sdk.abandon import AbandonableJobs
from client_sdk.chunk import Outcome, apply_chunk
from client_sdk.client import Client
from client_sdk.errors import ApiError, GatewayUnreachable
from client_sdk.job import Job
from client_sdk.pickling import Pickled
from client_sdk.serialization import _as_local_class, dumps_call

CHUNKS_PER_WORKER = 4
MAX_CHUNK_ITEMS = 10_000
TARGET_CHUNK_BYTES = 8 << 20
SPLIT_CHUNK_BYTES = 32 << 20
SAMPLE_ITEMS = 16
MIN_IN_FLIGHT = 8
MAX_IN_FLIGHT = 32
MAX_JOB_TIMEOUT = 30 * 24 * 3600.0


def auto_chunksize(length: int | None, workers: int, item_bytes: float = 0.0) -> int:
    """The chunk length for ``length`` items on ``workers`` workers (see module docstring).

    For an unknown ``length`` this is the largest chunk the doubling may reach.
    """
    cap = MAX_CHUNK_ITEMS
    if item_bytes > 0:
        cap = min(cap, max(1, int(TARGET_CHUNK_BYTES // item_bytes)))
    if length is None:
        return cap
    wanted = math.ceil(length / (CHUNKS_PER_WORKER * max(1, workers)))
    return max(1, min(cap, wanted))


def chunk_sizes(length: int | None, workers: int, item_bytes: float = 0.0) -> Iterator[int]:
    """The length of each successive chunk (endless; the input decides where it stops)."""
    cap = auto_chunksize(length, workers, item_bytes)
    if length is not None:
        while True:
            yield cap
    size, count = 1, 0
    while True:
        yield min(size, cap)
        count += 1
        if count % max(1, workers) == 0:
            size *= 2


def iter_chunks(items: Iterable[Any], sizes: Iterator[int]) -> Iterator[list[Any]]:
    """Cut ``items`` into lists of the given sizes, reading only as far as asked."""
    iterator = iter(items)
    for size in sizes:
        chunk = list(islice(iterator, size))
        if not chunk:
            return
        yield chunk


def estimate_item_bytes(sample: list[Any]) -> float:
    """Average pickled size of the items in ``sample`` (0.0 if they do not pickle)."""
    if not sample:
        return 0.0
    try:
        return len(dill.dumps(sample, protocol=dill.HIGHEST_PROTOCOL)) / len(sample)
    except Exception:
        return 0.0


def cluster_workers(client: Client) -> int:
    """Workers connected to the client's scheduler, from ``GET /health``; 1 when degraded."""
    try:
        health = client.transport.request("GET", "/health").json()
        return max(1, int(health.get("workers") or 1))
    except ApiError:
        return 1


def in_flight_limit(workers: int) -> int:
    """How many chunk jobs one map keeps submitted but not yet collected."""
    return max(MIN_IN_FLIGHT, min(MAX_IN_FLIGHT, CHUNKS_PER_WORKER * workers))


class ChunkSender:
    """Posts one chunk as a job (split if its payload is too big) and waits for it.

    Its chunk jobs posted and not yet collected are recorded in :attr:`jobs`, to be
    cancelled if the map is interrupted.
    """

    def __init__(
        self,
        client: Client,
        func: Callable[[Any], Any],
        *,
        timeout: float | None,
        retries: int,
        name: str | None,
    ) -> None:
        self.client = client
        self.func = func
        self.timeout = timeout
        self.retries = retries
        self.name = name
        self.jobs = AbandonableJobs()

    def run(self, items: list[Any]) -> list[Outcome]:
        """The outcomes of ``items``; a failure of the whole job becomes each item's."""
        jobs: list[tuple[Job, int]] = []
        try:
            for payload, count in self._payloads(items):
                jobs.append((self._post(payload, count), count))
            return [outcome for job, count in jobs for outcome in self._outcomes(job, count)]
        finally:
            self.jobs.collected(job.id for job, _ in jobs)

    def abandon(self) -> None:
        """Cancel every chunk job posted and not collected (the map was interrupted),
        and any that a thread posts from now on."""
        self.jobs.abandon(self.client.transport)

    def _payloads(self, items: list[Any]) -> Iterator[tuple[bytes | Pickled, int]]:
        payload = dumps_call(apply_chunk, (self.func, items, self.retries), {})
        if len(payload) <= SPLIT_CHUNK_BYTES or len(items) == 1:
            yield payload, len(items)
            return
        del payload
        half = len(items) // 2
        yield from self._payloads(items[:half])
        yield from self._payloads(items[half:])

    def _post(self, payload: bytes | Pickled, count: int) -> Job:
        params: dict[str, Any] = {"name": f"{self.name or 'function'} map:{count}"[:200]}
        if self.timeout is not None:
            params["timeout"] = min(MAX_JOB_TIMEOUT, self.timeout * count)
        info = self.client.transport.post_call("/jobs", payload, params).json()
        self.jobs.created(info["id"])  # cancelled at once if the map was interrupted
        return Job(info["id"], info, client=self.client)

    @staticmethod
    def _outcomes(job: Job, count: int) -> list[Outcome]:
        try:
            outcomes = job.result()
        except (ApiError, GatewayUnreachable):
            raise
        except Exception as exc:  # the chunk job failed as a whole (worker died, timeout...)
            return [(False, exc)] * count
        return [(ok, value if ok else _localized(value)) for ok, value in outcomes]


def _localized(exc: BaseException) -> BaseException:
    """The caller's own exception class where it was shipped by value, with the remote
    traceback as a note (as ``func.compute`` raises it)."""
    exc = _as_local_class(exc)
    text = getattr(exc, "remote_traceback", "")
    if text and hasattr(exc, "add_note") and not getattr(exc, "__notes__", None):
        exc.add_note(f"Remote traceback (computed on a worker):\n{text.rstrip()}")
    return exc


class ChunkPipeline:
    """Daemon threads that run chunks through a :class:`ChunkSender`, ``limit`` at a time.

    Daemon threads, so a map that raised early never holds up interpreter exit while
    its remaining chunk jobs finish on the cluster (they are left to finish there).
    """

    def __init__(self, run: Callable[[list[Any]], list[Outcome]], limit: int) -> None:
        self._run = run
        self.limit = limit
        self.in_flight = 0
        self._tasks: queue.Queue[tuple[int, list[Any]] | None] = queue.Queue()
        self._done: queue.Queue[tuple[int, int, list[Outcome] | None, BaseException | None]] = (
            queue.Queue()
        )
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def put(self, index: int, items: list[Any]) -> None:
        """Queue a chunk; a thread picks it up at once (``in_flight`` < ``limit``)."""
        self.in_flight += 1
        self._tasks.put((index, items))
        if len(self._threads) < min(self.limit, self.in_flight):
            thread = threading.Thread(target=self._loop, name="computethis-map", daemon=True)
            thread.start()
            self._threads.append(thread)

    def get(self) -> tuple[int, int, list[Outcome]]:
        """The next chunk to finish, as ``(index, item count, outcomes)``; raises its error."""
        index, count, outcomes, error = self._done.get()
        self.in_flight -= 1
        if error is not None:
            raise error
        assert outcomes is not None
        return index, count, outcomes

    def stop(self) -> None:
        """Let the threads end; chunks not yet posted are dropped. Once is enough."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for _ in self._threads:
            self._tasks.put(None)

    def _loop(self) -> None:
        while (task := self._tasks.get()) is not None:
            if self._stopped.is_set():
                continue
            index, items = task
            try:
                self._done.put((index, len(items), self._run(items), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                self._done.put((index, len(items), None, exc))


def run_map(
    client: Client,
    func: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    timeout: float | None,
    retries: int,
    name: str | None,
    check_arguments: Callable[[tuple, dict], None],
    chunksize: int | None = None,
    return_exceptions: bool = False,
    progress: bool = False,
) -> list[Any]:
    """Run ``func`` over ``items`` in chunk jobs on the client's gateway, once
    ``check_arguments`` accepts a call with one argument; ``timeout``, ``retries`` and
    ``name`` are the function's job options. See
    :meth:`~client_sdk.decorator.RemoteFunction.map`."""
    if chunksize is not None and (
        isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1
    ):
        raise ValueError(f"chunksize must be a positive int or None, got {chunksize!r}")
    check_arguments((None,), {})
    length = _length(items)
    iterator: Iterator[Any] = iter(items)
    head = list(islice(iterator, SAMPLE_ITEMS))
    if not head:
        return []
    workers = cluster_workers(client)
    if chunksize is None:
        sizes = chunk_sizes(length, workers, estimate_item_bytes(head))
    else:
        sizes = repeat(chunksize)
    sender = ChunkSender(client, func, timeout=timeout, retries=retries, name=name)
    pipeline = ChunkPipeline(sender.run, in_flight_limit(workers))
    collector = _InOrder(return_exceptions)
    bar = _progress_bar(progress, length)
    try:
        for index, chunk in enumerate(iter_chunks(chain(head, iterator), sizes)):
            while pipeline.in_flight >= pipeline.limit:
                collector.add(*_advance(pipeline, bar))
            pipeline.put(index, chunk)
        while pipeline.in_flight:
            collector.add(*_advance(pipeline, bar))
        return collector.results
    except KeyboardInterrupt:  # Ctrl-C: nobody else holds the chunk jobs
        pipeline.stop()
        sender.abandon()
        raise
    finally:
        pipeline.stop()
        if bar is not None:
            bar.close()


class _InOrder:
    """Holds finished chunks until every earlier chunk is in, then emits their values."""

    def __init__(self, return_exceptions: bool) -> None:
        self.return_exceptions = return_exceptions
        self.results: list[Any] = []
        self._waiting: dict[int, list[Outcome]] = {}
        self._next = 0

    def add(self, index: int, outcomes: list[Outcome]) -> None:
        """Record chunk ``index``; raise the first failed item (input order) unless kept."""
        self._waiting[index] = outcomes
        while self._next in self._waiting:
            for ok, value in self._waiting.pop(self._next):
                if not ok and not self.return_exceptions:
                    raise value
                self.results.append(value)
            self._next += 1


def _advance(pipeline: ChunkPipeline, bar: Any) -> tuple[int, list[Outcome]]:
    index, count, outcomes = pipeline.get()
    if bar is not None:
        bar.update(count)
    return index, outcomes


def _progress_bar(enabled: bool, total: int | None) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="item", file=sys.stderr, dynamic_ncols=True)


def _length(items: Iterable[Any]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None
