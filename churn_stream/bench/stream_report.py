"""The report of ``churn bench stream``: its tables and lines, on stderr.

Each part is built as lines from :func:`churn_stream.bench.stream.run_bench_stream`'s
result (:func:`contender_lines`, :func:`stage_lines`, :func:`reload_line`,
:func:`latency_line`, :func:`collector_line`), so its wording can be checked without servers;
:func:`print_tables` prints them in order.
"""

from __future__ import annotations

import sys
from typing import Any

from churn_stream.bench.stream_latency import LATENCY_CONTENDERS, WINDOW_S
from churn_stream.bench.stream_stages import FLOOR_MIN_RECORDS, WORKER_STAGES

#: How each contender is named in the tables.
LABELS = {
    "naive": "naive Faust",
    "relay": "aiokafka relay",
    "librdkafka": "librdkafka relay",
    "quix": "Quix Streams",
    "worker": "worker",
    "worker2": "2 workers",
    "pipe": "pass-through",
}


def print_latency(kind: str, figures: dict[str, Any], rate: float) -> None:
    """One line on stderr: a contender's latency phase.

    Parameters
    ----------
    kind : str
        A key of :data:`LABELS`.
    figures : dict
        :func:`~churn_stream.bench.stream_latency.latency_phase`'s.
    rate : float
        Events per second of the phase.
    """
    print(
        f"{LABELS[kind]:>10}: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms event to output at {rate:,.0f} "
        f"events/s on fresh topics ({figures['latency_scored']}/{figures['latency_events']} scored, load avg "
        f"{figures['latency_load_avg']['start']} -> {figures['latency_load_avg']['end']})",
        file=sys.stderr,
    )


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def missing_line(label: str, events: int, figures: dict[str, Any], logs: str) -> str | None:
    """The warning for scores never read back, with what tells a reader's miss from a loss; None if none.

    Parameters
    ----------
    label : str
        The contender's name in the report.
    events : int
        Events sent in the measured phase.
    figures : dict
        Its :meth:`~churn_stream.bench.stream_phases.Bench.timed` figures (``scored``,
        ``missing_in_topic``, ``missing_sample``; ``scores_acked`` for the workers).
    logs : str
        Where the contenders' logs are.

    Returns
    -------
    str or None
    """
    missing = events - figures["scored"]
    if missing <= 0:
        return None
    there, acked = figures.get("missing_in_topic"), figures.get("scores_acked")
    line = f"warning: {label}: {missing} of {events} scores never read back"
    if figures.get("missing_sample"):
        line += f" (event ids {', '.join(figures['missing_sample'])} ...)"
    if there is not None:
        line += f"; read again from the topic's start, {there} of them are there"
    if there is not None and there >= missing:
        line += ": the bench's collector missed them"
    elif acked is not None and acked >= events:
        line += (
            f"; the broker acknowledged {acked} scores to the worker (its churn_events_out, "
            "output=scores): records the broker acknowledged and does not hold"
        )
    elif acked is not None:
        line += f"; the broker acknowledged {acked} scores to the worker: it stopped or fell behind"
    else:
        line += " (a contender that stopped, or records the broker lost)"
    return f"{line}; logs in {logs}"


def collector_line(collector: dict[str, Any]) -> str:
    """The collector's re-read (:func:`~churn_stream.bench.stream_collect.read_rate`), in one line.

    Parameters
    ----------
    collector : dict
        ``records``, ``seconds``, ``eps``, ``headroom`` (over the fastest contender; None without
        one) and ``contender`` (whose measured phase's scores were read again).

    Returns
    -------
    str
    """
    headroom, n = collector["headroom"], collector["records"]
    return (
        f"collector: {n:,} score{'' if n == 1 else 's'} read again ({LABELS[collector['contender']]}, its measured "
        f"phase's only, not the warm-up's) in {collector['seconds']} s = {_fmt(collector['eps'], ',.0f')} events/s"
        + (f", {headroom}x the fastest contender" if headroom is not None else "")
    )


def contender_lines(result: dict[str, Any]) -> list[str]:
    """The contenders table: a header and one row per contender.

    The worker's ratio over each contender (``worker/this``) is a column only when the worker ran.

    Parameters
    ----------
    result : dict
        The run's result (:func:`~churn_stream.bench.stream.run_bench_stream`): ``contenders``,
        ``worker_eps``, ``scaling``.

    Returns
    -------
    list of str
    """
    c, worker_eps = result["contenders"], result["worker_eps"]
    ratio_head = f" {'worker/this':>11}" if worker_eps is not None else ""
    lines = [
        f"{'contender':<18} {'events/s':>10}{ratio_head} {'bench CPU':>9} {'its CPU':>7} {'machine':>7}"
        "   load avg start -> end"
    ]
    for kind, figures in c.items():
        ratio = ""
        if worker_eps is not None:
            cell = format(worker_eps / figures["eps"], ".2f") + "x" if figures["eps"] else "-"
            ratio = f" {cell:>11}"
        # Cores the bench's own producer and collector used while this contender ran.
        client = figures["client_cpu_s"] / figures["seconds"] if figures["seconds"] else None
        note = f"   (scaling {result['scaling']}x)" if kind == "worker2" and result["scaling"] else ""
        lines.append(
            f"{LABELS[kind]:<18} {_fmt(figures['eps'], ',.0f'):>10}{ratio} {_fmt(client):>9} "
            f"{_fmt(figures.get('contender_cores')):>7} {_fmt(figures.get('machine_cores')):>7}   "
            f"{figures['load_avg']['start']} -> {figures['load_avg']['end']}{note}"
        )
    return lines


def stage_lines(result: dict[str, Any]) -> list[str]:
    """The stage table: each worker stage's cost per event beside its floors, or why there is none.

    A Kafka floor not measured for want of records (``floor_records`` below its ``min``)
    shows as ``-`` with a line saying so.

    Parameters
    ----------
    result : dict
        The run's result: ``contenders``, ``stage_us`` and the floors
        (:data:`~churn_stream.bench.stream.FLOOR_KEYS`).

    Returns
    -------
    list of str
    """
    worker = result["contenders"].get("worker")
    if worker is None:
        return ["stages: not measured, nor their floors (no worker contender; its /metrics give the stage costs)"]
    counters = "" if worker.get("stage_counter") else " (worker exposes no stage counter)"
    lines = [f"{'stage':<10} {'us/event':>9} {'floor':>9} {'in-process':>11}   worker /metrics{counters}; floors wall"]
    for stage in WORKER_STAGES:
        lines.append(
            f"{stage:<10} {_fmt(result['stage_us'].get(stage)):>9} {_fmt(result['floor_us'].get(stage)):>9} "
            f"{_fmt(result['score_batch_stage_us'].get(stage)):>11}"
        )
    fl = result["floor_load_avg"]
    lines.append(f"floors: load avg {fl['start']} -> {fl['end']}; CPU us/record {result['floor_cpu_us']}")
    counts = result.get("floor_records") or {}
    least = counts.get("min", FLOOR_MIN_RECORDS)
    short = [
        (stages, kind, n)
        for stages, kind, n in (
            ("fetch, commit", "fetch", counts.get("fetch")),
            ("produce", "produce", counts.get("produce_events")),
        )
        if n is not None and n < least
    ]
    if short:
        lines.append(
            f"{', '.join(s for s, _, _ in short)} floors: not measured (fewer than {least:,} records timed: "
            f"{', '.join(f'{kind} {n:,}' for _, kind, n in short)}; over a few calls one call's hiccup would be "
            "the floor)"
        )
    return lines


def latency_line(result: dict[str, Any], *, latency_s: float) -> str | None:
    """Why no latency phase ran, in one line; None when one did.

    Parameters
    ----------
    result : dict
        The run's result: ``contenders``, ``latency_floor``.
    latency_s : float
        ``--latency-s``.

    Returns
    -------
    str or None
    """
    by_kind = {**result["contenders"], "pipe": result["latency_floor"] or {}}
    if any("p50_ms" in by_kind.get(k, {}) for k in LATENCY_CONTENDERS):
        return None
    if latency_s <= 0:
        return "latency: not measured (--latency-s 0)"
    phased = [LABELS[k] for k in LATENCY_CONTENDERS if k != "pipe"]
    chosen = ", ".join(LABELS[k] for k in result["contenders"])
    return (
        f"latency: not measured (--latency-s {latency_s:g} applies to the {' and the '.join(phased)} only, with "
        f"the {LABELS['pipe']} run beside the worker; this run's contenders: {chosen})"
    )


def reload_line(result: dict[str, Any], *, reload: bool, latency_s: float) -> str | None:
    """The hot reloads' line: each swap's time, or why they were not measured.

    Parameters
    ----------
    result : dict
        The run's result: ``contenders`` (the worker's ``reloads`` and ``reload_error``).
    reload : bool
        ``--reload`` / ``--no-reload``.
    latency_s : float
        ``--latency-s``: the reloads happen during the worker's latency phase.

    Returns
    -------
    str or None
        None when nothing could have been measured and nothing was declined (no worker).
    """
    worker = result["contenders"].get("worker")
    if worker is not None and worker.get("reloads") is not None:
        swaps = ", ".join(
            f"v{r['from']} -> v{r['to']} {_fmt(r['reload_s'], '.3f')} s (first score by v{r['to']} at "
            f"{_fmt(r['first_new_s'], '.3f')} s)"
            for r in worker["reloads"]
        )
        error = worker.get("reload_error")
        return (
            "hot reload (alias moved and announced -> every score by the new version: the later of the first "
            f"score by it and the last by the old one): {swaps or '-'}" + (f"; swap failed: {error}" if error else "")
        )
    if not reload:
        return "hot reload: not measured (--no-reload)"
    if worker is not None and latency_s <= 0:
        return "hot reload: not measured (--latency-s 0: the swaps run during the worker's latency phase)"
    return None


def print_tables(result: dict[str, Any], rate: float, *, reload: bool, latency_s: float) -> None:
    """The whole report on stderr: contenders, latency (or why none), hot reloads, collector, stages.

    Parameters
    ----------
    result : dict
        The run's result (:func:`~churn_stream.bench.stream.run_bench_stream`).
    rate : float
        Events per second of the latency phase.
    reload : bool
        ``--reload`` / ``--no-reload`` (see :func:`reload_line`).
    latency_s : float
        Seconds of each latency phase (0: none ran; see :func:`latency_line`).
    """
    c = result["contenders"]

    def out(line: str) -> None:
        print(line, file=sys.stderr)

    out(
        f"# churn bench stream: {result['dataset']}, {result['events']} events per contender, model v"
        f"{result['model_version']}, broker {result['broker_mode']}, cores={result['cpus']} "
        f"load_avg={result['load_avg']['start']} -> {result['load_avg']['end']}"
    )
    for line in contender_lines(result):
        out(line)
    out(
        "cores used over each measured phase: bench CPU = the bench's producer and collector, its CPU = the "
        "contender's processes, machine = every busy core (broker included)"
    )
    by_kind = {**c, "pipe": result["latency_floor"] or {}}
    latency = [k for k in LATENCY_CONTENDERS if "p50_ms" in by_kind.get(k, {})]
    if latency:
        out(
            f"latency at {rate:,.0f} events/s on fresh topics (event_time -> output record timestamp; p99 per "
            f"{WINDOW_S:.0f} s of output timestamps, broker cores per {WINDOW_S:.0f} s of wall time):"
        )
    no_latency = latency_line(result, latency_s=latency_s)
    if no_latency is not None:
        out(no_latency)
    for kind in latency:
        f = by_kind[kind]
        out(
            f"{LABELS[kind]:<18} p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, load avg "
            f"{f['latency_load_avg']['start']} -> {f['latency_load_avg']['end']}"
        )
        out(f"{'':<18} p99 ms by window: {' '.join(format(x, '.1f') for x in f['p99_by_window_ms'])}")
        cores = f["broker_cores_by_window"]
        out(f"{'':<18} broker cores by window: {' '.join(format(x, '.2f') for x in cores) if cores else '-'}")
    reloads = reload_line(result, reload=reload, latency_s=latency_s)
    if reloads is not None:
        out(reloads)
    out(collector_line(result["collector"]))
    if result["worker_rss_mb"] is not None:
        out(f"worker peak RSS (VmHWM): {result['worker_rss_mb']} MiB")
    for line in stage_lines(result):
        out(line)
