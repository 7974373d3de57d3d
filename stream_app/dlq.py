"""Replaying dead letters: re-validate each one's original bytes and send the now-valid ones back.

``churn dlq replay`` reads ``customers.dlq`` from the beginning up to its end offsets
at the start of the run (so letters written meanwhile, e.g. by a replayed record that
fails again, are not chased), decodes each dead letter's original bytes and validates
them against today's contract of the data set served (``--dataset``: its generated
customer event model, :func:`schemas.events.customer_event_model`). Valid ones (after a schema fix, or
records that failed featurisation transiently) are re-sent with their original key and
bytes to the topic they came from; invalid ones are counted and listed with their
coordinates and first error, never re-sent. A dead letter whose original
(topic, partition, offset) was already replayed in this run (the DLQ is at-least-once
too) is skipped.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from plumbing.settings import Settings
from schemas.events import CustomerEventBase, DeadLetter, customer_event_model, format_validation_error

logger = logging.getLogger(__name__)

#: Invalid records listed in the report at most (all are counted).
MAX_LISTED = 1000

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """A ``--since`` value as a UTC time: ISO 8601 (naive means UTC) or relative (``30m``, ``2h``, ``1d``).

    Raises
    ------
    ValueError
        ``"since: expected ISO 8601 time or <n>[smhd], got '...'"``.
    """
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(value)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since: expected ISO 8601 time or <n>[smhd], got {value!r}") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def _first_error(value: bytes | None, model: type[CustomerEventBase]) -> str | None:
    """None when ``value`` is a valid customer event of ``model``, else the contract's first error line."""
    if not value:
        return "record value is null or empty"
    try:
        model.model_validate_json(value)
    except ValidationError as exc:
        return format_validation_error(exc, limit=1).errors[0]
    return None


async def replay_dead_letters_async(
    settings: Settings,
    *,
    since: datetime | None = None,
    dry_run: bool = False,
    dlq_topic: str | None = None,
    idle_timeout_s: float = 10.0,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Replay ``dlq_topic`` (default: the data set's dead-letter topic + ``settings.topic_suffix``); see the module doc.

    Parameters
    ----------
    settings : Settings
    dataset : str, optional
        Profile name or file of the data set (default ``settings.dataset``): its contract
        re-validates the letters and its namespace names the default topic.
    since : datetime, optional
        Only dead letters that failed at or after this time.
    dry_run : bool, default False
        Validate and report, send nothing.
    dlq_topic : str, optional
    idle_timeout_s : float, default 10
        Give up reading when no record arrives for this long before the end offsets.

    Returns
    -------
    dict
        JSON-able report: ``read``, ``skipped_since``, ``skipped_new`` (failed after the run began),
        ``duplicates``, ``unreadable``,
        ``valid``, ``replayed``, ``invalid``, ``invalid_records`` (each ``dlq_offset``,
        ``dlq_partition``, ``topic``, ``partition``, ``offset``, ``stage``, ``error``),
        ``valid_by_topic``, ``dry_run``, ``since``.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from plumbing.clients import kafka_kwargs, served_dataset

    profile, namespace = served_dataset(settings, dataset)
    model = customer_event_model(profile)
    topic = dlq_topic or namespace.customers_dlq + settings.topic_suffix
    run_started = datetime.now(UTC)
    report: dict[str, Any] = {
        "dataset": profile.name,
        "dlq_topic": topic,
        "dry_run": dry_run,
        "since": since.isoformat() if since else None,
        "read": 0,
        "skipped_since": 0,
        "skipped_new": 0,
        "duplicates": 0,
        "unreadable": 0,
        "valid": 0,
        "replayed": 0,
        "invalid": 0,
        "valid_by_topic": {},
        "invalid_records": [],
    }
    consumer = AIOKafkaConsumer(**kafka_kwargs(settings), group_id=None, enable_auto_commit=False)
    producer = None if dry_run else AIOKafkaProducer(**kafka_kwargs(settings), acks="all", linger_ms=5)
    await consumer.start()
    if producer is not None:
        await producer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()  # metadata of a topic just created
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return report
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        position = dict(starts)
        replayed: set[tuple[str, int, int]] = set()
        futures = []
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            if not batch:
                # Done once every partition is read to its end offset at the start of the run (and
                # nothing more came at once: some brokers report the end of the last record batch late).
                if all(position[tp] >= ends[tp] for tp in tps):
                    break
                if loop.time() - last > idle_timeout_s:
                    logger.warning("dlq replay stopped early: no record for %.0f s before end offsets", idle_timeout_s)
                    break
                continue
            last = loop.time()
            for tp, msgs in batch.items():
                if msgs:
                    position[tp] = msgs[-1].offset + 1
                for m in msgs:
                    report["read"] += 1
                    try:
                        letter = DeadLetter.model_validate_json(m.value)
                    except ValidationError:
                        report["unreadable"] += 1
                        logger.warning("unreadable dead letter %s[%d]@%d", tp.topic, tp.partition, m.offset)
                        continue
                    if since is not None and letter.failed_at < since:
                        report["skipped_since"] += 1
                        continue
                    if letter.failed_at > run_started:
                        # Failed again after this run began (e.g. one of its own replays): next run.
                        report["skipped_new"] += 1
                        continue
                    origin = (letter.topic, letter.partition, letter.offset)
                    if origin in replayed:
                        report["duplicates"] += 1
                        continue
                    value = base64.b64decode(letter.original_value_b64) if letter.original_value_b64 else None
                    key = base64.b64decode(letter.original_key_b64) if letter.original_key_b64 else None
                    error = _first_error(value, model)
                    if error is not None:
                        report["invalid"] += 1
                        if len(report["invalid_records"]) < MAX_LISTED:
                            report["invalid_records"].append(
                                {
                                    "dlq_partition": tp.partition,
                                    "dlq_offset": m.offset,
                                    "topic": letter.topic,
                                    "partition": letter.partition,
                                    "offset": letter.offset,
                                    "stage": letter.stage,
                                    "error": error[:300],
                                }
                            )
                        continue
                    replayed.add(origin)
                    report["valid"] += 1
                    report["valid_by_topic"][letter.topic] = report["valid_by_topic"].get(letter.topic, 0) + 1
                    if producer is not None:
                        futures.append(await producer.send(letter.topic, value, key=key))
        if futures and producer is not None:
            await producer.flush()
            await asyncio.gather(*futures)
        report["replayed"] = len(futures)
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
    logger.info(
        "dlq replay topic=%s read=%d valid=%d replayed=%d invalid=%d dry_run=%s",
        topic,
        report["read"],
        report["valid"],
        report["replayed"],
        report["invalid"],
        dry_run,
    )
    return report


def replay_dead_letters(
    settings: Settings,
    *,
    since: datetime | None = None,
    dry_run: bool = False,
    dlq_topic: str | None = None,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Blocking wrapper of :func:`replay_dead_letters_async`."""
    return asyncio.run(
        replay_dead_letters_async(settings, since=since, dry_run=dry_run, dlq_topic=dlq_topic, dataset=dataset)
    )
