"""The scoring loop through consumer-group rebalances, in process, against the real broker.

Regression test for events lost when a second worker joined: records of a newly assigned
partition may be fetched while the alert ledger is still being recovered; dropping them
without seeking back skipped them for good (the fault scenario hit it now and then).
Here the recovery is slowed down (1.5 s instead of ~0.5 s) while the stream keeps
flowing through both rebalances, and every event must be scored.
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
    from stream_app.commit import BatchAcks
    from stream_app.sender import OutputProducer

    producer = OutputProducer.from_settings(settings)
    acks = BatchAcks()
    step = 25
    for i in range(0, len(records), step):
        producer.send(topic, records[i : i + step], acks)
        producer.poll()
        await asyncio.sleep(step / rate)
    assert await asyncio.to_thread(producer.flush, 30) == 0
    assert acks.error is None


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
    from aiokafka import AIOKafkaConsumer
    from confluent_kafka import Consumer

    from plumbing.clients import kafka_kwargs
    from schemas.profiles import TELCO
    from stream_app.consumer import scoring_consumer_config
    from stream_app.loop import ScoringLoop, WorkerStats
    from stream_app.model_store import ModelStore
    from stream_app.sender import OutputProducer
    from stream_app.topics import WorkerTopics, ensure_worker_topics

    class SlowRecoveryLoop(ScoringLoop):
        async def _recover(self, tps) -> None:
            await asyncio.sleep(1.5)
            await super()._recover(tps)

    topics = WorkerTopics.from_settings(settings)
    await asyncio.to_thread(ensure_worker_topics, settings, topics)
    store = ModelStore(settings.mlflow_tracking_uri, expected_features=list(TELCO.features), value_models=True)
    assert await store.load_champion_async()
    reader = AIOKafkaConsumer(**kafka_kwargs(settings), group_id=None, enable_auto_commit=False)
    # The second member: aiokafka's round-robin assignor, a protocol librdkafka's default list shares.
    second = AIOKafkaConsumer(
        **kafka_kwargs(settings), group_id=settings.consumer_group, enable_auto_commit=False, rebalance_timeout_ms=6000
    )
    await reader.start()
    loop = SlowRecoveryLoop(
        lambda wait_ms: Consumer(scoring_consumer_config(settings, fetch_wait_ms=wait_ms)),  # the worker's settings
        OutputProducer.from_settings(settings),
        store,
        topics,
        WorkerStats(),
        reader=reader,
        commit_interval_s=0.2,
    )
    scoring = asyncio.create_task(loop.run())
    feeding = asyncio.create_task(_produce(settings, topics.customers, records, RATE))
    try:
        while loop.stats.events_in < 300:  # scoring with all partitions
            await asyncio.sleep(0.1)
            if scoring.done():
                scoring.result()
        # A second member joins (rebalance 1), takes some partitions, then leaves without
        # committing (rebalance 2): the loop gets them back from its own last commits.
        await second.start()
        second.subscribe([topics.customers])

        async def joined() -> None:
            while not second.assignment():  # it never polls: its records stay for the loop
                await asyncio.sleep(0.1)

        await asyncio.wait_for(joined(), 60)
        while len(loop.assigned) + len(second.assignment()) != settings.topic_partitions:
            await asyncio.sleep(0.1)
        shared = (len(loop.assigned), len(second.assignment()))
        await asyncio.sleep(2.0)
        await second.stop()
        await asyncio.wait_for(feeding, 60)
        want = {orjson.loads(v)["event_id"] for _, v in records}
        seen = await _scored_ids(settings, topics.scores, want, timeout_s=90)
        return {
            "shared": shared,
            "missing": want - seen,
            "scored": len(want & seen),
            "assigned_after": len(loop.assigned),
            "recoveries": loop.stats.metrics.alert_recoveries._value.get(),
        }
    finally:
        feeding.cancel()
        scoring.cancel()
        await asyncio.gather(scoring, feeding, return_exceptions=True)
        await asyncio.to_thread(loop.close, 5.0)
        await reader.stop()


def test_records_of_partitions_reassigned_mid_stream_are_all_scored(stack_settings, champions, telco_csv, caplog):
    from churn_stream.produce import csv_to_customer_events

    settings = stack_settings.with_overrides(topic_suffix="-rebalance", consumer_group="churn-scorer-rebalance")
    records = csv_to_customer_events(telco_csv, limit=EVENTS)
    with caplog.at_level(logging.INFO, logger="stream_app.loop"):
        result = asyncio.run(_scenario(settings, records))
    assert sum(result["shared"]) == settings.topic_partitions and min(result["shared"]) > 0, result["shared"]
    assert result["assigned_after"] == settings.topic_partitions
    assert not result["missing"], f"{len(result['missing'])} of {EVENTS} events never scored"
    assert result["scored"] == EVENTS
    assert result["recoveries"] >= 3  # start, after the join, after the leave: each assignment recovered
    revoked = [r.getMessage() for r in caplog.records if r.getMessage().startswith("partitions revoked")]
    assert len(revoked) >= 2, revoked


def test_committer_skips_partitions_no_longer_assigned_and_commits_the_rest(stack_settings):
    """A batch acknowledged after its partition was revoked must not be committed for it
    (its next owner re-reads from the last commit); the held partitions are still committed."""
    from confluent_kafka import Consumer, TopicPartition

    from stream_app.commit import BatchAcks, InFlightBatch, OffsetCommitter
    from stream_app.consumer import scoring_consumer_config
    from stream_app.topics import WorkerTopics, ensure_worker_topics

    settings = stack_settings.with_overrides(topic_suffix="-moved", consumer_group="churn-scorer-moved")
    topics = WorkerTopics.from_settings(settings)
    ensure_worker_topics(settings, topics)
    consumer = Consumer(scoring_consumer_config(settings))
    try:
        consumer.subscribe([topics.customers])
        for _ in range(600):
            consumer.consume(100, 0.1)
            if consumer.assignment():
                break
        held = min((tp.topic, tp.partition) for tp in consumer.assignment())
        gone = (topics.scores, 0)  # never assigned to this member
        booked: list = []
        committer = OffsetCommitter(consumer, lambda b, at, offsets: booked.append(dict(offsets)), lambda: {held})
        committer.submit(InFlightBatch({held: 7, gone: 3}, BatchAcks(), 10, None, None, 0.0))
        assert committer.advance(force=True, synchronous=True) == 1
        got = consumer.committed([TopicPartition(*held), TopicPartition(*gone)], timeout=10)
    finally:
        consumer.close()
    assert [tp.offset for tp in got] == [7, -1001]  # OFFSET_INVALID: never committed
    assert booked == [{held: 7}]
