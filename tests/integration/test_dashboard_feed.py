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
