"""The Faust scoring worker.

``customers`` is consumed in micro-batches (``Stream.take_events``); each batch is
scored with one matrix operation and its scores, alerts and dead letters are sent
and **acknowledged by the broker before** the batch's input events are acked, so
Faust commits input offsets only after their outputs are durable (at-least-once).

Model-updated events are read by every worker outside the consumer group (each
worker must see every announcement), and the champion is swapped between
micro-batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust

from churn_stream.settings import Settings
from schemas.profiles import TELCO
from schemas.topics import Topics
from stream_app.model_store import ModelStore, follow_model_updates
from stream_app.scoring import RawRecord, score_batch

logger = logging.getLogger(__name__)

#: Micro-batch bounds: at most this many events, or whatever arrived within the window.
MAX_BATCH = 2000
BATCH_WINDOW_S = 0.02


class WorkerStats:
    """Counters exposed on ``/health`` and ``/metrics``."""

    def __init__(self) -> None:
        self.events_in = 0
        self.scored = 0
        self.alerts = 0
        self.dead_letters = 0
        self.batches = 0
        self.last_batch_at: float | None = None


def _broker_urls(settings: Settings) -> list[str]:
    return [f"kafka://{hp.strip()}" for hp in settings.kafka_bootstrap_servers.split(",") if hp.strip()]


def create_app(settings: Settings, store: ModelStore | None = None) -> faust.App:
    """Build the Faust app with the scoring agent, the model-update listener and health pages.

    Parameters
    ----------
    settings : Settings
    store : ModelStore, optional
        Defaults to a store on the configured MLflow server.

    Returns
    -------
    faust.App
    """
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    store = store or ModelStore(settings.mlflow_tracking_uri, expected_features=list(TELCO.features))
    stats = WorkerStats()
    app = faust.App(
        settings.consumer_group,
        broker=_broker_urls(settings),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=True,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        datadir=str(settings.data_dir / "faust"),
        store="memory://",
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=MAX_BATCH * 2,
        # Tansu completes a join only after the rebalance timeout; a short one keeps
        # start-up and failover quick while still far above a micro-batch's duration.
        broker_rebalance_timeout=5.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
    )
    app.churn_store = store  # type: ignore[attr-defined]
    app.churn_stats = stats  # type: ignore[attr-defined]
    customers = app.topic(Topics.CUSTOMERS, value_serializer="raw", key_serializer="raw")

    async def send_all(topic: str, records: list[tuple[bytes | None, bytes]]) -> list[Any]:
        producer = app.producer
        return [await producer.send(topic, key, value, None, None, None) for key, value in records]

    @app.agent(customers, name="score-customers")
    async def score(stream: faust.StreamT) -> None:
        async for events in stream.take_events(MAX_BATCH, within=BATCH_WINDOW_S):
            await store.ready.wait()
            model = store.current  # one model for the whole micro-batch
            records = [
                RawRecord(ev.message.topic, ev.message.partition, ev.message.offset, ev.message.key,
                          ev.message.value)
                for ev in events
            ]
            result = score_batch(model, records)
            futures = await send_all(Topics.SCORES, result.scores)
            futures += await send_all(Topics.ALERTS, result.alerts)
            futures += await send_all(Topics.CUSTOMERS_DLQ, result.dead_letters)
            # Wait for the broker's acknowledgement of every output before the input
            # events are acked (take_events acks them when this iteration ends).
            await asyncio.gather(*futures)
            for f in result.failures:
                logger.warning("dead letter %s[%d]@%d stage=%s error=%s", f.record.topic, f.record.partition,
                               f.record.offset, f.stage, f.error_message[:200])
            stats.events_in += len(records)
            stats.scored += len(result.scores)
            stats.alerts += len(result.alerts)
            stats.dead_letters += len(result.dead_letters)
            stats.batches += 1
            stats.last_batch_at = time.time()

    @app.task
    async def watch_model_updates() -> None:
        await follow_model_updates(settings, store)

    @app.page("/health")
    async def health(web, request):  # noqa: ANN001
        assigned = len(app.consumer.assignment()) if app.consumer else 0
        ready = store.current is not None and assigned > 0
        body = {
            "ready": ready,
            "model_name": store.current.model_name if store.current else None,
            "model_version": store.current.model_version if store.current else None,
            "assigned_partitions": assigned,
            "events_in": stats.events_in,
            "scored": stats.scored,
            "alerts": stats.alerts,
            "dead_letters": stats.dead_letters,
            "reloads_ok": store.reloads_ok,
            "reloads_failed": store.reloads_failed,
        }
        return web.json(body, status=200 if ready else 503)

    return app


def run_worker(settings: Settings) -> None:
    """Run the worker until interrupted (blocking)."""
    from churn_stream.clients import ensure_topics

    ensure_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel="INFO", quiet=True)
    worker.execute_from_commandline()
