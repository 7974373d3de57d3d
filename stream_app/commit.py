"""Commit a micro-batch's input offsets once the broker acknowledged its outputs: in order, on the hot loop.

The hot loop (:class:`stream_app.loop.ScoringLoop`) queues each scored batch's outputs on
the librdkafka producer with a :class:`BatchAcks` as every record's delivery callback,
hands the batch (:class:`InFlightBatch`) to an :class:`OffsetCommitter` and fetches the
next one. Each pass of the loop calls :meth:`OffsetCommitter.advance`: every leading
batch whose outputs are all acknowledged is booked, and their offsets are committed in
one request every :data:`COMMIT_INTERVAL_S` at most (at-least-once). Nothing here
awaits: delivery reports arrive when the loop polls the producer, commit results when
it polls the consumer, both on the loop's thread.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream_app.scoring import BatchResult, LoadedModel

logger = logging.getLogger(__name__)

#: Micro-batches queued on the producer and not yet acknowledged before the loop stops fetching.
MAX_IN_FLIGHT = 16
#: Least seconds between two offset commits (see :class:`OffsetCommitter`).
COMMIT_INTERVAL_S = 0.2


class SendFailed(RuntimeError):
    """The broker refused or never acknowledged an output record: the batch is not committed."""


class BatchAcks:
    """Delivery reports of one micro-batch's output records, counted down by the producer's callbacks.

    :meth:`delivered` is passed as every output record's ``on_delivery``: librdkafka calls
    it from ``Producer.poll``/``flush`` on the loop's thread, once per record, with the
    record's error (``None`` once the broker acknowledged it with ``acks=all``).

    Attributes
    ----------
    pending : int
        Records queued and not yet reported.
    error : confluent_kafka.KafkaError or None
        The first delivery error reported.
    """

    __slots__ = ("pending", "error")

    def __init__(self) -> None:
        self.pending = 0
        self.error: KafkaError | None = None

    def delivered(self, err: KafkaError | None, _msg: Any) -> None:
        """Producer delivery callback: one record of the batch is acknowledged (``err`` None) or failed."""
        self.pending -= 1
        if err is not None and self.error is None:
            self.error = err

    @property
    def done(self) -> bool:
        """Every record is reported (acknowledged or failed)."""
        return self.pending <= 0


@dataclass
class InFlightBatch:
    """A scored micro-batch whose outputs are on their way to the broker.

    Attributes
    ----------
    offsets : dict of (str, int) to int
        Next offset to read per input ``(topic, partition)``: what committing this batch commits.
    acks : BatchAcks
        Counts the broker's acknowledgements of the batch's outputs.
    n_in : int
        Input events in the batch.
    result : BatchResult
    model : LoadedModel
        The champion that scored it.
    scoring_s : float
        Seconds :func:`stream_app.scoring.score_batch` took.
    acked_at : float
        Unix time the batch was seen fully acknowledged (0 until then).
    """

    offsets: dict[tuple[str, int], int]
    acks: BatchAcks
    n_in: int
    result: BatchResult
    model: LoadedModel
    scoring_s: float
    acked_at: float = 0.0


class OffsetCommitter:
    """Book each acknowledged micro-batch, in order, and commit their offsets every ``interval_s`` at most.

    Offsets are committed only after every output of that batch *and of every earlier
    batch* is acknowledged (at-least-once), at most every ``interval_s``, all acknowledged
    batches in one asynchronous request: on Tansu an offset commit per micro-batch
    slowed the fetches it overlapped. A crash re-scores at most about ``interval_s`` of
    acknowledged events more (duplicate scores, never duplicate alerts: see
    :mod:`stream_app.alert_ledger`). A batch with a failed output stops the worker
    (:class:`SendFailed`) before anything after it is committed.

    Parameters
    ----------
    consumer : confluent_kafka.Consumer
        The scoring consumer; used from the loop's thread only.
    on_committed : callable (InFlightBatch, float, dict) -> None
        Bookkeeping per batch once its commit is requested: the batch, the Unix time its
        outputs were seen acknowledged, and the offsets requested (empty when none of its
        partitions is still assigned).
    assigned : callable () -> set of (str, int)
        The partitions this member holds now (commits of others are dropped).
    interval_s : float, optional
        Least seconds between two offset commits (default :data:`COMMIT_INTERVAL_S`).

    Raises
    ------
    ValueError
        If ``interval_s`` is not in (0, 60].
    """

    def __init__(
        self,
        consumer: Any,
        on_committed: Callable[[InFlightBatch, float, dict], None],
        assigned: Callable[[], set[tuple[str, int]]],
        interval_s: float | None = None,
    ) -> None:
        interval_s = COMMIT_INTERVAL_S if interval_s is None else interval_s
        if not 0 < interval_s <= 60:
            raise ValueError(f"interval_s: expected seconds in (0, 60], got {interval_s!r}")
        self.interval_s = interval_s
        self.consumer = consumer
        self.on_committed = on_committed
        self.assigned = assigned
        self.in_flight: deque[InFlightBatch] = deque()
        self._acked: list[InFlightBatch] = []
        self._last_commit = time.monotonic()

    def submit(self, batch: InFlightBatch) -> None:
        """Hand a batch over once its outputs are queued on the producer."""
        self.in_flight.append(batch)

    @property
    def blocked(self) -> bool:
        """:data:`MAX_IN_FLIGHT` batches wait for acknowledgements: fetch nothing more until some arrive."""
        return len(self.in_flight) >= MAX_IN_FLIGHT

    def advance(self, force: bool = False, synchronous: bool = False) -> int:
        """Take the acknowledged leading batches; commit them when ``interval_s`` has passed (or ``force``).

        Parameters
        ----------
        force : bool, default False
            Commit whatever is acknowledged now, whatever the interval.
        synchronous : bool, default False
            Wait for the broker's answer (revocation and shutdown).

        Returns
        -------
        int
            Batches committed by this call.

        Raises
        ------
        SendFailed
            An output of the leading batch was refused by the broker.
        """
        in_flight = self.in_flight
        if in_flight and in_flight[0].acks.done:
            now = time.time()
            while in_flight and in_flight[0].acks.done:
                b = in_flight.popleft()
                if b.acks.error is not None:
                    in_flight.appendleft(b)  # never committed; the next owner re-scores it
                    raise SendFailed(f"an output of a scored batch was not delivered: {b.acks.error}")
                b.acked_at = now
                self._acked.append(b)
        if not self._acked or not (force or time.monotonic() - self._last_commit >= self.interval_s):
            return 0
        return self._commit(synchronous)

    def _commit(self, synchronous: bool) -> int:
        acked, self._acked = self._acked, []
        self._last_commit = time.monotonic()
        offsets: dict[tuple[str, int], int] = {}
        for b in acked:
            offsets.update(b.offsets)  # later batches hold higher offsets
        held = self.assigned()
        moved = [tp for tp in offsets if tp not in held]
        if moved:
            # Acknowledged after their partitions were revoked: their next owner re-reads from
            # the last commit (duplicates, never loss).
            logger.warning("not committing partitions no longer assigned partitions=%s", _names(moved))
            offsets = {tp: o for tp, o in offsets.items() if tp in held}
        if offsets:
            tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            try:
                self.consumer.commit(offsets=tps, asynchronous=not synchronous)
            except KafkaException as exc:
                # Only a synchronous commit raises here (an asynchronous one reports through
                # the consumer's ``on_commit``): the partitions moved on, their next owner
                # re-reads from the last commit: duplicate scores, never loss.
                logger.warning("commit refused partitions=%s error=%s", _names(offsets), exc)
                offsets = {}
        for b in acked:
            self.on_committed(b, b.acked_at, offsets)
        return len(acked)

    def drop(self, partitions: Iterable[tuple[str, int]] | None = None) -> int:
        """Forget in-flight and uncommitted batches (partitions lost): their records are read again.

        Returns
        -------
        int
            Batches forgotten.
        """
        n = len(self.in_flight) + len(self._acked)
        self.in_flight.clear()
        self._acked = []
        return n


def on_commit(err: KafkaError | None, partitions: list[TopicPartition]) -> None:
    """The scoring consumer's ``on_commit``: log an asynchronous commit the broker refused.

    A refused commit means the partitions moved to another member (or the broker went
    away): their next reader starts at the last accepted commit, so these scores may be
    duplicated (recognisable by ``event_id``), never lost.
    """
    if err is not None:
        logger.warning(
            "offset commit failed partitions=%s error=%s", _names((tp.topic, tp.partition) for tp in partitions), err
        )


def _names(tps: Iterable[tuple[str, int]]) -> str:
    return ",".join(f"{t}[{p}]" for t, p in sorted(tps))
