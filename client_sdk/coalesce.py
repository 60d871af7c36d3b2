"""``compute`` calls that threads of one process make at the same time travel together.

Calls to the same gateway with the same options (``timeout``, ``retries``, ``name``)
share a lane. A call made while no other call of its lane is in flight is posted
alone to ``POST /jobs?wait``: one request, answered with its result. A call made
while others are in flight is queued instead. One batch at a time per lane, a sender
thread posts everything queued to ``POST /batches?wait``: one request, one
transaction and one Dask graph update for all of those calls, whose answer streams
each call's outcome as it finishes. Calls queued while a batch is being stored go in
the next one. So N threads calling at once cost the gateway a few requests per round
instead of N, as Dask's own client sends the messages of all its threads in batches.

A batch the gateway refuses (4xx) is not the callers' error: each of its calls is then
posted alone, and gets its own answer. A forked child starts with no lanes.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from urllib3.exceptions import ProtocolError, ReadTimeoutError

from client_sdk import transport
from client_sdk.abandon import cancel_abandoned
from client_sdk.collect import as_completed, outcomes_into, read_frames
from client_sdk.config import settings
from client_sdk.errors import ApiError, ComputeThisError, GatewayUnreachable
from client_sdk.job import POLL_WAIT, Job
from client_sdk.pickling import Pickled
from wire import batch_body, limits
from wire.http import JOB_HEADER
from wire.outcome_frames import MEDIA_TYPE

if TYPE_CHECKING:
    from client_sdk.decorator import RemoteFunction

# A batch holds a sender thread (and a connection) while it is stored and while its
# outcomes stream. Idle senders are reused. Every batch in flight has callers blocked on
# it, so there are never more senders than callers: no cap of their own, which would
# hold the batches past it until some batch's jobs all ended.
SENDER_THREADS = 1 << 20
Frames = Iterator[tuple[dict[str, Any], bytes | memoryview]]


@dataclass(eq=False)
class QueuedCall:
    """One ``compute`` call waiting in a batch, and what became of it."""

    payload: bytes
    done: threading.Event = field(default_factory=threading.Event)
    job: Job | None = None
    error: BaseException | None = None
    alone: bool = False  # the batch was refused: the caller posts this call by itself
    abandoned: bool = False  # the caller was interrupted: its job is to be cancelled


@dataclass(eq=False)
class Lane:
    """The calls in flight to one gateway with one set of options."""

    in_flight: int = 0
    queue: list[QueuedCall] = field(default_factory=list)
    sending: bool = False  # a batch of this lane is being stored


class Coalescer:
    """Posts concurrent ``compute`` calls of one process in batches (see the module)."""

    def __init__(self) -> None:
        self._reset()
        # A child forked while calls were in flight has none of their threads.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._lanes: dict[Hashable, Lane] = {}
        self._senders: ThreadPoolExecutor | None = None

    def compute(self, function: RemoteFunction, payload: bytes | Pickled) -> Any:
        """Run one pickled call of ``function`` and return its result (or raise)."""
        if not isinstance(payload, bytes) or len(payload) > limits.MAX_CALL_BYTES:
            return compute_alone(function, payload)
        options = function.options()
        key = (settings(), tuple(sorted(options.items())))
        call: QueuedCall | None = None
        with self._lock:
            lane = self._lanes.setdefault(key, Lane())
            lane.in_flight += 1
            if lane.in_flight > 1:
                call = QueuedCall(payload)
                lane.queue.append(call)
                self._start_sending(options, lane)
        try:
            if call is None:
                return compute_alone(function, payload)
            call.done.wait()
            if call.alone:
                return compute_alone(function, payload)
            if call.error is not None:
                raise call.error
            assert call.job is not None
            return call.job.result()  # from the outcome delivered with it: no request
        except KeyboardInterrupt:
            if call is not None and not call.alone:
                with self._lock:  # not sent yet: it never will be
                    queued = call in lane.queue
                    if queued:
                        lane.queue.remove(call)
                if not queued:
                    call.abandoned = True  # not listed yet: the sender cancels its job
                    if call.job is not None:
                        cancel_abandoned(call.job.id)
            raise
        finally:
            with self._lock:
                lane.in_flight -= 1
                if not lane.in_flight and not lane.queue:
                    self._lanes.pop(key, None)

    def _start_sending(self, options: dict[str, Any], lane: Lane) -> None:
        """(lock held) Have a sender post the lane's queue unless one is storing a batch."""
        if lane.sending or not lane.queue:
            return
        lane.sending = True
        if self._senders is None:
            self._senders = ThreadPoolExecutor(
                SENDER_THREADS, thread_name_prefix="computethis-batch"
            )
        self._senders.submit(self._send, options, lane)

    def _send(self, options: dict[str, Any], lane: Lane) -> None:
        """(sender thread) Post the queued calls as one batch and deliver their outcomes."""
        with self._lock:
            calls = _take_batch(lane.queue)
        try:
            reply, frames = _post_batch(options, calls)
        except ApiError:
            _finish(calls, alone=True)
            return
        except BaseException as exc:
            _finish(calls, error=exc)
            return
        finally:
            with self._lock:  # the next batch may go while this one's outcomes stream
                lane.sending = False
                self._start_sending(options, lane)
        _deliver(reply, frames, calls)


def _post_batch(options: dict[str, Any], calls: list[QueuedCall]) -> tuple[transport.Reply, Frames]:
    """Post the calls as one batch; once the answer lists their jobs (each call's
    ``job`` is set), return it with the rest of its frames to read.

    An answer cut before it lists the jobs is asked for again under the same
    ``Idempotency-Key``: the gateway answers with the jobs it stored, not new ones.
    """
    body = batch_body.encode([call.payload for call in calls])
    key = uuid.uuid4().hex
    cut: BaseException | None = None
    for _ in range(2):
        reply = transport.post_call(
            "/batches",
            body,
            {**options, "wait": POLL_WAIT},
            timeout=POLL_WAIT + 30,
            key=key,
            stream=True,
        )
        if not reply.headers.get("Content-Type", "").startswith(MEDIA_TYPE):
            reply.close()
            raise ComputeThisError(
                f"the gateway at {settings().url} answered a batch without streaming its "
                "outcomes (an older gateway?): upgrade it to this SDK's version"
            )
        frames = read_frames(reply)
        try:
            batch, _ = next(frames)
        except (ProtocolError, ReadTimeoutError, StopIteration) as exc:
            reply.close()
            cut = exc
            continue
        for call, info in zip(calls, batch["jobs"], strict=True):
            call.job = Job(info["id"], info)
            if call.abandoned:  # its caller was interrupted before the job was listed
                cancel_abandoned(call.job.id)
        return reply, frames
    raise GatewayUnreachable(
        f"the computethis gateway at {settings().url} twice cut its answer to a batch of "
        f"{len(calls)} calls before listing their jobs ({cut!r}); the calls may be queued: "
        "check that the gateway is running"
    ) from cut


def compute_alone(function: RemoteFunction, payload: bytes | Pickled) -> Any:
    """Post one call with ``?wait``: its result comes back in the same exchange if the
    job is done in time; a longer one is then long-polled. Interrupted (Ctrl-C), it
    cancels the job, found by the request's Idempotency-Key if no answer came yet."""
    key = uuid.uuid4().hex
    job: Job | None = None
    try:
        response = transport.post_call(
            "/jobs", payload, function.options(wait=POLL_WAIT), timeout=POLL_WAIT + 30, key=key
        )
        job = Job(response.headers[JOB_HEADER])
        done, value = job.read_outcome(response)
        return value if done else job.result()
    except KeyboardInterrupt:
        cancel_abandoned(job.id if job is not None else None, key)
        raise


def _take_batch(queue: list[QueuedCall]) -> list[QueuedCall]:
    """Remove and return the first calls of ``queue`` that fit in one batch."""
    size = 0
    count = 0
    for call in queue[: limits.MAX_CALLS]:
        size += batch_body.LENGTH_BYTES + len(call.payload)
        if count and size > limits.MAX_BATCH_BYTES:
            break
        count += 1
    taken = queue[:count]
    del queue[:count]
    return taken


def _deliver(reply: transport.Reply, frames: Frames, calls: list[QueuedCall]) -> None:
    """Hand each call its job's outcome as the batch's answer streams it. Jobs still
    running when the stream ends (or is cut) are collected by ``as_completed``."""
    done = {call.job.id: call.done for call in calls if call.job is not None}
    pending = {call.job.id: [call.job] for call in calls if call.job is not None}
    finished = False
    try:
        for job in outcomes_into(pending, frames):
            done[job.id].set()
        finished = True
    except (ProtocolError, ReadTimeoutError):
        pass  # cut short or silent (the gateway restarting?): what is left is collected below
    except BaseException as exc:
        _finish(calls, error=exc)
        return
    finally:
        reply.close(finished)
    try:
        for job in as_completed([same[0] for same in pending.values()]):
            done[job.id].set()
    except BaseException as exc:
        _finish(calls, error=exc)


def _finish(
    calls: list[QueuedCall], *, alone: bool = False, error: BaseException | None = None
) -> None:
    for call in calls:
        if not call.done.is_set():
            call.alone, call.error = alone, error
            call.done.set()


coalescer = Coalescer()
