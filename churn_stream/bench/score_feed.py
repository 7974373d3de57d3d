"""Score records on ``churn-scores`` (and their alerts) at a steady rate, as if a worker scored them.

``churn bench dashboard`` feeds the dashboard this way: its work depends only on what it
consumes, and a worker scoring 2,000 customers/s for an hour would take most of a core.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC
from typing import Any

import numpy as np
import orjson

from plumbing.settings import Settings
from schemas.registry import CHAMPION, CLASSIFIER_NAME
from schemas.topics import Topics

logger = logging.getLogger(__name__)

#: Seconds between producer batches.
FEED_TICK_S = 0.05


def _score_templates(settings: Settings) -> tuple[str, str, float]:
    """The champion's name, version and threshold when the registry has one (else placeholders)."""
    try:
        from plumbing.clients import make_tracker

        mv = make_tracker(settings).get_model_version_by_alias(CLASSIFIER_NAME, CHAMPION)
        return CLASSIFIER_NAME, str(mv.version), 0.5
    except Exception:  # noqa: BLE001 - no champion is fine: the dashboard shows whatever version it reads
        return CLASSIFIER_NAME, "0", 0.5


def _count_failures(results: list[Any], counts: dict[str, Any]) -> None:
    """Count batches the broker did not acknowledge (an overloaded broker times out; the soak goes on)."""
    for r in results:
        if isinstance(r, BaseException):
            if not counts["send_errors"]:
                logger.warning("produce failed (counted, feeding goes on) error=%s", f"{type(r).__name__}: {r}"[:200])
            counts["send_errors"] += 1


async def feed_scores(settings: Settings, rate: float, stop_at: float, counts: dict[str, float]) -> None:
    """Produce ``rate`` score records per second (and their alerts) until ``stop_at``.

    The documents follow the :class:`~schemas.events.ScoreEvent` /
    :class:`~schemas.events.ChurnAlert` contracts; one alert for each score at or above
    the threshold, as the worker does.

    Parameters
    ----------
    settings : Settings
        Broker and topic suffix.
    rate : float
        Score records per second.
    stop_at : float
        ``time.perf_counter()`` value to stop at.
    counts : dict of str to float
        Updated in place: ``scores``, ``alerts`` and ``send_errors`` so far, ``feed_s`` at the end.
    """
    from datetime import datetime, timedelta

    from aiokafka import AIOKafkaProducer

    from plumbing.clients import kafka_kwargs
    from schemas.events import SCHEMA_VERSION

    suffix = settings.topic_suffix or ""
    scores_topic, alerts_topic = Topics.SCORES + suffix, Topics.ALERTS + suffix
    model_name, model_version, threshold = _score_templates(settings)
    rng = np.random.default_rng(7)
    reasons = [
        {"feature": "contract", "contribution": 0.41},
        {"feature": "tenure_months", "contribution": 0.22},
        {"feature": "monthly_charges_usd", "contribution": 0.08},
    ]
    producer = AIOKafkaProducer(**kafka_kwargs(settings), acks=1, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    run = f"bench-{os.getpid()}-{int(time.time())}"
    partitions = {t: sorted(await producer.partitions_for(t)) for t in (scores_topic, alerts_topic)}
    sent = 0
    pending: list[asyncio.Future] = []

    async def send(topic: str, docs: list[tuple[bytes, bytes]]) -> None:
        # One batch per partition per tick: per-record send() costs more CPU than the dashboard's consumer.
        parts = partitions[topic]
        for j, p in enumerate(parts):
            batch = producer.create_batch()
            for key, value in docs[j :: len(parts)]:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: ship it, start another
                    pending.append(await producer.send_batch(batch, topic, partition=p))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=p))

    try:
        t0 = time.perf_counter()
        while (now := time.perf_counter()) < stop_at:
            due = int((now - t0) * rate) - sent
            if due > 0:
                wall = datetime.now(UTC)
                scored_at = wall.isoformat()
                proba = rng.beta(1.2, 3.0, due)
                latency_ms = rng.uniform(5, 60, due)
                scores, alerts = [], []
                for k in range(due):
                    i = sent + k
                    p = float(proba[k])
                    doc: dict[str, Any] = {
                        "event_id": f"{run}-{i}",
                        "event_time": (wall - timedelta(milliseconds=float(latency_ms[k]))).isoformat(),
                        "schema_version": SCHEMA_VERSION,
                        "customer_id": f"C{i % 50_000:05d}",
                        "churn_probability": p,
                        "churn_label": p >= threshold,
                        "threshold": threshold,
                        "model_name": model_name,
                        "model_version": model_version,
                        "scored_at": scored_at,
                    }
                    key = doc["customer_id"].encode()
                    scores.append((key, orjson.dumps(doc)))
                    if p >= threshold:
                        doc.update(reasons=reasons, predicted_value_usd=2000.0, value_at_risk_usd=2000.0 * p)
                        alerts.append((key, orjson.dumps(doc)))
                await send(scores_topic, scores)
                if alerts:
                    await send(alerts_topic, alerts)
                sent += due
                counts["scores"] = sent
                counts["alerts"] += len(alerts)
            if len(pending) > 1000:  # acknowledgements: count failed sends, keep memory bounded
                _count_failures(await asyncio.gather(*pending, return_exceptions=True), counts)
                pending.clear()
            await asyncio.sleep(FEED_TICK_S)
        await producer.flush()
        _count_failures(await asyncio.gather(*pending, return_exceptions=True), counts)
        counts["feed_s"] = time.perf_counter() - t0
    finally:
        await producer.stop()
