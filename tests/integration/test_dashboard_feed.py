"""The dashboard's live feed through a broker restart, against a Tansu broker of its own.

A user found the feed thread dead after the broker went away (``NodeNotReadyError`` then
``CancelledError``, which ``except Exception`` does not catch) while the page still said
"connected" and stopped counting.
"""

from __future__ import annotations

import time

import orjson
import pytest

pytestmark = pytest.mark.integration


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def _score(i: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"feed-{i}",
            "customer_id": f"C{i}",
            "churn_probability": 0.4,
            "churn_label": False,
            "threshold": 0.5,
            "model_name": "churn-classifier",
            "model_version": "1",
            "schema_version": 1,
            "event_time": "2026-11-29T00:00:00+00:00",
            "scored_at": "2026-11-29T00:00:00+00:00",
        }
    )


def test_live_feed_reconnects_and_counts_again_after_the_broker_restarts(tmp_path):
    from churn_stream.stack import LocalStack
    from dashboard.live import LiveFeed
    from plumbing.clients import ensure_topics, produce_records
    from schemas.topics import Topics

    stack = LocalStack.for_tests(tmp_path / "stack")
    stack.start_service("kafka", ephemeral=True)
    feed = None
    try:
        settings = stack.settings()
        ensure_topics(settings)
        feed = LiveFeed(settings, lag_interval_s=0.5).start()
        assert _wait(lambda: feed.buffers.snapshot().status == "connected", 60)
        time.sleep(1.0)  # the feed reads from the end: let it take its positions
        produce_records(settings, Topics.SCORES, [(b"C1", _score(1))])
        assert _wait(lambda: feed.buffers.snapshot().scores_total >= 1, 30)

        stack.stop_service("kafka")
        # While the broker is away the page must not claim a live connection.
        assert _wait(lambda: feed.buffers.snapshot().status != "connected", 60), feed.buffers.snapshot().status
        time.sleep(3.0)  # several failed attempts
        assert feed.alive, "the feed thread died while the broker was down"

        stack.start_service("kafka", ephemeral=True)  # in memory: the topics start empty again
        ensure_topics(settings)
        assert _wait(lambda: feed.buffers.snapshot().status == "connected", 90), feed.buffers.snapshot().status
        time.sleep(1.0)
        produce_records(settings, Topics.SCORES, [(b"C2", _score(2)), (b"C3", _score(3))])
        assert _wait(lambda: feed.buffers.snapshot().scores_total >= 3, 60), feed.buffers.snapshot().scores_total
        assert feed.alive
    finally:
        if feed is not None:
            feed.stop()
        stack.stop_service("kafka")


async def _one_batch(settings, topic: str, values: list[bytes], partition: int = 0) -> None:
    """Send ``values`` to one partition as a single record batch (a long linger holds them together)."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    from plumbing.clients import kafka_kwargs

    producer = AIOKafkaProducer(**kafka_kwargs(settings), linger_ms=1000, max_batch_size=1 << 20)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=b"k", partition=partition) for v in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _commit(settings, topic: str, offsets: dict[int, int]) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from plumbing.clients import kafka_kwargs

    consumer = AIOKafkaConsumer(**kafka_kwargs(settings), group_id=settings.consumer_group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): o for p, o in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


def test_counters_skip_records_from_before_the_start_and_lag_uses_the_served_end_offset(tmp_path):
    """Issue 18: the first load counted records produced before the dashboard started (7,813
    "received"), and the lag read ListOffsets, which Tansu answers short of its last batch."""
    import asyncio

    from churn_stream.stack import LocalStack
    from dashboard.live import LiveFeed
    from plumbing.clients import ensure_topics, produce_records, topic_partitions
    from schemas.topics import Topics

    stack = LocalStack.for_tests(tmp_path / "stack")
    stack.start_service("kafka", ephemeral=True)
    feed = None
    try:
        settings = stack.settings()
        ensure_topics(settings)
        asyncio.run(_one_batch(settings, Topics.SCORES, [_score(i) for i in range(200)]))
        customers = [orjson.dumps({"customer_id": f"C{i}"}) for i in range(100)]
        asyncio.run(_one_batch(settings, Topics.CUSTOMERS, customers))  # the workers have read none of them
        asyncio.run(
            _commit(settings, Topics.CUSTOMERS, dict.fromkeys(range(topic_partitions(settings)[Topics.CUSTOMERS]), 0))
        )
        time.sleep(1.5)  # the dashboard starts strictly after those records' timestamps

        feed = LiveFeed(settings, lag_interval_s=0.5).start()
        assert _wait(lambda: feed.buffers.snapshot().status == "connected", 60)
        assert _wait(lambda: feed.buffers.snapshot().lag is not None, 30), feed.buffers.snapshot().lag_note
        # 100 records behind on partition 0 (ListOffsets alone says 1: the batch's base offset + 1).
        assert feed.buffers.snapshot().lag == 100
        time.sleep(1.0)
        produce_records(settings, Topics.SCORES, [(b"C1", _score(1001)), (b"C2", _score(1002))])
        assert _wait(lambda: feed.buffers.snapshot().scores_total >= 2, 30)
        time.sleep(2.0)  # anything else already served would have arrived by now
        snap = feed.buffers.snapshot()
        assert snap.scores_total == 2, (snap.scores_total, snap.skipped_before_start)
        assert {r["customer_id"] for r in snap.scores} == {"C1001", "C1002"}
    finally:
        if feed is not None:
            feed.stop()
        stack.stop_service("kafka")
