"""``churn bench faults``: inject faults into a running pipeline and count what was lost.

Each scenario streams at least 10,000 Telco customer events (rows replicated with fresh
event ids) through a real worker on topics and a consumer group of its own, injects one
fault mid-stream, then reads the scenario's ``churn-scores`` and ``customers.dlq`` back
from the beginning and counts:

``produced``
    records the broker acknowledged (the producer retries un-acknowledged ones itself);
``scored``
    distinct event ids on ``churn-scores``;
``lost``
    acknowledged *valid* events without a score (must be 0);
``duplicates``
    scores beyond the first per event id (at-least-once allows them);
``alerts``
    distinct event ids on ``churn-alerts``;
``alert_duplicates``
    alert *emissions* beyond the first per event id, i.e. distinct alert documents (each
    carries its ``scored_at``) for one event (must be 0: the worker emits an alert at most
    once per event, see :mod:`stream_app.alert_ledger`). Byte-identical copies are one
    emission the broker appended twice because a produce was retried after its
    acknowledgement was lost (a broker restart); they are counted in
    ``detail.alert_retry_copies``, and only an idempotent producer removes them (Apache
    Kafka has one; Tansu 0.6.0 refuses ``InitProducerId``). ``detail.alerts_missing``
    counts events scored at or above the threshold without an alert (must be 0);
``dead_lettered``
    distinct input records (partition, offset) on the dead-letter topic;
``recovery_s``
    seconds from the fault's end (the restart of what was stopped or killed, the departure of
    the second worker, the corrupt announcements) to the first score computed after it
    (``scored_at``); start-up of the restarted process is part of it.

Scenarios 1-6 share one stack with a **durable** broker (topics survive a broker restart);
7-8 run on a second stack whose broker is in memory, because a durable Tansu keeps its
topics in the very S3 that scenario 6 stops (in production Kafka does not depend on
MinIO). The worker is restarted only in ``worker_kill``, where killing it is the fault.

The scenario functions are what ``tests/integration/test_faults.py`` (``pytest -m faults``)
runs too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from plumbing.settings import Settings

logger = logging.getLogger(__name__)

#: The quick zoo whose champion serves every scenario.
FAST_ZOO = {"logistic_regression", "multiple_regression"}

#: Scenario names, in run order; the first five need the durable stack, the last two the batch stack.
STREAM_SCENARIOS = (
    "broker_restart",
    "worker_kill",
    "worker_join_leave",
    "durable_backlog",
    "malformed_events",
    "corrupt_artifact",
)
BATCH_SCENARIOS = ("s3_down_cycle", "mlflow_down_promotion")
SCENARIOS = STREAM_SCENARIOS + BATCH_SCENARIOS

#: Seconds the broker stays down in ``broker_restart``.
BROKER_OUTAGE_S = 30.0

#: One input record in this many is malformed in ``malformed_events``.
MALFORMED_EVERY = 100

#: Generous bounds for a loaded 2-core machine; none of them is asserted as a figure.
READY_TIMEOUT_S = 180.0
COLLECT_TIMEOUT_S = 420.0
COLLECT_IDLE_S = 150.0
#: Longest ``durable_backlog`` waits for the worker to drain its backlog.
DRAIN_TIMEOUT_S = 300.0

_FIELDS = (
    "scenario",
    "produced",
    "scored",
    "lost",
    "duplicates",
    "alerts",
    "alert_duplicates",
    "dead_lettered",
    "recovery_s",
    "passed",
)


@dataclass
class FaultResult:
    """What one scenario measured.

    Attributes
    ----------
    scenario : str
    produced : int
        Records acknowledged by the broker (malformed ones included).
    scored : int
        Distinct event ids with a score.
    lost : int
        Acknowledged valid events without a score.
    duplicates : int
        Scores beyond the first per event id.
    alerts : int
        Distinct event ids with an alert.
    alert_duplicates : int
        Alerts beyond the first per event id (must be 0).
    dead_lettered : int
        Distinct input records on the dead-letter topic.
    recovery_s : float or None
        Seconds from the fault's end until scoring resumed; ``None`` when the fault has no end
        (malformed input) or nothing was left to score after it.
    passed : bool
        ``lost == 0``, ``alert_duplicates == 0``, no alert missing, dead letters exactly the
        malformed records, and every scenario check held.
    checks : dict of str to bool
        The scenario's own checks (champion unchanged, failure reported, partitions shared, ...).
    detail : dict
        Figures behind the checks (versions, errors, assignments, producer retries).
    """

    scenario: str
    produced: int = 0
    scored: int = 0
    lost: int = 0
    duplicates: int = 0
    alerts: int = 0
    alert_duplicates: int = 0
    dead_lettered: int = 0
    recovery_s: float | None = None
    passed: bool = False
    checks: dict[str, bool] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, the required fields first."""
        d = asdict(self)
        return {k: d[k] for k in _FIELDS} | {"checks": d["checks"], "detail": d["detail"]}


@dataclass
class FaultEnv:
    """A running stack with a champion: what every scenario starts from.

    Attributes
    ----------
    stack : churn_stream.stack.LocalStack
    settings : Settings
        Pointed at ``stack``.
    champion : dict
        The classifier version promoted by the preparing cycle (``model_version``,
        ``artifact_uri``, ``sha256``, ``run_id``, ...).
    workdir : Path
        Worker logs go to ``workdir / "logs"``.
    base_events : list of (bytes, bytes)
        The Telco rows as customer events (key, value).
    """

    stack: Any
    settings: Settings
    champion: dict[str, Any]
    workdir: Path
    base_events: list[tuple[bytes, bytes]]


# ------------------------------------------------------------------ stacks
@contextlib.contextmanager
def fault_stack(workdir: Path, *, ephemeral: bool, base: Settings | None = None) -> Iterator[FaultEnv]:
    """Start a stack of its own in ``workdir``, train a quick champion on it, yield it, stop it.

    Parameters
    ----------
    workdir : Path
    ephemeral : bool
        Broker topics in memory (batch scenarios) or in S3 (stream scenarios: broker restarts).
    base : Settings, optional
        Settings to point at the stack (partitions, thresholds); default ``Settings()``.
    """
    from batch.cycle import run_cycle
    from churn_stream.demo import TELCO_CSV
    from churn_stream.produce import csv_to_customer_events
    from churn_stream.stack import LocalStack
    from plumbing.clients import ensure_topics, make_storage, make_tracker

    workdir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack.for_tests(workdir / "stack")
    try:
        t0 = time.monotonic()
        stack.up(ephemeral=ephemeral)
        settings = stack.settings(base)
        ensure_topics(settings)
        logger.info(
            "fault stack up mode=%s after_s=%.1f", "ephemeral" if ephemeral else "durable", time.monotonic() - t0
        )
        cycle = run_cycle(settings, make_storage(settings), make_tracker(settings), only=FAST_ZOO, margin=-1.0)
        yield FaultEnv(stack, settings, cycle.registered, workdir, csv_to_customer_events(TELCO_CSV))
    finally:
        stack.down()


def _fresh_events(base: list[tuple[bytes, bytes]], n: int) -> list[tuple[bytes, bytes, str]]:
    """``n`` events cycling over ``base``, every one with a fresh event id: (key, value, event_id)."""
    from schemas.events import new_event_id

    out = []
    for i in range(n):
        key, value = base[i % len(base)]
        doc = orjson.loads(value)
        doc["event_id"] = new_event_id()
        out.append((key, orjson.dumps(doc), doc["event_id"]))
    return out


def malformed_value(kind: int, valid: bytes) -> bytes | None:
    """One of ten malformed record values derived from the valid event ``valid``.

    0 not JSON, 1 not UTF-8, 2 empty, 3 null record value (tombstone), 4 JSON ``null``,
    5 missing field, 6 wrong type, 7 ``NaN``, 8 negative number, 9 null categorical.
    """
    doc = orjson.loads(valid)
    doc["event_id"] = f"malformed-{kind}-{uuid.uuid4().hex[:12]}"
    kind %= 10
    if kind == 0:
        return b"not json at all"
    if kind == 1:
        return b"\xff\xfe\x00 not utf-8"
    if kind == 2:
        return b""
    if kind == 3:
        return None
    if kind == 4:
        return b"null"
    if kind == 5:
        return orjson.dumps({k: v for k, v in doc.items() if k != "contract"})
    if kind == 6:
        return orjson.dumps(doc | {"tenure_months": "twelve"})
    if kind == 7:
        return orjson.dumps(doc | {"monthly_charges_usd": "__NaN__"}).replace(b'"__NaN__"', b"NaN")
    if kind == 8:
        return orjson.dumps(doc | {"monthly_charges_usd": -5.0})
    return orjson.dumps(doc | {"gender": None})


# --------------------------------------------------------------- producer
class RobustProducer(threading.Thread):
    """Produce records at a steady rate in a thread of its own, surviving broker outages.

    aiokafka raises on ``send`` (or on its acknowledgement) while the broker is down; the
    records not acknowledged are retried with a new producer after a pause, until every
    one is acknowledged or :meth:`cancel` is called. Only acknowledged records count.

    Parameters
    ----------
    settings : Settings
    topic : str
    records : list of (bytes or None, bytes or None, str or None)
        ``(key, value, event_id)``; ``event_id`` is ``None`` for malformed records.
    rate : float
        Records per second for first attempts (retries go as fast as the broker takes them).
    batch_bytes : int, optional
        The producer's ``max_batch_size`` (aiokafka's default, 16 KiB, when None); about one
        record's size sends one record per record batch, like a producer sending each event
        on its own.
    """

    CHUNK = 50

    def __init__(
        self, settings: Settings, topic: str, records: list, rate: float, batch_bytes: int | None = None
    ) -> None:
        super().__init__(name="fault-producer", daemon=True)
        self.settings, self.topic, self.records, self.rate = settings, topic, records, rate
        self.batch_bytes = batch_bytes
        self.acked = [False] * len(records)
        self.n_acked = 0
        self.send_failures = 0
        self.last_error: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stop retrying (used when a scenario gives up)."""
        self._cancel.set()

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    def acked_ids(self) -> set[str]:
        return {r[2] for r, ok in zip(self.records, self.acked) if ok and r[2] is not None}

    def acked_malformed(self) -> int:
        return sum(1 for r, ok in zip(self.records, self.acked) if ok and r[2] is None)

    def wait_acked(self, fraction: float, timeout_s: float = 300.0) -> None:
        """Block until ``fraction`` of the records are acknowledged (the fault's "mid-stream")."""
        deadline = time.monotonic() + timeout_s
        while self.n_acked < fraction * len(self.records) and not self.done:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"producer acknowledged only {self.n_acked}/{len(self.records)} "
                    f"in {timeout_s:.0f} s (last error: {self.last_error})"
                )
            time.sleep(0.05)

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        finally:
            self.finished_at = time.time()

    async def _produce(self) -> None:
        from aiokafka import AIOKafkaProducer

        from plumbing.clients import kafka_kwargs

        pending = list(range(len(self.records)))
        first_sent = 0
        self.started_at = time.time()
        t0 = time.monotonic()
        while pending and not self._cancel.is_set():
            batching = {"max_batch_size": self.batch_bytes} if self.batch_bytes else {}
            producer = AIOKafkaProducer(
                **kafka_kwargs(self.settings),
                acks="all",
                linger_ms=5,
                request_timeout_ms=15000,
                retry_backoff_ms=250,
                **batching,
            )
            try:
                await producer.start()
                while pending and not self._cancel.is_set():
                    chunk, rest = pending[: self.CHUNK], pending[self.CHUNK :]
                    fresh = sum(1 for i in chunk if i >= first_sent)
                    delay = t0 + first_sent / self.rate - time.monotonic()
                    if fresh and delay > 0:
                        await asyncio.sleep(delay)
                    first_sent = max(first_sent, max(chunk) + 1)
                    futures = []
                    for i in chunk:
                        key, value, _ = self.records[i]
                        futures.append(await producer.send(self.topic, value, key=key))
                    results = await asyncio.gather(*futures, return_exceptions=True)
                    failed = []
                    for i, res in zip(chunk, results):
                        if isinstance(res, BaseException):
                            failed.append(i)
                            self.last_error = f"{type(res).__name__}: {res}"
                        elif not self.acked[i]:
                            self.acked[i] = True
                            self.n_acked += 1
                    pending = failed + rest
                    if failed:
                        raise ConnectionError(f"{len(failed)} sends not acknowledged: {self.last_error}")
            except Exception as exc:  # noqa: BLE001 - any send failure: pause, reconnect, resend the rest
                self.send_failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("produce failed, retrying %d records in 1 s error=%s", len(pending), self.last_error)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), timeout=10)


# ------------------------------------------------------------------ workers
class ScenarioRun:
    """Topics, consumer group and worker processes of one scenario."""

    def __init__(self, env: FaultEnv, name: str) -> None:
        from churn_stream.stack import LocalStack
        from stream_app.topics import WorkerTopics

        self.env, self.name = env, name
        tag = f"{name}-{uuid.uuid4().hex[:6]}"
        self.settings = env.settings.with_overrides(topic_suffix=f"-fault-{tag}", consumer_group=f"churn-fault-{tag}")
        self.topics = WorkerTopics.from_settings(self.settings)
        self.workers: list[tuple[Any, Settings]] = []
        self._free_port = lambda: LocalStack.free_ports(1)[0]
        asyncio.run(self._create_topics())

    async def _create_topics(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        from plumbing.clients import kafka_kwargs

        t = self.topics
        n = self.settings.topic_partitions
        admin = AIOKafkaAdminClient(**kafka_kwargs(self.settings))
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(t.customers, n, 1),
                    NewTopic(t.scores, n, 1),
                    NewTopic(t.alerts, n, 1),
                    NewTopic(t.dead_letters, 1, 1),
                    NewTopic(t.drift, 1, 1),
                ]
            )
        finally:
            await admin.close()

    def start_worker(self, wait: bool = True):
        """Start a worker of this scenario's group on a web port of its own; wait until ready."""
        from churn_stream.demo import start_worker, wait_worker_ready

        settings = self.settings.with_overrides(worker_web_port=self._free_port())
        log = self.env.workdir / "logs" / f"worker-{self.settings.consumer_group}-{len(self.workers)}.log"
        proc = start_worker(settings, log)
        self.workers.append((proc, settings))
        if wait:
            wait_worker_ready(settings, proc, timeout_s=READY_TIMEOUT_S)
        return proc, settings

    def stop_all(self) -> None:
        from churn_stream.demo import stop_worker

        for proc, _ in self.workers:
            stop_worker(proc)


def health(settings: Settings) -> dict[str, Any]:
    """The worker's ``/health`` body (``{}`` when it does not answer)."""
    try:
        return httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/health", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return {}


def _wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)


# --------------------------------------------------------------- collecting
async def _input_duplicates(settings: Settings, topic: str) -> int:
    """Event ids written more than once to the input ``topic`` (a resend whose first acknowledgement was lost)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from plumbing.clients import kafka_kwargs
    from stream_app.alert_ledger import log_end_offsets

    consumer = AIOKafkaConsumer(**kafka_kwargs(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    seen: set[bytes] = set()
    dup = 0
    try:
        await consumer._client.force_metadata_update()  # metadata of fresh topics
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        ends = await log_end_offsets(consumer, tps)  # Tansu's end_offsets stop short of the last batch
        await consumer.seek_to_beginning(*tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                for m in msgs:
                    try:
                        eid = orjson.loads(m.value).get("event_id") if m.value else None
                    except (orjson.JSONDecodeError, AttributeError):
                        continue
                    if eid is None or str(eid).startswith("malformed-"):
                        continue
                    dup += eid in seen
                    seen.add(eid)
    finally:
        await consumer.stop()
    return dup


async def _collect(
    settings: Settings,
    scores_topic: str,
    dlq_topic: str,
    want: set[str],
    want_dlq: int,
    timeout_s: float = COLLECT_TIMEOUT_S,
    idle_s: float = COLLECT_IDLE_S,
    alerts_topic: str | None = None,
) -> dict[str, Any]:
    """Read ``scores_topic``, ``dlq_topic`` (and ``alerts_topic``) from the beginning until every wanted id
    has a score and ``want_dlq`` dead letters are in, or nothing new came for ``idle_s``; then read
    ``alerts_topic`` to its end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from plumbing.clients import kafka_kwargs
    from stream_app.alert_ledger import log_end_offsets

    consumer = AIOKafkaConsumer(
        **kafka_kwargs(settings), group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024
    )
    await consumer.start()
    counts: dict[str, int] = {}
    alert_counts: dict[str, int] = {}
    alert_docs: dict[str, set[bytes]] = {}  # distinct alert documents per event id
    labelled: set[str] = set()  # event ids scored at or above the threshold
    scored_at: list[float] = []
    dead: set[tuple[int, int]] = set()
    try:
        await consumer._client.force_metadata_update()  # metadata of fresh topics
        topics = (scores_topic, dlq_topic) + ((alerts_topic,) if alerts_topic else ())
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or []]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_new < idle_s:
            if want <= counts.keys() and len(dead) >= want_dlq:
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, msgs in batch.items():
                for m in msgs:
                    last_new = time.monotonic()
                    doc = orjson.loads(m.value)
                    if tp.topic == dlq_topic:
                        dead.add((doc["partition"], doc["offset"]))
                        continue
                    eid = doc["event_id"]
                    if tp.topic == alerts_topic:
                        alert_counts[eid] = alert_counts.get(eid, 0) + 1
                        alert_docs.setdefault(eid, set()).add(m.value)
                        continue
                    counts[eid] = counts.get(eid, 0) + 1
                    if doc["churn_label"]:
                        labelled.add(eid)
                    scored_at.append(datetime.fromisoformat(doc["scored_at"]).timestamp())
        if alerts_topic:
            # Every output of a micro-batch is acknowledged before its commit: the alerts of
            # the scores read are in already; read the alert partitions to their end.
            alert_tps = [tp for tp in tps if tp.topic == alerts_topic]
            positions = {tp: await consumer.position(tp) for tp in alert_tps}
            ends = await log_end_offsets(consumer, alert_tps)
            for tp in alert_tps:
                consumer.seek(tp, positions[tp])
            while [tp for tp in alert_tps if await consumer.position(tp) < ends[tp]]:
                for msgs in (await consumer.getmany(*alert_tps, timeout_ms=500, max_records=10_000)).values():
                    for m in msgs:
                        eid = orjson.loads(m.value)["event_id"]
                        alert_counts[eid] = alert_counts.get(eid, 0) + 1
                        alert_docs.setdefault(eid, set()).add(m.value)
    finally:
        await consumer.stop()
    return {
        "counts": counts,
        "scored_at": scored_at,
        "dead_letters": len(dead),
        "alert_counts": alert_counts,
        "alert_emissions": {eid: len(docs) for eid, docs in alert_docs.items()},
        "labelled": labelled,
    }


# ---------------------------------------------------------------- scenarios
def _stream_scenario(
    env: FaultEnv,
    name: str,
    fault: Callable[[ScenarioRun, RobustProducer], dict[str, Any]],
    events: int,
    rate: float,
    malformed_every: int | None = None,
    worker_first: bool = True,
    batch_bytes: int | None = None,
) -> FaultResult:
    """Stream ``events`` records through one worker while ``fault`` runs; count what came out.

    ``fault(run, producer)`` returns ``{"fault_end": epoch seconds or None, "checks": {...},
    "detail": {...}}``. With ``worker_first=False`` no worker is started before the
    producer: ``fault`` starts it. ``batch_bytes``: see :class:`RobustProducer`.
    """
    t_start = time.monotonic()
    run = ScenarioRun(env, name)
    records: list[tuple[bytes | None, bytes | None, str | None]] = []
    for i, (key, value, eid) in enumerate(_fresh_events(env.base_events, events)):
        if malformed_every and i % malformed_every == malformed_every - 1:
            records.append((b"malformed", malformed_value(i // malformed_every, value), None))
        else:
            records.append((key, value, eid))
    producer = RobustProducer(run.settings, run.topics.customers, records, rate, batch_bytes=batch_bytes)
    result = FaultResult(name)
    try:
        if worker_first:
            run.start_worker()
        logger.info("scenario=%s producing %d records at %.0f/s", name, len(records), rate)
        producer.start()
        outcome = fault(run, producer)
        producer.join(timeout=COLLECT_TIMEOUT_S)
        if producer.is_alive():
            producer.cancel()
            producer.join(timeout=30)
        want = producer.acked_ids()
        want_dlq = producer.acked_malformed()
        seen = asyncio.run(
            _collect(
                run.settings, run.topics.scores, run.topics.dead_letters, want, want_dlq, alerts_topic=run.topics.alerts
            )
        )
        counts = seen["counts"]
        alert_counts = seen["alert_counts"]
        result.produced = producer.n_acked
        result.scored = len(counts.keys() & want)
        result.lost = len(want - counts.keys())
        result.duplicates = sum(c - 1 for eid, c in counts.items() if eid in want)
        result.alerts = len(alert_counts)
        # An alert document carries its ``scored_at``: the worker emitting an event's alert
        # twice gives two different documents. Byte-identical copies are one emission the
        # broker appended twice (a produce retried after a lost acknowledgement); only an
        # idempotent producer prevents those, and Tansu refuses InitProducerId.
        emissions = seen["alert_emissions"]
        result.alert_duplicates = sum(c - 1 for c in emissions.values())
        alert_retry_copies = sum(alert_counts.values()) - sum(emissions.values())
        alerts_missing = len(seen["labelled"] - alert_counts.keys())
        result.dead_lettered = seen["dead_letters"]
        fault_end = outcome.get("fault_end")
        if fault_end is not None:
            after = [t for t in seen["scored_at"] if t >= fault_end]
            result.recovery_s = round(min(after) - fault_end, 2) if after else None
        result.checks = dict(outcome.get("checks", {}))
        result.checks["producer_acked_all"] = producer.n_acked == len(records)
        result.detail = dict(outcome.get("detail", {}))
        input_dups = asyncio.run(_input_duplicates(run.settings, run.topics.customers))
        result.detail.update(
            producer_send_failures=producer.send_failures,
            malformed=want_dlq,
            input_duplicates=input_dups,
            scoring_duplicates=result.duplicates - input_dups,
            alerts_missing=alerts_missing,
            alert_retry_copies=alert_retry_copies,
            unscored_sample=sorted(want - counts.keys())[:5],
            elapsed_s=round(time.monotonic() - t_start, 1),
        )
        if producer.last_error:
            result.detail["producer_last_error"] = producer.last_error[:200]
        result.passed = (
            result.lost == 0
            and result.alert_duplicates == 0
            and alerts_missing == 0
            and result.dead_lettered == want_dlq
            and all(result.checks.values())
        )
        return result
    finally:
        producer.cancel()
        run.stop_all()


def broker_restart(env: FaultEnv, events: int = 10_000, outage_s: float = BROKER_OUTAGE_S) -> FaultResult:
    """1. The (durable) broker is stopped for ``outage_s`` mid-stream and restarted."""

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        producer.wait_acked(0.3)
        acked_before = producer.n_acked
        t_stop = time.time()
        env.stack.stop_service("kafka")
        logger.info("scenario=broker_restart broker stopped; sleeping %.0f s", outage_s)
        time.sleep(outage_s)
        # Recovery counts from the restart, so the broker's own start-up is part of it.
        fault_end = time.time()
        env.stack.start_service("kafka")
        broker_start_s = time.time() - fault_end
        proc, settings = run.workers[0]
        return {
            "fault_end": fault_end,
            "checks": {"worker_alive": proc.poll() is None},
            "detail": {
                "outage_s": round(fault_end - t_stop, 1),
                "broker_start_s": round(broker_start_s, 2),
                "acked_before_stop": acked_before,
            },
        }

    return _stream_scenario(env, "broker_restart", fault, events, rate=300.0)


def worker_kill(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """2. The worker is killed with SIGKILL mid-stream and a new one is started in its place."""

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        producer.wait_acked(0.3)
        proc, _ = run.workers[0]
        killed_at = producer.n_acked
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        fault_end = time.time()
        _, settings = run.start_worker()
        return {
            "fault_end": fault_end,
            "checks": {"replacement_ready": bool(health(settings).get("ready"))},
            "detail": {"killed_pid": proc.pid, "killed_at_acked": killed_at},
        }

    return _stream_scenario(env, "worker_kill", fault, events, rate=300.0)


def worker_join_leave(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """3. A second worker joins the group mid-stream (the 4 partitions are shared), then leaves (SIGTERM)."""
    from churn_stream.demo import stop_worker

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        producer.wait_acked(0.1)
        _, first = run.workers[0]
        second_proc, second = run.start_worker()
        n = run.settings.topic_partitions

        def shared() -> bool:
            a, b = health(first).get("assigned_partitions", 0), health(second).get("assigned_partitions", 0)
            return a > 0 and b > 0 and a + b == n

        was_shared = _wait_until(shared, 120)
        split = [health(first).get("assigned_partitions"), health(second).get("assigned_partitions")]
        # Being assigned is not yet scoring: the joiner first reads the alert ledger back
        # for its partitions. Give it the time to score some of the still-flowing stream.
        _wait_until(lambda: health(second).get("events_in", 0) > 0, 30)
        second_events = health(second).get("events_in", 0)
        flowing = not producer.done
        stop_worker(second_proc)
        fault_end = time.time()
        took_back = _wait_until(lambda: health(first).get("assigned_partitions") == n, 120)
        return {
            "fault_end": fault_end,
            "checks": {
                "partitions_shared": was_shared,
                "second_worker_scored": second_events > 0,
                "first_worker_took_all_back": took_back,
                "second_exited_cleanly": second_proc.returncode == 0,
            },
            "detail": {
                "assignment_while_shared": split,
                "second_worker_events_in": second_events,
                "stream_still_flowing_at_leave": flowing,
            },
        }

    return _stream_scenario(env, "worker_join_leave", fault, events, rate=200.0)


def durable_backlog(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """4. A backlog of one-record batches waits on the durable broker; then the worker starts.

    The durable Tansu answers a fetch empty when reading the partition from S3 takes longer
    than the fetch's wait: with the worker's 10 ms a backlog like this one was never read
    (a user's ``churn produce`` on the default stack; ``/health`` "stalled"). The worker must
    drain it on its own (:class:`stream_app.fetch_wait.AdaptiveFetchWait`).
    """

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        producer.join()
        t_start = time.time()
        _, settings = run.start_worker()
        drained = _wait_until(lambda: health(settings).get("events_in", 0) >= producer.n_acked, DRAIN_TIMEOUT_S)
        after = health(settings)
        return {
            "fault_end": t_start,
            "checks": {"backlog_drained": drained, "worker_ready_after": bool(after.get("ready"))},
            "detail": {
                "drain_s": round(time.time() - t_start, 1),
                "events_in": after.get("events_in"),
                "fetch_max_wait_ms": after.get("fetch_max_wait_ms"),
            },
        }

    # ~900-byte batches: one Telco event each. Produced as fast as the broker acknowledges.
    return _stream_scenario(env, "durable_backlog", fault, events, rate=5000.0, worker_first=False, batch_bytes=900)


def malformed_events(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """5. One record in :data:`MALFORMED_EVERY` is malformed, in ten different ways (see :func:`malformed_value`)."""

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        producer.join()
        _, settings = run.workers[0]
        return {"fault_end": None, "checks": {"worker_ready_after": bool(health(settings).get("ready"))}}

    return _stream_scenario(env, "malformed_events", fault, events, rate=1000.0, malformed_every=MALFORMED_EVERY)


def corrupt_artifact(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """6. Two corrupt champions are announced on ``model-updated`` mid-stream.

    One names the real champion's artifact with a wrong SHA-256; the other points at a
    non-npz file uploaded as an artifact of the champion's real run, with its true
    SHA-256. The worker must refuse both, report it, keep its champion and keep scoring.
    """
    from batch.announce import publish_model_updated
    from plumbing.clients import make_tracker

    champion = env.champion

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        producer.wait_acked(0.3)
        _, settings = run.workers[0]
        before = health(settings)
        bad = b"this is not an npz archive\n" * 64
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pipeline.npz"
            path.write_bytes(bad)
            make_tracker(env.settings).log_artifact(champion["run_id"], str(path), artifact_path="corrupt")
        wrong_sha = dict(champion, alias="champion", model_version="9001", sha256="0" * 64)
        not_npz = dict(
            champion,
            alias="champion",
            model_version="9002",
            artifact_uri=f"runs:/{champion['run_id']}/corrupt/pipeline.npz",
            sha256=hashlib.sha256(bad).hexdigest(),
        )
        publish_model_updated(env.settings, wrong_sha)
        publish_model_updated(env.settings, not_npz)
        fault_end = time.time()
        reported = _wait_until(
            lambda: health(settings).get("reloads_failed", 0) >= before.get("reloads_failed", 0) + 2, 120
        )
        producer.join()
        after = health(settings)
        return {
            "fault_end": fault_end,
            "checks": {
                "champion_unchanged": after.get("model_version") == champion["model_version"],
                "failure_reported": reported,
            },
            "detail": {
                "model_version": after.get("model_version"),
                "reloads_failed": after.get("reloads_failed"),
                "reloads_ok": after.get("reloads_ok"),
            },
        }

    return _stream_scenario(env, "corrupt_artifact", fault, events, rate=400.0)


@contextlib.contextmanager
def _mlflow_fails_fast() -> Iterator[None]:
    # MLflow's client retries a dead server for minutes by default and reads these from the
    # process environment only; the outage must surface as an error within seconds.
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _StopS3OnFirstTrainedModel(logging.Handler):
    """Stops S3 once the cycle logs its first trained model (mid-training: artifacts still to upload)."""

    def __init__(self, stack) -> None:
        super().__init__(logging.INFO)
        self.stack, self.stopped = stack, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.stopped and record.getMessage().startswith("trained model="):
            self.stopped = True
            self.stack.stop_service("s3")


class _StopMlflowOnAliasMove:
    """An MLflow client that stops the tracking server just before the first alias moves (promotion)."""

    def __init__(self, tracker, stack) -> None:
        self._tracker, self._stack, self.stopped = tracker, stack, False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._tracker, name)
        if name != "set_registered_model_alias" or self.stopped:
            return attr

        def move_alias(*args: Any, **kwargs: Any) -> Any:
            self.stopped = True
            self._stack.stop_service("mlflow")
            return attr(*args, **kwargs)

        return move_alias


def _champion_version(settings: Settings) -> str | None:
    from batch.promotion import CLASSIFIER_NAME, current_champion
    from plumbing.clients import make_tracker

    champ = current_champion(make_tracker(settings), CLASSIFIER_NAME)
    return None if champ is None else str(champ.version)


def _batch_fault(
    env: FaultEnv, service: str, expected_stage: str
) -> Callable[[ScenarioRun, RobustProducer], dict[str, Any]]:
    """The fault of scenarios 6 and 7: a cycle with ``service`` going down, then a restart and a good cycle."""
    from batch.cycle import CycleError, run_cycle
    from plumbing.clients import make_storage, make_tracker

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        settings = env.settings
        before = _champion_version(settings)
        producer.wait_acked(0.1)
        storage, tracker = make_storage(settings), make_tracker(settings)
        handler = None
        if service == "S3":
            handler = _StopS3OnFirstTrainedModel(env.stack)
            training_log = logging.getLogger("batch.training")
            training_log.addHandler(handler)
            training_log.setLevel(logging.INFO)
            cycle_tracker: Any = tracker
        else:
            cycle_tracker = _StopMlflowOnAliasMove(tracker, env.stack)
        error: CycleError | None = None
        t0 = time.monotonic()
        with _mlflow_fails_fast():
            try:
                run_cycle(settings, storage, cycle_tracker, only=FAST_ZOO, margin=-1.0)
            except CycleError as exc:
                error = exc
            finally:
                if handler is not None:
                    logging.getLogger("batch.training").removeHandler(handler)
        failed_after_s = time.monotonic() - t0
        fault_end = time.time()
        env.stack.start_service("s3" if service == "S3" else "mlflow")
        unchanged = _champion_version(settings) == before
        nxt = run_cycle(settings, storage, tracker, only=FAST_ZOO, margin=-1.0)
        after = _champion_version(settings)
        _, wsettings = run.workers[0]
        swapped = _wait_until(lambda: health(wsettings).get("model_version") == after, 60)
        producer.join()
        return {
            "fault_end": fault_end,
            "checks": {
                "cycle_failed_with_cycle_error": error is not None and error.service == service,
                f"failed_during_{expected_stage}": error is not None and error.stage == expected_stage,
                "champion_unchanged_after_failure": unchanged,
                "next_cycle_promoted": after == nxt.registered.get("model_version") != before,
                "worker_swapped_to_next_champion": swapped,
            },
            "detail": {
                "error": str(error)[:200] if error else None,
                "failed_after_s": round(failed_after_s, 1),
                "champion_before": before,
                "champion_after_next_cycle": after,
            },
        }

    return fault


def s3_down_cycle(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """7. S3 stops during a batch cycle's training while the stream flows; then the next cycle succeeds."""
    return _stream_scenario(env, "s3_down_cycle", _batch_fault(env, "S3", "train_classification"), events, rate=200.0)


def mlflow_down_promotion(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """8. MLflow stops as the cycle moves the champion alias, while the stream flows; then the next cycle succeeds."""
    return _stream_scenario(env, "mlflow_down_promotion", _batch_fault(env, "MLflow", "promote"), events, rate=200.0)


SCENARIO_FUNCS: dict[str, Callable[..., FaultResult]] = {
    "broker_restart": broker_restart,
    "worker_kill": worker_kill,
    "worker_join_leave": worker_join_leave,
    "durable_backlog": durable_backlog,
    "malformed_events": malformed_events,
    "corrupt_artifact": corrupt_artifact,
    "s3_down_cycle": s3_down_cycle,
    "mlflow_down_promotion": mlflow_down_promotion,
}


# --------------------------------------------------------------------- run
def format_table(results: list[FaultResult]) -> str:
    """The results as a fixed-width table, then each scenario's failed checks."""
    rows = [list(_FIELDS)]
    for r in results:
        rows.append(
            [
                r.scenario,
                str(r.produced),
                str(r.scored),
                str(r.lost),
                str(r.duplicates),
                str(r.alerts),
                str(r.alert_duplicates),
                str(r.dead_lettered),
                "-" if r.recovery_s is None else f"{r.recovery_s:.2f}",
                "yes" if r.passed else "NO",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_FIELDS))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    for r in results:
        failed = [k for k, ok in r.checks.items() if not ok]
        if failed or r.detail.get("error_in_harness"):
            lines.append(f"{r.scenario}: failed checks {failed} detail {orjson.dumps(r.detail).decode()[:400]}")
    return "\n".join(lines)


def run_bench_faults(
    settings: Settings | None = None,
    events: int = 10_000,
    json_path: Path | None = None,
    only: tuple[str, ...] | None = None,
) -> list[FaultResult]:
    """Run the fault scenarios on stacks of their own; print a table; return (and optionally save) the results.

    Parameters
    ----------
    settings : Settings, optional
        Base settings (partitions, thresholds); the endpoints are the bench's own stacks.
    events : int, default 10000
        Records per scenario.
    json_path : Path, optional
        Write the results as a JSON list of objects.
    only : tuple of str, optional
        Run only these scenarios (names in :data:`SCENARIOS`).

    Returns
    -------
    list of FaultResult
    """
    names = [s for s in SCENARIOS if not only or s in only]
    unknown = set(only or ()) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"scenario: expected some of {', '.join(SCENARIOS)}, got {sorted(unknown)}")
    workdir = Path(tempfile.mkdtemp(prefix="churn-faults-"))
    results: list[FaultResult] = []
    t0 = time.monotonic()
    for group, ephemeral in ((STREAM_SCENARIOS, False), (BATCH_SCENARIOS, True)):
        todo = [s for s in names if s in group]
        if not todo:
            continue
        with fault_stack(workdir / ("batch" if ephemeral else "stream"), ephemeral=ephemeral, base=settings) as env:
            for name in todo:
                print(f"scenario {name} ...", flush=True)
                try:
                    result = SCENARIO_FUNCS[name](env, events)
                except Exception as exc:  # report the harness failure and go on
                    logger.exception("scenario=%s harness error", name)
                    result = FaultResult(name, detail={"error_in_harness": f"{type(exc).__name__}: {exc}"})
                results.append(result)
                print(f"scenario {name}: {orjson.dumps(result.as_dict()).decode()}", flush=True)
    print(format_table(results))
    print(f"{len(results)} scenarios in {time.monotonic() - t0:.0f} s")
    if json_path is not None:
        Path(json_path).write_text(
            orjson.dumps([r.as_dict() for r in results], option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    if all(r.passed for r in results):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"kept logs for inspection in {workdir}")
    return results
