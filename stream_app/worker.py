"""The Faust scoring worker.

``customers`` is consumed in micro-batches by an aiokafka consumer in the scoring
consumer group (``getmany``); each batch is scored with one matrix operation and
its scores, alerts and dead letters are sent and **acknowledged by the broker
before** the batch's input offsets are committed (at-least-once). Faust runs the
service around it: the ``/health`` page, the model-update follower, signals.
Faust's per-event stream machinery (``take_events``) capped the worker at a few
thousand events/s on this path, mostly waiting, so the hot loop reads directly.

Model-updated events are read by every worker outside the consumer group (each
worker must see every announcement), and the champion is swapped between
micro-batches.

Outputs go through the worker's own aiokafka producer, one record batch per
partition per micro-batch (:class:`BatchSender`), rather than one Faust send per
record: per-message sends were most of a micro-batch's time (``churn bench stream``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError
from aiokafka.partitioner import murmur2

from churn_stream.clients import kafka_kwargs
from churn_stream.settings import Settings
from schemas.profiles import TELCO
from schemas.topics import Topics
from stream_app.model_store import ModelStore, follow_model_updates
from stream_app.scoring import RawRecord, score_batch

logger = logging.getLogger(__name__)

#: Micro-batch bounds: at most this many events, or whatever arrived within the window.
MAX_BATCH = 2000
BATCH_WINDOW_S = 0.01

#: Producer record-batch size (bytes): a micro-batch's outputs to one partition fit in a few.
PRODUCE_BATCH_BYTES = 512 * 1024


@dataclass(frozen=True)
class WorkerTopics:
    """Topics one worker reads and writes (``model-updated`` is always the shared one)."""

    customers: str = Topics.CUSTOMERS
    scores: str = Topics.SCORES
    alerts: str = Topics.ALERTS
    dead_letters: str = Topics.CUSTOMERS_DLQ

    @classmethod
    def from_settings(cls, settings: Settings) -> "WorkerTopics":
        """The system's topics, each with ``settings.topic_suffix`` appended (benchmarks use one)."""
        suffix = settings.topic_suffix
        return cls(*(name + suffix for name in
                     (Topics.CUSTOMERS, Topics.SCORES, Topics.ALERTS, Topics.CUSTOMERS_DLQ)))


@lru_cache(maxsize=1 << 18)
def _key_hash(key: bytes) -> int:
    # aiokafka's murmur2 is pure Python; keys (customer ids) repeat, so cache the hash.
    return murmur2(key) & 0x7FFFFFFF


class BatchSender:
    """Send pre-encoded records with one producer batch per partition.

    Partitions are chosen exactly like the default (Java-compatible murmur2)
    partitioner, so a customer's scores land where per-record sends put them.

    Parameters
    ----------
    producer : aiokafka.AIOKafkaProducer
        Started; its ``max_batch_size`` bounds each record batch.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> list[asyncio.Future]:
        """Queue ``(key, value)`` records; return futures that resolve when the broker acknowledges them."""
        if not records:
            return []
        partitions = sorted(await self.producer.partitions_for(topic))
        n = len(partitions)
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
        for key, value in records:
            p = partitions[_key_hash(key) % n] if key is not None else random.choice(partitions)
            by_partition.setdefault(p, []).append((key, value))
        futures = []
        for partition, recs in by_partition.items():
            batch = self.producer.create_batch()
            for key, value in recs:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await self.producer.send_batch(batch, topic, partition=partition))
                    batch = self.producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"record of {len(value)} bytes exceeds the producer batch size")
            if batch.record_count():
                futures.append(await self.producer.send_batch(batch, topic, partition=partition))
        return futures


class WorkerStats:
    """Counters exposed on ``/health`` and ``/metrics``."""

    def __init__(self) -> None:
        self.events_in = 0
        self.scored = 0
        self.alerts = 0
        self.dead_letters = 0
        self.batches = 0
        self.last_batch_at: float | None = None


async def score_loop(consumer: AIOKafkaConsumer, sender: BatchSender, store: ModelStore, topics: WorkerTopics,
                     stats: WorkerStats) -> None:
    """Consume micro-batches, score each with one matrix operation, send outputs, commit; forever.

    A micro-batch's input offsets are committed only after the broker has acknowledged
    all of its scores, alerts and dead letters (at-least-once).
    """
    await store.ready.wait()
    while True:
        batch = await consumer.getmany(timeout_ms=int(BATCH_WINDOW_S * 1000), max_records=MAX_BATCH)
        if not batch:
            continue
        model = store.current  # one model for the whole micro-batch
        records = [RawRecord(m.topic, m.partition, m.offset, m.key, m.value) for msgs in batch.values() for m in msgs]
        result = score_batch(model, records)
        futures = await sender.send(topics.scores, result.scores)
        futures += await sender.send(topics.alerts, result.alerts)
        futures += await sender.send(topics.dead_letters, result.dead_letters)
        await asyncio.gather(*futures)
        for f in result.failures:
            logger.warning("dead letter %s[%d]@%d stage=%s error=%s", f.record.topic, f.record.partition,
                           f.record.offset, f.stage, f.error_message[:200])
        offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batch.items()}
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # Partitions moved to another worker mid-batch: it re-reads from the last
            # commit, so these outputs may be duplicated (recognisable by event_id), never lost.
            logger.warning("commit refused after rebalance partitions=%s error=%s",
                           ",".join(f"{tp.topic}[{tp.partition}]" for tp in offsets), exc)
        stats.events_in += len(records)
        stats.scored += len(result.scores)
        stats.alerts += len(result.alerts)
        stats.dead_letters += len(result.dead_letters)
        stats.batches += 1
        stats.last_batch_at = time.time()


def _broker_urls(settings: Settings) -> list[str]:
    return [f"kafka://{hp.strip()}" for hp in settings.kafka_bootstrap_servers.split(",") if hp.strip()]


def _broker_credentials(settings: Settings):
    """Faust credentials for SSL / SASL brokers (None for PLAINTEXT). Never logged: holds the password."""
    protocol = settings.kafka_security_protocol.strip().upper()
    if protocol == "PLAINTEXT":
        return None
    ctx = None
    if protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        ctx = create_ssl_context(cafile=settings.kafka_ssl_cafile or None)
    if protocol == "SSL":
        return faust.SSLCredentials(ctx)
    return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                 mechanism=settings.kafka_sasl_mechanism or "PLAIN", ssl_context=ctx)


def create_app(settings: Settings, store: ModelStore | None = None, topics: WorkerTopics | None = None) -> faust.App:
    """Build the Faust app with the scoring agent, the model-update listener and health pages.

    Parameters
    ----------
    settings : Settings
    store : ModelStore, optional
        Defaults to a store on the configured MLflow server.
    topics : WorkerTopics, optional
        Defaults to :meth:`WorkerTopics.from_settings`.

    Returns
    -------
    faust.App
    """
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    store = store or ModelStore(settings.mlflow_tracking_uri, expected_features=list(TELCO.features))
    topics = topics or WorkerTopics.from_settings(settings)
    stats = WorkerStats()
    app = faust.App(
        # Faust's own consumer only serves the app (no agents); it must not join the
        # scoring group, whose members use aiokafka's assignor.
        f"{settings.consumer_group}.app",
        broker=_broker_urls(settings),
        broker_credentials=_broker_credentials(settings),
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
        # Tansu completes a join only after the rebalance timeout; a short one keeps
        # start-up and failover quick while still far above a micro-batch's duration.
        broker_rebalance_timeout=5.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
    )
    app.churn_store = store  # type: ignore[attr-defined]
    app.churn_stats = stats  # type: ignore[attr-defined]
    state: dict[str, AIOKafkaConsumer] = {}

    @app.task
    async def score_customers() -> None:
        consumer = AIOKafkaConsumer(
            topics.customers, **kafka_kwargs(settings), group_id=settings.consumer_group,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=MAX_BATCH,
            fetch_max_wait_ms=int(BATCH_WINDOW_S * 1000), max_partition_fetch_bytes=4 * 1024 * 1024,
            # Tansu completes a join only after the rebalance timeout; a short one keeps
            # start-up and failover quick while still far above a micro-batch's duration.
            rebalance_timeout_ms=5000, session_timeout_ms=10000, heartbeat_interval_ms=1000)
        producer = AIOKafkaProducer(**kafka_kwargs(settings), acks="all",
                                    linger_ms=0, max_batch_size=PRODUCE_BATCH_BYTES,
                                    max_request_size=4 * PRODUCE_BATCH_BYTES, compression_type=None)
        await producer.start()
        await consumer.start()
        state["consumer"] = consumer
        try:
            await score_loop(consumer, BatchSender(producer), store, topics, stats)
        finally:
            state.pop("consumer", None)
            await consumer.stop()
            await producer.stop()

    @app.task
    async def watch_model_updates() -> None:
        await follow_model_updates(settings, store)

    @app.page("/health")
    async def health(web, request):  # noqa: ANN001
        consumer = state.get("consumer")
        assigned = len(consumer.assignment()) if consumer is not None else 0
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


def _ensure_worker_topics(settings: Settings, topics: WorkerTopics) -> None:
    """Create non-default worker topics (benchmarks) with the partitions of their defaults."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from churn_stream.clients import kafka_kwargs, topic_partitions

    partitions = topic_partitions(settings)
    wanted = {topics.customers: partitions[Topics.CUSTOMERS], topics.scores: partitions[Topics.SCORES],
              topics.alerts: partitions[Topics.ALERTS], topics.dead_letters: partitions[Topics.CUSTOMERS_DLQ]}

    async def create() -> None:
        admin = AIOKafkaAdminClient(**kafka_kwargs(settings))
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            new = [NewTopic(name, n, 1) for name, n in wanted.items() if name not in existing]
            if new:
                await admin.create_topics(new)
        finally:
            await admin.close()

    asyncio.run(create())


def run_worker(settings: Settings) -> None:
    """Run the worker until interrupted (blocking)."""
    from churn_stream.clients import ensure_topics

    ensure_topics(settings)
    topics = WorkerTopics.from_settings(settings)
    if topics != WorkerTopics():
        _ensure_worker_topics(settings, topics)
    app = create_app(settings, topics=topics)
    worker = faust.Worker(app, loglevel="INFO", quiet=True)
    worker.execute_from_commandline()
