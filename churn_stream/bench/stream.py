"""``churn bench stream``: three stream scorers, end to end on the configured broker, in one run.

Contenders, each on its own fresh topics and consumer group, each in its own process
(one core of its own at best, like the worker in production):

naive
    A Faust agent that validates, scores (``pipeline.predict_proba`` on one row) and
    sends (``await topic.send``) one event at a time.
relay
    The reference: a hand-written aiokafka loop, ``getmany`` -> per-record pydantic
    validation -> one matrix score per batch -> send every score and alert -> await
    the acknowledgements -> commit.
worker
    ``churn worker`` (:mod:`stream_app.worker`), started like ``churn demo`` starts it.

All three load the same champion from MLflow (a batch cycle trains one first if
none is registered) and write the same score and alert documents. For each, a
warm-up of :data:`WARMUP_EVENTS` events waits until the contender is consuming;
then the bench produces every event and reads the scores back from the output topic:
``events / (last score read - first event sent)``. A second, rate-limited phase
(worker only) sends ``rate`` events/s for ``latency_s`` seconds and measures, per
event, ``event_time`` -> the score record's timestamp (set when the worker's
producer appends it) and -> the moment the bench reads it.

The naive and relay contenders are in :mod:`churn_stream.bench.stream_contenders`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from plumbing.settings import Settings
from schemas.namespace import Namespace
from schemas.profiles import DatasetProfile, get_profile
from schemas.registry import CHAMPION

#: Events sent (and waited for) before timing, so group joins and model loads are not timed.
WARMUP_EVENTS = 200
#: Above this 1-minute load average per CPU the machine is too busy for the latency figures to mean much.
BUSY_LOAD_PER_CPU = 1.5
CONTENDERS = ("naive", "relay", "worker")


# -------------------------------------------------------------- measurement
async def _create_topics(settings: Settings, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from plumbing.clients import kafka_kwargs

    admin = AIOKafkaAdminClient(**kafka_kwargs(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, settings.topic_partitions, 1) for n in names])
    finally:
        await admin.close()


async def _produce_and_collect(
    settings: Settings,
    in_topic: str,
    out_topic: str,
    records: list[tuple[bytes, bytes]],
    *,
    rate: float | None = None,
    stamp_times: bool = False,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Send ``records`` to ``in_topic`` and read ``out_topic`` until each event id has a score."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from plumbing.clients import kafka_kwargs
    from stream_app.commit import BatchAcks
    from stream_app.sender import OutputProducer

    ids = {orjson.loads(v)["event_id"] for _, v in records}
    producer = OutputProducer.from_settings(settings)
    acks = BatchAcks()
    consumer = AIOKafkaConsumer(
        **kafka_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    seen: set[str] = set()
    duplicates = 0
    lat_ts: list[float] = []
    lat_read: list[float] = []
    try:
        tps = [TopicPartition(out_topic, p) for p in await _partitions(consumer, out_topic)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp])

        async def produce() -> float:
            t0 = time.time()
            if rate:
                chunk = max(1, int(rate / 100))  # 10 ms worth of events per send
                for i in range(0, len(records), chunk):
                    delay = t0 + i / rate - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    part = records[i : i + chunk]
                    if stamp_times:
                        now = time.time()
                        part = [(k, _restamp(v, now)) for k, v in part]
                    producer.send(in_topic, part, acks)
                    producer.poll()
            else:
                for i in range(0, len(records), 5000):
                    producer.send(in_topic, records[i : i + 5000], acks)
                    producer.poll()
                    await asyncio.sleep(0)
            while not acks.done:
                producer.poll()
                await asyncio.sleep(0.005)
            if acks.error is not None:
                raise RuntimeError(f"bench input not delivered: {acks.error}")
            return time.time() - t0

        t_start = time.time()
        producing = asyncio.ensure_future(produce())
        t_last = t_start
        deadline = time.monotonic() + timeout_s
        while len(seen) < len(ids) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=10000)
            now = time.time()
            for msgs in batch.values():
                for m in msgs:
                    doc = orjson.loads(m.value)
                    eid = doc["event_id"]
                    if eid not in ids:
                        continue
                    if eid in seen:
                        duplicates += 1
                        continue
                    seen.add(eid)
                    t_last = now
                    if stamp_times:
                        from datetime import datetime

                        et = datetime.fromisoformat(doc["event_time"]).timestamp()
                        lat_ts.append(m.timestamp / 1000.0 - et)
                        lat_read.append(now - et)
        produce_s = await producing
    finally:
        await consumer.stop()
        producer.flush(10)
    return {
        "events": len(ids),
        "scored": len(seen),
        "duplicates": duplicates,
        "seconds": t_last - t_start,
        "produce_s": produce_s,
        "lat_ts": lat_ts,
        "lat_read": lat_read,
    }


async def _partitions(consumer, topic: str) -> list[int]:
    await consumer.topics()  # metadata of every topic
    return sorted(consumer.partitions_for_topic(topic) or ())


def _restamp(value: bytes, now: float) -> bytes:
    from datetime import datetime

    doc = orjson.loads(value)
    doc["event_time"] = datetime.fromtimestamp(now, UTC).isoformat()
    return orjson.dumps(doc)


def _start_contender(
    kind: str,
    settings: Settings,
    topics: dict[str, str],
    group: str,
    pipeline_path: Path,
    model: dict[str, str],
    log_path: Path,
) -> subprocess.Popen:
    if kind == "worker":
        from churn_stream.demo import start_worker

        return start_worker(settings.with_overrides(consumer_group=group), log_path)
    args = [
        sys.executable,
        "-m",
        "churn_stream.bench.stream_contenders",
        kind,
        "--bootstrap",
        settings.kafka_bootstrap_servers,
        "--input",
        topics["in"],
        "--output",
        topics["out"],
        "--alerts",
        topics["alerts"],
        "--group",
        group,
        "--pipeline",
        str(pipeline_path),
        "--partitions",
        str(settings.topic_partitions),
        "--data-dir",
        str(log_path.parent / f"faust-{group}"),
        "--model-name",
        model["name"],
        "--model-version",
        model["version"],
    ]
    with open(log_path, "ab") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _champion(settings: Settings, dst: Path, profile: DatasetProfile, source: Path) -> tuple[Path, dict[str, str]]:
    """Download the dataset's champion pipeline (training one on ``source`` first if none is registered)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from batch.cycle import run_cycle
    from plumbing.artifacts import download_pipeline, version_artifact_uri
    from plumbing.clients import make_storage, make_tracker

    name = Namespace.for_dataset(profile.name).classifier_name
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        print("no champion registered: running a batch cycle first", file=sys.stderr)
        run_cycle(settings, make_storage(settings), make_tracker(settings), dataset=profile, source=source)
        mv = client.get_model_version_by_alias(name, CHAMPION)
    download_pipeline(settings.mlflow_tracking_uri, version_artifact_uri(mv), mv.tags["sha256"], dst_dir=dst)
    path = next(dst.rglob("*.npz"))
    return path, {"name": name, "version": str(mv.version)}


def _percentile_ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values), q)) * 1000, 1) if values else None


def _broker_mode(settings: Settings) -> str:
    mode_file = settings.data_dir / "run" / "kafka.mode"
    return mode_file.read_text().strip() if mode_file.exists() else "unknown"


def run_bench_stream(
    settings: Settings,
    events: int = 200_000,
    json_path: Path | None = None,
    rate: float = 2000.0,
    latency_s: float = 20.0,
    dataset: str = "telco",
    source: str | Path | None = None,
) -> dict[str, Any]:
    """Measure the three contenders in one run; print a table and return (and optionally save) the figures.

    Parameters
    ----------
    settings : Settings
        The broker and MLflow server to use (topics are created per run, nothing else is touched).
    events : int, default 200000
        Telco rows replicated (fresh event ids) to this many events per contender.
    json_path : Path, optional
        Where to write the result as JSON.
    rate : float, default 2000.0
        Events per second of the worker's latency phase.
    latency_s : float, default 20.0
        Duration of the latency phase (0 skips it).
    dataset : str, default "telco"
        A shipped profile's name or a profile file. The naive and relay contenders speak
        Telco's event contract; for any other dataset the worker is measured alone (and the
        ratios are None).
    source : str or Path, optional
        CSV whose rows are replayed; default the dataset's shipped file.

    Returns
    -------
    dict
        ``naive_eps``, ``relay_eps``, ``worker_eps``, ``ratio_vs_naive``, ``ratio_vs_relay``,
        ``p50_ms``, ``p99_ms`` and details per contender.
    """
    from batch.cycle_input import default_source
    from churn_stream.demo import replicate_events, stop_worker, wait_worker_ready
    from churn_stream.produce import csv_to_customer_events
    from churn_stream.stack import LocalStack
    from plumbing.clients import ensure_topics

    profile = get_profile(dataset)
    ns = Namespace.for_dataset(profile.name)
    src = default_source(profile.name, source)
    settings = settings.with_overrides(dataset=str(dataset))  # the worker child reads CHURN_DATASET
    contenders = CONTENDERS if profile.name == "telco" else ("worker",)
    run = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="churn-bench-stream-"))
    ensure_topics(settings)
    pipeline_path, model = _champion(settings, work / "model", profile, src)
    base = csv_to_customer_events(src, dataset)
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "events": events,
        "dataset": profile.name,
        "broker_mode": _broker_mode(settings),
        "bootstrap": settings.kafka_bootstrap_servers,
        "model_version": model["version"],
        "load_avg_1m_start": round(load_before[0], 2),
        "cpus": os.cpu_count(),
        "contenders": {},
    }
    for kind in contenders:
        suffix = f".bench-{run}-{kind}"
        topics = {
            "in": f"{ns.customers}{suffix}",
            "out": f"{ns.scores}{suffix}",
            "alerts": f"{ns.alerts}{suffix}",
            "dlq": f"{ns.customers_dlq}{suffix}",
        }
        asyncio.run(_create_topics(settings, list(topics.values())))
        group = f"bench-{run}-{kind}"
        log_path = work / "logs" / f"{kind}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        csettings = settings.with_overrides(topic_suffix=suffix, worker_web_port=LocalStack.free_ports(1)[0])
        proc = _start_contender(kind, csettings, topics, group, pipeline_path, model, log_path)
        try:
            if kind == "worker":
                wait_worker_ready(csettings, proc, timeout_s=120)
            warm = asyncio.run(
                _produce_and_collect(
                    settings,
                    topics["in"],
                    topics["out"],
                    replicate_events(base, WARMUP_EVENTS + len(base))[len(base) :],
                    timeout_s=120,
                )
            )
            if warm["scored"] < warm["events"] or proc.poll() is not None:
                raise RuntimeError(
                    f"{kind}: not scoring after warm-up ({warm['scored']}/{warm['events']}); see {log_path}"
                )
            records = replicate_events(base, len(base) + events)[len(base) :]
            load = os.getloadavg()[0]
            got = asyncio.run(_produce_and_collect(settings, topics["in"], topics["out"], records))
            figures = {
                "eps": round(got["scored"] / got["seconds"], 1) if got["seconds"] > 0 else None,
                "scored": got["scored"],
                "duplicates": got["duplicates"],
                "seconds": round(got["seconds"], 3),
                "produce_s": round(got["produce_s"], 3),
                "load_avg_1m": round(max(load, os.getloadavg()[0]), 2),
            }
            if kind == "worker" and latency_s > 0:
                n = int(rate * latency_s)
                lat = asyncio.run(
                    _produce_and_collect(
                        settings,
                        topics["in"],
                        topics["out"],
                        replicate_events(base, len(base) + n)[len(base) :],
                        rate=rate,
                        stamp_times=True,
                        timeout_s=latency_s + 120,
                    )
                )
                figures.update(
                    {
                        "latency_events": n,
                        "latency_scored": lat["scored"],
                        "rate_eps": rate,
                        "p50_ms": _percentile_ms(lat["lat_ts"], 50),
                        "p99_ms": _percentile_ms(lat["lat_ts"], 99),
                        "read_p50_ms": _percentile_ms(lat["lat_read"], 50),
                        "read_p99_ms": _percentile_ms(lat["lat_read"], 99),
                        "latency_load_avg_1m": round(os.getloadavg()[0], 2),
                    }
                )
            result["contenders"][kind] = figures
            print(
                f"{kind:>6}: {figures['eps']:>10,.0f} events/s scored, end to end (first event sent to last "
                f"score read: {figures['scored']}/{events} in {figures['seconds']:.2f} s, load avg "
                f"{figures['load_avg_1m']})",
                file=sys.stderr,
            )
        finally:
            if kind == "worker":
                stop_worker(proc)
            else:
                _stop(proc)
    c = result["contenders"]

    def ratio(other: str) -> float | None:
        return round(c["worker"]["eps"] / c[other]["eps"], 2) if other in c else None

    result.update(
        {
            "naive_eps": c.get("naive", {}).get("eps"),
            "relay_eps": c.get("relay", {}).get("eps"),
            "worker_eps": c["worker"]["eps"],
            "ratio_vs_naive": ratio("naive"),
            "ratio_vs_relay": ratio("relay"),
            "p50_ms": c["worker"].get("p50_ms"),
            "p99_ms": c["worker"].get("p99_ms"),
            "load_avg_1m_end": round(os.getloadavg()[0], 2),
        }
    )
    print(
        f"worker/naive = {result['ratio_vs_naive']}x, worker/relay = {result['ratio_vs_relay']}x; latency at "
        f"{rate:.0f} events/s produced (rate-limited): p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms "
        f"(broker {result['broker_mode']}, load avg {result['load_avg_1m_start']} -> {result['load_avg_1m_end']})",
        file=sys.stderr,
    )
    loads = [result["load_avg_1m_start"], result["load_avg_1m_end"]] + [
        c[kind].get(k) for kind in contenders for k in ("load_avg_1m", "latency_load_avg_1m") if c[kind].get(k)
    ]
    result["busy"] = max(loads) > BUSY_LOAD_PER_CPU * (os.cpu_count() or 1)
    if result["busy"]:
        print(
            f"note: load average reached {max(loads)} on {os.cpu_count()} CPUs: other processes shared the "
            "cores, so these figures (the latency ones above all) understate the contenders; re-run on a quiet "
            "machine",
            file=sys.stderr,
        )
    line = orjson.dumps(result, option=orjson.OPT_SORT_KEYS).decode()
    print(line)
    if json_path is not None:
        Path(json_path).write_text(line + "\n")
    return result


def _stop(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
