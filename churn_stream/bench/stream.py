"""``churn bench stream``: stream scorers, end to end on the configured broker, in one run.

Contenders, each on its own fresh topics and consumer group, each in its own process
(one core of its own at best, like the worker in production):

naive
    A Faust agent that validates, scores (``pipeline.predict_proba`` on one row) and
    sends (``await topic.send``) one event at a time.
relay
    The reference: a hand-written aiokafka loop, ``getmany`` (up to 2,000 records) ->
    per-record pydantic validation -> one matrix score per batch -> send every score and
    alert -> await the acknowledgements -> commit.
librdkafka
    The same relay on librdkafka: ``confluent_kafka``'s blocking Consumer and Producer,
    ``consume`` of up to 500 records -> the same work -> ``flush`` -> synchronous commit.
quix
    The relay's per-event work as a Quix Streams app (one record at a time, Quix's own
    checkpoints), run by the python of a virtualenv with quixstreams (``quix_python``);
    absent without it. See :mod:`churn_stream.bench.stream_quix`.
worker
    ``churn worker`` (:mod:`stream_app.worker`), started like ``churn demo`` starts it.
worker2
    Two ``churn worker`` processes in one consumer group on a 4-partition input topic:
    ``scaling`` is their combined rate over one worker's.

All load the same champion from MLflow (a batch cycle trains one first if none is
registered) and write the same score and alert documents. For each, a warm-up of
:data:`~churn_stream.bench.stream_phases.WARMUP_EVENTS` events waits until the contender is consuming; then the bench
produces every event and reads the scores back from the output topic:
``events / (last score read - first event sent)``. A second, rate-limited phase
(the worker, beside the librdkafka relay and a pass-through, the broker's floor: the
pass-through first, the others right after their throughput phase) starts each on fresh topics,
sends ``rate`` events/s for ``latency_s`` seconds and measures, per event,
``event_time`` -> the output record's timestamp (set when the contender's producer
appends it) and -> the moment the bench reads it (:mod:`churn_stream.bench.stream_latency`).
Meanwhile the worker's champion is moved to a copy of its version and back, each move
announced, and each hot reload timed (:mod:`churn_stream.bench.stream_reload`).

The bench's own producer and collector are librdkafka clients
(:mod:`churn_stream.bench.stream_collect`); after the contenders, the collector reads one
contender's measured scores again (not its warm-up's) from a full topic to show it was
not the bottleneck. Then each worker stage's cost per event (from the worker's
``/metrics``) is printed beside its floor measured in the same run
(:mod:`churn_stream.bench.stream_stages`). The contenders other than the worker are in
:mod:`churn_stream.bench.stream_contenders`, the report's tables in
:mod:`churn_stream.bench.stream_report`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from churn_stream.bench.stream_collect import read_rate
from churn_stream.bench.stream_latency import LATENCY_CONTENDERS, latency_phase
from churn_stream.bench.stream_phases import Bench, load_1m, scaling_phase, single_phase
from churn_stream.bench.stream_report import LABELS, missing_line, print_latency, print_tables
from churn_stream.bench.stream_stages import stage_deltas
from plumbing.settings import Settings
from schemas.profiles import DatasetProfile, get_profile

#: Above this 1-minute load average per CPU the machine is too busy for the latency figures to mean much.
BUSY_LOAD_PER_CPU = 1.5
#: Every contender, in the order they run.
CONTENDERS = ("naive", "relay", "librdkafka", "quix", "worker", "worker2")
#: The contenders that speak any dataset's event contract.
WORKER_CONTENDERS = ("worker", "worker2")
#: Events of the produce floor (their score and alert records).
PRODUCE_FLOOR_EVENTS = 50_000
#: The result's keys :func:`_floors` fills: each None in a run without the ``worker`` contender.
FLOOR_KEYS = ("floor_us", "floor_cpu_us", "score_batch_stage_us", "score_batch_us", "floor_records", "floor_load_avg")


def _broker_mode(settings: Settings) -> str:
    mode_file = settings.data_dir / "run" / "kafka.mode"
    return mode_file.read_text().strip() if mode_file.exists() else "unknown"


def chosen_contenders(names: Sequence[str] | None, quix_python: str | None, dataset: str) -> tuple[str, ...]:
    """The contenders to run, in the bench's order.

    Parameters
    ----------
    names : sequence of str, optional
        Among :data:`CONTENDERS`; default all of them but ``quix``, plus ``quix`` when
        ``quix_python`` is given.
    quix_python : str, optional
        Interpreter of a virtualenv with quixstreams.
    dataset : str
        The profile's name: the relays and Quix speak Telco's contract only.

    Returns
    -------
    tuple of str

    Raises
    ------
    ValueError
        If a name is unknown, ``quix`` is asked for without ``quix_python``, or no contender remains.
    """
    if names is None:
        names = [c for c in CONTENDERS if c != "quix" or quix_python]
    if not names:
        raise ValueError(f"contenders: name at least one of {', '.join(CONTENDERS)}")
    unknown = sorted(set(names) - set(CONTENDERS))
    if unknown:
        raise ValueError(f"contenders: expected some of {', '.join(CONTENDERS)}, got {', '.join(unknown)}")
    if "quix" in names and not quix_python:
        raise ValueError("contenders: quix needs --quix-python (a virtualenv's python with quixstreams)")
    chosen = tuple(c for c in CONTENDERS if c in names and (dataset == "telco" or c in WORKER_CONTENDERS))
    if not chosen:
        raise ValueError(f"contenders: none of {', '.join(names)} runs on {dataset} (only the worker does)")
    return chosen


def _floors(
    bench: Bench, profile: DatasetProfile, source: Path, topics: dict[str, str], *, worker: bool
) -> dict[str, Any]:
    """Each worker stage's floor, measured now (see :mod:`churn_stream.bench.stream_stages`).

    Parameters
    ----------
    bench : Bench
    profile : DatasetProfile
    source : Path
        CSV whose rows are replayed.
    topics : dict of str to str
        A measured contender's topics (the fetch floor reads its input topic).
    worker : bool
        Whether the ``worker`` contender ran: without its stage costs the floors (a bare
        consumer, producer and ``churn bench score``, costly) would stand beside nothing, so
        they are not measured.

    Returns
    -------
    dict
        :data:`FLOOR_KEYS`, each None without ``worker``. The fetch, commit and produce
        floors are None (their keys kept) below ``floor_records["min"]`` records
        (:data:`~churn_stream.bench.stream_stages.FLOOR_MIN_RECORDS`); ``floor_records`` gives
        how many were timed.
    """
    if not worker:
        return dict.fromkeys(FLOOR_KEYS)
    from churn_stream.bench.score import EVENTS, run_bench_score
    from churn_stream.bench.stream_stages import FLOOR_MIN_RECORDS, fetch_commit_floor, produce_floor, score_records

    load_start = load_1m()
    fc = fetch_commit_floor(bench.conf, topics["in"], bench.events)
    score = run_bench_score(
        bench.settings, dataset=profile.name, source=source, events=min(bench.events, EVENTS), echo=lambda _: None
    )
    floor_topics = bench.topics("floor")
    pf = produce_floor(
        bench.conf,
        (floor_topics["out"], floor_topics["alerts"]),
        score_records(bench.settings, profile, source, min(bench.events, PRODUCE_FLOOR_EVENTS)),
    )
    return {
        "floor_us": {
            "fetch": fc["fetch_us"],
            **score["floor_us"],
            "produce": pf["produce_us"],
            "commit": fc["commit_us"],
        },
        "floor_cpu_us": {"fetch_commit": fc["cpu_us"], "produce": pf["cpu_us"]},
        "score_batch_stage_us": score["stage_us"],
        "score_batch_us": score["score_batch_us"],
        "floor_records": {
            "fetch": fc["records"],
            "commits": fc["commits"],
            "produce_events": pf["events"],
            "min": FLOOR_MIN_RECORDS,
        },
        "floor_load_avg": {"start": load_start, "end": load_1m()},
    }


def run_bench_stream(
    settings: Settings,
    events: int = 200_000,
    json_path: Path | None = None,
    rate: float = 2000.0,
    latency_s: float = 20.0,
    dataset: str = "telco",
    source: str | Path | None = None,
    contenders: Sequence[str] | None = None,
    quix_python: str | None = None,
    reload: bool = True,
) -> dict[str, Any]:
    """Measure the contenders in one run; print the tables and return (and optionally save) the figures.

    Parameters
    ----------
    settings : Settings
        The broker and MLflow server to use (topics are created per run, nothing else is touched).
    events : int, default 200000
        Telco rows replicated (fresh event ids) to this many events per contender.
    json_path : Path, optional
        Where to write the result as JSON.
    rate : float, default 2000.0
        Events per second of the latency phase (the pass-through, the librdkafka relay, the worker).
    latency_s : float, default 20.0
        Duration of the latency phase (0 skips it).
    dataset : str, default "telco"
        A shipped profile's name or a profile file. The relays and Quix speak Telco's event
        contract; for any other dataset the worker is measured alone (the ratios are None).
    source : str or Path, optional
        CSV whose rows are replayed; default the dataset's shipped file.
    contenders : sequence of str, optional
        A subset of :data:`CONTENDERS` (see :func:`chosen_contenders`); default all.
    quix_python : str, optional
        Python interpreter of a virtualenv with quixstreams (:mod:`churn_stream.bench.stream_quix`);
        without it there is no ``quix`` contender (``quix_eps`` is None).
    reload : bool, default True
        Swap the data set's champion to a copy and back during the latency phase and time
        both hot reloads (:mod:`churn_stream.bench.stream_reload`); needs ``latency_s`` > 0.

    Returns
    -------
    dict
        ``worker_eps``, ``naive_eps``, ``relay_eps``, ``librdkafka_relay_eps``, ``quix_eps``,
        ``worker2_eps`` (events/s; None for a contender not run), ``ratio_vs_relay``,
        ``ratio_vs_librdkafka``, ``ratio_vs_naive``, ``ratio_vs_quix`` (worker / contender),
        ``scaling`` (worker2 / worker), ``p50_ms``, ``p99_ms`` (the worker's),
        ``librdkafka_p50_ms``, ``librdkafka_p99_ms`` (the relay's, same rate, same run),
        ``floor_p50_ms``, ``floor_p99_ms`` and ``latency_floor`` (the pass-through's; None
        without the worker), ``reload_s`` (the slower of the two hot reloads, seconds; None
        without ``reload``), ``reloads``, ``load_avg`` (1-minute, run ``start`` and ``end``),
        ``stage_us`` and ``floor_us`` (by worker stage, us per event, None where not
        measured: fetch, commit and produce below ``floor_records["min"]`` records; ``floor_us``
        and the other :data:`FLOOR_KEYS` are None, not measured, without the ``worker``
        contender), ``worker_rss_mb``, ``collector`` (``records``: the
        scores of ``contender``'s measured phase, the warm-up's left out, read again from its
        topic in ``seconds``; ``eps``, ``cpu_s``, ``headroom`` over the fastest contender),
        ``run`` (the id in the run's topic and group names) and ``contenders`` (figures by
        contender: :func:`~churn_stream.bench.stream_phases.single_phase`'s or
        :func:`~churn_stream.bench.stream_phases.scaling_phase`'s, with
        :func:`~churn_stream.bench.stream_latency.latency_phase`'s for the worker and the
        librdkafka relay).

        Every topic of the run is deleted at its end, so ``latency_topic`` (in
        ``latency_floor`` and in a contender's figures: the input topic of its latency phase)
        names a topic that no longer exists: a name to look for in the broker's and the
        contenders' logs, not a topic to read.

    Raises
    ------
    ValueError
        For contenders :func:`chosen_contenders` refuses.
    """
    from batch.cycle_input import default_source

    profile = get_profile(dataset)
    chosen = chosen_contenders(contenders, quix_python, profile.name)
    src = default_source(profile.name, source)
    settings = settings.with_overrides(dataset=str(dataset))  # the worker child reads CHURN_DATASET
    load_start = load_1m()
    bench = Bench(settings, profile, src, events)
    result: dict[str, Any] = {
        "events": events,
        "dataset": profile.name,
        "broker_mode": _broker_mode(settings),
        "bootstrap": settings.kafka_bootstrap_servers,
        "model_version": bench.model["version"],
        "run": bench.run,
        "load_avg_1m_start": load_start,
        "cpus": os.cpu_count(),
        "contenders": {},
        "latency_floor": None,
    }
    measured_topics: dict[str, dict[str, str]] = {}
    try:
        if "worker" in chosen and latency_s > 0:
            result["latency_floor"] = latency_phase(bench, "pipe", rate, latency_s)
            print_latency("pipe", result["latency_floor"], rate)
        for kind in chosen:
            if kind == "worker2":
                figures, topics = scaling_phase(bench)
            else:
                figures, topics = single_phase(bench, kind, quix_python)
            result["contenders"][kind] = figures
            measured_topics[kind] = topics
            print(
                f"{LABELS[kind]:>10}: {figures['eps'] or 0:>10,.0f} events/s scored, end to end (first event sent to "
                f"last score read: {figures['scored']}/{events} in {figures['seconds']:.2f} s, load avg "
                f"{figures['load_avg']['start']} -> {figures['load_avg']['end']})",
                file=sys.stderr,
            )
            missing = missing_line(LABELS[kind], events, figures, str(bench.work / "logs"))
            if missing is not None:
                print(missing, file=sys.stderr)
            if kind in LATENCY_CONTENDERS and latency_s > 0:
                figures.update(latency_phase(bench, kind, rate, latency_s, reload=reload and kind == "worker"))
                print_latency(kind, figures, rate)
        c = result["contenders"]
        ref = "worker" if "worker" in measured_topics else next(iter(measured_topics))
        fastest = max((f["eps"] or 0.0) for f in c.values())
        scores = measured_topics[ref]["out"]
        measured = c[ref]["scored"] + c[ref]["duplicates"]
        collector = read_rate(bench.conf, scores, measured, bench.measured_from.get(scores))
        collector["contender"] = ref
        collector["headroom"] = round(collector["eps"] / fastest, 1) if collector["eps"] and fastest else None
        result["collector"] = collector
        result.update(_floors(bench, profile, src, measured_topics[ref], worker="worker" in c))
    finally:
        bench.drop_topics()  # an in-memory broker would keep every event of the run

    def eps(kind: str) -> float | None:
        return c.get(kind, {}).get("eps")

    def ratio(num: float | None, den: float | None) -> float | None:
        return round(num / den, 2) if num and den else None

    worker = c.get("worker", {})
    floor = result["latency_floor"] or {}
    result.update(
        {
            "naive_eps": eps("naive"),
            "relay_eps": eps("relay"),
            "librdkafka_relay_eps": eps("librdkafka"),
            "quix_eps": eps("quix"),
            "worker_eps": eps("worker"),
            "worker2_eps": eps("worker2"),
            "ratio_vs_naive": ratio(eps("worker"), eps("naive")),
            "ratio_vs_relay": ratio(eps("worker"), eps("relay")),
            "ratio_vs_librdkafka": ratio(eps("worker"), eps("librdkafka")),
            "ratio_vs_quix": ratio(eps("worker"), eps("quix")),
            "scaling": ratio(eps("worker2"), eps("worker")),
            "p50_ms": worker.get("p50_ms"),
            "p99_ms": worker.get("p99_ms"),
            "librdkafka_p50_ms": c.get("librdkafka", {}).get("p50_ms"),
            "librdkafka_p99_ms": c.get("librdkafka", {}).get("p99_ms"),
            "floor_p50_ms": floor.get("p50_ms"),
            "floor_p99_ms": floor.get("p99_ms"),
            "reloads": worker.get("reloads"),
            "reload_s": _slowest_reload(worker.get("reloads")),
            "stage_us": worker.get("stage_us", stage_deltas(None, None)),
            "worker_rss_mb": worker.get("rss_mb"),
            "load_avg_1m_end": load_1m(),
        }
    )
    result["load_avg"] = {"start": load_start, "end": result["load_avg_1m_end"]}
    print_tables(result, rate, reload=reload, latency_s=latency_s)
    loads = [result["load_avg_1m_start"], result["load_avg_1m_end"]] + [
        f.get(k) for f in c.values() for k in ("load_avg_1m", "latency_load_avg_1m") if f.get(k)
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


def _slowest_reload(reloads: list[dict[str, Any]] | None) -> float | None:
    """The slower of the measured hot reloads, seconds (None if any swap was not seen served)."""
    if not reloads or any(r["reload_s"] is None for r in reloads):
        return None
    return max(r["reload_s"] for r in reloads)
