"""``compute`` calls that threads of one process make at the same time travel together.

Each :class:`~client_sdk.client.Client` has a :class:`Coalescer`. Its calls with the
same options (``timeout``, ``retries``, ``name``) share a lane. A call made while no
other call of its lane is in flight is posted alone to ``POST /jobs?wait``: one
request, answered with its result. A call made while others are in flight is queued
instead. One group at a time per lane, a sender thread takes the queued calls as a
group and posts them as one batch body to ``POST /batches?wait``: one request, one
transaction and one Dask graph update for the whole group, whose answer streams each
call's outcome as it finishes. Calls queued while a group is being stored go in the
next one. So N threads calling at once cost the gateway a few requests per round
instead of N, as Dask's own client sends the messages of all its threads in batches.

A group the gateway refuses (4xx) is not the callers' error: each of its calls is then
posted alone, and gets its own answer. A forked child starts with no lanes.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from urllib3.exceptions import ProtocolError, ReadTimeoutError

from client_sdk import outcomes
from client_sdk.abandon import AbandonableJobs, cancel_abandoned
from client_sdk.errors import ApiError, ComputeThisError, GatewayUnreachable
from client_sdk.outcomes import POLL_WAIT, Frame
from client_sdk.pickling import Pickled
from client_sdk.transport import Reply, Transport
from wire import batch_body, limits
from wire.http import JOB_HEADER
from wire.outcome_frames import MEDIA_TYPE

# A group holds a sender thread (and a connection) while it is stored and while its
# outcomes stream. Idle senders are reused. Every group in flight has callers blocked on
# it, so there are never more senders than callers: no cap of their own, which would
# hold the groups past it until some group's jobs all ended.
SENDER_THREADS = 1 << 20


@dataclass(eq=False)
class QueuedCall:
    """One ``compute`` call waiting to be sent in a group, and what became of it."""

    payload: bytes
    done: threading.Event = field(default_factory=threading.Event)
    job_id: str | None = None  # once the gateway listed the group's jobs
    outcome: Frame | None = None  # the job's JSON and result bytes, once done
    error: BaseException | None = None
    alone: bool = False  # the group was refused: the caller posts this call by itself
    # Its job, cancelled if the caller gives up after the group was sent.
    jobs: AbandonableJobs = field(default_factory=AbandonableJobs)


@dataclass(eq=False)
class Lane:
    """The calls in flight with one set of options."""

    in_flight: int = 0
    queue: list[QueuedCall] = field(default_factory=list)
    sending: bool = False  # a group of this lane is being stored


class Coalescer:
    """Posts concurrent ``compute`` calls to one gateway in groups (see the module)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.forget_calls()

    def forget_calls(self) -> None:
        """Start with no lanes (also in a forked child: it has none of the callers'
        threads, and the lock may have been held as it was forked)."""
        self._lock = threading.Lock()
        self._lanes: dict[Hashable, Lane] = {}
        self._senders: ThreadPoolExecutor | None = None

    def calls_in_flight(self) -> int:
        """How many ``compute`` calls are in flight now (a call made while another is,
        goes in a group)."""
        with self._lock:
            return sum(lane.in_flight for lane in self._lanes.values())

    def compute(self, params: dict[str, Any], payload: bytes | Pickled) -> Any:
        """Run one pickled call with the job options ``params`` (query parameters of
        ``POST /jobs``) and return its result (or raise its exception)."""
        if not isinstance(payload, bytes) or len(payload) > limits.MAX_CALL_BYTES:
            return compute_alone(self.transport, params, payload)
        key = tuple(sorted(params.items()))
        call: QueuedCall | None = None
        with self._lock:
            lane = self._lanes.setdefault(key, Lane())
            lane.in_flight += 1
            if lane.in_flight > 1:
                call = QueuedCall(payload)
                lane.queue.append(call)
                self._start_sending(params, lane)
        try:
            if call is None:
                return compute_alone(self.transport, params, payload)
            call.done.wait()
            if call.alone:
                return compute_alone(self.transport, params, payload)
            if call.error is not None:
                raise call.error
            assert call.job_id is not None and call.outcome is not None
            return outcomes.outcome_value(call.job_id, *call.outcome)
        except KeyboardInterrupt:
            if call is not None and not call.alone:
                with self._lock:  # not sent yet: it never will be
                    queued = call in lane.queue
                    if queued:
                        lane.queue.remove(call)
                if not queued:  # sent: its job is cancelled, now or once listed
                    call.jobs.abandon(self.transport)
            raise
        finally:
            with self._lock:
                lane.in_flight -= 1
                if not lane.in_flight and not lane.queue:
                    self._lanes.pop(key, None)

    def _start_sending(self, params: dict[str, Any], lane: Lane) -> None:
        """(lock held) Have a sender post the lane's queue unless one is storing a group."""
        if lane.sending or not lane.queue:
            return
        lane.sending = True
        if self._senders is None:
            self._senders = ThreadPoolExecutor(
                SENDER_THREADS, thread_name_prefix="computethis-coalesce"
            )
        self._senders.submit(self._send, params, lane)

    def _send(self, params: dict[str, Any], lane: Lane) -> None:
        """(sender thread) Post the queued calls as one group and deliver their outcomes."""
        with self._lock:
            calls = _take_group(lane.queue)
        try:
            reply, frames = self._post_group(params, calls)
        except ApiError:
            _finish(calls, alone=True)
            return
        except BaseException as exc:
            _finish(calls, error=exc)
            return
        finally:
            with self._lock:  # the next group may go while this one's outcomes stream
                lane.sending = False
                self._start_sending(params, lane)
        self._deliver(reply, frames, calls)

    def _post_group(
        self, params: dict[str, Any], calls: list[QueuedCall]
    ) -> tuple[Reply, Iterator[Frame]]:
        """Post the calls as one batch body; once the answer lists their jobs (each
        call's ``job_id`` is set), return it with the rest of its frames to read.

        An answer cut before it lists the jobs is asked for again under the same
        ``Idempotency-Key``: the gateway answers with the jobs it stored, not new ones.
        """
        body = batch_body.encode([call.payload for call in calls])
        key = uuid.uuid4().hex
        url = self.transport.settings.url
        cut: BaseException | None = None
        for _ in range(2):
            reply = self.transport.post_call(
                "/batches",
                body,
                {**params, "wait": POLL_WAIT},
                timeout=POLL_WAIT + 30,
                key=key,
                stream=True,
            )
            if not reply.headers.get("Content-Type", "").startswith(MEDIA_TYPE):
                reply.close()
                raise ComputeThisError(
                    f"the gateway at {url} answered a batch without streaming its "
                    "outcomes (an older gateway?): upgrade it to this SDK's version"
                )
            frames = outcomes.read_frames(reply)
            try:
                listing, _ = next(frames)
            except (ProtocolError, ReadTimeoutError, StopIteration) as exc:
                reply.close()
                cut = exc
                continue
            for call, info in zip(calls, listing["jobs"], strict=True):
                call.job_id = info["id"]
                call.jobs.created(info["id"])  # cancelled at once if its caller gave up
            return reply, frames
        raise GatewayUnreachable(
            f"the computethis gateway at {url} twice cut its answer to a batch of "
            f"{len(calls)} calls before listing their jobs ({cut!r}); the calls may be "
            "queued: check that the gateway is running"
        ) from cut

    def _deliver(self, reply: Reply, frames: Iterator[Frame], calls: list[QueuedCall]) -> None:
        """Hand each call its job's outcome as the group's answer streams it. Jobs still
        running when the stream ends (or is cut) are collected by ``POST /results``."""
        waiting = {call.job_id: call for call in calls if call.job_id is not None}
        finished = False
        try:
            for call, info, result in outcomes.match_frames(waiting, frames):
                call.outcome = (info, result)
                call.done.set()
            finished = True
        except (ProtocolError, ReadTimeoutError):
            pass  # cut short or silent (the gateway restarting?): what is left is collected below
        except BaseException as exc:
            _finish(calls, error=exc)
            return
        finally:
            reply.close(finished)
        try:
            for call, info, result in outcomes.collect(self.transport, waiting):
                call.outcome = (info, result)
                call.done.set()
        except BaseException as exc:
            _finish(calls, error=exc)


def compute_alone(transport: Transport, params: dict[str, Any], payload: bytes | Pickled) -> Any:
    """Post one call with ``?wait``: its result comes back in the same exchange if the
    job is done in time; a longer one is then long-polled. Interrupted (Ctrl-C), it
    cancels the job, found by the request's Idempotency-Key if no answer came yet."""
    key = uuid.uuid4().hex
    job_id: str | None = None
    try:
        response = transport.post_call(
            "/jobs", payload, {**params, "wait": POLL_WAIT}, timeout=POLL_WAIT + 30, key=key
        )
        job_id = response.headers[JOB_HEADER]
        done, value = outcomes.read_outcome(job_id, response)
        return value if done else outcomes.wait_for_result(transport, job_id)
    except KeyboardInterrupt:
        cancel_abandoned(transport, job_id, key)
        raise


def _take_group(queue: list[QueuedCall]) -> list[QueuedCall]:
    """Remove and return the first calls of ``queue`` that fit in one batch body."""
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


def _finish(
    calls: list[QueuedCall], *, alone: bool = False, error: BaseException | None = None
) -> None:
    for call in calls:
        if not call.done.is_set():
            call.alone, call.error = alone, error
            call.done.set()
