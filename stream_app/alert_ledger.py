"""At most one churn alert per event, across worker crashes: the alert ledger.

The worker is at-least-once: a micro-batch whose outputs were acknowledged but whose
input offsets were not yet committed when its worker died is scored again by the
worker that takes the partition over. Duplicate *scores* are harmless (each carries
``event_id``); a duplicate *alert* is not, because alerts trigger retention actions.
The worker therefore keeps an :class:`AlertLedger` of the event ids it has alerted on
and drops an alert whose event id is already in it.

Recovery (:func:`recover_alerted_ids`) fills the ledger whenever partitions are
assigned, before any of their records is scored: it reads ``churn-alerts`` back from
the earliest timestamp an alert of an *uncommitted* input record can carry, to the end.

Why that timestamp is a safe lower bound: the first uncommitted record of a partition
(at the committed offset) was appended to the broker after its producer stamped it
(``CreateTime``); every later uncommitted record was appended after it; the previous
owner read each one after its append and only then produced its alert, stamped with
its own clock. So an alert for an uncommitted record carries a timestamp at or after
the ``CreateTime`` of the record at the committed offset, *if the clocks agree*.
:data:`CLOCK_SKEW_MARGIN_S` is subtracted to allow for skew between the input
producers' and the workers' clocks.

Why not Kafka transactions (``send_offsets_to_transaction``): they would make the
outputs and the offset commit atomic for ``read_committed`` consumers, and fence
zombies, but the local broker (Tansu 0.6.0, in memory) answers ``InitProducerId``
for a transactional id with ``UnknownError``, and a transaction per micro-batch adds
several broker round trips to every batch's latency.

Remaining limits, honestly:

- The ledger stops the worker from *emitting* an alert twice; it cannot stop the broker
  from *appending* one emission twice when a produce is retried after its acknowledgement
  was lost (a broker crash mid-request). Those copies are byte-identical (same
  ``scored_at``). An idempotent producer (``enable_idempotence``) removes them on Apache
  Kafka; Tansu 0.6.0 answers ``InitProducerId`` with ``UnknownError``, so the worker does
  not enable it. Consumers that must not act twice dedupe on ``event_id``.
- Clock skew larger than :data:`CLOCK_SKEW_MARGIN_S` between an input producer and the
  previous worker can start the read-back too late (a duplicate alert is then possible).
- A *zombie*: a worker frozen (not crashed) for longer than the session timeout while
  holding a scored batch, which then wakes up and sends its alerts after the new owner
  has finished its read-back. Only broker-side producer fencing (transactions) closes this.
  A worker that leaves or loses partitions in an ordinary rebalance finishes and commits
  its in-flight batches first (the rebalance listener waits for them, up to 30 s), so it is
  not one; a worker whose outputs stay unacknowledged beyond that wait can become one.
- The ledger is bounded (:data:`LEDGER_CAPACITY` event ids, oldest forgotten first); an
  event re-sent to ``customers`` after that many later alerts is alerted again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

logger = logging.getLogger(__name__)

#: Allowed disagreement (seconds) between input producers' and workers' clocks.
CLOCK_SKEW_MARGIN_S = 60.0

#: Event ids remembered per worker (about 100 bytes each).
LEDGER_CAPACITY = 1 << 18


class AlertLedger:
    """Event ids already alerted on, oldest forgotten first beyond ``capacity``.

    Parameters
    ----------
    capacity : int, default LEDGER_CAPACITY
        Event ids kept; must be positive.

    Raises
    ------
    ValueError
        If ``capacity`` is not positive.
    """

    def __init__(self, capacity: int = LEDGER_CAPACITY) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity: expected a positive integer, got {capacity!r}")
        self.capacity = capacity
        self._ids: dict[str, None] = {}  # insertion-ordered: the first key is the oldest
        self.suppressed = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_ids: Iterable[str]) -> None:
        """Remember ``event_ids`` as alerted on."""
        ids = self._ids
        for eid in event_ids:
            ids.pop(eid, None)  # re-adding makes it the newest
            ids[eid] = None
        excess = len(ids) - self.capacity
        if excess > 0:
            for eid in [k for _, k in zip(range(excess), ids)]:
                del ids[eid]

    def admit(self, event_ids: Sequence[str]) -> list[int]:
        """Positions of the alerts to emit: event ids not alerted on yet (first occurrence within the call).

        The admitted ids are remembered; the others are counted in :attr:`suppressed`.

        Parameters
        ----------
        event_ids : sequence of str
            Event id of each candidate alert, in emission order.

        Returns
        -------
        list of int
            Indices into ``event_ids``.
        """
        ids = self._ids
        keep: list[int] = []
        for i, eid in enumerate(event_ids):
            if eid in ids:
                continue
            ids[eid] = None
            keep.append(i)
        self.suppressed += len(event_ids) - len(keep)
        excess = len(ids) - self.capacity
        if excess > 0:
            for eid in [k for _, k in zip(range(excess), ids)]:
                del ids[eid]
        return keep


async def log_end_offsets(reader: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    """The offset after each partition's last record, from fetch responses' high watermarks.

    ``end_offsets`` (ListOffsets "latest") is not enough on Tansu 0.6.0: it answers the base
    offset of the partition's last record *batch* plus one, so a reader stopping there misses
    the rest of that batch. A fetch response's high watermark is right; this fetches once
    from the listed end (at most one batch comes back) and takes the larger of the two.

    Parameters
    ----------
    reader : aiokafka.AIOKafkaConsumer
        Started, without a group; its assignment is replaced.
    tps : sequence of TopicPartition

    Returns
    -------
    dict of TopicPartition to int
    """
    tps = list(tps)
    if not tps:
        return {}
    listed = await reader.end_offsets(tps)
    reader.assign(tps)
    for tp in tps:
        reader.seek(tp, listed[tp])
    while any(reader.highwater(tp) is None for tp in tps):
        await reader.getmany(*tps, timeout_ms=200, max_records=1)
    return {tp: max(listed[tp], reader.highwater(tp)) for tp in tps}


async def recovery_start_ms(
    reader: AIOKafkaConsumer, committed: dict[TopicPartition, int | None], margin_s: float = CLOCK_SKEW_MARGIN_S
) -> int | None:
    """Earliest alert timestamp (ms) an uncommitted record of these partitions can have produced.

    Parameters
    ----------
    reader : aiokafka.AIOKafkaConsumer
        Started, without a group; its assignment is replaced.
    committed : dict of TopicPartition to int or None
        The group's committed offset per input partition (``None``: never committed).
    margin_s : float, default CLOCK_SKEW_MARGIN_S
        Subtracted from the earliest ``CreateTime`` found.

    Returns
    -------
    int or None
        Unix milliseconds, or ``None`` when no partition has an uncommitted record.
    """
    tps = list(committed)
    if not tps:
        return None
    ends = await log_end_offsets(reader, tps)
    starts = await reader.beginning_offsets(tps)
    first = {tp: max(committed[tp] if committed[tp] is not None else starts[tp], starts[tp]) for tp in tps}
    open_tps = [tp for tp in tps if first[tp] < ends[tp]]
    if not open_tps:
        return None
    reader.assign(open_tps)
    for tp in open_tps:
        reader.seek(tp, first[tp])
    earliest: int | None = None
    waiting = set(open_tps)
    while waiting:
        batch = await reader.getmany(*waiting, timeout_ms=1000, max_records=1)
        for tp, msgs in batch.items():
            if msgs and tp in waiting:
                waiting.discard(tp)
                ts = msgs[0].timestamp
                earliest = ts if earliest is None else min(earliest, ts)
    assert earliest is not None
    return int(earliest - margin_s * 1000)


async def recover_alerted_ids(
    reader: AIOKafkaConsumer, alerts_topic: str, partitions: Iterable[int], since_ms: int, ledger: AlertLedger
) -> int:
    """Read ``alerts_topic`` from ``since_ms`` to its current end and add every alert's event id to ``ledger``.

    Parameters
    ----------
    reader : aiokafka.AIOKafkaConsumer
        Started, without a group; its assignment is replaced.
    alerts_topic : str
    partitions : iterable of int
        Partition ids of ``alerts_topic`` (e.g. ``await producer.partitions_for(alerts_topic)``).
    since_ms : int
        Unix milliseconds (record timestamps).
    ledger : AlertLedger

    Returns
    -------
    int
        Alerts read.
    """
    tps = [TopicPartition(alerts_topic, p) for p in sorted(partitions)]
    if not tps:
        return 0
    ends = await log_end_offsets(reader, tps)
    found = await reader.offsets_for_times({tp: since_ms for tp in tps})
    start = {}
    for tp in tps:
        hit = found.get(tp)
        # No record at or after since_ms: Kafka answers None; Tansu answers offset 0 with timestamp -1.
        start[tp] = ends[tp] if hit is None or hit.timestamp < 0 else hit.offset
    todo = [tp for tp in tps if start[tp] < ends[tp]]
    if not todo:
        return 0
    reader.assign(todo)
    for tp in todo:
        reader.seek(tp, start[tp])
    n = 0
    while todo:
        batch = await reader.getmany(*todo, timeout_ms=1000, max_records=10_000)
        ids = []
        for tp, msgs in batch.items():
            for m in msgs:
                if m.offset >= ends[tp]:
                    continue
                try:
                    eid = orjson.loads(m.value)["event_id"]
                except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
                    logger.warning(
                        "unreadable alert %s[%d]@%d error=%s", tp.topic, tp.partition, m.offset, type(exc).__name__
                    )
                    continue
                ids.append(eid)
        ledger.add(ids)
        n += len(ids)
        todo = [tp for tp in todo if await reader.position(tp) < ends[tp]]
    return n
