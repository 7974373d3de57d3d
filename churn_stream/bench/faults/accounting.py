"""Counting what a scenario lost, duplicated and dead-lettered, and the table of results.

The figures are described in :mod:`churn_stream.bench.faults`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson

from plumbing.settings import Settings

#: Generous bounds for a loaded 2-core machine; none of them is asserted as a figure.
COLLECT_TIMEOUT_S = 420.0
COLLECT_IDLE_S = 150.0

#: Columns of the results table, and the first keys of :meth:`FaultResult.as_dict`.
FIELDS = (
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
        return {k: d[k] for k in FIELDS} | {"checks": d["checks"], "detail": d["detail"]}


# --------------------------------------------------------------- collecting
async def input_duplicates(settings: Settings, topic: str) -> int:
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


async def collect(
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


def tally(
    name: str,
    seen: dict[str, Any],
    outcome: dict[str, Any],
    *,
    want: set[str],
    want_dlq: int,
    produced: int,
    records: int,
    input_dups: int,
    send_failures: int,
    last_error: str | None,
    elapsed_s: float,
) -> FaultResult:
    """The figures of one scenario from what :func:`collect` read back.

    Parameters
    ----------
    name : str
        The scenario.
    seen : dict
        What :func:`collect` returned.
    outcome : dict
        What the scenario's fault returned: ``fault_end`` (epoch seconds or None),
        ``checks`` and ``detail``.
    want : set of str
        Event ids of the acknowledged valid records.
    want_dlq : int
        Acknowledged malformed records.
    produced, records : int
        Records acknowledged, and records to produce.
    input_dups : int
        :func:`input_duplicates` of the input topic.
    send_failures : int
        Producer reconnections.
    last_error : str or None
        The producer's last error.
    elapsed_s : float
        Seconds the scenario took.

    Returns
    -------
    FaultResult
    """
    result = FaultResult(name)
    counts = seen["counts"]
    alert_counts = seen["alert_counts"]
    result.produced = produced
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
    result.checks["producer_acked_all"] = produced == records
    result.detail = dict(outcome.get("detail", {}))
    result.detail.update(
        producer_send_failures=send_failures,
        malformed=want_dlq,
        input_duplicates=input_dups,
        scoring_duplicates=result.duplicates - input_dups,
        alerts_missing=alerts_missing,
        alert_retry_copies=alert_retry_copies,
        unscored_sample=sorted(want - counts.keys())[:5],
        elapsed_s=round(elapsed_s, 1),
    )
    if last_error:
        result.detail["producer_last_error"] = last_error[:200]
    result.passed = (
        result.lost == 0
        and result.alert_duplicates == 0
        and alerts_missing == 0
        and result.dead_lettered == want_dlq
        and all(result.checks.values())
    )
    return result


def format_table(results: list[FaultResult]) -> str:
    """The results as a fixed-width table, then each scenario's failed checks."""
    rows = [list(FIELDS)]
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
    widths = [max(len(row[i]) for row in rows) for i in range(len(FIELDS))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    for r in results:
        failed = [k for k, ok in r.checks.items() if not ok]
        if failed or r.detail.get("error_in_harness"):
            lines.append(f"{r.scenario}: failed checks {failed} detail {orjson.dumps(r.detail).decode()[:400]}")
    return "\n".join(lines)
