"""The Faust scoring worker.

``customers`` is consumed in micro-batches by a librdkafka consumer
(``confluent_kafka.Consumer``) in the scoring consumer group; each batch is scored with
one matrix operation and its scores, alerts and dead letters are queued on a librdkafka
producer and **acknowledged by the broker before** the batch's input offsets are
committed (at-least-once). Faust runs the service around the hot loop: its lifecycle and
signals, the ``/health`` and ``/metrics`` pages, the timers (lag, drift) and the
model-update follower. Faust's per-event stream machinery (``take_events``) capped the
worker at a few thousand events/s, and an aiokafka hot loop at ~20,000: fetching,
batching and delivery in C on librdkafka's threads leave the loop's thread to the
scoring (``churn bench stream``, the per-stage figures on ``/metrics``).

The loop never waits for the broker: once a batch's outputs are queued it consumes the
next one; delivery reports count each batch's acknowledgements down, and an
:class:`~stream_app.commit.OffsetCommitter` commits the acknowledged batches, in order,
every :data:`~stream_app.commit.COMMIT_INTERVAL_S` at most (all of them in one commit).
Waiting in the loop for both round trips (acks, then commit) held every record that
arrived meanwhile for their duration (``churn bench stream`` at 2,000 events/s).

Alerts: at most one per event, also when a crashed worker's uncommitted batches are
scored again: an :class:`~stream_app.alert_ledger.AlertLedger` drops alerts whose event
was alerted on already, and is filled from ``churn-alerts`` when partitions are assigned,
before any of them is scored. Guarantee and limits: :mod:`stream_app.alert_ledger`.

Model-updated events are read by every worker outside the consumer group (each
worker must see every announcement), and the champion is swapped between
micro-batches.

Outputs go through the worker's own librdkafka producer
(:class:`~stream_app.sender.OutputProducer`), with Kafka's default partitioner, rather
than one Faust send per record: per-message Faust sends were most of a micro-batch's time.

Operations, all recorded per micro-batch and never per event (after its commit, off
the fetch loop): ``/metrics``
(Prometheus text: events, scores, alerts, suppressed duplicate alerts, dead letters by stage,
batch-size, scoring and end-to-end latency histograms, seconds per hot-loop stage, lag,
model versions, reloads, PSI, shadow agreement, alert ledger recoveries),
``/health`` (ready only with a model and assigned partitions; 503 ``stalled`` when
lag waits longer than ``health_stall_s`` with no batch completing), a lag refresher
(end offsets at most once a second, off the hot loop), a PSI drift monitor published
to ``churn-drift`` every ``drift_interval_s``, value at risk on alerts when a
``sales-regressor`` champion is registered, and optional shadow scoring of the
``challenger`` (``CHURN_SHADOW=1``).

This module wires the Faust app (tasks, timers, web pages) and runs it; the pieces live
beside it:

- :mod:`stream_app.loop`: the hot loop, rebalance handling, the counters it keeps;
- :mod:`stream_app.commit`: in-flight batches, acknowledgements, offset commits;
- :mod:`stream_app.fetch_wait`: the fetch wait, lengthened on a starving broker;
- :mod:`stream_app.sender`: the output producer;
- :mod:`stream_app.consumer`: the scoring consumer's settings and its lag;
- :mod:`stream_app.topics`: the topics a worker reads and writes;
- :func:`plumbing.clients.rdkafka_config`, :func:`plumbing.clients.kafka_kwargs`,
  :func:`plumbing.clients.faust_credentials`: connections and SSL / SASL (librdkafka,
  aiokafka, Faust).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from confluent_kafka import Consumer
from faust.transport.consumer import ThreadDelegateConsumer

from plumbing.clients import ensure_topics, faust_credentials, kafka_kwargs, served_dataset
from plumbing.logs import limit_repeated_logs
from plumbing.settings import Settings
from stream_app.commit import on_commit
from stream_app.consumer import consumer_lag, scoring_consumer_config
from stream_app.contract import EventContract
from stream_app.drift import drift_document
from stream_app.loop import ScoringLoop, WorkerStats
from stream_app.metrics import CONTENT_TYPE
from stream_app.model_follow import follow_model_updates
from stream_app.model_store import ModelStore
from stream_app.sender import OutputProducer
from stream_app.topics import WorkerTopics, ensure_worker_topics

logger = logging.getLogger(__name__)

#: Longest each shutdown step (producer flush, last commit, each client's stop, Faust's own
#: consumer thread) may take. With the broker up each takes milliseconds; with it gone,
#: aiokafka retries the group coordinator for ever and Faust waited 60 s for its thread.
SHUTDOWN_STEP_S = 5.0
#: Seconds between the end of one consumer-lag reading and the start of the next.
LAG_REFRESH_INTERVAL_S = 1.0
#: Longest one consumer-lag reading (ListOffsets) may take; a failed or late one counts
#: towards ``/health``'s ``broker_unreachable`` (see :class:`stream_app.metrics.StallDetector`).
LAG_REFRESH_TIMEOUT_S = 5.0


def _broker_urls(settings: Settings) -> list[str]:
    return [f"kafka://{hp.strip()}" for hp in settings.kafka_bootstrap_servers.split(",") if hp.strip()]


async def _close_loop(loop: ScoringLoop) -> None:
    """:meth:`ScoringLoop.close` on a daemon thread, waited for at most ``3 * SHUTDOWN_STEP_S``.

    librdkafka's flush, synchronous commit and group leave block; with the broker gone the
    last two may not return at all, and a daemon thread does not keep the process alive.
    """
    done: asyncio.Future = asyncio.get_running_loop().create_future()
    aio = asyncio.get_running_loop()

    def settle(n: int | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(n)

    def close() -> None:
        try:
            n = loop.close(SHUTDOWN_STEP_S)
        except BaseException as exc:  # noqa: BLE001 - reported by the waiting coroutine
            aio.call_soon_threadsafe(settle, None, exc)
        else:
            aio.call_soon_threadsafe(settle, n, None)

    threading.Thread(target=close, name="churn-worker-close", daemon=True).start()
    try:
        committed = await asyncio.wait_for(asyncio.shield(done), timeout=3 * SHUTDOWN_STEP_S)
        logger.info("shutdown: committed %d acknowledged batches", committed)
    except Exception as exc:  # noqa: BLE001 - a failed last commit means re-scoring, never loss
        logger.warning(
            "shutdown: flush, last commit or group leave failed error=%s", f"{type(exc).__name__}: {exc}"[:200]
        )


def create_app(settings: Settings, store: ModelStore | None = None, topics: WorkerTopics | None = None) -> faust.App:
    """Build the Faust app with the scoring agent, the model-update listener and health pages.

    Parameters
    ----------
    settings : Settings
    store : ModelStore, optional
        Defaults to a store on the configured MLflow server.
    topics : WorkerTopics, optional
        Defaults to :meth:`WorkerTopics.from_settings`.

    The data set served is ``settings.dataset`` (``CHURN_DATASET``, ``--dataset``): its
    profile's contract decodes and featurises the events, and its namespace names the
    topics, the registered models followed and the consumer group.

    Returns
    -------
    faust.App

    Raises
    ------
    plumbing.clients.DatasetError
        If ``settings.dataset`` is no shipped profile and no valid profile file.
    """
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    profile, namespace = served_dataset(settings)
    store = store or ModelStore(
        settings.mlflow_tracking_uri,
        value_models=True,
        challengers=settings.shadow,
        contract=EventContract.for_profile(profile),
        namespace=namespace,
    )
    topics = topics or WorkerTopics.from_settings(settings, namespace)
    group = namespace.consumer_group
    logger.info(
        "serving dataset=%s contract=%s consumer_group=%s customers=%s scores=%s classifier=%s",
        namespace.dataset,
        profile.digest[:12],
        group,
        topics.customers,
        topics.scores,
        namespace.classifier_name,
    )
    stats = WorkerStats(stall_s=settings.health_stall_s, drift_window=settings.drift_window, shadow=settings.shadow)
    app = faust.App(
        # Faust's own consumer only serves the app (no agents); it must not join the
        # scoring group, whose members use aiokafka's assignor.
        f"{group}.app",
        broker=_broker_urls(settings),
        broker_credentials=faust_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=True,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        web_host="127.0.0.1",
        web_bind="127.0.0.1",  # web_host is only the advertised name; web_bind is the listening address
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
    state: dict[str, Any] = {}  # consumer, producer, loop while scoring

    @app.task
    async def score_customers() -> None:
        # Join the group only with a model to score with: a worker started while MLflow is
        # unreachable would otherwise take partitions from workers that can score them.
        await store.ready.wait()
        # Group-less: reads input timestamps and churn-alerts back when partitions are
        # assigned, and the end offsets for the lag.
        reader = AIOKafkaConsumer(
            **kafka_kwargs(settings), group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024
        )
        await reader.start()
        producer = OutputProducer.from_settings(settings)
        loop = ScoringLoop(
            lambda wait_ms: Consumer({**scoring_consumer_config(settings, group, wait_ms), "on_commit": on_commit}),
            producer,
            store,
            topics,
            stats,
            reader=reader,
            commit_interval_s=settings.worker_commit_interval_s,
        )
        state["loop"] = loop
        state["reader"] = reader
        try:
            await loop.run()
        finally:
            state.pop("loop", None)
            state.pop("reader", None)
            # Bounded (SHUTDOWN_STEP_S each): with the broker gone the worker still exits.
            await _close_loop(loop)
            try:
                await asyncio.wait_for(reader.stop(), timeout=SHUTDOWN_STEP_S)
            except Exception as exc:  # noqa: BLE001 - exiting anyway; the broker is likely gone
                logger.warning("shutdown: reader did not stop within %.0f s error=%s", SHUTDOWN_STEP_S, exc)

    @app.task
    async def watch_model_updates() -> None:
        await follow_model_updates(settings, store)

    @app.task
    async def follow_lag() -> None:
        # A task, not a Faust timer: on the durable Tansu a reading takes up to ~3 s, and a
        # timer logged a warning for every overlap.
        while True:
            await refresh_lag()
            await asyncio.sleep(LAG_REFRESH_INTERVAL_S)

    async def refresh_lag() -> None:
        # Off the hot loop, at most once a second: one ListOffsets request for the assignment.
        loop, reader = state.get("loop"), state.get("reader")
        if loop is None or reader is None or loop.consumer is None:
            return
        try:
            # Bounded: aiokafka would wait out its 40 s request timeout with the broker gone.
            if loop.assigned:
                lag = await asyncio.wait_for(
                    consumer_lag(loop.consumer, reader, sorted(loop.assigned), stats.committed),
                    timeout=LAG_REFRESH_TIMEOUT_S,
                )
            else:  # nothing to lag behind: still ask the broker, so /health knows it answers
                await asyncio.wait_for(
                    reader.end_offsets([AioTopicPartition(topics.customers, 0)]), timeout=LAG_REFRESH_TIMEOUT_S
                )
                lag = {}
        except Exception as exc:  # noqa: BLE001 - a failed refresh keeps the last reading
            error = f"{type(exc).__name__}: {exc}"[:200] if str(exc) else type(exc).__name__
            logger.warning("consumer lag refresh failed error=%s", error)
            stats.stall.lag_unreadable(error)
            return
        stats.stall.observe_lag(lag)
        stats.metrics.set_lag(lag)

    @app.timer(interval=max(0.5, settings.drift_interval_s))
    async def publish_drift() -> None:
        monitor, model, loop = stats.drift, stats.drift_model, state.get("loop")
        if monitor is None or model is None or loop is None or monitor.size == 0:
            return
        values = monitor.psi()
        stats.metrics.set_drift(values, monitor.size, settings.drift_psi_threshold)
        doc = drift_document(
            values,
            window_size=monitor.size,
            window_capacity=monitor.window,
            model_name=model.model_name,
            model_version=model.model_version,
            threshold=settings.drift_psi_threshold,
        )
        loop.producer.send_one(topics.drift, model.model_name.encode(), orjson.dumps(doc))
        if doc["alert"]:
            logger.warning(
                "input drift model_version=%s window=%d drifted=%s",
                model.model_version,
                monitor.size,
                ",".join(f"{f}={doc['psi'][f]:.3f}" for f in doc["drifted_features"]),
            )

    @app.page("/metrics")
    async def metrics(web, request):
        stats.metrics.sync_store(store)
        if stats.drift is not None and stats.drift.size:
            stats.metrics.set_drift(stats.drift.psi(), stats.drift.size, settings.drift_psi_threshold)
        # As a header: aiohttp refuses a content_type argument that carries a charset.
        return web.bytes(stats.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/health")
    async def health(web, request):
        loop = state.get("loop")
        assigned = len(loop.assigned) if loop is not None else 0
        verdict = stats.stall.evaluate(model_loaded=store.current is not None, assigned_partitions=assigned)
        ready = verdict.ready
        body = {
            "ready": ready,
            "status": verdict.status,
            "reason": verdict.reason,
            "lag": {f"{t}[{p}]": n for (t, p), n in sorted(stats.stall.lag.items())},
            "last_batch_at": stats.last_batch_at,
            "value_model_version": store.value_model.model_version if store.value_model else None,
            "dataset": namespace.dataset,
            "consumer_group": group,
            "model_name": store.current.model_name if store.current else None,
            "model_version": store.current.model_version if store.current else None,
            "assigned_partitions": assigned,
            "events_in": stats.events_in,
            "scored": stats.scored,
            "alerts": stats.alerts,
            "dead_letters": stats.dead_letters,
            "reloads_ok": store.reloads_ok,
            "reloads_failed": store.reloads_failed,
            "model_refusals": dict(getattr(store, "refusals", {})),
            "announcements_refused": dict(getattr(store, "announcements_refused", {})),
            "last_reload_error": store.last_error,
            "fetch_max_wait_ms": loop.fetch_wait.current_ms if loop is not None else None,
        }
        return web.json(body, status=verdict.status_code)

    return app


def run_worker(settings: Settings) -> None:
    """Run the worker until interrupted (blocking): create missing topics, build the app, start Faust.

    Parameters
    ----------
    settings : Settings
        Read once by the entry point (``churn worker``).
    """
    # Faust logs stderr as WARNING: MLflow's download progress bars became warnings on every reload.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    profile, namespace = served_dataset(settings)
    ensure_topics(settings, namespace)
    topics = WorkerTopics.from_settings(settings, namespace)
    ensure_worker_topics(settings, topics)  # suffixed topics (benchmarks, tests) and churn-drift
    app = create_app(settings, topics=topics)
    # Faust's own consumer leaves its group when stopped; with the broker gone that never
    # completes and mode waits its default 60 s for the thread.
    faust_consumer = app.consumer
    if not isinstance(faust_consumer, ThreadDelegateConsumer):
        raise TypeError(f"expected Faust's threaded aiokafka consumer, got {type(faust_consumer).__name__}")
    faust_consumer._thread.shutdown_timeout = SHUTDOWN_STEP_S  # no public setting
    worker = faust.Worker(app, loglevel="INFO", quiet=True)
    limit_repeated_logs(["aiokafka"])  # reconnection errors of the reader and of Faust's consumer thread
    limit_repeated_logs(["librdkafka"], kind_args=1)  # the scoring consumer's and producer's, per facility
    worker.execute_from_commandline()
