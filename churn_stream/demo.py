"""``churn demo``: the main job end to end on the local stack, for any dataset.

Stack up -> a batch cycle if the dataset has no champion (or one trained for another
contract) -> the worker -> every source row produced as a customer event -> wait until
each one's score is on the dataset's scores topic -> a summary whose last line is one
JSON object, with ``first_score_s``: seconds from the start to the first live score.

The dataset (``--dataset``, else ``CHURN_DATASET``) is a shipped name or a profile
file. Its source is ``--source``, else its shipped file (Telco), else, for retail, a
generated file of :data:`DEMO_RETAIL_ROWS` customers; a table of one's own needs
``--source``. The worker is started with ``CHURN_DATASET`` set, so it serves that
dataset's namespace (topics, registered names, consumer group).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from plumbing.progress import Progress
from plumbing.settings import Settings
from schemas.namespace import Namespace
from schemas.profiles import DatasetProfile, get_profile
from schemas.registry import CHAMPION
from schemas.topics import Topics

logger = logging.getLogger(__name__)

TELCO_CSV = Path(__file__).resolve().parents[1] / "data" / "telco_customer_churn.csv"
#: Retail customers the demo generates (seed 0) when no --source is given: a cycle of a few
#: minutes on 2 cores, and enough churned rows for the quality gate and promotion rules.
DEMO_RETAIL_ROWS = 5_000


class DemoError(RuntimeError):
    """The demo cannot run as asked (a port taken, the worker not starting)."""


def _port_taken(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def say(line: str) -> None:
    """One line for the person running the demo, on stderr (stdout ends with the JSON summary)."""
    print(line, file=sys.stderr, flush=True)


def produced_line(produced: int, seconds: float) -> str:
    """``produced 7,043 events in 1.2 s (5,869 events/s, producer acknowledged)``.

    Parameters
    ----------
    produced : int
        Events the broker acknowledged.
    seconds : float
        From the first send to the last acknowledgement.

    Returns
    -------
    str
    """
    rate = f"{produced / seconds:,.0f} events/s" if seconds > 0 else "rate not measured"
    return f"produced {produced:,} events in {seconds:.1f} s ({rate}, producer acknowledged)"


def summary_lines(summary: dict[str, Any], threshold: float | None = None) -> list[str]:
    """The demo's closing summary in words, a few lines; the JSON line follows it.

    Parameters
    ----------
    summary : dict
        :func:`run_demo`'s result.
    threshold : float, optional
        The champion's tuned decision threshold.

    Returns
    -------
    list of str
        The champion and its hold-out AUC/F1; events produced, scored and alerted;
        throughput and what it measures; the time to the first live score.
    """

    def fmt(value: Any, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    eps, first = summary.get("events_per_s"), summary.get("first_score_s")
    return [
        f"summary ({summary['dataset']}, {summary['source']}):",
        f"  champion    {summary.get('champion_model')} v{summary['model_version']}: "
        f"ROC-AUC {fmt(summary.get('champion_roc_auc'), '.3f')}, F1 {fmt(summary.get('champion_f1'), '.3f')}"
        + (f" at threshold {threshold:.3f}" if threshold is not None else "")
        + " (hold-out)",
        f"  events      {summary['produced']:,} produced, {summary['scored']:,} scored, "
        f"{summary['alerts']:,} churn alerts, {summary['duplicates']:,} duplicate scores",
        f"  throughput  {fmt(eps, ',.0f')} events/s scored (worker throughput, end to end: "
        f"{summary['scored']:,} events from the first send to the last score read, {summary['scoring_s']:.1f} s)",
        f"  first score {fmt(first, '.1f')} s after the demo started ({summary['elapsed_s']:.1f} s in all)",
    ]


def start_cli(
    settings: Settings, args: list[str], log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``churn <args>`` as a child process of this stack, logging to ``log_path``.

    The child gets this process's environment with the stack's Kafka, MLflow and data
    directory settings (plus ``extra_env``), in its own session so it can be signalled alone.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            "CHURN_DATA_DIR": str(settings.data_dir),
            "CHURN_DATASET": settings.dataset,
        }
    )
    env.update(extra_env or {})
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "churn_stream.cli", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen:
    """Start ``churn worker`` as a child process logging to ``log_path``."""
    return start_cli(
        settings,
        ["worker"],
        log_path,
        {
            "CHURN_CONSUMER_GROUP": settings.consumer_group,
            "CHURN_WORKER_WEB_PORT": str(settings.worker_web_port),
            "CHURN_TOPIC_SUFFIX": settings.topic_suffix,
        },
    )


def wait_worker_ready(settings: Settings, proc: subprocess.Popen, timeout_s: float = 120.0) -> dict[str, Any]:
    """Poll the worker's ``/health`` until ready.

    Raises
    ------
    DemoError
        If the worker exits or is not ready within ``timeout_s``.
    """
    url = f"http://127.0.0.1:{settings.worker_web_port}/health"
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"worker exited with code {proc.returncode}; see its log")
        try:
            r = httpx.get(url, timeout=2.0)
            last = r.json()
            if r.status_code == 200 and last.get("ready"):
                return last
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise DemoError(f"worker not ready after {timeout_s:.0f} s (last health: {last})")


def stop_worker(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM the worker (it leaves its consumer group cleanly), SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _collect(
    settings: Settings,
    event_ids: set[str],
    start_offsets: dict,
    timeout_s: float,
    topics: tuple[str, str] = (Topics.SCORES, Topics.ALERTS),
    on_scored: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Read outputs from ``start_offsets`` until every event id has a score (or timeout).

    ``topics`` is the scores topic, then the alerts topic; ``on_scored`` is called with the
    number of events newly scored in each fetch (a progress bar's ``update``). The result has
    ``first_score_at`` and ``last_score_at`` (Unix seconds, when this reader got them).
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from plumbing.clients import kafka_kwargs

    consumer = AIOKafkaConsumer(**kafka_kwargs(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    scored: set[str] = set()
    alerted: set[str] = set()
    duplicates = 0
    first_score_at = last_score_at = None
    scores_topic, alerts_topic = topics
    try:
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or []]
        if not tps:
            await consumer._client.force_metadata_update()  # metadata of fresh topics
            tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or []]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start_offsets.get((tp.topic, tp.partition), 0))
        deadline = time.monotonic() + timeout_s
        while len(scored) < len(event_ids) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            before = len(scored)
            for tp, msgs in batch.items():
                for m in msgs:
                    doc = orjson.loads(m.value)
                    eid = doc.get("event_id")
                    if eid not in event_ids:
                        continue
                    if tp.topic == scores_topic:
                        if eid in scored:
                            duplicates += 1
                        scored.add(eid)
                        last_score_at = time.time()
                        first_score_at = first_score_at or last_score_at
                    else:
                        alerted.add(eid)
            if on_scored is not None and len(scored) > before:
                on_scored(len(scored) - before)
        # Alerts are produced in the same batch as their scores; give the tail a moment.
        tail_deadline = time.monotonic() + 1.0
        while time.monotonic() < tail_deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, msgs in batch.items():
                for m in msgs:
                    eid = orjson.loads(m.value).get("event_id")
                    if eid in event_ids and tp.topic == alerts_topic:
                        alerted.add(eid)
    finally:
        await consumer.stop()
    return {
        "scored": len(scored),
        "alerts": len(alerted),
        "duplicates": duplicates,
        "first_score_at": first_score_at,
        "last_score_at": last_score_at,
    }


async def _end_offsets(settings: Settings, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from plumbing.clients import kafka_kwargs

    consumer = AIOKafkaConsumer(**kafka_kwargs(settings), group_id=None)
    await consumer.start()
    try:
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in (await consumer.topics() and consumer.partitions_for_topic(t) or [])
        ]
        ends = await consumer.end_offsets(tps) if tps else {}
        return {(tp.topic, tp.partition): off for tp, off in ends.items()}
    finally:
        await consumer.stop()


def replicate_events(records: list[tuple[bytes, bytes]], n: int) -> list[tuple[bytes, bytes]]:
    """``n`` events cycling over ``records``, each copy with a fresh ``event_id``."""
    from schemas.events import new_event_id

    out = []
    for i in range(n):
        key, value = records[i % len(records)]
        if i < len(records):
            out.append((key, value))
        else:
            doc = orjson.loads(value)
            doc["event_id"] = new_event_id()
            out.append((key, orjson.dumps(doc)))
    return out


def champion_summary(
    settings: Settings, classifier_name: str = Namespace.for_dataset().classifier_name
) -> dict[str, Any]:
    """Version, hold-out AUC/F1 and contract hash of the registered champion (empty dict if none).

    Parameters
    ----------
    settings : Settings
    classifier_name : str, default "churn-classifier"
        The dataset's registered classifier (:meth:`Namespace.registered_models`).

    Returns
    -------
    dict
        ``model_version``, ``model``, ``roc_auc``, ``f1``, ``threshold`` and
        ``contract_sha256`` (None for versions registered before contracts were recorded).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    try:
        mv = client.get_model_version_by_alias(classifier_name, CHAMPION)
    except MlflowException:
        return {}
    if mv.run_id is None:  # a version registered without a run has no metrics to show
        return {}
    run = client.get_run(mv.run_id)
    m = run.data.metrics
    return {
        "model_version": str(mv.version),
        "model": run.data.tags.get("model"),
        "roc_auc": m.get("roc_auc"),
        "f1": m.get("f1_tuned"),
        "threshold": m.get("threshold"),
        "contract_sha256": (mv.tags or {}).get("contract_sha256"),
    }


def demo_source(profile: DatasetProfile, source: str | Path | None, data_dir: Path) -> Path:
    """The CSV the demo trains on and scores: ``source``, the shipped file, or generated retail rows.

    Parameters
    ----------
    profile : DatasetProfile
    source : str or Path, optional
    data_dir : Path
        Generated retail files go to ``data_dir / "demo"`` (kept: the same seed gives the same
        file, so a second demo finds the input unchanged).

    Returns
    -------
    Path

    Raises
    ------
    DemoError
        If the dataset ships no file, has no generator and ``source`` is None.
    """
    from batch.cycle_input import DEFAULT_SOURCES

    if source is not None:
        return Path(source)
    if profile.name in DEFAULT_SOURCES:
        return DEFAULT_SOURCES[profile.name]
    if profile.name == "retail":
        from batch.retail import write_retail_csv

        path = data_dir / "demo" / f"retail_{DEMO_RETAIL_ROWS}_seed0.csv"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            say(f"generating {DEMO_RETAIL_ROWS:,} retail customers: {path}")
            write_retail_csv(path, rows=DEMO_RETAIL_ROWS, seed=0)
        return path
    raise DemoError(f"dataset {profile.name!r} has no shipped or generated source: pass its CSV with --source")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` like Ctrl-C, so ``finally`` clauses run.

    Python's default SIGTERM ends the process at once: ``kill <pid of churn demo>`` left
    its worker running, orphaned, holding its port and the consumer group. Outside the
    main thread (where handlers cannot be set) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(
    settings: Settings,
    events: int | None = None,
    keep_running: bool = False,
    rate: float | None = None,
    start_stack: bool = True,
    score_timeout_s: float = 300.0,
    on_summary=None,
    dataset: str | None = None,
    source: str | Path | None = None,
) -> dict[str, Any]:
    """Run the main job; return the summary (also printed by the CLI as its last line).

    Parameters
    ----------
    settings : Settings
    events : int, optional
        Events to produce; default every source row (Telco: 7,043). More than that cycles
        over the rows with fresh event ids.
    keep_running : bool
        Keep the worker running after the summary until Ctrl-C.
    rate : float, optional
        Events per second.
    start_stack : bool
        Start the local stack first (idempotent).
    on_summary : callable, optional
        Called with the summary as soon as it is known (before waiting for Ctrl-C).
    dataset : str, optional
        A shipped profile's name or a profile file; default ``settings.dataset`` (``CHURN_DATASET``).
    source : str or Path, optional
        The CSV to train on and score (:func:`demo_source`).

    Returns
    -------
    dict
        ``produced``, ``scored``, ``alerts``, ``duplicates``, ``events_per_s``, ``scoring_s``,
        ``elapsed_s``, ``first_score_s`` (start to the first live score), ``dataset``,
        ``source``, the model and the champion's hold-out figures.

    Raises
    ------
    DemoError
        No source for the dataset, a port taken, or the worker not starting.
    """
    from batch.cycle import run_cycle
    from batch.cycle_report import promotion_decisions
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import ensure_topics, make_storage, make_tracker, produce_records

    t_start = time.perf_counter()
    t_start_wall = time.time()
    profile = get_profile(dataset if dataset is not None else settings.dataset)
    # The worker child reads CHURN_DATASET: a profile file is handed on as its absolute path.
    chosen = str(dataset if dataset is not None else settings.dataset)
    if chosen != profile.name:
        chosen = str(Path(chosen).resolve())
    settings = settings.with_overrides(dataset=chosen)
    ns = Namespace.for_dataset(profile.name, settings.consumer_group)
    src = demo_source(profile, source, settings.data_dir)
    # Before any training: a taken port would only show once the cycle is over.
    if _port_taken(settings.worker_web_port):
        raise DemoError(
            f"port {settings.worker_web_port} (the worker's health page) is already in use, probably by another "
            "`churn worker`; stop it or set CHURN_WORKER_WEB_PORT to a free port"
        )
    if start_stack:
        from churn_stream.stack import LocalStack

        statuses = LocalStack.from_settings(settings).up()
        say(f"local stack up: {', '.join(f'{st.name} {st.endpoint}' for st in statuses)}")
    ensure_topics(settings, ns)  # this data set's topics only: another's demo never creates Telco's
    champion = champion_summary(settings, ns.classifier_name)
    stale = champion.get("contract_sha256") not in (None, profile.digest)
    if not champion or stale:
        say(
            f"{'champion trained for another contract' if stale else 'no champion registered'}: "
            "running a batch cycle first"
        )
        result = run_cycle(
            settings,
            make_storage(settings),
            make_tracker(settings),
            dataset=profile,
            source=src,
            # A champion of another contract cannot be served: the new model replaces it.
            margin=-1.0 if stale else 0.0,
        )
        for line in promotion_decisions(result):
            say(line)
        champion = champion_summary(settings, ns.classifier_name)

    log_path = settings.data_dir / "logs" / "worker.log"
    with sigterm_as_interrupt():  # `kill <churn demo>` stops the worker too
        proc = start_worker(settings, log_path)
        try:
            health = wait_worker_ready(settings, proc)
            say(f"worker ready: model {health['model_name']} v{health['model_version']} (log: {log_path})")
            records = csv_to_customer_events(src, settings.dataset)
            records = replicate_events(records, events if events is not None else len(records))
            event_ids = {orjson.loads(v)["event_id"] for _, v in records}
            outputs = (ns.scores, ns.alerts)
            start_offsets = asyncio.run(_end_offsets(settings, outputs))
            t_produce = time.time()
            with Progress("produce", len(records), unit="event") as bar:
                # list(): produce_records takes keys that may be None (a list is invariant in its items).
                produced = produce_records(settings, ns.customers, list(records), rate, on_acked=bar.update)
            say(produced_line(produced, time.time() - t_produce))
            with Progress("score", len(event_ids), unit="event") as bar:
                seen = asyncio.run(
                    _collect(settings, event_ids, start_offsets, score_timeout_s, outputs, on_scored=bar.update)
                )
            scoring_s = (seen["last_score_at"] or time.time()) - t_produce
            first = seen["first_score_at"]
            summary = {
                "dataset": profile.name,
                "source": str(src),
                "first_score_s": round(first - t_start_wall, 3) if first is not None else None,
                "produced": produced,
                "scored": seen["scored"],
                "alerts": seen["alerts"],
                "duplicates": seen["duplicates"],
                "events_per_s": round(seen["scored"] / scoring_s, 1) if scoring_s > 0 else None,
                "scoring_s": round(scoring_s, 3),
                "elapsed_s": round(time.perf_counter() - t_start, 3),
                "model_name": health["model_name"],
                "model_version": health["model_version"],
                "champion_roc_auc": champion.get("roc_auc"),
                "champion_f1": champion.get("f1"),
                "champion_model": champion.get("model"),
            }
            for line in summary_lines(summary, champion.get("threshold")):
                say(line)
            if on_summary is not None:
                on_summary(summary)
            if keep_running:
                say("worker keeps scoring; Ctrl-C to stop it (the stack stays up: `churn stack down`)")
                try:
                    while proc.poll() is None:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
            return summary
        finally:
            stop_worker(proc)
