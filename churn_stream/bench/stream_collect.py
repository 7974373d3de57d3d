"""The clients of ``churn bench stream`` on librdkafka: send the events, read the scores back, time both.

The bench's own clients share the cores with the contender they measure, so they are
the cheapest this project has: ``confluent_kafka``'s Producer (in a thread of its own)
and Consumer (the collector, which parses each score only for its ``event_id`` and,
in the latency phase, its ``event_time``). :func:`read_rate` checks the collector keeps
up: the same per-record work on a topic that already holds every score of a measured
phase, read from the offsets just past the warm-up's scores (``next_offsets`` of the
warm-up's :func:`produce_and_collect`), so those are not counted. Not from the high
watermarks taken before the phase: Tansu 0.6.0 answers a partition's high watermark as
its last record batch's base offset + 1, inside a batch of many records.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

#: Records the collector takes per ``consume`` call.
COLLECT_BATCH = 10_000
#: Seconds the collector waits per ``consume`` call when nothing is there.
COLLECT_WAIT_S = 0.1
#: Seconds without a new score, every event sent, after which the collector stops waiting.
STALL_TIMEOUT_S = 60.0
#: Where the bench's admin client's librdkafka log lines go (not straight to stderr): shown with ``-v``.
RDKAFKA_LOGGER = logging.getLogger(f"{__name__}.librdkafka")


def _consumer(conf: dict[str, Any], topic: str, *, from_start: bool, start: dict[int, int] | None = None) -> Any:
    """A group-less reader of every partition of ``topic``, from its start or its current end.

    ``start`` overrides ``from_start`` for the partitions it names (offset by partition).
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            **conf,
            "group.id": f"bench-collector-{uuid.uuid4().hex[:8]}",  # required; never joined nor committed
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 20,
            "max.partition.fetch.bytes": 4 * 1024 * 1024,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    tps = []
    for p in sorted(partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        tps.append(TopicPartition(topic, p, (start or {}).get(p, low if from_start else high)))
    consumer.assign(tps)
    return consumer


def bench_producer(conf: dict[str, Any], **props: Any) -> tuple[Any, list[str]]:
    """A librdkafka Producer with ``acks=all`` that reports only failed deliveries, into a list.

    Parameters
    ----------
    conf : dict
        :func:`plumbing.clients.rdkafka_config`.
    **props
        More librdkafka properties (``linger.ms``, queue sizes ...).

    Returns
    -------
    producer : confluent_kafka.Producer
    failed : list of str
        One error text per record the broker did not take, appended as reports are served.
    """
    from confluent_kafka import Producer

    failed: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    producer = Producer({**conf, "acks": "all", **props, "delivery.report.only.error": True, "on_delivery": delivered})
    return producer, failed


def bench_admin(conf: dict[str, Any]) -> Any:
    """A librdkafka AdminClient whose log lines go to :data:`RDKAFKA_LOGGER`, not to stderr.

    Without a ``logger``, librdkafka prints its lines on stderr itself, below any logging
    configuration: an admin client's background thread, destroyed with an event still queued,
    printed ``%6|...|BGQUEUE|...: Purging 1 unserved events from background queue`` into
    ``churn bench stream``'s quiet output. With one, the lines wait in a queue that
    ``poll`` serves into :data:`RDKAFKA_LOGGER` (INFO ones shown with ``-v``); those of the
    client's destruction are dropped.

    Parameters
    ----------
    conf : dict
        :func:`plumbing.clients.rdkafka_config`.

    Returns
    -------
    confluent_kafka.admin.AdminClient
        Call its ``poll(0)`` when done to log what it queued.
    """
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {**conf, "logger": RDKAFKA_LOGGER}
    return AdminClient(config)


def _restamp(value: bytes, now: float) -> bytes:
    doc = orjson.loads(value)
    doc["event_time"] = datetime.fromtimestamp(now, UTC).isoformat()
    return orjson.dumps(doc)


def produce_and_collect(
    conf: dict[str, Any],
    in_topic: str,
    out_topic: str,
    records: Sequence[tuple[bytes, bytes]],
    *,
    rate: float | None = None,
    stamp_times: bool = False,
    note_offsets: bool = False,
    timeout_s: float = 600.0,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Send ``records`` to ``in_topic`` and read ``out_topic`` until each event id has a score.

    Parameters
    ----------
    conf : dict
        :func:`plumbing.clients.rdkafka_config`.
    in_topic, out_topic : str
    records : sequence of (bytes, bytes)
        Keys and customer event values.
    rate : float, optional
        Events per second, sent 10 ms worth at a time; default as fast as the producer goes.
    stamp_times : bool, default False
        Set each event's ``event_time`` to when it is sent and measure latencies.
    note_offsets : bool, default False
        Note, per partition of ``out_topic``, the offset after the last record read (a
        warm-up's: where the measured phase's scores will start).
    timeout_s : float, default 600.0
        Give up reading after this long, or after :data:`STALL_TIMEOUT_S` without a new
        score once every event was sent (a contender that stopped, or a broker that lost
        records: ``scored`` is then below ``events``).
    stop : callable, optional
        Asked whenever a read returns nothing: True stops reading at once (the contender's
        process exited, say), without waiting out :data:`STALL_TIMEOUT_S`.

    Returns
    -------
    dict
        ``events``, ``scored`` (distinct event ids read back), ``duplicates``, ``seconds``
        (first event sent -> last new score read), ``produce_s``, ``client_cpu_s`` (this
        process's CPU seconds over the phase, every thread), and with ``stamp_times``
        ``lat_ts`` (score record timestamp - event time) and ``lat_read`` (read - event
        time), seconds, and ``score_versions`` (score record timestamp in seconds and the
        score's ``model_version``, one pair per score in read order); ``next_offsets`` (with
        ``note_offsets``: offset by partition after the last record read, else None);
        ``missing_in_topic`` (when ids were not read back: how many of them
        :func:`find_in_topic` finds in ``out_topic``, else None) and ``missing_sample`` (up to
        three of those ids).

    Raises
    ------
    RuntimeError
        If an event is not delivered to ``in_topic``.
    """
    ids = {orjson.loads(v)["event_id"] for _, v in records}
    producer, failed = bench_producer(
        conf,
        **{
            "linger.ms": 1,
            "batch.size": 512 * 1024,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2 * 1024 * 1024,
        },
    )
    consumer = _consumer(conf, out_topic, from_start=False)
    produce_s: list[float] = []

    def produce() -> None:
        t0 = time.time()
        if rate:
            chunk = max(1, int(rate / 100))  # 10 ms worth of events per send
            for i in range(0, len(records), chunk):
                delay = t0 + i / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
                now = time.time()
                for k, v in records[i : i + chunk]:
                    producer.produce(in_topic, _restamp(v, now) if stamp_times else v, k)
                producer.poll(0)
        else:
            for k, v in records:
                while True:
                    try:
                        producer.produce(in_topic, v, k)
                        break
                    except BufferError:  # the local queue is full: let the broker catch up
                        producer.poll(0.05)
        producer.flush()
        produce_s.append(time.time() - t0)

    seen: set[str] = set()
    duplicates = 0
    lat_ts: list[float] = []
    lat_read: list[float] = []
    versions: list[tuple[float, str]] = []
    next_offsets: dict[int, int] | None = {} if note_offsets else None
    loads = orjson.loads
    cpu0 = time.process_time()
    t_start = time.time()
    sender = threading.Thread(target=produce, name="bench-producer", daemon=True)
    sender.start()
    t_last = t_start
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < len(ids) and time.monotonic() < deadline:
            msgs = consumer.consume(num_messages=COLLECT_BATCH, timeout=COLLECT_WAIT_S)
            now = time.time()
            if not msgs and (
                (produce_s and now - max(t_last, t_start + produce_s[0]) > STALL_TIMEOUT_S)
                or (stop is not None and stop())
            ):
                break
            if next_offsets is not None:  # warm-ups only: the timed loop below stays as it was
                for m in msgs:
                    if m.error() is None:
                        next_offsets[m.partition()] = max(next_offsets.get(m.partition(), 0), m.offset() + 1)
            for m in msgs:
                if m.error() is not None:
                    continue
                doc = loads(m.value())
                eid = doc["event_id"]
                if eid not in ids:
                    continue
                if eid in seen:
                    duplicates += 1
                    continue
                seen.add(eid)
                t_last = now
                if stamp_times:
                    et = datetime.fromisoformat(doc["event_time"]).timestamp()
                    ts = m.timestamp()[1] / 1000.0
                    lat_ts.append(ts - et)
                    lat_read.append(now - et)
                    versions.append((ts, doc.get("model_version")))  # none on a pass-through
        sender.join(max(1.0, deadline - time.monotonic()))
    finally:
        consumer.close()
    if failed:
        raise RuntimeError(f"{len(failed)} events not delivered to {in_topic}, first: {failed[0]}")
    missing = ids - seen
    return {
        "events": len(ids),
        "scored": len(seen),
        # Only when scores are missing: is it the collector's reading or the topic's content?
        "missing_in_topic": find_in_topic(conf, out_topic, missing) if missing else None,
        "missing_sample": sorted(missing)[:3],
        "duplicates": duplicates,
        "seconds": t_last - t_start,
        "produce_s": produce_s[0] if produce_s else None,
        "client_cpu_s": time.process_time() - cpu0,
        "lat_ts": lat_ts,
        "lat_read": lat_read,
        "score_versions": versions,
        "next_offsets": next_offsets,
    }


def find_in_topic(
    conf: dict[str, Any], topic: str, event_ids: set[str], idle_s: float = 5.0, timeout_s: float = 120.0
) -> int:
    """How many of ``event_ids`` have a record in ``topic``, read again from its start by a new consumer.

    Tells a score the collector did not read (it is there) from one the topic does not hold.

    Parameters
    ----------
    conf : dict
        :func:`plumbing.clients.rdkafka_config`.
    topic : str
        A scores topic (JSON documents with an ``event_id``).
    event_ids : set of str
        The ids looked for.
    idle_s : float, default 5.0
        Stop once no record came for this long (the topic is read to its end).
    timeout_s : float, default 120.0
        Stop after this long in any case.

    Returns
    -------
    int
        The ids of ``event_ids`` found.
    """
    consumer = _consumer(conf, topic, from_start=True)
    found: set[str] = set()
    loads = orjson.loads
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while len(found) < len(event_ids) and time.monotonic() < deadline and time.monotonic() - last < idle_s:
            msgs = consumer.consume(num_messages=COLLECT_BATCH, timeout=COLLECT_WAIT_S)
            if msgs:
                last = time.monotonic()
            for m in msgs:
                if m.error() is None:
                    eid = loads(m.value()).get("event_id")
                    if eid in event_ids:
                        found.add(eid)
    finally:
        consumer.close()
    return len(found)


def read_rate(
    conf: dict[str, Any], topic: str, records: int, start: dict[int, int] | None = None, timeout_s: float = 120.0
) -> dict[str, Any]:
    """How fast the collector reads ``records`` scores already in ``topic`` (its per-record work included).

    Parameters
    ----------
    conf : dict
        :func:`plumbing.clients.rdkafka_config`.
    topic : str
        A scores topic holding at least ``records`` records from ``start`` on.
    records : int
        Records to read (a measured phase's: its scores and duplicates).
    start : dict of int to int, optional
        First offset to read by partition (``next_offsets`` of the warm-up, so its scores are
        left out); default each partition's start.
    timeout_s : float, default 120.0

    Returns
    -------
    dict
        ``records`` read, ``seconds`` (first consume call -> last record read), ``eps``,
        ``cpu_s`` (this process, every thread).
    """
    consumer = _consumer(conf, topic, from_start=True, start=start)
    seen: set[str] = set()
    loads = orjson.loads
    n = 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    try:
        while n < records and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=COLLECT_BATCH, timeout=COLLECT_WAIT_S):
                if m.error() is None:
                    seen.add(loads(m.value())["event_id"])
                    n += 1
        seconds = time.perf_counter() - t0
    finally:
        consumer.close()
    return {
        "records": n,
        "seconds": round(seconds, 3),
        "eps": round(n / seconds, 1) if seconds > 0 else None,
        "cpu_s": round(time.process_time() - cpu0, 3),
    }
