"""The worker's hot loop on librdkafka: consume a micro-batch, score it, queue its outputs, commit what is acknowledged.

:class:`ScoringLoop` owns the scoring consumer and the output producer
(``confluent_kafka``, i.e. librdkafka: its fetcher, batching and delivery run on
librdkafka's own threads, in C) and handles rebalances (drain on revocation, alert ledger
recovery on assignment); :class:`WorkerStats` holds what it counts for ``/health`` and
``/metrics``, updated once per committed micro-batch.

Every call on the consumer and the producer is made from the event loop's thread and
never blocks it for long: ``consume`` waits at most :data:`IDLE_WAIT_S` when nothing is
buffered, delivery reports and rebalance callbacks are served by those same calls (so
they run on this thread too), and the only blocking waits are bounded: a revocation's
drain, the committed offsets read at assignment, shutdown. (librdkafka serialises a
consumer's calls: one made from another thread waits while ``consume`` runs.)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition

from stream_app.alert_ledger import AlertLedger, recover_alerted_ids, recovery_start_ms
from stream_app.commit import BatchAcks, InFlightBatch, OffsetCommitter
from stream_app.consumer import MAX_BATCH
from stream_app.drift import DriftMonitor
from stream_app.fetch_wait import FetchWaitPolicy
from stream_app.metrics import WORKER_STAGES, StallDetector, WorkerMetrics
from stream_app.model_store import ModelStore
from stream_app.scoring import BatchResult, LoadedModel, RawRecord, score_batch
from stream_app.sender import OutputProducer
from stream_app.topics import WorkerTopics

logger = logging.getLogger(__name__)

#: Longest a revocation waits for queued outputs to be acknowledged before it commits, seconds.
REVOKE_DRAIN_TIMEOUT_S = 10.0
#: Longest ``consume`` waits when the previous one brought less than a full batch, seconds:
#: what an event may wait in librdkafka's queue before its batch is scored.
IDLE_WAIT_S = 0.002
#: Longest the committed offsets read at assignment may take, seconds (per attempt).
COMMITTED_TIMEOUT_S = 5.0


class WorkerStats:
    """Counters exposed on ``/health``, plus the worker's metrics, stall detector and drift monitor.

    ``events_in``, ``scored``, ``alerts`` and ``dead_letters`` count committed batches:
    a batch is counted once its outputs were acknowledged and its input offsets
    committed (every 0.2 s), so a score can be read from its topic shortly before
    ``/health`` counts it.

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
        self.committed: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset, as last committed

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
        monitor.update(result.columns, result.codes, model.categories)
    challenger = store.challenger
    if (
        stats.shadow
        and challenger is not None
        and challenger.pipeline is not model.pipeline
        and set(challenger.pipeline.feature_names_in) <= set(result.columns)
    ):
        shadow_proba = challenger.pipeline.predict_proba(result.columns)  # one matrix operation
        stats.metrics.record_shadow(model, result.probabilities, challenger, shadow_proba)


def _names(tps) -> str:
    return ",".join(f"{t}[{p}]" for t, p in sorted(tps)) or "-"


class ScoringLoop:
    """The worker's hot loop, its committer, alert ledger and rebalance handling.

    Each pass: ``consume`` up to :data:`~stream_app.consumer.MAX_BATCH` buffered records
    (librdkafka fetches ahead on its own thread), score them with one matrix operation,
    drop alerts whose event was alerted on already
    (:class:`stream_app.alert_ledger.AlertLedger`), queue the outputs on the producer with
    one :class:`~stream_app.commit.BatchAcks` per batch, serve delivery reports, and let
    the :class:`~stream_app.commit.OffsetCommitter` book and commit every leading batch
    whose outputs are all acknowledged (at-least-once).

    Rebalances (callbacks served inside ``consume``): on revocation the loop waits until
    queued outputs are acknowledged (at most :data:`REVOKE_DRAIN_TIMEOUT_S`) and commits
    every acknowledged batch synchronously, so a worker leaving in an ordinary rebalance
    leaves nothing to re-score. On assignment the partitions are paused until the ledger
    has read ``churn-alerts`` back from the earliest time an alert for an uncommitted
    record could carry (a crashed previous owner's alerts); a record of a paused
    partition that was fetched anyway is not scored: its partition is sought back to it.

    Parameters
    ----------
    make_consumer : callable (int) -> confluent_kafka.Consumer
        A new, unsubscribed scoring consumer with the given ``fetch.wait.max.ms``
        (:func:`stream_app.consumer.scoring_consumer_config`).
    producer : OutputProducer
    store : ModelStore
    topics : WorkerTopics
    stats : WorkerStats
    reader : aiokafka.AIOKafkaConsumer, optional
        Started, group-less; reads input record timestamps and alerts back at assignment.
        Without it no recovery read-back is done (tests of the loop alone).
    ledger : AlertLedger, optional
    commit_interval_s : float, optional
        Least seconds between offset commits (default :data:`stream_app.commit.COMMIT_INTERVAL_S`).
    fetch_wait : FetchWaitPolicy, optional
        Default: :class:`~stream_app.fetch_wait.FetchWaitPolicy` with its defaults.
    """

    def __init__(
        self,
        make_consumer: Callable[[int], Consumer],
        producer: OutputProducer,
        store: ModelStore,
        topics: WorkerTopics,
        stats: WorkerStats,
        reader: AIOKafkaConsumer | None = None,
        ledger: AlertLedger | None = None,
        commit_interval_s: float | None = None,
        fetch_wait: FetchWaitPolicy | None = None,
    ) -> None:
        self.make_consumer = make_consumer
        self.producer, self.store, self.topics, self.stats = producer, store, topics, stats
        self.reader = reader
        self.ledger = ledger if ledger is not None else AlertLedger()
        self.commit_interval_s = commit_interval_s
        self.fetch_wait = fetch_wait or FetchWaitPolicy()
        self.consumer: Consumer | None = None
        self.committer: OffsetCommitter | None = None
        #: Partitions this member holds, as ``(topic, partition)``.
        self.assigned: set[tuple[str, int]] = set()
        self._recovering: set[tuple[str, int]] = set()  # assigned, paused until the ledger is recovered
        self._recovery: asyncio.Task | None = None
        self._error: BaseException | None = None
        self._closing = False
        self._stage_s = dict.fromkeys(WORKER_STAGES, 0.0)  # accumulated until the next booking

    # ------------------------------------------------------------ consumer
    def _subscribe(self, fetch_wait_ms: int) -> None:
        consumer = self.make_consumer(fetch_wait_ms)
        self.consumer = consumer
        self.committer = OffsetCommitter(
            consumer, self._committed, lambda: self.assigned, interval_s=self.commit_interval_s
        )
        consumer.subscribe(
            [self.topics.customers], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self.fetch_wait.reset()

    def _rebuild(self, fetch_wait_ms: int) -> None:
        """Replace the consumer by one with another fetch wait (revokes, commits and leaves the group)."""
        old = self.consumer
        assert old is not None
        old.close()  # serves the revocation: outputs drained, acknowledged batches committed
        self._subscribe(fetch_wait_ms)

    # ----------------------------------------------------------- rebalances
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(tp.topic, tp.partition) for tp in partitions}
        consumer.assign(partitions)
        self.assigned |= tps
        if self.reader is None or not tps:
            logger.info("partitions assigned partitions=%s", _names(tps))
            return
        consumer.pause(partitions)  # until the alert ledger holds what a previous owner alerted on
        self._recovering |= tps
        if self._recovery is not None:
            self._recovery.cancel()
        self._recovery = asyncio.get_running_loop().create_task(self._recover_with_retries())

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(tp.topic, tp.partition) for tp in partitions}
        if self._closing:  # close() drained and committed already (and may run on another thread)
            self.assigned -= tps
            self._recovering -= tps
            return
        if self._recovery is not None:
            self._recovery.cancel()
            self._recovery = None
        t0 = time.perf_counter()
        left = self.producer.flush(REVOKE_DRAIN_TIMEOUT_S)
        committer = self.committer
        committed = 0
        if committer is not None:
            try:
                committed = committer.advance(force=True, synchronous=True)
            except Exception as exc:  # noqa: BLE001 - raised by the loop; the batch stays uncommitted
                self._error = exc
            dropped = committer.drop()
        if left:
            # Acknowledgements stuck (broker down): the next owner re-scores these batches and
            # its alert ledger recovery reads back whatever of their outputs the broker took.
            logger.warning(
                "outputs not acknowledged before revocation timeout_s=%.0f queued=%d", REVOKE_DRAIN_TIMEOUT_S, left
            )
        self.assigned -= tps
        self._recovering -= tps
        logger.info(
            "partitions revoked partitions=%s drained_s=%.3f committed_batches=%d dropped_batches=%d",
            _names(tps),
            time.perf_counter() - t0,
            committed,
            dropped if committer is not None else 0,
        )

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(tp.topic, tp.partition) for tp in partitions}
        if self._recovery is not None:
            self._recovery.cancel()
            self._recovery = None
        dropped = self.committer.drop() if self.committer is not None else 0
        self.assigned -= tps
        self._recovering -= tps
        logger.warning(
            "partitions lost partitions=%s dropped_batches=%d (read again by their owner)", _names(tps), dropped
        )

    async def _recover_with_retries(self) -> None:
        for attempt in range(1, 4):
            tps = set(self._recovering)
            try:
                await self._recover(tps)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried, then surfaced by the loop
                logger.warning("alert ledger recovery failed attempt=%d error=%s: %s", attempt, type(exc).__name__, exc)
                if attempt == 3:
                    # Scoring without the ledger could duplicate alerts: the loop raises instead.
                    self._error = RuntimeError(
                        f"alert ledger recovery failed; not scoring without it: {type(exc).__name__}: {exc}"
                    )
                    return
                await asyncio.sleep(1.0)
        done = tps & self._recovering
        self._recovering -= done
        consumer = self.consumer
        if done and consumer is not None:
            consumer.resume([TopicPartition(t, p) for t, p in sorted(done)])
        self._recovery = None

    async def _recover(self, tps: set[tuple[str, int]]) -> None:
        """Fill the alert ledger with every alert an uncommitted record of ``tps`` may have produced."""
        assert self.reader is not None and self.consumer is not None
        t0 = time.perf_counter()
        # A bounded blocking read on the loop's thread (librdkafka serialises consumer calls).
        got = self.consumer.committed([TopicPartition(t, p) for t, p in sorted(tps)], timeout=COMMITTED_TIMEOUT_S)
        committed: dict[AioTopicPartition, int | None] = {}
        for tp in got:
            offset = tp.offset if tp.offset >= 0 and tp.offset != OFFSET_INVALID else None
            committed[AioTopicPartition(tp.topic, tp.partition)] = offset
            if offset is not None:
                self.stats.committed[(tp.topic, tp.partition)] = offset
        since_ms = await recovery_start_ms(self.reader, committed)
        n = 0
        if since_ms is not None:
            # A bounded blocking metadata request, like the committed offsets above.
            meta = self.consumer.list_topics(self.topics.alerts, timeout=COMMITTED_TIMEOUT_S).topics.get(
                self.topics.alerts
            )
            if meta is None or meta.error is not None:
                raise RuntimeError(f"no metadata for {self.topics.alerts}: {meta.error if meta else 'unknown topic'}")
            partitions = set(meta.partitions)
            n = await recover_alerted_ids(self.reader, self.topics.alerts, partitions, since_ms, self.ledger)
        self.stats.metrics.record_alert_recovery(n, time.perf_counter() - t0)
        logger.info(
            "alert ledger recovered partitions=%s since_ms=%s alerts_read=%d ledger=%d seconds=%.3f",
            _names(tps),
            since_ms,
            n,
            len(self.ledger),
            time.perf_counter() - t0,
        )

    # ------------------------------------------------------------- the loop
    async def run(self) -> None:
        """Score until cancelled (raises what a send, a commit or the recovery raised)."""
        await self.store.ready.wait()
        self._subscribe(self.fetch_wait.current_ms)
        try:
            await self._run()
        finally:
            if self._recovery is not None:
                self._recovery.cancel()

    async def _run(self) -> None:
        frozen = False
        full = False
        perf = time.perf_counter
        stage_s = self._stage_s
        producer = self.producer
        while True:
            if self._error is not None:
                raise self._error
            consumer, committer = self.consumer, self.committer
            assert consumer is not None and committer is not None
            if committer.blocked:
                producer.producer.poll(IDLE_WAIT_S)  # wait for delivery reports, not more records
                self._advance()
                await asyncio.sleep(0)
                continue
            waited = not full  # a call that may wait counts as idle, not as fetch cost
            t0 = perf()
            msgs = consumer.consume(MAX_BATCH, 0 if full else IDLE_WAIT_S)
            t_fetched = perf()
            if not msgs:
                full = False
                producer.poll()
                self._advance()
                new_wait = self.fetch_wait.got_nothing(self._behind)
                if new_wait is not None:
                    self._rebuild(new_wait)
                await asyncio.sleep(0)
                continue
            full = len(msgs) >= MAX_BATCH
            self.fetch_wait.got_records()
            topic = self.topics.customers  # the one topic subscribed
            records: list[RawRecord] = []
            append = records.append
            last: dict[int, int] = {}  # partition -> last offset in the batch
            for m in msgs:
                if m.error() is not None:
                    self._consume_error(m)
                    continue
                # A consumed record always has both (None only for producer-side messages).
                partition: int = m.partition()  # type: ignore[assignment]
                offset: int = m.offset()  # type: ignore[assignment]
                last[partition] = offset
                append(RawRecord(topic, partition, offset, m.key(), m.value()))
            if self._recovering and any((topic, p) in self._recovering for p in last):
                records = self._unread(records)
                last = {p: o for p, o in last.items() if (topic, p) not in self._recovering}
            if not records:
                await asyncio.sleep(0)
                continue
            if not frozen:
                # Model, clients and buffers are loaded: keep the collector from scanning them again.
                gc.collect()
                gc.freeze()
                frozen = True
            model = self.store.current  # one model for the whole micro-batch
            assert model is not None  # run() waited for store.ready; a champion is never unloaded
            t1 = perf()
            stage_s["fetch"] += t1 - (t_fetched if waited else t0)
            result = score_batch(model, records, value_model=_value_model_for(self.store, model), timings=stage_s)
            t2 = perf()
            if result.alerts:
                keep = self.ledger.admit(result.alert_event_ids)
                if len(keep) < len(result.alerts):
                    logger.info("duplicate alerts suppressed count=%d", len(result.alerts) - len(keep))
                    self.stats.metrics.alerts_suppressed.inc(len(result.alerts) - len(keep))
                    result.alerts = [result.alerts[i] for i in keep]
                    result.alert_event_ids = [result.alert_event_ids[i] for i in keep]
            acks = BatchAcks()
            topics = self.topics
            producer.send(topics.scores, result.scores, acks)
            producer.send(topics.alerts, result.alerts, acks)
            producer.send(topics.dead_letters, result.dead_letters, acks)
            for f in result.failures:
                logger.warning(
                    "dead letter %s[%d]@%d stage=%s error=%s",
                    f.record.topic,
                    f.record.partition,
                    f.record.offset,
                    f.stage,
                    f.error_message[:200],
                )
            committer.submit(
                InFlightBatch({(topic, p): o + 1 for p, o in last.items()}, acks, len(records), result, model, t2 - t1)
            )
            producer.poll()
            t3 = perf()
            stage_s["produce"] += t3 - t2
            self._advance()
            stage_s["commit"] += perf() - t3
            await asyncio.sleep(0)

    def _advance(self) -> None:
        assert self.committer is not None
        self.committer.advance()

    def _consume_error(self, m: Any) -> None:
        err = m.error()
        if err.fatal():
            raise RuntimeError(f"scoring consumer failed: {err}")
        logger.warning("consumer error topic=%s partition=%s error=%s", m.topic(), m.partition(), err)

    def _unread(self, records: list[RawRecord]) -> list[RawRecord]:
        """Seek each still-recovering partition back to its first record here; keep the other records.

        A partition paused at assignment may still deliver what librdkafka had fetched for
        it: those records must wait for the alert ledger, and the consumer's position has
        moved past them, so the partition is sought back (dropping them without a seek
        skipped them for good: the fault scenario ``worker_join_leave`` lost 63-84 events).
        """
        assert self.consumer is not None
        first: dict[tuple[str, int], int] = {}
        kept = []
        for r in records:
            tp = (r.topic, r.partition)
            if tp in self._recovering:
                first.setdefault(tp, r.offset)
            else:
                kept.append(r)
        for (t, p), offset in first.items():
            self.consumer.seek(TopicPartition(t, p, offset))
        logger.info(
            "records fetched during alert ledger recovery not scored records=%d rewound=%s",
            len(records) - len(kept),
            ",".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(first.items())),
        )
        return kept

    def _behind(self) -> int | None:
        """Records between the consumer's positions and the high watermarks of its active partitions."""
        consumer = self.consumer
        active = sorted(self.assigned - self._recovering)
        if consumer is None or not active:
            return None
        behind = 0
        for tp in consumer.position([TopicPartition(t, p) for t, p in active]):
            low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high is None or high < 0:
                continue  # no fetch response yet
            position = tp.offset
            if position < 0:  # nothing consumed yet: from the commit, else from the log's start
                position = self.stats.committed.get((tp.topic, tp.partition), max(low or 0, 0))
            behind += max(0, high - position)
        return behind

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
        stage_s = self._stage_s
        stats.metrics.record_stages(stage_s)
        for k in stage_s:
            stage_s[k] = 0.0

    # ------------------------------------------------------------ shutdown
    def close(self, timeout_s: float) -> int:
        """Flush the outputs, commit every acknowledged batch and leave the group (blocking, bounded).

        Outputs already queued reach the broker before the group learns this worker left,
        so the next owner's alert ledger read-back sees them; then every batch whose outputs
        were acknowledged is committed, so the next owner re-scores none.

        Parameters
        ----------
        timeout_s : float
            Longest wait for the acknowledgements, seconds.

        Returns
        -------
        int
            Batches committed.
        """
        self._closing = True
        self._recovery = None  # cancelled with the loop's task; not touched from this thread
        self.producer.flush(timeout_s)
        committed = 0
        if self.committer is not None:
            try:
                committed = self.committer.advance(force=True, synchronous=True)
            except Exception as exc:  # noqa: BLE001 - a failed last commit means re-scoring, never loss
                logger.warning("shutdown: last offset commit failed error=%s", f"{type(exc).__name__}: {exc}"[:200])
            self.committer.drop()
        if self.consumer is not None:
            self.consumer.close()  # its revocation callback finds nothing left to drain
        return committed
