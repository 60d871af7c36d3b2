"""The keep-alive plugin replays an outcome event published before a client subscribed,
while the job's task still runs (a reconciliation would otherwise wait for it until its
next sweep), and a direct call's event for a job without a task; never an event of an
earlier task under the same key. A real scheduler, worker and client, in this process."""

from __future__ import annotations

import asyncio
import time

import pytest
from distributed import Client, Scheduler, Worker

from scheduler.plugin import KeepJobsAlive
from wire.envelope import RESULT_TOPIC

JOB = "replayed"
KEY = f"computethis-{JOB}"
OUTCOME = {"job": JOB, "envelope": b"outcome"}


async def _heard_after_late_subscription(
    replay: bool = True, before_submit: list[dict] = (), while_running: list[dict] = ()
) -> list:
    """The events a client that subscribes late hears: ``before_submit`` are published
    before the task exists, ``while_running`` while it runs."""
    async with (
        Scheduler(port=0, dashboard_address=":0") as scheduler,
        Worker(scheduler.address, nthreads=1),
        Client(scheduler.address, asynchronous=True) as client,
    ):
        await client.register_plugin(KeepJobsAlive())  # as the gateway does
        for event in before_submit:
            scheduler.log_event(RESULT_TOPIC, event)
        await asyncio.sleep(0.01)  # the scheduler's clock moves on before the submit
        future = client.submit(time.sleep, 3, key=KEY, pure=False)
        while scheduler.tasks.get(KEY) is None or scheduler.tasks[KEY].state != "processing":
            await asyncio.sleep(0.01)
        # The worker's report, before this client listens: not sent to it.
        for event in while_running:
            scheduler.log_event(RESULT_TOPIC, event)
        heard: list = []
        client.subscribe_topic(RESULT_TOPIC, heard.append)
        topics = [RESULT_TOPIC] if replay else []
        states = await client.scheduler.computethis_states(
            keys=[KEY], client_id=client.id, topics=topics
        )
        assert states == {KEY: "processing"}
        await asyncio.sleep(0.5)
        await client.cancel(future, force=True)
        return [event[1] for event in heard]


async def _heard_without_task(events: list[dict]) -> list:
    """The events a client subscribing late hears for a job that has no task."""
    async with (
        Scheduler(port=0, dashboard_address=":0") as scheduler,
        Client(scheduler.address, asynchronous=True) as client,
    ):
        await client.register_plugin(KeepJobsAlive())
        for event in events:
            scheduler.log_event(RESULT_TOPIC, event)
        heard: list = []
        client.subscribe_topic(RESULT_TOPIC, heard.append)
        states = await client.scheduler.computethis_states(
            keys=[KEY], client_id=client.id, topics=[RESULT_TOPIC]
        )
        assert states == {}
        await asyncio.sleep(0.5)
        return [event[1] for event in heard]


@pytest.mark.parametrize("replay", [True, False])
def test_an_outcome_published_before_subscribing_is_replayed(replay: bool):
    heard = asyncio.run(_heard_after_late_subscription(replay, while_running=[OUTCOME]))
    if replay:
        assert heard == [OUTCOME]
    else:  # the control: without the replay, the event is gone for this client
        assert heard == []


def test_an_earlier_task_s_outcome_is_not_replayed_for_the_task_now_running():
    earlier = {"job": JOB, "envelope": b"the first attempt failed"}
    heard = asyncio.run(_heard_after_late_subscription(before_submit=[earlier]))
    assert heard == []
    # ... while this task's own report still is
    heard = asyncio.run(
        _heard_after_late_subscription(before_submit=[earlier], while_running=[OUTCOME])
    )
    assert heard == [OUTCOME]


def test_a_direct_call_s_outcome_is_replayed_for_a_job_without_a_task():
    direct = {**OUTCOME, "direct": True}
    assert asyncio.run(_heard_without_task([direct])) == [direct]
    # an event of a task since forgotten (an SPMD job about to start again) is not
    assert asyncio.run(_heard_without_task([OUTCOME])) == []
