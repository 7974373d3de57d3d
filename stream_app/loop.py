"""The worker's hot loop: fetch a micro-batch, score it, send its outputs, hand it to the committer.

:class:`ScoringLoop` also handles rebalances (drain on revocation, alert ledger
recovery on assignment); :class:`WorkerStats` holds what it counts for ``/health``
and ``/metrics``, updated once per committed micro-batch.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from stream_app.alert_ledger import AlertLedger, recover_alerted_ids, recovery_start_ms
from stream_app.commit import InFlightBatch, OffsetCommitter
from stream_app.consumer import MAX_BATCH
from stream_app.drift import DriftMonitor
from stream_app.fetch_wait import AdaptiveFetchWait
from stream_app.metrics import StallDetector, WorkerMetrics
from stream_app.model_store import ModelStore
from stream_app.scoring import BatchResult, LoadedModel, RawRecord, score_batch
from stream_app.sender import BatchSender
from stream_app.topics import WorkerTopics

logger = logging.getLogger(__name__)

#: Longest a revocation waits for in-flight batches to be acknowledged and committed.
REVOKE_DRAIN_TIMEOUT_S = 30.0


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
        self.last_batch_at: float | None = None
        self.metrics = WorkerMetrics()
        self.stall = StallDetector(stall_s)
        self.drift_window = drift_window
        self.drift: DriftMonitor | None = None
        self.drift_model: LoadedModel | None = None  # the model whose reference profile ``drift`` uses
        self.shadow = shadow
        self.committed: dict = {}  # TopicPartition -> next offset to read, as last committed by this worker

    def drift_for(self, model: LoadedModel) -> DriftMonitor | None:
        """The drift monitor for ``model``'s reference profile (a new, empty window when the profile changes).

        Parameters
        ----------
        model : LoadedModel
            The champion that scored the batch.

        Returns
        -------
        DriftMonitor or None
            ``None`` when the model's pipeline carries no reference profile.
        """
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
    stats: WorkerStats,
    store: ModelStore,
    model: LoadedModel,
    n_in: int,
    result: BatchResult,
    scoring_s: float,
    acked_at: float,
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


class ScoringLoop:
    """The worker's hot loop, its committer, alert ledger and rebalance handling.

    Fetch a micro-batch (``getmany``), score it with one matrix operation, drop alerts
    whose event was alerted on already (:class:`stream_app.alert_ledger.AlertLedger`),
    queue its outputs on the producer and hand it to the :class:`~stream_app.commit.OffsetCommitter`;
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
        Least seconds between offset commits (default :data:`stream_app.commit.COMMIT_INTERVAL_S`).
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
            assert model is not None  # run() waited for store.ready; a champion is never unloaded
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
        stats.last_batch_at = time.time()
        stats.stall.progressed()
        _after_batch(stats, self.store, b.model, b.n_in, result, b.scoring_s, acked_at)
