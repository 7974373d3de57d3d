"""The latency phase of ``churn bench stream``: a fixed event rate on fresh topics, per event sent -> scored.

A contender of :data:`LATENCY_CONTENDERS` is started on topics of its own (the relay and
the worker again, right after their throughput phase; the pass-through first, before any
throughput phase): ``rate`` events/s for ``latency_s`` seconds, each stamped with its send
time, and each output's record timestamp (set when the contender queued it) minus that
time is its latency. The worker is measured in the same run beside two references:
the librdkafka relay (its throughput peer, which waits up to 100 ms to fill a batch) and
``pipe`` (:func:`churn_stream.bench.stream_contenders.run_pipe`), which passes each event
through unchanged with the worker's own client settings and loop shape: what the broker
and the clients alone take at that rate. Its p50 is a floor; its p99, like everyone's,
follows the broker's growing cost (below) and varies from run to run.

Fresh topics, because a broker's fetch cost may grow with what a partition holds: Tansu
0.6.0's storage engine lists every stored record batch of a partition on each fetch that
has records to return, so on the topics of a 200,000-event throughput phase the phase
measured the broker's listing more than the contender. The same growth within the phase
shows in ``p99_by_window_ms`` (one per :data:`WINDOW_S` seconds of output timestamps from
the first, empty windows skipped) and ``broker_cores_by_window`` (one per whole
:data:`WINDOW_S` seconds of wall time from just before the first event is sent), the
broker's cores read from the local stack's process (None for a broker this machine does
not run). The two lists need not have the same length.

With ``reload``, the worker's champion is swapped to a copy and back meanwhile
(:mod:`churn_stream.bench.stream_reload`): the worker's figures then include two hot
reloads, the references' never do.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from churn_stream.bench.stream_phases import _cpu_s, _percentile_ms, _start_contender, _stop, load_1m

if TYPE_CHECKING:
    from churn_stream.bench.stream_phases import Bench
    from plumbing.settings import Settings

#: Contenders run through the latency phase: the broker's floor (``pipe``, a pass-through
#: with the worker's client settings and no work), the librdkafka relay, the worker.
LATENCY_CONTENDERS = ("pipe", "librdkafka", "worker")
#: Width of the windows the phase's p99 and the broker's cores are given by, seconds.
WINDOW_S = 2.0


class CoreSampler:
    """Cores a process used in each ``interval_s`` window, sampled on a thread of its own.

    Parameters
    ----------
    proc : psutil.Process or None
        ``None`` samples nothing (``cores`` stays empty).
    interval_s : float, default WINDOW_S
        Window width, seconds.

    Attributes
    ----------
    cores : list of float
        CPU seconds (user + system, every thread) per wall second, one per whole window.
    """

    def __init__(self, proc: Any, interval_s: float = WINDOW_S) -> None:
        self.proc, self.interval_s = proc, interval_s
        self.cores: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-core-sampler", daemon=True)

    def __enter__(self) -> CoreSampler:
        if self.proc is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        cpu0, t0 = _cpu_s(self.proc), time.perf_counter()
        while not self._stop.wait(self.interval_s):
            cpu1, t1 = _cpu_s(self.proc), time.perf_counter()
            self.cores.append(round((cpu1 - cpu0) / (t1 - t0), 2))
            cpu0, t0 = cpu1, t1


def broker_process(settings: Settings) -> Any:
    """The local stack's Kafka broker process (``psutil.Process``), or ``None`` if this machine does not run it."""
    from churn_stream.stack import LocalStack

    try:
        stack = LocalStack.from_settings(settings)
    except ValueError:  # an endpoint without a port: not a stack of ours
        return None
    return stack.service("kafka").process()


def p99_by_window_ms(lat_s: list[float], stamps_s: list[float], window_s: float = WINDOW_S) -> list[float]:
    """The p99 latency of each ``window_s`` window of score timestamps, in milliseconds.

    Parameters
    ----------
    lat_s : list of float
        Latencies, seconds.
    stamps_s : list of float
        The same scores' record timestamps, seconds (any origin).
    window_s : float, default WINDOW_S

    Returns
    -------
    list of float
        One per window from the first timestamp on; windows without a score are skipped.
    """
    if not lat_s:
        return []
    lat, ts = np.asarray(lat_s), np.asarray(stamps_s)
    bins = ((ts - ts.min()) // window_s).astype(np.int64)
    return [round(float(np.percentile(lat[bins == b], 99)) * 1000, 1) for b in np.unique(bins)]


def _measure(
    bench: Bench, topics: dict[str, str], worker: Settings | None, rate: float, latency_s: float, reload: bool
) -> dict[str, Any]:
    """Send ``rate`` events/s for ``latency_s`` seconds to a started, warmed contender; its latency figures."""
    from churn_stream.bench.stream_collect import produce_and_collect

    records = bench.records(int(rate * latency_s))
    load_start = load_1m()
    figures: dict[str, Any] = {}
    swap = swapper = None
    if reload and worker is not None:
        from churn_stream.bench.faults.harness import health
        from churn_stream.bench.stream_reload import ChampionSwap, start_swaps

        swap = ChampionSwap(
            bench.settings, bench.model["name"], bench.model["version"], bench.ns.model_updated, bench.run
        )
        swapper = start_swaps(swap, latency_s, lambda v: health(worker).get("model_version") == v)
    try:
        with CoreSampler(broker_process(bench.settings)) as broker:
            lat = produce_and_collect(
                bench.conf, topics["in"], topics["out"], records, rate=rate, stamp_times=True, timeout_s=latency_s + 120
            )
    except BaseException:  # Ctrl-C included: stop swapping and say why the run does not end at once
        if swap is not None:
            swap.stopped.set()
            print(
                f"interrupted: moving {swap.name}@champion back to version {swap.version} and deleting the bench copy",
                file=sys.stderr,
                flush=True,
            )
        raise
    finally:
        if swap is not None and swapper is not None:
            swap.restore(swapper)  # a second Ctrl-C meanwhile waits until the champion is back
    if swap is not None:
        from churn_stream.bench.stream_reload import reload_figures

        figures["reloads"] = reload_figures(swap.announced, lat["score_versions"])
        figures["reload_error"] = swap.error
    stamps = [ts for ts, _ in lat["score_versions"]]
    load_end = load_1m()
    figures.update(
        {
            "latency_events": len(records),
            "latency_scored": lat["scored"],
            "rate_eps": rate,
            "p50_ms": _percentile_ms(lat["lat_ts"], 50),
            "p99_ms": _percentile_ms(lat["lat_ts"], 99),
            "read_p50_ms": _percentile_ms(lat["lat_read"], 50),
            "read_p99_ms": _percentile_ms(lat["lat_read"], 99),
            "p99_by_window_ms": p99_by_window_ms(lat["lat_ts"], stamps),
            "broker_cores_by_window": broker.cores or None,
            "latency_load_avg": {"start": load_start, "end": load_end},
            "latency_load_avg_1m": load_end,
        }
    )
    return figures


def latency_phase(bench: Bench, kind: str, rate: float, latency_s: float, reload: bool = False) -> dict[str, Any]:
    """Start ``kind`` on fresh topics, warm it up and measure its event-to-score latency.

    Parameters
    ----------
    bench : Bench
    kind : str
        One of :data:`LATENCY_CONTENDERS`.
    rate : float
        Events per second.
    latency_s : float
        Duration, seconds (0 skips the phase).
    reload : bool, default False
        Worker only: swap the champion to a copy and back meanwhile and time both hot reloads.

    Returns
    -------
    dict
        Empty when ``latency_s`` is 0; else ``latency_events``, ``latency_scored``,
        ``rate_eps``, ``p50_ms``, ``p99_ms`` (score record timestamp - event time),
        ``read_p50_ms``, ``read_p99_ms`` (read by the bench - event time),
        ``p99_by_window_ms``, ``broker_cores_by_window`` (None without a local broker),
        ``latency_load_avg`` (``start``, ``end``), ``latency_load_avg_1m``,
        ``latency_topic`` (the phase's input topic;
        :func:`~churn_stream.bench.stream.run_bench_stream` deletes it with the run's other
        topics at its end) and with ``reload`` ``reloads`` and
        ``reload_error``.

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`LATENCY_CONTENDERS`.
    RuntimeError
        If the contender does not score its warm-up events.
    churn_stream.demo.DemoError
        If the worker does not become ready.
    """
    from churn_stream.demo import stop_worker, wait_worker_ready
    from churn_stream.stack import LocalStack

    if kind not in LATENCY_CONTENDERS:
        raise ValueError(f"latency phase: expected one of {', '.join(LATENCY_CONTENDERS)}, got {kind!r}")
    if latency_s <= 0:
        return {}
    name = f"{kind}-latency"
    topics = bench.topics(name)
    group = f"bench-{bench.run}-{name}"
    log_path = bench.work / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    csettings = bench.settings.with_overrides(
        topic_suffix=topics["in"][len(bench.ns.customers) :], worker_web_port=LocalStack.free_ports(1)[0]
    )
    proc = _start_contender(kind, csettings, topics, group, bench.pipeline_path, bench.model, log_path)
    try:
        if kind == "worker":
            wait_worker_ready(csettings, proc, timeout_s=120)
        bench.warm(name, topics, [proc], log_path)
        figures = _measure(bench, topics, csettings if kind == "worker" else None, rate, latency_s, reload)
        return {**figures, "latency_topic": topics["in"]}
    finally:
        if kind == "worker":
            stop_worker(proc)
        else:
            _stop(proc)
