"""The phases of ``churn bench stream``: a contender process on fresh topics, warmed up, then timed.

:class:`Bench` holds one run's champion, replayed events and names; :func:`single_phase`
runs one contender process (the worker with its stage counters and peak
RSS), :func:`scaling_phase` two workers in one consumer group.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from churn_stream.bench.stream_contenders import LIBRDKAFKA_MAX_RECORDS, RELAY_MAX_RECORDS
from plumbing.settings import Settings
from schemas.namespace import Namespace
from schemas.profiles import DatasetProfile
from schemas.registry import CHAMPION

logger = logging.getLogger(__name__)

#: Events sent (and waited for) before timing, so group joins and model loads are not timed.
WARMUP_EVENTS = 200
#: Input partitions of the scaling phase (two workers, two partitions each).
SCALING_PARTITIONS = 4
#: Warm-ups of the scaling phase before giving up on both workers consuming.
SCALING_WARMUPS = 5
#: Seconds to wait after the last score before reading the worker's counters (its last commit).
STAGE_SETTLE_S = 0.5
#: Upper bound of a measured phase, seconds.
PHASE_TIMEOUT_S = 900.0
#: This checkout: what the Quix contender's own interpreter imports the contract and models from.
REPO = Path(__file__).resolve().parents[2]


# -------------------------------------------------------------- measurement
async def _create_topics(settings: Settings, names: list[str], partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from plumbing.clients import kafka_kwargs

    admin = AIOKafkaAdminClient(**kafka_kwargs(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


def _start_contender(
    kind: str,
    settings: Settings,
    topics: dict[str, str],
    group: str,
    pipeline_path: Path,
    model: dict[str, str],
    log_path: Path,
    quix_python: str | None = None,
) -> subprocess.Popen:
    if kind == "worker":
        from churn_stream.demo import start_worker

        return start_worker(settings.with_overrides(consumer_group=group), log_path)
    common = [
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
        "--data-dir",
        str(log_path.parent / f"state-{group}"),
        "--model-name",
        model["name"],
        "--model-version",
        model["version"],
    ]
    env = None
    if kind == "quix":
        if not quix_python:
            raise ValueError("the quix contender needs quix_python (--quix-python)")
        args = [quix_python, "-m", "churn_stream.bench.stream_quix", *common]
        # Its own virtualenv has quixstreams; this checkout gives it the event contract and the models.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    else:
        args = [sys.executable, "-m", "churn_stream.bench.stream_contenders", kind, *common]
        args += ["--partitions", str(settings.topic_partitions)]
    with open(log_path, "ab") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _champion(settings: Settings, dst: Path, profile: DatasetProfile, source: Path) -> tuple[Path, dict[str, str]]:
    """Download the dataset's champion pipeline (training one on ``source`` first if none is registered)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from batch.cycle import run_cycle
    from churn_stream.bench.stream_reload import repair_interrupted_swap
    from plumbing.artifacts import download_pipeline, version_artifact_uri
    from plumbing.clients import make_storage, make_tracker
    from stream_app.registry_check import NOT_FOUND_CODES

    name = Namespace.for_dataset(profile.name).classifier_name
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
    try:
        repair_interrupted_swap(settings, client, name, Namespace.for_dataset(profile.name).model_updated)
    except MlflowException as exc:
        if exc.error_code not in NOT_FOUND_CODES:
            raise  # the registry did not answer: a one-line error, no training cycle
        # No champion to repair around; whether there is one is asked below, on its own: a
        # not-found from the repair itself must never start a training cycle.
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code not in NOT_FOUND_CODES:
            raise
        print("no champion registered: running a batch cycle first", file=sys.stderr)
        run_cycle(settings, make_storage(settings), make_tracker(settings), dataset=profile, source=source)
        mv = client.get_model_version_by_alias(name, CHAMPION)
    download_pipeline(settings.mlflow_tracking_uri, version_artifact_uri(mv), mv.tags["sha256"], dst_dir=dst)
    path = next(dst.rglob("*.npz"))
    return path, {"name": name, "version": str(mv.version)}


def _percentile_ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values), q)) * 1000, 1) if values else None


def load_1m() -> float:
    """The 1-minute load average, rounded to 0.01."""
    return round(os.getloadavg()[0], 2)


class ContenderFailed(RuntimeError):
    """A contender's process exited, or it did not score its warm-up: the run has no figure for it."""


class Bench:
    """One run's shared state: settings, champion, replayed events, topic and group names.

    Creates the run's work directory and downloads the dataset's champion (training one
    first if none is registered), after repairing what a run that is gone left in the
    registry (:func:`~churn_stream.bench.stream_reload.repair_interrupted_swap`).

    Parameters
    ----------
    settings : Settings
        The broker and MLflow to use.
    profile : DatasetProfile
    source : Path
        CSV whose rows are replayed as events.
    events : int
        Events of each measured phase.

    Raises
    ------
    churn_stream.bench.stream_reload.SwapInProgress
        If another run, still going, is measuring hot reloads on the data set.
    """

    def __init__(self, settings: Settings, profile: DatasetProfile, source: Path, events: int) -> None:
        from churn_stream.produce import csv_to_customer_events
        from plumbing.clients import ensure_topics, rdkafka_config

        self.settings = settings
        self.conf = rdkafka_config(settings)
        self.ns = Namespace.for_dataset(profile.name)
        self.events = events
        self.run = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.work = Path(tempfile.mkdtemp(prefix="churn-bench-stream-"))
        try:
            ensure_topics(settings)
            self.pipeline_path, self.model = _champion(settings, self.work / "model", profile, source)
        except BaseException:  # another run's swap under way (SwapInProgress), no registry, Ctrl-C ...
            shutil.rmtree(self.work, ignore_errors=True)
            raise
        self.base = csv_to_customer_events(source, profile.name)
        self.created: list[str] = []
        #: Scores topic -> offset by partition just past its warm-ups' scores: where its measured phase's scores start.
        self.measured_from: dict[str, dict[int, int]] = {}

    def records(self, n: int) -> list[tuple[bytes, bytes]]:
        """``n`` fresh events (keys and values), each with an event id never sent before."""
        from churn_stream.demo import replicate_events

        return replicate_events(self.base, len(self.base) + n)[len(self.base) :]

    def topics(self, kind: str, partitions: int | None = None) -> dict[str, str]:
        """Create ``kind``'s input, scores, alerts and dead-letter topics; return them by role."""
        suffix = f".bench-{self.run}-{kind}"
        topics = {
            "in": f"{self.ns.customers}{suffix}",
            "out": f"{self.ns.scores}{suffix}",
            "alerts": f"{self.ns.alerts}{suffix}",
            "dlq": f"{self.ns.customers_dlq}{suffix}",
        }
        asyncio.run(_create_topics(self.settings, list(topics.values()), partitions or self.settings.topic_partitions))
        self.created += [t for t in topics.values() if t not in self.created]
        return topics

    def drop_topics(self) -> None:
        """Delete the run's topics, those its contenders made included.

        Every name with ``bench-<run>-`` in it: those :meth:`topics` created, the worker's
        drift topic, Faust's internal ones. A failed deletion is logged, not raised.
        """
        from churn_stream.bench.stream_collect import bench_admin

        admin = bench_admin(self.conf)  # kept referenced: its futures fail once it is destroyed
        mark = f"bench-{self.run}-"
        try:
            names = set(self.created) | {t for t in admin.list_topics(timeout=10).topics if mark in t}
            if not names:
                return
            futures = admin.delete_topics(sorted(names), operation_timeout=30)
            for topic, future in futures.items():
                try:
                    future.result()
                except Exception as exc:  # noqa: BLE001 - a leftover topic must not hide the run's figures
                    logger.warning("bench topic not deleted topic=%s error=%s", topic, exc)
            self.created = []
        finally:
            admin.poll(0)  # its librdkafka log lines, into logging

    def warm(self, kind: str, topics: dict[str, str], procs: Sequence[subprocess.Popen], log: Path) -> None:
        """Send :data:`WARMUP_EVENTS` events and wait for their scores.

        Notes the offsets just past them in ``topics["out"]`` (:attr:`measured_from`).

        Raises
        ------
        ContenderFailed
            If not every one is scored, or a contender process exited.
        """
        from churn_stream.bench.stream_collect import produce_and_collect

        out = topics["out"]
        warm = produce_and_collect(
            self.conf, topics["in"], out, self.records(WARMUP_EVENTS), note_offsets=True, timeout_s=120
        )
        noted = self.measured_from.setdefault(out, {})
        for partition, offset in (warm["next_offsets"] or {}).items():
            noted[partition] = max(noted.get(partition, 0), offset)
        if warm["scored"] < warm["events"] or any(p.poll() is not None for p in procs):
            raise ContenderFailed(f"{kind}: not scoring after warm-up ({warm['scored']}/{warm['events']}); see {log}")

    def timed(self, topics: dict[str, str], procs: Sequence[subprocess.Popen] = ()) -> dict[str, Any]:
        """The measured phase: :attr:`events` events sent, every score read back.

        Parameters
        ----------
        topics : dict of str to str
        procs : sequence of subprocess.Popen
            The contender's processes, whose CPU time is measured over the phase.

        Returns
        -------
        dict
            ``eps``, ``scored``, ``duplicates``, ``seconds``, ``produce_s``, ``client_cpu_s``,
            ``load_avg`` (``start`` and ``end``) and ``load_avg_1m`` (their maximum),
            ``contender_cores`` (CPU seconds of ``procs`` per second of the phase) and
            ``machine_cores`` (busy CPU seconds of the whole machine per second: the broker,
            the bench's clients and anything else running included); ``missing_in_topic`` and
            ``missing_sample`` (:func:`~churn_stream.bench.stream_collect.produce_and_collect`).

        Raises
        ------
        ContenderFailed
            A process of ``procs`` exited during the phase (reading stops as soon as it is seen).
        """
        import psutil

        from churn_stream.bench.stream_collect import produce_and_collect

        records = self.records(self.events)
        load_start = load_1m()
        watched = [psutil.Process(p.pid) for p in procs]
        cpu0 = [_cpu_s(w) for w in watched]
        machine0 = psutil.cpu_times()
        wall0 = time.perf_counter()
        got = produce_and_collect(
            self.conf,
            topics["in"],
            topics["out"],
            records,
            timeout_s=PHASE_TIMEOUT_S,
            stop=lambda: any(p.poll() is not None for p in procs),
        )
        wall = time.perf_counter() - wall0
        exited = [p.returncode for p in procs if p.poll() is not None]
        if exited:
            raise ContenderFailed(
                f"a contender process exited (code {exited[0]}) during the measured phase, {got['scored']} of "
                f"{len(records)} scores read: no figure for it; logs in {self.work / 'logs'}"
            )
        machine1 = psutil.cpu_times()
        contender_s = sum(_cpu_s(w) - c for w, c in zip(watched, cpu0))
        load_end = load_1m()
        total = sum(machine1) - sum(machine0)
        idle = (machine1.idle + machine1.iowait) - (machine0.idle + machine0.iowait)
        return {
            "contender_cores": round(contender_s / wall, 2) if procs and wall > 0 else None,
            "machine_cores": round((total - idle) / total * (psutil.cpu_count() or 1), 2) if total > 0 else None,
            "eps": round(got["scored"] / got["seconds"], 1) if got["seconds"] > 0 else None,
            "scored": got["scored"],
            "duplicates": got["duplicates"],
            "seconds": round(got["seconds"], 3),
            "produce_s": round(got["produce_s"], 3) if got["produce_s"] is not None else None,
            "client_cpu_s": round(got["client_cpu_s"], 3),
            "load_avg": {"start": load_start, "end": load_end},
            "load_avg_1m": max(load_start, load_end),
            "missing_in_topic": got["missing_in_topic"],
            "missing_sample": got["missing_sample"],
        }


def _cpu_s(proc: Any) -> float:
    """User + system CPU seconds of a process (all its threads), 0 once it is gone."""
    import psutil

    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


def single_phase(bench: Bench, kind: str, quix_python: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """One contender process on its own topics: warm-up, measured phase, and the worker's extras.

    The latency phase runs apart, on fresh topics (:mod:`churn_stream.bench.stream_latency`).

    Parameters
    ----------
    bench : Bench
    kind : str
        ``naive``, ``relay``, ``librdkafka``, ``quix`` or ``worker``.
    quix_python : str, optional
        Interpreter of the Quix contender.

    Returns
    -------
    figures : dict
        :meth:`Bench.timed`'s, plus for the worker ``stage_us`` (by stage, None without the
        stage counter), ``stage_counter``, ``scores_acked`` (score records the broker
        acknowledged to it in the measured window, from its ``/metrics``), ``rss_mb`` (peak
        RSS, MiB); ``batch`` for the relays.
    topics : dict
        The contender's topics by role.
    """
    from churn_stream.bench.stream_stages import peak_rss_mb, scores_acked, scrape_worker, stage_deltas
    from churn_stream.demo import stop_worker, wait_worker_ready
    from churn_stream.stack import LocalStack

    topics = bench.topics(kind)
    group = f"bench-{bench.run}-{kind}"
    log_path = bench.work / "logs" / f"{kind}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = LocalStack.free_ports(1)[0]
    csettings = bench.settings.with_overrides(
        topic_suffix=topics["in"][len(bench.ns.customers) :], worker_web_port=port
    )
    proc = _start_contender(kind, csettings, topics, group, bench.pipeline_path, bench.model, log_path, quix_python)
    try:
        if kind == "worker":
            wait_worker_ready(csettings, proc, timeout_s=120)
        bench.warm(kind, topics, [proc], log_path)
        before = scrape_worker(port) if kind == "worker" else None
        figures = bench.timed(topics, [proc])
        if kind == "worker":
            time.sleep(STAGE_SETTLE_S)  # the last batch's commit lands in the window
            after = scrape_worker(port)
            figures["stage_us"] = stage_deltas(before, after)
            figures["scores_acked"] = scores_acked([before], [after])
            figures["stage_counter"] = bool(after and after["stages"])
            figures["rss_mb"] = peak_rss_mb(proc.pid)  # VmHWM, just before the worker stops
    finally:
        if kind == "worker":
            stop_worker(proc)
        else:
            _stop(proc)
    if kind == "relay":
        figures["batch"] = RELAY_MAX_RECORDS
    elif kind == "librdkafka":
        figures["batch"] = LIBRDKAFKA_MAX_RECORDS
    return figures, topics


def scaling_phase(bench: Bench) -> tuple[dict[str, Any], dict[str, str]]:
    """Two ``churn worker`` processes in one consumer group on a :data:`SCALING_PARTITIONS`-partition input topic.

    Warm-ups repeat (up to :data:`SCALING_WARMUPS`) until both workers have consumed events,
    so the group's rebalance is over before the measured phase.

    Returns
    -------
    figures : dict
        :meth:`Bench.timed`'s, plus ``events_in_by_worker`` (events each consumed in the
        measured window, from its ``/metrics``), ``scores_acked`` (score records the broker
        acknowledged to both in that window), ``rss_mb`` (each one's peak RSS, MiB) and
        ``partitions``.
    topics : dict
        The phase's topics by role.
    """
    from churn_stream.bench.stream_stages import peak_rss_mb, scores_acked, scrape_worker
    from churn_stream.demo import start_worker, stop_worker, wait_worker_ready
    from churn_stream.stack import LocalStack

    topics = bench.topics("worker2", SCALING_PARTITIONS)
    group = f"bench-{bench.run}-worker2"
    suffix = topics["in"][len(bench.ns.customers) :]
    ports = LocalStack.free_ports(2)
    logs = [bench.work / "logs" / f"worker2-{i}.log" for i in range(2)]
    settings = [
        bench.settings.with_overrides(topic_suffix=suffix, worker_web_port=p, consumer_group=group) for p in ports
    ]
    procs: list[subprocess.Popen] = []
    try:
        for s, log in zip(settings, logs):
            procs.append(start_worker(s, log))
        for s, p in zip(settings, procs):
            wait_worker_ready(s, p, timeout_s=120)
        for _ in range(SCALING_WARMUPS):  # until the group settled and both workers consume
            bench.warm("worker2", topics, procs, logs[0])
            before = [scrape_worker(p) for p in ports]
            if all(b and b["events_in"] for b in before):
                break
            time.sleep(2.0)
        figures = bench.timed(topics, procs)
        time.sleep(STAGE_SETTLE_S)
        after = [scrape_worker(p) for p in ports]
        figures["events_in_by_worker"] = [
            (a["events_in"] - b["events_in"]) if a and b and a["events_in"] is not None else None
            for a, b in zip(after, before)
        ]
        figures["scores_acked"] = scores_acked(before, after)
        figures["rss_mb"] = [peak_rss_mb(p.pid) for p in procs]
        figures["partitions"] = SCALING_PARTITIONS
    finally:
        for p in procs:
            stop_worker(p)
    return figures, topics


def _stop(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
