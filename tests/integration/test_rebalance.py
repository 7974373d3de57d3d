"""The scoring loop through consumer-group rebalances, in process, against the real broker.

Regression test for events lost when a second worker joined: ``getmany`` waits out a
rebalance and then returns records of the *new* assignment while the alert ledger is
still being recovered; the loop dropped that batch although the consumer's position had
moved past it, so those records were never scored. The fault scenario hit it now and
then; here the poll outlasts the rebalance and the recovery is slowed down (1.5 s
instead of ~0.5 s), so the race happens on every run.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

pytestmark = pytest.mark.integration

FAST_ZOO = {"logistic_regression", "multiple_regression"}
EVENTS = 3000
RATE = 250.0  # events/s: the stream keeps flowing through both rebalances


@pytest.fixture(scope="module")
def champions(stack_settings):
    from batch.cycle import run_cycle
    from plumbing.clients import make_storage, make_tracker

    return run_cycle(
        stack_settings, make_storage(stack_settings), make_tracker(stack_settings), only=FAST_ZOO, margin=-1.0
    )


async def _produce(settings, topic: str, records, rate: float) -> None:
    from aiokafka import AIOKafkaProducer

    from plumbing.clients import kafka_kwargs

    producer = AIOKafkaProducer(**kafka_kwargs(settings), acks="all")
    await producer.start()
    try:
        step = 25
        for i in range(0, len(records), step):
            futures = [await producer.send(topic, key=k, value=v) for k, v in records[i : i + step]]
            await asyncio.gather(*futures)
            await asyncio.sleep(step / rate)
    finally:
        await producer.stop()


async def _scored_ids(settings, topic: str, want: set[str], timeout_s: float) -> set[str]:
    from aiokafka import AIOKafkaConsumer

    from plumbing.clients import kafka_kwargs

    consumer = AIOKafkaConsumer(
        topic, **kafka_kwargs(settings), group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen: set[str] = set()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not want <= seen and asyncio.get_running_loop().time() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                seen.update(orjson.loads(m.value)["event_id"] for m in msgs)
    finally:
        await consumer.stop()
    return seen


async def _scenario(settings, records) -> dict:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from plumbing.clients import kafka_kwargs
    from schemas.profiles import TELCO
    from stream_app.consumer import scoring_consumer_kwargs
    from stream_app.loop import ScoringLoop, WorkerStats
    from stream_app.model_store import ModelStore
    from stream_app.sender import BatchSender
    from stream_app.topics import WorkerTopics, ensure_worker_topics

    class LongPollConsumer(AIOKafkaConsumer):
        # A poll that outlasts a rebalance (Tansu's join takes ~5 s): aiokafka's getmany then
        # waits for the new assignment and returns its first records, during the recovery.
        async def getmany(self, *partitions, timeout_ms=0, max_records=None):
            return await super().getmany(*partitions, timeout_ms=max(timeout_ms, 8000), max_records=max_records)

    class SlowRecoveryLoop(ScoringLoop):
        async def _recover(self, assigned) -> None:
            await asyncio.sleep(1.5)
            await super()._recover(assigned)

    topics = WorkerTopics.from_settings(settings)
    await asyncio.to_thread(ensure_worker_topics, settings, topics)
    store = ModelStore(settings.mlflow_tracking_uri, expected_features=list(TELCO.features), value_models=True)
    assert await asyncio.to_thread(store.load_champion)
    consumer = LongPollConsumer(**scoring_consumer_kwargs(settings))  # the worker's settings
    reader = AIOKafkaConsumer(**kafka_kwargs(settings), group_id=None, enable_auto_commit=False)
    producer = AIOKafkaProducer(**kafka_kwargs(settings), acks="all")
    second = AIOKafkaConsumer(**scoring_consumer_kwargs(settings))
    for client in (producer, reader, consumer):
        await client.start()
    loop = SlowRecoveryLoop(
        consumer, BatchSender(producer), store, topics, WorkerStats(), reader=reader, commit_interval_s=0.2
    )
    consumer.subscribe([topics.customers], listener=loop.listener())
    scoring = asyncio.create_task(loop.run())
    feeding = asyncio.create_task(_produce(settings, topics.customers, records, RATE))
    try:
        while loop.stats.events_in < 300:  # scoring with all partitions
            await asyncio.sleep(0.1)
        # A second member joins (rebalance 1), takes some partitions, then leaves without
        # committing (rebalance 2): the loop gets them back from its own last commits.
        await second.start()
        second.subscribe([topics.customers])

        async def joined() -> None:
            while not second.assignment():  # it never polls: its records stay for the loop
                await asyncio.sleep(0.1)

        await asyncio.wait_for(joined(), 60)
        shared = (len(consumer.assignment()), len(second.assignment()))
        await asyncio.sleep(2.0)
        await second.stop()
        await asyncio.wait_for(feeding, 60)
        want = {orjson.loads(v)["event_id"] for _, v in records}
        seen = await _scored_ids(settings, topics.scores, want, timeout_s=90)
        return {
            "shared": shared,
            "missing": want - seen,
            "scored": len(want & seen),
            "assigned_after": len(consumer.assignment()),
        }
    finally:
        feeding.cancel()
        scoring.cancel()
        await asyncio.gather(scoring, feeding, return_exceptions=True)
        await loop.committer.close(timeout_s=5)
        for client in (consumer, reader, producer):
            await client.stop()


def test_batches_fetched_while_partitions_are_reassigned_are_scored_not_lost(
    stack_settings, champions, telco_csv, caplog
):
    from churn_stream.produce import csv_to_customer_events

    settings = stack_settings.with_overrides(topic_suffix="-rebalance", consumer_group="churn-scorer-rebalance")
    records = csv_to_customer_events(telco_csv, limit=EVENTS)
    with caplog.at_level(logging.INFO, logger="stream_app.loop"):
        result = asyncio.run(_scenario(settings, records))
    assert sum(result["shared"]) == settings.topic_partitions and min(result["shared"]) > 0, result["shared"]
    assert result["assigned_after"] == settings.topic_partitions
    assert not result["missing"], f"{len(result['missing'])} of {EVENTS} events never scored"
    assert result["scored"] == EVENTS
    # The race really happened: a batch came back from getmany during the slowed recovery.
    rewinds = [r.getMessage() for r in caplog.records if "fetched during a rebalance" in r.getMessage()]
    assert any("rewound=-" not in m for m in rewinds), rewinds


def test_committer_skips_partitions_no_longer_assigned_and_commits_the_rest(stack_settings):
    """A batch acknowledged after its partition was revoked (the revocation's drain timed out)
    must not stop the committer: aiokafka raises IllegalStateError for a partition it does
    not hold, which ended the scoring task. The held partitions are still committed."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from stream_app.commit import InFlightBatch, OffsetCommitter
    from stream_app.consumer import scoring_consumer_kwargs
    from stream_app.topics import WorkerTopics, ensure_worker_topics

    settings = stack_settings.with_overrides(topic_suffix="-moved", consumer_group="churn-scorer-moved")
    topics = WorkerTopics.from_settings(settings)

    async def run() -> tuple[dict, list]:
        await asyncio.to_thread(ensure_worker_topics, settings, topics)
        consumer = AIOKafkaConsumer(**scoring_consumer_kwargs(settings))
        await consumer.start()
        try:
            consumer.subscribe([topics.customers])
            while not consumer.assignment():
                await asyncio.wait_for(consumer.getmany(timeout_ms=200), 60)
            held = sorted(consumer.assignment())[0]
            gone = TopicPartition(topics.scores, 0)  # never assigned to this member
            booked: list = []
            committer = OffsetCommitter(consumer, lambda b, at, offsets: booked.append(dict(offsets)))
            committer.begin()
            committer._acked.append(InFlightBatch({held: 7, gone: 3}, [], 10, None, None, 0.0))
            await committer._commit()
            return {tp: await consumer.committed(tp) for tp in (held, gone)}, booked, held, gone
        finally:
            await consumer.stop()

    committed, booked, held, gone = asyncio.run(run())
    assert committed[held] == 7
    assert committed[gone] is None
    assert booked == [{held: 7}]
