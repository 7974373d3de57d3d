"""The naive and relay contenders of ``churn bench stream``, each run as a process of its own.

``python -m churn_stream.bench.stream_contenders naive|relay|librdkafka|pipe ...`` is how
:func:`churn_stream.bench.stream.run_bench_stream` starts them; the worker contender is
``churn worker`` itself, the Quix Streams one :mod:`churn_stream.bench.stream_quix`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC
from typing import Any

import numpy as np
import orjson

#: Micro-batch bound of the reference (aiokafka) relay.
RELAY_MAX_RECORDS = 2000
#: Micro-batch bound of the librdkafka relay: ``Consumer.consume(num_messages=...)``.
LIBRDKAFKA_MAX_RECORDS = 500
#: Seconds ``Consumer.consume`` waits for a first record (the aiokafka relay's ``timeout_ms=100``).
LIBRDKAFKA_CONSUME_TIMEOUT_S = 0.1
#: Seconds between the pass-through's offset commits (the worker's ``COMMIT_INTERVAL_S``).
PIPE_COMMIT_INTERVAL_S = 0.2


def _score_doc(ev, p: float, threshold: float, model_name: str, model_version: str, scored_at: str) -> dict:
    from schemas.events import SCHEMA_VERSION

    return {
        "event_id": ev.event_id,
        "event_time": ev.event_time.isoformat(),
        "schema_version": SCHEMA_VERSION,
        "customer_id": ev.customer_id,
        "churn_probability": p,
        "churn_label": p >= threshold,
        "threshold": threshold,
        "model_name": model_name,
        "model_version": model_version,
        "scored_at": scored_at,
    }


def _reasons(pipeline, X: np.ndarray, k: int = 3) -> list[list[dict]]:
    fn = getattr(pipeline.model, "feature_contributions", None)
    if fn is None or len(X) == 0:
        return [[] for _ in range(len(X))]
    contrib = fn(X)
    names = pipeline.feature_names_out
    top = np.argsort(-contrib, axis=1)[:, :k]
    return [
        [{"feature": names[j], "contribution": float(contrib[i, j])} for j in top[i] if contrib[i, j] > 0]
        for i in range(len(X))
    ]


def _faust_kwargs(bootstrap: str, partitions: int, data_dir: str) -> dict[str, Any]:
    return dict(
        broker=[f"kafka://{hp.strip()}" for hp in bootstrap.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=partitions,
        topic_allow_declare=True,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        datadir=data_dir,
        store="memory://",
        broker_rebalance_timeout=5.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
    )


def run_naive(args: argparse.Namespace) -> None:
    """The naive contender: a Faust agent, one event scored and sent at a time (blocking)."""
    from datetime import datetime

    import faust

    from schemas.events import CustomerEvent
    from scratch_models.pipeline import ScoringPipeline
    from stream_app.scoring import event_columns

    pipeline = ScoringPipeline.load(args.pipeline)
    names = pipeline.feature_names_in
    # Any: the pipeline types its model as BaseModel, which declares no predict_proba (each model does).
    model: Any = pipeline.model
    app = faust.App(args.group, **_faust_kwargs(args.bootstrap, args.partitions, args.data_dir))
    src = app.topic(args.input, value_serializer="raw", key_serializer="raw")
    scores = app.topic(args.output, value_serializer="raw", key_serializer="raw")
    alerts = app.topic(args.alerts, value_serializer="raw", key_serializer="raw")

    @app.agent(src)
    async def score(stream) -> None:
        async for event in stream.events():
            ev = CustomerEvent.model_validate_json(event.value)
            X = pipeline.transform(event_columns([ev], names))
            p = float(model.predict_proba(X)[0, 1])
            doc = _score_doc(
                ev, p, pipeline.threshold, args.model_name, args.model_version, datetime.now(UTC).isoformat()
            )
            key = ev.customer_id.encode()
            await scores.send(key=key, value=orjson.dumps(doc))
            if p >= pipeline.threshold:
                doc["reasons"] = _reasons(pipeline, X)[0]
                await alerts.send(key=key, value=orjson.dumps(doc))

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


async def _relay(args: argparse.Namespace) -> None:
    from datetime import datetime

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from schemas.events import CustomerEvent
    from scratch_models.pipeline import ScoringPipeline
    from stream_app.scoring import event_columns

    pipeline = ScoringPipeline.load(args.pipeline)
    names = pipeline.feature_names_in
    # Any: the pipeline types its model as BaseModel, which declares no predict_proba (each model does).
    model: Any = pipeline.model
    consumer = AIOKafkaConsumer(
        args.input,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=RELAY_MAX_RECORDS,
        rebalance_timeout_ms=5000,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=RELAY_MAX_RECORDS)
            msgs = [m for ms in batch.values() for m in ms]
            if not msgs:
                continue
            events = [CustomerEvent.model_validate_json(m.value) for m in msgs]
            X = pipeline.transform(event_columns(events, names))
            proba = model.predict_proba(X)[:, 1]
            scored_at = datetime.now(UTC).isoformat()
            docs = [
                _score_doc(ev, p, pipeline.threshold, args.model_name, args.model_version, scored_at)
                for ev, p in zip(events, proba.tolist())
            ]
            futures = [await producer.send(args.output, orjson.dumps(d), key=d["customer_id"].encode()) for d in docs]
            alert_rows = np.flatnonzero(proba >= pipeline.threshold)
            for i, reasons in zip(alert_rows.tolist(), _reasons(pipeline, X[alert_rows])):
                doc = dict(docs[i], reasons=reasons)
                futures.append(await producer.send(args.alerts, orjson.dumps(doc), key=doc["customer_id"].encode()))
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


def run_relay(args: argparse.Namespace) -> None:
    """The reference contender: a batching aiokafka consume -> score -> produce loop (blocking)."""
    asyncio.run(_relay(args))


def run_librdkafka_relay(args: argparse.Namespace) -> None:
    """The relay on librdkafka (``confluent_kafka``'s blocking Consumer and Producer), blocking.

    The aiokafka relay's loop and per-event work, on the other client: ``consume`` up to
    ``args.max_records`` records -> per-record pydantic validation -> one matrix score per
    batch -> produce every score and alert -> ``flush`` (every delivery acknowledged, an
    error raises) -> synchronous ``commit`` of the batch's offsets. Producer settings as the
    aiokafka relay's: ``acks=all``, 5 ms linger, 256 KiB batches.

    Raises
    ------
    RuntimeError
        If a record fails to be consumed or delivered (the relay stops, as the aiokafka
        relay does on an exception; its offsets stay uncommitted).
    """
    from datetime import datetime

    from confluent_kafka import Consumer, Producer

    from schemas.events import CustomerEvent
    from scratch_models.pipeline import ScoringPipeline
    from stream_app.scoring import event_columns

    pipeline = ScoringPipeline.load(args.pipeline)
    names = pipeline.feature_names_in
    # Any: the pipeline types its model as BaseModel, which declares no predict_proba (each model does).
    model: Any = pipeline.model
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
        }
    )
    failed: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(f"{msg.topic()}: {err}")

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 256 * 1024,
            "delivery.report.only.error": True,
            "on_delivery": delivered,
        }
    )
    consumer.subscribe([args.input])
    try:
        while True:
            msgs: list[Any] = consumer.consume(num_messages=args.max_records, timeout=LIBRDKAFKA_CONSUME_TIMEOUT_S)
            if not msgs:
                continue
            for m in msgs:
                if m.error() is not None:
                    raise RuntimeError(f"consume {m.topic()}[{m.partition()}]: {m.error()}")
            events = [CustomerEvent.model_validate_json(m.value()) for m in msgs]
            X = pipeline.transform(event_columns(events, names))
            proba = model.predict_proba(X)[:, 1]
            scored_at = datetime.now(UTC).isoformat()
            docs = [
                _score_doc(ev, p, pipeline.threshold, args.model_name, args.model_version, scored_at)
                for ev, p in zip(events, proba.tolist())
            ]
            for d in docs:
                producer.produce(args.output, orjson.dumps(d), d["customer_id"].encode())
            alert_rows = np.flatnonzero(proba >= pipeline.threshold)
            for i, reasons in zip(alert_rows.tolist(), _reasons(pipeline, X[alert_rows])):
                doc = dict(docs[i], reasons=reasons)
                producer.produce(args.alerts, orjson.dumps(doc), doc["customer_id"].encode())
            producer.flush()
            if failed:
                raise RuntimeError(f"{len(failed)} records not delivered, first: {failed[0]}")
            consumer.commit(asynchronous=False)
    finally:
        producer.flush(10)
        consumer.close()


def run_pipe(args: argparse.Namespace) -> None:
    """The broker's latency floor: every input record passed through to the output unchanged, no work.

    The worker's own librdkafka settings (:func:`stream_app.consumer.scoring_consumer_config`,
    :func:`stream_app.sender.output_producer_config`, connection from ``CHURN_*`` as the
    bench's) and its loop's shape without the scoring: ``consume`` up to
    ``args.max_records`` records waiting at most :data:`stream_app.loop.IDLE_WAIT_S`,
    ``produce`` each one's key and value to ``args.output``, ``poll(0)``, an asynchronous
    commit every :data:`PIPE_COMMIT_INTERVAL_S`. The output records are the customer events
    themselves (their ``event_id`` and ``event_time`` are what the collector reads), so
    its latency is what the broker and the clients take at that rate (its p50 a floor;
    its p99 follows the broker's cost, which grows with what the partitions hold).

    Raises
    ------
    RuntimeError
        If a record fails to be consumed or delivered.
    """
    import time

    from confluent_kafka import Consumer, Producer

    from plumbing.settings import Settings
    from stream_app.consumer import scoring_consumer_config
    from stream_app.loop import IDLE_WAIT_S
    from stream_app.sender import output_producer_config

    settings = Settings.from_env().with_overrides(kafka_bootstrap_servers=args.bootstrap)
    consumer = Consumer({**scoring_consumer_config(settings, group_id=args.group), "client.id": "bench-pipe"})
    failed: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(f"{msg.topic()}: {err}")

    producer = Producer({**output_producer_config(settings), "client.id": "bench-pipe", "on_delivery": delivered})
    consumer.subscribe([args.input])
    last_commit = time.monotonic()
    try:
        while True:
            msgs: list[Any] = consumer.consume(num_messages=args.max_records, timeout=IDLE_WAIT_S)
            for m in msgs:
                if m.error() is not None:
                    raise RuntimeError(f"consume {m.topic()}[{m.partition()}]: {m.error()}")
                producer.produce(args.output, m.value(), m.key())
            producer.poll(0)
            if failed:
                raise RuntimeError(f"{len(failed)} records not delivered, first: {failed[0]}")
            if msgs and time.monotonic() - last_commit >= PIPE_COMMIT_INTERVAL_S:
                consumer.commit(asynchronous=True)
                last_commit = time.monotonic()
    finally:
        producer.flush(10)
        consumer.close()


def main(argv: list[str] | None = None) -> None:
    """Entry of the naive, relay, librdkafka and pipe contender processes (started by :func:`run_bench_stream`)."""
    parser = argparse.ArgumentParser(prog="python -m churn_stream.bench.stream_contenders")
    parser.add_argument("kind", choices=("naive", "relay", "librdkafka", "pipe"))
    for opt in (
        "--bootstrap",
        "--input",
        "--output",
        "--alerts",
        "--group",
        "--pipeline",
        "--data-dir",
        "--model-name",
        "--model-version",
    ):
        parser.add_argument(opt, required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--max-records", type=int, default=LIBRDKAFKA_MAX_RECORDS, help="librdkafka relay, pipe: records per consume."
    )
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # Faust's Worker looks at sys.argv; it has no options of its own here
    {"naive": run_naive, "relay": run_relay, "librdkafka": run_librdkafka_relay, "pipe": run_pipe}[args.kind](args)


if __name__ == "__main__":  # pragma: no cover
    main()
