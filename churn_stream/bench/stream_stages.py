"""Where the worker's time goes in ``churn bench stream``: its stage counters beside each stage's floor.

stage_us
    Read from the worker's ``/metrics`` before and after the measured window: the delta
    of the counter ``churn_worker_stage_seconds_total{stage=...}`` per stage, divided by
    the delta of ``churn_events_in_total``, in microseconds per event. A worker that does
    not expose the stage counter gives None for every stage.
floor_us
    The least work each stage cannot avoid, measured in the same run, wall-clock
    microseconds per record (the bench process alone; librdkafka's own threads included):

    fetch
        A bare ``confluent_kafka`` Consumer reading the input topic in ``consume`` calls of
        :data:`FLOOR_BATCH` records (the calls' time only). Only calls that returned a whole
        batch count: the first, which waits for the connection and the first fetch, does not,
        nor a short one at the topic's end, which waited out its 1-s timeout for records that
        never came (1 s over 1,700 records showed as a 589 us floor in a 2,000-event run).
    decode, validate, featurise, predict, reasons, encode
        The floors ``churn bench score`` measures (:func:`churn_stream.bench.score.run_bench_score`)
        on the same champion.
    produce
        A bare ``confluent_kafka`` Producer (``acks=all``, no linger, as the worker's)
        producing the worker's records (``score_batch`` on the champion: every score, and
        each alert to an alerts topic) in batches of :data:`FLOOR_BATCH` events, each
        followed by ``flush``: every record acknowledged. Per event, as the stage counter.
    commit
        One synchronous commit per ``consume`` call of the fetch floor, divided by
        :data:`FLOOR_BATCH`.

    The CPU seconds of the fetch and produce floors (this process, every thread) are in
    ``floor_cpu_us``: with the broker on the same cores, the wall figures include its time.

    The Kafka floors (fetch, commit, produce and their CPU) are None, not measured, below
    :data:`FLOOR_MIN_RECORDS` records timed: over a few calls, one call's hiccup (a
    scheduler delay, a slow fetch response) would be the figure.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from plumbing.settings import Settings
from schemas.profiles import DatasetProfile

#: Counter of seconds the worker spends per stage (prometheus_client ``Counter`` with label ``stage``).
STAGE_COUNTER = "churn_worker_stage_seconds"
#: Counter of customer events the worker consumed.
EVENTS_COUNTER = "churn_events_in"
#: Counter of output records the broker acknowledged, by ``output`` label (``scores``, ``alerts`` ...).
OUTPUTS_COUNTER = "churn_events_out"
#: The worker's stages, in loop order.
WORKER_STAGES = ("fetch", "decode", "validate", "featurise", "predict", "reasons", "encode", "produce", "commit")
#: Records per consume call and per produce batch of the Kafka floors (``churn bench score``'s batch).
FLOOR_BATCH = 500
#: Fewest records (fetch: in whole batches; produce: events) a Kafka floor is given for: 10 batches.
FLOOR_MIN_RECORDS = 10 * FLOOR_BATCH

#: A record's key (None: no key) and value.
Record = tuple[bytes | None, bytes]


def parse_worker_counters(text: str) -> dict[str, Any]:
    """The stage and event counters of one ``/metrics`` scrape (Prometheus text format).

    Parameters
    ----------
    text : str
        The body of ``GET /metrics``.

    Returns
    -------
    dict
        ``events_in`` (float, or None when absent), ``scores_out`` (score records the broker
        acknowledged, :data:`OUTPUTS_COUNTER`; None when absent) and ``stages``: seconds by
        stage label (empty when the worker exposes no :data:`STAGE_COUNTER`).
    """
    from prometheus_client.parser import text_string_to_metric_families

    events_in: float | None = None
    scores_out: float | None = None
    stages: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{EVENTS_COUNTER}_total":
                events_in = float(sample.value)
            elif sample.name == f"{OUTPUTS_COUNTER}_total" and sample.labels.get("output") == "scores":
                scores_out = float(sample.value)
            elif sample.name == f"{STAGE_COUNTER}_total" and "stage" in sample.labels:
                stages[sample.labels["stage"]] = float(sample.value)
    return {"events_in": events_in, "scores_out": scores_out, "stages": stages}


def scores_acked(befores: Sequence[Mapping[str, Any] | None], afters: Sequence[Mapping[str, Any] | None]) -> int | None:
    """Score records the broker acknowledged to the workers between two scrapes of each, summed.

    Parameters
    ----------
    befores, afters : list of dict or None
        :func:`parse_worker_counters` of each worker's scrapes around the measured window.

    Returns
    -------
    int or None
        None when a scrape or its ``scores_out`` is missing.
    """
    total = 0.0
    for before, after in zip(befores, afters, strict=True):
        if not before or not after or before.get("scores_out") is None or after.get("scores_out") is None:
            return None
        total += after["scores_out"] - before["scores_out"]
    return int(total)


def stage_deltas(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Microseconds per consumed event of each worker stage between two scrapes.

    Parameters
    ----------
    before, after : dict or None
        :func:`parse_worker_counters` of the scrapes around the measured window (None: no scrape).

    Returns
    -------
    dict
        One entry per :data:`WORKER_STAGES` stage, rounded to 0.001 us; None for a stage
        missing from ``after``, or for every stage when no event was consumed in between.
        A stage missing from ``before`` only counts from 0 (a labelled counter appears at
        its first increment).
    """
    if not before or not after or before["events_in"] is None or after["events_in"] is None:
        return dict.fromkeys(WORKER_STAGES)
    events = after["events_in"] - before["events_in"]
    out: dict[str, float | None] = {}
    for stage in WORKER_STAGES:
        s1 = after["stages"].get(stage)
        s0 = before["stages"].get(stage, 0.0)
        out[stage] = None if s1 is None or events <= 0 else round((s1 - s0) / events * 1e6, 3)
    return out


def scrape_worker(port: int, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """:func:`parse_worker_counters` of the worker's ``/metrics`` on ``127.0.0.1:port`` (None if unreachable)."""
    import httpx

    try:
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s)
        r.raise_for_status()
    except httpx.HTTPError:
        return None
    return parse_worker_counters(r.text)


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size of process ``pid`` (``VmHWM`` of ``/proc/<pid>/status``), MiB; None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def fetch_commit_floor(conf: dict[str, Any], topic: str, records: int, timeout_s: float = 120.0) -> dict[str, Any]:
    """Bare Consumer: ``consume(FLOOR_BATCH)`` over ``topic`` from its start, one synchronous commit per call.

    Parameters
    ----------
    conf : dict
        librdkafka connection properties (:func:`plumbing.clients.rdkafka_config`).
    topic : str
        An input topic holding at least ``records`` records.
    records : int
        Records to read (after the first ``consume`` call's).
    timeout_s : float, default 120.0

    Returns
    -------
    dict
        ``fetch_us`` and ``commit_us`` (wall, per record of the whole batches; a commit's per
        batch of :data:`FLOOR_BATCH`), ``cpu_us`` (fetch and commit, per record read), each
        None below :data:`FLOOR_MIN_RECORDS` timed records; ``records`` (timed: in whole
        batches) and ``commits`` (of whole batches).
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            **conf,
            "group.id": f"bench-floor-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    n = timed = commits = 0
    fetch_s = commit_s = 0.0
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign(
            [
                TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p))[0])
                for p in sorted(partitions)
            ]
        )
        deadline = time.monotonic() + timeout_s
        while not consumer.consume(num_messages=FLOOR_BATCH, timeout=1.0):  # connection, first fetch: not timed
            if time.monotonic() > deadline:
                raise RuntimeError(f"fetch floor: nothing to read in {topic}")
        cpu0 = time.process_time()
        while n < records and time.monotonic() < deadline:
            t0 = time.perf_counter()
            msgs = consumer.consume(num_messages=FLOOR_BATCH, timeout=1.0)
            t1 = time.perf_counter()
            if not msgs:
                break  # the topic is read
            n += len(msgs)
            consumer.commit(asynchronous=False)
            t2 = time.perf_counter()
            if len(msgs) == FLOOR_BATCH:  # a short batch waited out the timeout: the topic's end, not a fetch
                timed += len(msgs)
                fetch_s += t1 - t0
                commit_s += t2 - t1
                commits += 1
        cpu_s = time.process_time() - cpu0
    finally:
        consumer.close()
    enough = timed >= FLOOR_MIN_RECORDS
    return {
        "fetch_us": round(fetch_s / timed * 1e6, 3) if enough else None,
        "commit_us": round(commit_s / commits / FLOOR_BATCH * 1e6, 3) if enough else None,
        "cpu_us": round(cpu_s / n * 1e6, 3) if enough else None,
        "records": timed,
        "commits": commits,
    }


def produce_floor(
    conf: dict[str, Any], topics: tuple[str, str], batches: list[tuple[list[Record], list[Record]]]
) -> dict[str, Any]:
    """Bare Producer: each batch's scores and alerts, then ``flush``; per event scored.

    Parameters
    ----------
    conf : dict
        librdkafka connection properties.
    topics : (str, str)
        Scores and alerts topics of the bench's own (the records land there).
    batches : list of (scores, alerts)
        Keys and values of each batch's records (:func:`score_records`).

    Returns
    -------
    dict
        ``produce_us`` (wall per event: its score and, for an alert, its alert record),
        ``cpu_us`` (per event), both None below :data:`FLOOR_MIN_RECORDS` events (a partial
        last batch's round trip over few events would be the figure); ``events``, ``records``.

    Raises
    ------
    RuntimeError
        If a record is not delivered.
    """
    from churn_stream.bench.stream_collect import bench_producer

    producer, failed = bench_producer(conf, **{"linger.ms": 0})
    for topic in topics:  # connections and metadata: not timed
        producer.produce(topic, b"{}")
    producer.flush()
    events = records = 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for scores, alerts in batches:
        for topic, part in zip(topics, (scores, alerts)):
            for k, v in part:
                producer.produce(topic, v, k)
        producer.flush()
        events += len(scores)
        records += len(scores) + len(alerts)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    if failed:
        raise RuntimeError(f"produce floor: {len(failed)} records not delivered, first: {failed[0]}")
    enough = events >= FLOOR_MIN_RECORDS
    return {
        "produce_us": round(wall / events * 1e6, 3) if enough else None,
        "cpu_us": round(cpu / events * 1e6, 3) if enough else None,
        "events": events,
        "records": records,
    }


def score_records(
    settings: Settings, profile: DatasetProfile, source: str | Path | None, events: int
) -> list[tuple[list[Record], list[Record]]]:
    """The worker's outputs for ``events`` replayed events: ``score_batch`` on the registered champions.

    Parameters
    ----------
    settings : Settings
        The MLflow to take the champion (and value model, as the worker decides) from.
    profile : DatasetProfile
    source : str or Path, optional
        CSV whose rows are replayed (default: the dataset's shipped file).
    events : int

    Returns
    -------
    list of (scores, alerts)
        Per batch of :data:`FLOOR_BATCH` events, the keys and values of its score and alert records.
    """
    from churn_stream.bench.score import registered_models, replay_records
    from stream_app.contract import EventContract
    from stream_app.scoring import LoadedModel, score_batch

    contract = EventContract.for_profile(profile)
    with tempfile.TemporaryDirectory(prefix="churn-bench-stream-floor-") as tmp:
        clf, names, reg, value_names = registered_models(settings, profile, Path(tmp))
    model = LoadedModel(clf, names["name"], names["version"], contract)
    value_model = None
    if reg is not None and value_names is not None and set(reg.feature_names_in) <= set(clf.feature_names_in):
        value_model = LoadedModel(reg, value_names["name"], value_names["version"], contract)
    records = replay_records(profile, source, events)
    out = []
    for i in range(0, len(records), FLOOR_BATCH):
        result = score_batch(model, records[i : i + FLOOR_BATCH], value_model=value_model)
        out.append((result.scores, result.alerts))
    return out
