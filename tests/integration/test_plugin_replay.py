"""The keep-alive plugin replays an outcome event published before a client subscribed,
while the job's task still runs (a reconciliation would otherwise wait for it until its
next sweep). A real scheduler, worker and client, in this process."""

from __future__ import annotations

import asyncio
import time

import pytest
from distributed import Client, Scheduler, Worker

from scheduler.plugin import KeepJobsAlive
from wire.envelope import RESULT_TOPIC

KEY = "computethis-replayed"


async def _heard_after_late_subscription(replay: bool) -> list:
    async with (
        Scheduler(port=0, dashboard_address=":0") as scheduler,
        Worker(scheduler.address, nthreads=1),
        Client(scheduler.address, asynchronous=True) as client,
    ):
        await client.register_plugin(KeepJobsAlive())  # as the gateway does
        future = client.submit(time.sleep, 3, key=KEY, pure=False)
        while scheduler.tasks.get(KEY) is None or scheduler.tasks[KEY].state != "processing":
            await asyncio.sleep(0.01)
        # The worker's report, before this client listens: not sent to it.
        scheduler.log_event(RESULT_TOPIC, {"job": "replayed", "envelope": b"outcome"})
        heard: list = []
        client.subscribe_topic(RESULT_TOPIC, heard.append)
        topics = [RESULT_TOPIC] if replay else []
        states = await client.scheduler.computethis_states(
            keys=[KEY], client_id=client.id, topics=topics
        )
        assert states == {KEY: "processing"}
        await asyncio.sleep(0.5)
        await client.cancel(future, force=True)
        return heard


@pytest.mark.parametrize("replay", [True, False])
def test_an_outcome_published_before_subscribing_is_replayed(replay: bool):
    heard = asyncio.run(_heard_after_late_subscription(replay))
    if replay:
        assert [event[1] for event in heard] == [{"job": "replayed", "envelope": b"outcome"}]
    else:  # the control: without the replay, the event is gone for this client
        assert heard == []
