"""The Faust scoring worker.

``customers`` is consumed in micro-batches by an aiokafka consumer in the scoring
consumer group (``getmany``); each batch is scored with one matrix operation and
its scores, alerts and dead letters are sent and **acknowledged by the broker
before** the batch's input offsets are committed (at-least-once). Faust runs the
service around it: the ``/health`` page, the model-update follower, signals.
Faust's per-event stream machinery (``take_events``) capped the worker at a few
thousand events/s on this path, mostly waiting, so the hot loop reads directly.

The fetch loop does not wait for the broker: once a batch's outputs are queued on the
producer it goes back to ``getmany``, and an :class:`OffsetCommitter` task awaits the
acknowledgements and commits, in order, every :data:`COMMIT_INTERVAL_S` at most (all
batches acknowledged meanwhile in one commit).
Waiting in the loop for both round trips (acks, then commit) held every record that
arrived meanwhile for their duration (``churn bench stream`` at 2,000 events/s).

Alerts: at most one per event, also when a crashed worker's uncommitted batches are
scored again: an :class:`~stream_app.alert_ledger.AlertLedger` drops alerts whose event
was alerted on already, and is filled from ``churn-alerts`` when partitions are assigned,
before any of them is scored. Guarantee and limits: :mod:`stream_app.alert_ledger`.

Model-updated events are read by every worker outside the consumer group (each
worker must see every announcement), and the champion is swapped between
micro-batches.

Outputs go through the worker's own aiokafka producer, one record batch per
partition per micro-batch (:class:`BatchSender`), rather than one Faust send per
record: per-message sends were most of a micro-batch's time (``churn bench stream``).

Operations, all recorded per micro-batch and never per event (after its commit, off
the fetch loop): ``/metrics``
(Prometheus text: events, scores, alerts, suppressed duplicate alerts, dead letters by stage,
batch-size, scoring and end-to-end latency histograms, lag, model versions, reloads, PSI,
shadow agreement, alert ledger recoveries),
``/health`` (ready only with a model and assigned partitions; 503 ``stalled`` when
lag waits longer than ``health_stall_s`` with no batch completing), a lag refresher
(end offsets at most once a second, off the hot loop), a PSI drift monitor published
to ``churn-drift`` every ``drift_interval_s``, value at risk on alerts when a
``sales-regressor`` champion is registered, and optional shadow scoring of the
``challenger`` (``CHURN_SHADOW=1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.partitioner import murmur2

from plumbing.clients import kafka_kwargs
from plumbing.logs import limit_repeated_logs
from plumbing.settings import Settings
from schemas.profiles import TELCO
from schemas.topics import Topics
from stream_app.alert_ledger import AlertLedger, recover_alerted_ids, recovery_start_ms
from stream_app.drift import DriftMonitor, drift_document
from stream_app.metrics import CONTENT_TYPE, StallDetector, WorkerMetrics
from stream_app.model_store import ModelStore, follow_model_updates
from stream_app.scoring import LoadedModel, RawRecord, score_batch

logger = logging.getLogger(__name__)

#: Micro-batch bound: at most this many events; otherwise whatever the fetcher holds.
MAX_BATCH = 2000
#: ``getmany`` returns at once when records are buffered; this only bounds an idle wait.
GETMANY_TIMEOUT_MS = 100
#: Longest the broker may hold a fetch with nothing new. Measured on Tansu 0.6.0 in memory: a
#: record's delivery delay grows with it (p50 1.4 / 3.3 / 14 ms at 1 / 10 / 50 ms), i.e. new
#: records do not end the wait at once. It is not lower because the durable Tansu answers
#: fetches shorter than its storage read empty: at 2 ms a worker on it starved completely
#: (``churn bench faults``, worker_kill).
FETCH_MAX_WAIT_MS = 10
#: Ceiling of the fetch wait while the broker answers empty although records wait (see
#: :class:`AdaptiveFetchWait`). Measured on the durable Tansu, 4,000 records sent one per
#: batch, read from the start: 1 record in 15 s at 10 ms, all 4,000 in 6.7 / 4.2 / 2.9 s at
#: 50 / 100 / 500 ms.
FETCH_MAX_WAIT_CEILING_MS = 2000
#: Micro-batches queued on the producer and not yet committed (see :class:`OffsetCommitter`).
MAX_IN_FLIGHT = 8
#: Least seconds between two offset commits (see :class:`OffsetCommitter`).
COMMIT_INTERVAL_S = 0.2
#: Longest a revocation waits for in-flight batches to be acknowledged and committed.
REVOKE_DRAIN_TIMEOUT_S = 30.0

#: Longest each shutdown step (producer flush, last commit, each client's stop, Faust's own
#: consumer thread) may take. With the broker up each takes milliseconds; with it gone,
#: aiokafka retries the group coordinator for ever and Faust waited 60 s for its thread.
SHUTDOWN_STEP_S = 5.0
#: Longest one consumer-lag reading (ListOffsets) may take; a failed or late one counts
#: towards ``/health``'s ``broker_unreachable`` (see :class:`stream_app.metrics.StallDetector`).
LAG_REFRESH_TIMEOUT_S = 5.0
#: Producer record-batch size (bytes): a micro-batch's outputs to one partition fit in a few.
PRODUCE_BATCH_BYTES = 512 * 1024


@dataclass(frozen=True)
class WorkerTopics:
    """Topics one worker reads and writes (``model-updated`` is always the shared one)."""

    customers: str = Topics.CUSTOMERS
    scores: str = Topics.SCORES
    alerts: str = Topics.ALERTS
    dead_letters: str = Topics.CUSTOMERS_DLQ
    drift: str = Topics.DRIFT

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerTopics:
        """The system's topics, each with ``settings.topic_suffix`` appended (benchmarks use one)."""
        suffix = settings.topic_suffix
        return cls(
            *(
                name + suffix
                for name in (Topics.CUSTOMERS, Topics.SCORES, Topics.ALERTS, Topics.CUSTOMERS_DLQ, Topics.DRIFT)
            )
        )


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
    """Counters exposed on ``/health``, plus the worker's metrics, stall detector and drift monitor.

    Parameters
    ----------
    stall_s : float, default 15
        See :class:`stream_app.metrics.StallDetector`.
    drift_window : int, default 5000
        Events in the PSI window.
    shadow : bool, default False
        Score each micro-batch with the store's challenger too (metrics only).
    """

    def __init__(self, stall_s: float = 15.0, drift_window: int = 5000, shadow: bool = False) -> None:
        self.events_in = 0
        self.scored = 0
        self.alerts = 0
        self.dead_letters = 0
        self.batches = 0
        self.last_batch_at: float | None = None
        self.metrics = WorkerMetrics()
        self.stall = StallDetector(stall_s)
        self.drift_window = drift_window
        self.drift: DriftMonitor | None = None
        self.drift_model: LoadedModel | None = None  # the model whose reference profile ``drift`` uses
        self.shadow = shadow
        self.committed: dict = {}  # TopicPartition -> next offset to read, as last committed by this worker

    def drift_for(self, model: LoadedModel) -> DriftMonitor | None:
        """The drift monitor for ``model``'s reference profile (a new, empty window when the profile changes)."""
        if self.drift_model is None or self.drift_model.pipeline is not model.pipeline:
            previous = self.drift_model.pipeline.metadata.get("reference_profile") if self.drift_model else None
            profile = model.pipeline.metadata.get("reference_profile")
            if self.drift is None or profile != previous:
                self.drift = DriftMonitor.from_pipeline(model.pipeline, self.drift_window)
            self.drift_model = model
        return self.drift


def _value_model_for(store: ModelStore, model: LoadedModel) -> LoadedModel | None:
    value = store.value_model
    if value is None or not set(value.pipeline.feature_names_in) <= set(model.pipeline.feature_names_in):
        return None
    return value


def _after_batch(
    stats: WorkerStats, store: ModelStore, model: LoadedModel, n_in: int, result, scoring_s: float, acked_at: float
) -> None:
    """Per-batch bookkeeping after the commit: counters, histograms, drift window, shadow scores."""
    stats.metrics.record_batch(n_in, result, scoring_s, acked_at)
    if not result.columns:
        return
    monitor = stats.drift_for(model)
    if monitor is not None:
        monitor.update(result.columns)
    challenger = store.challenger
    if (
        stats.shadow
        and challenger is not None
        and challenger.pipeline is not model.pipeline
        and set(challenger.pipeline.feature_names_in) <= set(result.columns)
    ):
        shadow_proba = challenger.pipeline.predict_proba(result.columns)  # one matrix operation
        stats.metrics.record_shadow(model, result.probabilities, challenger, shadow_proba)


@dataclass
class InFlightBatch:
    """A scored micro-batch whose outputs are on their way to the broker."""

    offsets: dict  # TopicPartition -> next offset to read
    acks: list  # futures resolved by the broker's acknowledgements
    n_in: int
    result: object  # stream_app.scoring.BatchResult
    model: LoadedModel
    scoring_s: float
    acked_at: float = 0.0  # Unix time the broker had acknowledged every output


async def wait_acknowledged(acks: Sequence[asyncio.Future], timeout_s: float | None = None) -> None:
    """Wait until the broker acknowledged every send in ``acks``; raise the first send's error.

    Unlike ``asyncio.gather``, cancelling this wait (a worker shutting down) leaves the
    producer's futures alone, so :meth:`OffsetCommitter.close` can still wait for them.

    Raises
    ------
    TimeoutError
        Some sends were not acknowledged within ``timeout_s`` seconds.
    RuntimeError
        A send was cancelled.
    Exception
        What a failed send raised (``aiokafka.errors.KafkaError`` and subclasses).
    """
    if not acks:
        return
    _, pending = await asyncio.wait(acks, timeout=timeout_s)
    if pending:
        raise TimeoutError(f"{len(pending)} of {len(acks)} sends not acknowledged within {timeout_s} s")
    for f in acks:
        if f.cancelled():
            raise RuntimeError("a send was cancelled before its acknowledgement")
        if f.exception() is not None:
            raise f.exception()


class AdaptiveFetchWait:
    """The consumer's fetch wait, lengthened while the broker answers empty although records wait.

    A broker may answer a fetch empty when reading the partition takes longer than the
    request's ``fetch_max_wait_ms``: the durable Tansu (topics in S3) does once a backlog of
    small record batches has built up, and a worker at 10 ms then never received another
    record (``/health`` "stalled"; ``churn bench faults`` scenario ``durable_backlog``: 0 of
    10,000 scored in 312 s). The short wait is kept for latency (Tansu holds a fetch with
    nothing new for its whole wait). Polls (each longer than a whole fetch, see
    :attr:`poll_timeout_ms`) are counted in windows of ``window_s``: when more than half of a
    window's polls came back empty while some assigned partition's high
    watermark was past the consumer's position, the wait goes to ``ceiling_ms`` (doubling
    stopped short: at 80 ms most fetches brought a few records, and the backlog drained at
    ~50 events/s); when a window saw the consumer caught up (an empty poll with nothing
    waiting, or a window's last poll after which nothing waits) and no starvation, and the wait last
    changed ``relax_s`` ago, it is halved
    (down to ``floor_ms``). Apache Kafka answers as soon as records exist: there it does
    not move, and a long wait would cost nothing if it did.

    Parameters
    ----------
    consumer : aiokafka.AIOKafkaConsumer
        Started. aiokafka reads its fetcher's ``_fetch_max_wait_ms`` for every Fetch
        request; there is no public setter, so that attribute is set (aiokafka 0.10-0.14;
        ``tests/integration/test_faults.py`` fails if it stops working).
    floor_ms, ceiling_ms : int
        Shortest and longest fetch wait, milliseconds.
    window_s : float, default 1.0
        Seconds per counting window.
    relax_s : float, default 5.0
        Least seconds between a change and a halving.
    learn_s : float, default 300.0
        For this long after a starvation, the wait is not halved below twice the wait that
        starved (a grown durable partition starved again at 31 ms after relaxing).

    Attributes
    ----------
    current_ms : int
        The fetch wait in use, milliseconds.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        floor_ms: int = FETCH_MAX_WAIT_MS,
        ceiling_ms: int = FETCH_MAX_WAIT_CEILING_MS,
        window_s: float = 1.0,
        relax_s: float = 5.0,
        learn_s: float = 300.0,
    ) -> None:
        if not 1 <= floor_ms <= ceiling_ms:
            raise ValueError(f"fetch wait: expected 1 <= floor_ms <= ceiling_ms, got {floor_ms}, {ceiling_ms}")
        self.consumer = consumer
        self.floor_ms, self.ceiling_ms = int(floor_ms), int(ceiling_ms)
        self.window_s, self.relax_s, self.learn_s = window_s, relax_s, learn_s
        self.current_ms = self.floor_ms
        self._learned_floor_ms, self._learned_at = self.floor_ms, float("-inf")
        self._last_change = time.monotonic()
        self.reset_clock()

    @property
    def poll_timeout_ms(self) -> int:
        """``getmany``'s timeout: longer than a whole fetch, so an empty poll means an empty answer.

        ``getmany`` returns as soon as records are fetched; the timeout only bounds a poll
        that gets none. With a poll shorter than the fetch wait, polls would come back empty
        while a fetch that will bring records is still on its way, and count as starved.
        """
        return max(GETMANY_TIMEOUT_MS, 2 * self.current_ms + 50)

    def reset_clock(self) -> None:
        """Start a new counting window (after a rebalance, when nothing could be fetched)."""
        self._window_start = time.monotonic()
        self._polls = self._starved = 0
        self._caught_up = False
        self._behind = 0

    async def got_records(self) -> None:
        """``getmany`` returned records (the hot path: positions are looked at once per window only)."""
        self._polls += 1
        if time.monotonic() - self._window_start >= self.window_s:
            if not self._caught_up and await self._records_waiting() == 0:
                self._caught_up = True  # a stream flowing at the head
            self._maybe_adjust()

    async def got_nothing(self) -> None:
        """``getmany`` returned nothing: starved if records wait on an assigned partition, else caught up."""
        self._polls += 1
        behind = await self._records_waiting()
        if behind is None:
            return
        if behind:
            self._starved += 1
            self._behind = behind
        else:
            self._caught_up = True
        self._maybe_adjust()

    async def _records_waiting(self) -> int | None:
        """Records between the consumer's positions and the last fetch responses' high watermarks."""
        behind = 0
        for tp in self.consumer.assignment():
            hw = self.consumer.highwater(tp)  # from the last fetch response, empty ones included
            if hw is not None:
                try:
                    behind += max(0, hw - await self.consumer.position(tp))
                except IllegalStateError:  # revoked meanwhile
                    return None
        return behind

    def _maybe_adjust(self) -> None:
        now = time.monotonic()
        if now - self._window_start < self.window_s:
            return
        polls, starved, caught_up, behind = self._polls, self._starved, self._caught_up, self._behind
        self.reset_clock()
        if 2 * starved > polls:
            # Twice the starving wait becomes the floor for a while: halving back under it
            # starved again (measured: 2000 -> ... -> 31 ms, starved, 2000 again, every ~35 s).
            self._learned_floor_ms, self._learned_at = min(self.ceiling_ms, 2 * self.current_ms), now
            if self.current_ms < self.ceiling_ms:
                self._set(self.ceiling_ms, now, f"{starved} of {polls} polls empty while {behind} records waited")
            return
        floor = self.floor_ms if now - self._learned_at > self.learn_s else max(self.floor_ms, self._learned_floor_ms)
        if caught_up and not starved and self.current_ms > floor and now - self._last_change >= self.relax_s:
            self._set(max(floor, self.current_ms // 2), now, "caught up")

    def _set(self, ms: int, now: float, why: str) -> None:
        logger.info("fetch wait %d -> %d ms: %s", self.current_ms, ms, why)
        self.current_ms = ms
        self._last_change = now
        self.consumer._fetcher._fetch_max_wait_ms = ms  # see the class docstring


def scoring_consumer_kwargs(settings: Settings) -> dict:
    """Keyword arguments of the scoring group's ``AIOKafkaConsumer`` (holds credentials: never log it)."""
    return dict(
        **kafka_kwargs(settings),
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=MAX_BATCH,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        # Tansu completes a join only after the rebalance timeout; a short one keeps
        # start-up and failover quick while still far above a micro-batch's duration.
        rebalance_timeout_ms=5000,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
    )


class OffsetCommitter:
    """Await each micro-batch's acknowledgements, then commit its offsets: in order, off the fetch loop.

    The fetch loop hands a batch over as soon as its outputs are queued on the producer
    and goes back to fetching; waiting for the broker's acknowledgement (a few ms) no
    longer delays the next batch's scores. Offsets are committed only after every output
    of that batch *and of every earlier batch* is acknowledged (at-least-once), at most
    every ``interval_s``, all acknowledged batches in one request: on Tansu an offset
    commit per micro-batch (~100/s at 2,000 events/s) slowed the fetches it overlapped
    (commit p50 14 ms instead of 2). A crash re-scores at most about ``interval_s`` of
    acknowledged events more (duplicate scores, never duplicate alerts).

    Parameters
    ----------
    consumer : aiokafka.AIOKafkaConsumer
    on_committed : callable (InFlightBatch, float, dict) -> None
        Bookkeeping per batch after its commit: the batch, the Unix time its outputs were
        acknowledged, and the offsets committed (empty when the commit was refused).
    max_in_flight : int, default MAX_IN_FLIGHT
        Batches handed over and not yet acknowledged before :meth:`submit` waits (backpressure).
    interval_s : float, optional
        Least seconds between two offset commits (default :data:`COMMIT_INTERVAL_S`).
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        on_committed,
        max_in_flight: int = MAX_IN_FLIGHT,
        interval_s: float | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight: expected an integer >= 1, got {max_in_flight!r}")
        interval_s = COMMIT_INTERVAL_S if interval_s is None else interval_s
        if not 0 < interval_s <= 60:
            raise ValueError(f"interval_s: expected seconds in (0, 60], got {interval_s!r}")
        self.interval_s = interval_s
        self.consumer = consumer
        self.on_committed = on_committed
        self._queue: asyncio.Queue[InFlightBatch] = asyncio.Queue(max_in_flight)
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._taken: list[InFlightBatch] = []  # off the queue, acknowledgements awaited
        self._acked: list[InFlightBatch] = []  # acknowledged, not yet committed

    def begin(self) -> None:
        """Count a fetched batch as in flight (before anything awaits), so :meth:`drain` waits for it."""
        self._pending += 1
        self._idle.clear()

    def end(self, n: int = 1) -> None:
        """``n`` in-flight batches are committed (or were dropped before scoring)."""
        self._pending -= n
        if self._pending <= 0:
            self._pending = 0
            self._idle.set()

    async def submit(self, batch: InFlightBatch) -> None:
        """Hand a batch over (counted by :meth:`begin` already); waits while ``max_in_flight`` are queued."""
        await self._queue.put(batch)

    async def drain(self) -> None:
        """Wait until every batch counted by :meth:`begin` is acknowledged and committed."""
        await self._idle.wait()

    async def run(self) -> None:
        """Acknowledge and commit handed-over batches forever (raises what a send raised)."""
        last_commit = time.monotonic()
        while True:
            timeout = None if not self._acked else max(0.0, last_commit + self.interval_s - time.monotonic())
            try:
                self._taken.append(await asyncio.wait_for(self._queue.get(), timeout))
            except TimeoutError:
                pass
            while not self._queue.empty():
                self._taken.append(self._queue.get_nowait())
            for b in self._taken:
                await wait_acknowledged(b.acks)
            if self._taken:
                acked_at = time.time()
                for b in self._taken:
                    b.acked_at = acked_at
                self._acked += self._taken
                self._taken = []
            if not self._acked or time.monotonic() - last_commit < self.interval_s:
                continue
            await self._commit()
            last_commit = time.monotonic()

    async def _commit(self) -> None:
        """Commit the offsets of every acknowledged batch in one request, then book them."""
        acked, self._acked = self._acked, []
        offsets: dict = {}
        for b in acked:
            offsets.update(b.offsets)  # later batches hold higher offsets
        assigned = self.consumer.assignment()
        moved = [tp for tp in offsets if tp not in assigned]
        if moved:
            # Acknowledged after their partitions were revoked (the revocation's drain timed
            # out): their next owner re-reads from the last commit (duplicates, never loss).
            # aiokafka refuses to commit a partition it does not hold (IllegalStateError).
            logger.warning(
                "not committing partitions no longer assigned partitions=%s",
                ",".join(f"{tp.topic}[{tp.partition}]" for tp in moved),
            )
            offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        try:
            if offsets:
                await self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # Partitions moved to another worker: it re-reads from the last commit, so
            # these scores may be duplicated (recognisable by event_id), never lost; its
            # alert ledger recovery keeps the alerts single.
            logger.warning(
                "commit refused after rebalance partitions=%s error=%s",
                ",".join(f"{tp.topic}[{tp.partition}]" for tp in offsets),
                exc,
            )
            offsets = {}
        for b in acked:
            self.on_committed(b, b.acked_at, offsets)
        self.end(len(acked))

    async def close(self, timeout_s: float = 10.0) -> int:
        """On shutdown, after :meth:`run` is cancelled: commit every batch whose outputs the broker acknowledged.

        Waits up to ``timeout_s`` for the acknowledgements of batches still in flight and
        commits the acknowledged prefix (in order: never past a batch whose outputs were not
        acknowledged), so a stopped worker's successor re-scores nothing it finished.

        Returns
        -------
        int
            Batches committed by this call.
        """
        pending = self._taken
        self._taken = []
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        deadline = time.monotonic() + timeout_s
        for b in pending:
            try:
                await wait_acknowledged(b.acks, max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - not acknowledged: its records are re-read by the next owner
                logger.warning(
                    "shutdown: %d in-flight batches not acknowledged, left uncommitted error=%s",
                    len(pending) - pending.index(b),
                    f"{type(exc).__name__}: {exc}"[:200],
                )
                break
            b.acked_at = time.time()
            self._acked.append(b)
        n = len(self._acked)
        if n:
            await self._commit()
        return n


class ScoringLoop:
    """The worker's hot loop, its committer, alert ledger and rebalance handling.

    Fetch a micro-batch (``getmany``), score it with one matrix operation, drop alerts
    whose event was alerted on already (:class:`stream_app.alert_ledger.AlertLedger`),
    queue its outputs on the producer and hand it to the :class:`OffsetCommitter`;
    fetch the next one.

    Rebalances: when partitions are revoked, the listener waits until every in-flight
    batch is acknowledged and committed, so a worker leaving in an ordinary rebalance
    leaves nothing to re-score. When partitions are assigned, no batch is scored until
    the ledger has read ``churn-alerts`` back from the earliest time an alert for an
    uncommitted record could carry (a crashed previous owner's alerts). A batch fetched
    in between is not scored: its partitions still assigned are rewound to its first
    record (see :meth:`_unread`), the others are read by their next owner from the
    committed offset.

    Parameters
    ----------
    consumer : aiokafka.AIOKafkaConsumer
        Started and subscribed with :meth:`listener` as its rebalance listener.
    sender : BatchSender
    store : ModelStore
    topics : WorkerTopics
    stats : WorkerStats
    reader : aiokafka.AIOKafkaConsumer, optional
        Started, group-less; reads input record timestamps and alerts back at assignment.
        Without it no recovery read-back is done (tests of the loop alone).
    ledger : AlertLedger, optional
    commit_interval_s : float, optional
        Least seconds between offset commits (default :data:`COMMIT_INTERVAL_S`).
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        sender: BatchSender,
        store: ModelStore,
        topics: WorkerTopics,
        stats: WorkerStats,
        reader: AIOKafkaConsumer | None = None,
        ledger: AlertLedger | None = None,
        commit_interval_s: float | None = None,
    ) -> None:
        self.consumer, self.sender, self.store, self.topics, self.stats = consumer, sender, store, topics, stats
        self.reader = reader
        self.ledger = ledger if ledger is not None else AlertLedger()
        self.committer = OffsetCommitter(consumer, self._committed, interval_s=commit_interval_s)
        self.fetch_wait = AdaptiveFetchWait(consumer)
        self._open = asyncio.Event()  # set while the current assignment is recovered and owned
        self._recovery_error: BaseException | None = None

    # ----------------------------------------------------------- rebalances
    def listener(self) -> ConsumerRebalanceListener:
        """The rebalance listener to subscribe the consumer with."""
        loop = self

        class _Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                await loop.on_revoked(revoked)

            async def on_partitions_assigned(self, assigned):
                await loop.on_assigned(assigned)

        return _Listener()

    async def on_revoked(self, revoked) -> None:
        """Stop scoring and wait until every in-flight batch is acknowledged and committed."""
        self._open.clear()
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(self.committer.drain(), timeout=REVOKE_DRAIN_TIMEOUT_S)
        except TimeoutError:
            # Acknowledgements stuck (broker down): rejoin anyway; the next owner re-scores and its
            # alert ledger recovery reads back whatever of these outputs the broker did take.
            logger.warning("in-flight batches not committed before revocation timeout_s=%.0f", REVOKE_DRAIN_TIMEOUT_S)
        logger.info(
            "partitions revoked partitions=%s drained_s=%.3f",
            ",".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(revoked)),
            time.perf_counter() - t0,
        )

    async def on_assigned(self, assigned) -> None:
        """Recover the alert ledger for ``assigned``, then let scoring resume."""
        if self.reader is not None and assigned:
            for attempt in range(1, 4):
                try:
                    await self._recover(assigned)
                    break
                except Exception as exc:  # noqa: BLE001 - retried, then surfaced by the loop
                    logger.warning(
                        "alert ledger recovery failed attempt=%d error=%s: %s", attempt, type(exc).__name__, exc
                    )
                    if attempt == 3:
                        # aiokafka swallows listener errors: the loop raises it instead of scoring
                        # without the ledger (which could duplicate alerts).
                        self._recovery_error = exc
                    else:
                        await asyncio.sleep(1.0)
        self.fetch_wait.reset_clock()
        self._open.set()

    async def _recover(self, assigned) -> None:
        t0 = time.perf_counter()
        committed = {tp: await self.consumer.committed(tp) for tp in assigned}
        since_ms = await recovery_start_ms(self.reader, committed)
        n = 0
        if since_ms is not None:
            partitions = await self.sender.producer.partitions_for(self.topics.alerts)
            n = await recover_alerted_ids(self.reader, self.topics.alerts, partitions, since_ms, self.ledger)
        self.stats.metrics.record_alert_recovery(n, time.perf_counter() - t0)
        logger.info(
            "alert ledger recovered partitions=%s since_ms=%s alerts_read=%d ledger=%d seconds=%.3f",
            ",".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)),
            since_ms,
            n,
            len(self.ledger),
            time.perf_counter() - t0,
        )

    # ------------------------------------------------------------- the loop
    async def run(self) -> None:
        """Score forever (raises what the committer or a send raised)."""
        await self.store.ready.wait()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.committer.run())
            tg.create_task(self._fetch_loop())

    async def _fetch_loop(self) -> None:
        consumer, sender, topics, store, committer = self.consumer, self.sender, self.topics, self.store, self.committer
        frozen = False
        while True:
            if not self._open.is_set():
                await self._open.wait()
            if self._recovery_error is not None:
                raise RuntimeError("alert ledger recovery failed; not scoring without it") from self._recovery_error
            batch = await consumer.getmany(timeout_ms=self.fetch_wait.poll_timeout_ms, max_records=MAX_BATCH)
            if not batch:
                if self._open.is_set():
                    await self.fetch_wait.got_nothing()
                continue
            await self.fetch_wait.got_records()
            if not self._open.is_set():
                self._unread(batch)
                continue
            committer.begin()
            if not frozen:
                # Model, clients and buffers are loaded: keep the collector from scanning them again.
                gc.collect()
                gc.freeze()
                frozen = True
            model = store.current  # one model for the whole micro-batch
            records = [
                RawRecord(m.topic, m.partition, m.offset, m.key, m.value) for msgs in batch.values() for m in msgs
            ]
            t0 = time.perf_counter()
            result = score_batch(model, records, value_model=_value_model_for(store, model))
            scoring_s = time.perf_counter() - t0
            if result.alerts:
                keep = self.ledger.admit(result.alert_event_ids)
                if len(keep) < len(result.alerts):
                    logger.info("duplicate alerts suppressed count=%d", len(result.alerts) - len(keep))
                    self.stats.metrics.alerts_suppressed.inc(len(result.alerts) - len(keep))
                    result.alerts = [result.alerts[i] for i in keep]
                    result.alert_event_ids = [result.alert_event_ids[i] for i in keep]
            acks = await sender.send(topics.scores, result.scores)
            acks += await sender.send(topics.alerts, result.alerts)
            acks += await sender.send(topics.dead_letters, result.dead_letters)
            for f in result.failures:
                logger.warning(
                    "dead letter %s[%d]@%d stage=%s error=%s",
                    f.record.topic,
                    f.record.partition,
                    f.record.offset,
                    f.stage,
                    f.error_message[:200],
                )
            offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batch.items()}
            await committer.submit(InFlightBatch(offsets, acks, len(records), result, model, scoring_s))

    def _unread(self, batch: dict) -> None:
        """Rewind each still-assigned partition of ``batch`` to its first record: it is fetched again.

        ``getmany`` waits out a rebalance and then returns records of the *new* assignment,
        which may arrive while :meth:`on_assigned` still recovers the alert ledger. The
        consumer's position has already moved past them: dropping them without a rewind
        skipped them for good (the fault scenario ``worker_join_leave`` lost 63-84 events
        this way). A partition no longer assigned needs nothing: its next owner starts at
        the committed offset.
        """
        assigned = self.consumer.assignment()
        rewound = []
        for tp, msgs in batch.items():
            if msgs and tp in assigned:
                self.consumer.seek(tp, msgs[0].offset)
                rewound.append(f"{tp.topic}[{tp.partition}]@{msgs[0].offset}")
        logger.info(
            "batch fetched during a rebalance not scored records=%d rewound=%s",
            sum(len(m) for m in batch.values()),
            ",".join(rewound) or "-",
        )

    def _committed(self, b: InFlightBatch, acked_at: float, offsets: dict) -> None:
        stats = self.stats
        stats.committed.update(offsets)
        result = b.result
        stats.events_in += b.n_in
        stats.scored += len(result.scores)
        stats.alerts += len(result.alerts)
        stats.dead_letters += len(result.dead_letters)
        stats.batches += 1
        stats.last_batch_at = time.time()
        stats.stall.progressed()
        _after_batch(stats, self.store, b.model, b.n_in, result, b.scoring_s, acked_at)


async def consumer_lag(consumer: AIOKafkaConsumer, committed: dict) -> dict[tuple[str, int], int]:
    """Per assigned partition: end offset minus the last committed offset (one ListOffsets request).

    The end offset is the larger of ListOffsets' answer and the high watermark of the
    consumer's last fetch from that partition.

    ``committed`` holds this worker's own commits; a partition it has not committed yet
    asks the group coordinator, and one never committed counts from its beginning.
    """
    tps = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
    for tp in set(committed) - set(tps):
        # Moved to another worker: if it comes back, its commits since then are the coordinator's.
        del committed[tp]
    if not tps:
        return {}
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        # The high watermark of the last fetch response: Tansu's ListOffsets "latest" can
        # answer short of the newest record batch, the fetch path does not.
        hw = consumer.highwater(tp)
        if hw is not None and hw > ends[tp]:
            ends[tp] = hw
    unknown = [tp for tp in tps if tp not in committed]
    if unknown:
        starts = await consumer.beginning_offsets(unknown)
        for tp in unknown:
            c = await consumer.committed(tp)
            committed[tp] = c if c is not None else starts[tp]
    return {(tp.topic, tp.partition): max(0, ends[tp] - committed[tp]) for tp in tps}


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
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        ssl_context=ctx,
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

    Returns
    -------
    faust.App
    """
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    store = store or ModelStore(
        settings.mlflow_tracking_uri,
        expected_features=list(TELCO.features),
        value_models=True,
        challengers=settings.shadow,
    )
    topics = topics or WorkerTopics.from_settings(settings)
    stats = WorkerStats(stall_s=settings.health_stall_s, drift_window=settings.drift_window, shadow=settings.shadow)
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
    app.churn_store = store  # type: ignore[attr-defined]
    app.churn_stats = stats  # type: ignore[attr-defined]
    state: dict[str, Any] = {}  # consumer, producer, loop while scoring

    @app.task
    async def score_customers() -> None:
        # Join the group only with a model to score with: a worker started while MLflow is
        # unreachable would otherwise take partitions from workers that can score them.
        await store.ready.wait()
        consumer = AIOKafkaConsumer(**scoring_consumer_kwargs(settings))
        # Group-less: reads input timestamps and churn-alerts back when partitions are assigned.
        reader = AIOKafkaConsumer(
            **kafka_kwargs(settings), group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024
        )
        producer = AIOKafkaProducer(
            **kafka_kwargs(settings),
            acks="all",
            linger_ms=0,
            max_batch_size=PRODUCE_BATCH_BYTES,
            max_request_size=4 * PRODUCE_BATCH_BYTES,
            compression_type=None,
        )
        await producer.start()
        await reader.start()
        await consumer.start()
        loop = ScoringLoop(
            consumer,
            BatchSender(producer),
            store,
            topics,
            stats,
            reader=reader,
            commit_interval_s=settings.worker_commit_interval_s,
        )
        consumer.subscribe([topics.customers], listener=loop.listener())
        state["consumer"] = consumer
        state["loop"] = loop
        state["producer"] = producer
        try:
            await loop.run()
        finally:
            state.pop("consumer", None)
            state.pop("loop", None)
            state.pop("producer", None)
            # Outputs already queued reach the broker before the group learns this worker
            # left, so the next owner's alert ledger read-back sees them; then every batch
            # whose outputs were acknowledged is committed, so the next owner re-scores none.
            # Each step is bounded (SHUTDOWN_STEP_S): with the broker gone the worker still exits.
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.flush(), timeout=SHUTDOWN_STEP_S)
                try:
                    committed = await asyncio.wait_for(
                        loop.committer.close(timeout_s=SHUTDOWN_STEP_S), timeout=2 * SHUTDOWN_STEP_S
                    )
                    logger.info("shutdown: committed %d acknowledged batches", committed)
                except Exception as exc:  # noqa: BLE001 - a failed last commit means re-scoring, never loss
                    logger.warning("shutdown: last offset commit failed error=%s", f"{type(exc).__name__}: {exc}"[:200])
            finally:
                # Leave the group (its next owner starts at once, not after the session timeout).
                for role, client in (("consumer", consumer), ("reader", reader), ("producer", producer)):
                    try:
                        await asyncio.wait_for(client.stop(), timeout=SHUTDOWN_STEP_S)
                    except Exception as exc:  # noqa: BLE001 - exiting anyway; the broker is likely gone
                        logger.warning(
                            "shutdown: %s did not stop within %.0f s error=%s",
                            role,
                            SHUTDOWN_STEP_S,
                            f"{type(exc).__name__}: {exc}"[:200],
                        )

    @app.task
    async def watch_model_updates() -> None:
        await follow_model_updates(settings, store)

    @app.timer(interval=1.0)
    async def refresh_lag() -> None:
        # Off the hot loop, at most once a second: one ListOffsets request for the assignment.
        consumer = state.get("consumer")
        if consumer is None:
            return
        try:
            # Bounded: aiokafka would wait out its 40 s request timeout with the broker gone.
            lag = await asyncio.wait_for(consumer_lag(consumer, stats.committed), timeout=LAG_REFRESH_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a failed refresh keeps the last reading
            error = f"{type(exc).__name__}: {exc}"[:200] if str(exc) else type(exc).__name__
            logger.warning("consumer lag refresh failed error=%s", error)
            stats.stall.lag_unreadable(error)
            return
        stats.stall.observe_lag(lag)
        stats.metrics.set_lag(lag)

    @app.timer(interval=max(0.5, settings.drift_interval_s))
    async def publish_drift() -> None:
        monitor, model, producer = stats.drift, stats.drift_model, state.get("producer")
        if monitor is None or model is None or producer is None or monitor.size == 0:
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
        await producer.send_and_wait(topics.drift, orjson.dumps(doc), key=model.model_name.encode())
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
        consumer = state.get("consumer")
        assigned = len(consumer.assignment()) if consumer is not None else 0
        verdict = stats.stall.evaluate(model_loaded=store.current is not None, assigned_partitions=assigned)
        ready = verdict.ready
        body = {
            "ready": ready,
            "status": verdict.status,
            "reason": verdict.reason,
            "lag": {f"{t}[{p}]": n for (t, p), n in sorted(stats.stall.lag.items())},
            "last_batch_at": stats.last_batch_at,
            "value_model_version": store.value_model.model_version if store.value_model else None,
            "model_name": store.current.model_name if store.current else None,
            "model_version": store.current.model_version if store.current else None,
            "assigned_partitions": assigned,
            "events_in": stats.events_in,
            "scored": stats.scored,
            "alerts": stats.alerts,
            "dead_letters": stats.dead_letters,
            "reloads_ok": store.reloads_ok,
            "reloads_failed": store.reloads_failed,
            "fetch_max_wait_ms": loop.fetch_wait.current_ms if (loop := state.get("loop")) else None,
        }
        return web.json(body, status=verdict.status_code)

    return app


def ensure_worker_topics(settings: Settings, topics: WorkerTopics) -> None:
    """Create non-default worker topics (benchmarks, tests) with the partitions of their defaults (idempotent)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from plumbing.clients import kafka_kwargs, topic_partitions

    partitions = topic_partitions(settings)
    wanted = {
        topics.customers: partitions[Topics.CUSTOMERS],
        topics.scores: partitions[Topics.SCORES],
        topics.alerts: partitions[Topics.ALERTS],
        topics.dead_letters: partitions[Topics.CUSTOMERS_DLQ],
        topics.drift: 1,
    }

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
    from plumbing.clients import ensure_topics

    # Faust logs stderr as WARNING: MLflow's download progress bars became warnings on every reload.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    ensure_topics(settings)
    topics = WorkerTopics.from_settings(settings)
    ensure_worker_topics(settings, topics)  # suffixed topics (benchmarks, tests) and churn-drift
    app = create_app(settings, topics=topics)
    # Faust's own consumer leaves its group when stopped; with the broker gone that never
    # completes and mode waits its default 60 s for the thread.
    app.consumer._thread.shutdown_timeout = SHUTDOWN_STEP_S  # no public setting
    worker = faust.Worker(app, loglevel="INFO", quiet=True)
    limit_repeated_logs(["aiokafka"])  # the reconnection errors are aiokafka's (Faust's consumer thread too)
    worker.execute_from_commandline()
