"""The fault harness: a stack with a champion, a producer that survives outages, a scenario's workers.

:func:`stream_scenario` runs one scenario: it streams records through a worker while the
scenario's fault runs, then has :mod:`~churn_stream.bench.faults.accounting` count what came out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from churn_stream.bench.faults.accounting import COLLECT_TIMEOUT_S, FaultResult, collect, input_duplicates, tally
from plumbing.settings import Settings

logger = logging.getLogger(__name__)

#: The quick zoo whose champion serves every scenario.
FAST_ZOO = {"logistic_regression", "multiple_regression"}

#: Generous bound for a loaded 2-core machine; not asserted as a figure.
READY_TIMEOUT_S = 180.0


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


def fresh_events(base: list[tuple[bytes, bytes]], n: int) -> list[tuple[bytes, bytes, str]]:
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


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)


# ---------------------------------------------------------------- scenarios
def stream_scenario(
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
    for i, (key, value, eid) in enumerate(fresh_events(env.base_events, events)):
        if malformed_every and i % malformed_every == malformed_every - 1:
            records.append((b"malformed", malformed_value(i // malformed_every, value), None))
        else:
            records.append((key, value, eid))
    producer = RobustProducer(run.settings, run.topics.customers, records, rate, batch_bytes=batch_bytes)
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
            collect(
                run.settings, run.topics.scores, run.topics.dead_letters, want, want_dlq, alerts_topic=run.topics.alerts
            )
        )
        input_dups = asyncio.run(input_duplicates(run.settings, run.topics.customers))
        return tally(
            name,
            seen,
            outcome,
            want=want,
            want_dlq=want_dlq,
            produced=producer.n_acked,
            records=len(records),
            input_dups=input_dups,
            send_failures=producer.send_failures,
            last_error=producer.last_error,
            elapsed_s=time.monotonic() - t_start,
        )
    finally:
        producer.cancel()
        run.stop_all()
