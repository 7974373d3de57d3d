"""``churn bench stream``'s pure parts: stage counters, contender choice, librdkafka settings, RSS, report lines."""

from __future__ import annotations

import os

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from churn_stream.bench.stream import CONTENDERS, chosen_contenders
from churn_stream.bench.stream_stages import (
    WORKER_STAGES,
    parse_worker_counters,
    peak_rss_mb,
    scores_acked,
    stage_deltas,
)
from stream_app.metrics import WorkerMetrics

#: A worker's ``/metrics`` (prometheus_client 0.x text format) with the stage counter, trimmed to the
#: metrics the bench reads and one it does not: ``Counter("churn_worker_stage_seconds", ..., ["stage"])``.
SCRAPE_BEFORE = """\
# HELP churn_events_in_total Customer events consumed.
# TYPE churn_events_in_total counter
churn_events_in_total 1000.0
# HELP churn_events_in_created Customer events consumed.
# TYPE churn_events_in_created gauge
churn_events_in_created 1.7964548395260491e+09
# HELP churn_batches_total Micro-batches completed (outputs acknowledged, offsets committed).
# TYPE churn_batches_total counter
churn_batches_total 2.0
# HELP churn_worker_stage_seconds_total Seconds the worker spent per stage.
# TYPE churn_worker_stage_seconds_total counter
churn_worker_stage_seconds_total{stage="fetch"} 0.25
churn_worker_stage_seconds_total{stage="decode"} 0.5
churn_worker_stage_seconds_total{stage="validate"} 0.75
churn_worker_stage_seconds_total{stage="featurise"} 1.0
churn_worker_stage_seconds_total{stage="predict"} 1.25
churn_worker_stage_seconds_total{stage="reasons"} 1.5
churn_worker_stage_seconds_total{stage="encode"} 1.75
churn_worker_stage_seconds_total{stage="produce"} 2.0
churn_worker_stage_seconds_total{stage="commit"} 2.25
# HELP churn_worker_stage_seconds_created Seconds the worker spent per stage.
# TYPE churn_worker_stage_seconds_created gauge
churn_worker_stage_seconds_created{stage="fetch"} 1.796454839526482e+09
churn_worker_stage_seconds_created{stage="decode"} 1.796454839526491e+09
churn_worker_stage_seconds_created{stage="validate"} 1.7964548395264974e+09
churn_worker_stage_seconds_created{stage="featurise"} 1.7964548395265026e+09
churn_worker_stage_seconds_created{stage="predict"} 1.7964548395265098e+09
churn_worker_stage_seconds_created{stage="reasons"} 1.796454839526515e+09
churn_worker_stage_seconds_created{stage="encode"} 1.79645483952652e+09
churn_worker_stage_seconds_created{stage="produce"} 1.7964548395265265e+09
churn_worker_stage_seconds_created{stage="commit"} 1.7964548395265331e+09
"""
#: The same worker 200,000 events later: fetch +0.4 s, decode +0.8 s, ... commit +0.2 s.
SCRAPE_AFTER = (
    SCRAPE_BEFORE.replace("churn_events_in_total 1000.0", "churn_events_in_total 201000.0")
    .replace('{stage="fetch"} 0.25', '{stage="fetch"} 0.65')
    .replace('{stage="decode"} 0.5', '{stage="decode"} 1.3')
    .replace('{stage="predict"} 1.25', '{stage="predict"} 1.85')
    .replace('{stage="commit"} 2.25', '{stage="commit"} 2.45')
)


def test_stage_seconds_per_event_from_two_scrapes():
    before, after = parse_worker_counters(SCRAPE_BEFORE), parse_worker_counters(SCRAPE_AFTER)
    assert before["events_in"] == 1000.0 and after["events_in"] == 201000.0
    assert set(before["stages"]) == set(WORKER_STAGES)

    us = stage_deltas(before, after)

    assert list(us) == list(WORKER_STAGES)
    assert us["fetch"] == pytest.approx(2.0)  # 0.4 s / 200,000 events
    assert us["decode"] == pytest.approx(4.0)
    assert us["predict"] == pytest.approx(3.0)
    assert us["commit"] == pytest.approx(1.0)
    assert us["validate"] == us["encode"] == 0.0  # unchanged counters: no time, not "missing"


def test_stage_counter_as_the_worker_renders_it():
    metrics = WorkerMetrics()  # the worker's registry: every stage's series exists from the start
    before = parse_worker_counters(metrics.render().decode())
    metrics.events_in.inc(500)
    metrics.record_stages({"predict": 0.001, "fetch": 0.0005})

    after = parse_worker_counters(metrics.render().decode())
    us = stage_deltas(before, after)

    assert set(before["stages"]) == set(WORKER_STAGES)
    assert us["predict"] == pytest.approx(2.0) and us["fetch"] == pytest.approx(1.0)
    assert us["decode"] == 0.0  # rendered at 0: no time spent, not "missing"


def test_worker_without_stage_counter_gives_none_for_every_stage():
    registry = CollectorRegistry()  # an older worker: events counted, no stage counter
    events_in = Counter("churn_events_in", "Customer events consumed.", registry=registry)
    before = parse_worker_counters(generate_latest(registry).decode())
    events_in.inc(100)
    after = parse_worker_counters(generate_latest(registry).decode())

    assert after["events_in"] == 100.0 and after["stages"] == {}
    assert stage_deltas(before, after) == dict.fromkeys(WORKER_STAGES)
    assert stage_deltas(None, after) == dict.fromkeys(WORKER_STAGES)  # a scrape failed


def test_no_event_in_the_window_gives_none():
    same = parse_worker_counters(SCRAPE_BEFORE)
    assert stage_deltas(same, same) == dict.fromkeys(WORKER_STAGES)


def test_contenders_default_subset_and_errors():
    assert chosen_contenders(None, None, "telco") == ("naive", "relay", "librdkafka", "worker", "worker2")
    assert chosen_contenders(None, "/venv/bin/python", "telco") == CONTENDERS
    assert chosen_contenders(["worker", "librdkafka"], None, "telco") == ("librdkafka", "worker")
    assert chosen_contenders(None, None, "retail") == ("worker", "worker2")  # the relays speak Telco only
    with pytest.raises(ValueError, match="quix needs --quix-python"):
        chosen_contenders(["quix"], None, "telco")
    with pytest.raises(ValueError, match="got flink"):
        chosen_contenders(["worker", "flink"], None, "telco")
    with pytest.raises(ValueError, match="none of relay runs on retail"):
        chosen_contenders(["relay"], None, "retail")


def test_peak_rss_of_this_process():
    assert peak_rss_mb(os.getpid()) > 1.0
    assert peak_rss_mb(2**22 + 12345) is None  # no such process


@pytest.mark.parametrize(
    ("value", "message"),
    [("flink,worker", "got flink"), ("quix", "quix needs --quix-python")],
)
def test_cli_refuses_a_bad_contenders_value_before_running(value, message):
    from click.testing import CliRunner

    from churn_stream.cli import main

    result = CliRunner().invoke(main, ["bench", "stream", "--contenders", value])

    assert result.exit_code != 0
    assert message in result.output


@pytest.mark.parametrize(("option", "value"), [("--latency-s", "-1"), ("--rate", "0")])
def test_cli_refuses_a_latency_phase_it_cannot_run(option, value):
    from click.testing import CliRunner

    from churn_stream.cli import main

    result = CliRunner().invoke(main, ["bench", "stream", option, value])

    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output


# ------------------------------------------------------------------ hot reloads
def test_reload_figures_time_each_swap_to_the_last_score_by_the_previous_version():
    from churn_stream.bench.stream_reload import reload_figures

    announced = [(100.0, "5", "6"), (110.0, "6", "5")]
    scores = [
        (99.0, "5"),
        (100.2, "5"),  # queued just after the alias moved, by the old model
        (100.9, "6"),
        (100.7, "5"),  # read after a later one (another partition): still the old model's
        (101.5, "6"),
        (110.4, "6"),
        (111.25, "5"),
        (112.0, "5"),
    ]
    first, back = reload_figures(announced, scores)
    assert first == {"from": "5", "to": "6", "first_new_s": 0.9, "last_old_s": 0.7, "reload_s": 0.9}
    assert back == {"from": "6", "to": "5", "first_new_s": 1.25, "last_old_s": 0.4, "reload_s": 1.25}


def test_reload_figures_report_a_swap_never_served_as_none():
    from churn_stream.bench.stream import _slowest_reload
    from churn_stream.bench.stream_reload import reload_figures

    figures = reload_figures([(100.0, "5", "6"), (110.0, "6", "5")], [(100.5, "5"), (109.0, "5"), (111.0, "5")])
    # Before the swap back, v6 never scored: that reload is unmeasured, and v5 scored for 9 s after the move.
    assert figures[0] == {"from": "5", "to": "6", "first_new_s": None, "last_old_s": 9.0, "reload_s": None}
    assert figures[1]["reload_s"] == 1.0 and figures[1]["last_old_s"] == 0.0
    assert _slowest_reload(figures) is None
    assert _slowest_reload([figures[1], {**figures[1], "reload_s": 1.7}]) == 1.7
    assert _slowest_reload(None) is None


def test_an_empty_contender_list_is_refused_with_the_names_to_choose_from():
    from churn_stream.bench.stream import CONTENDERS, chosen_contenders

    with pytest.raises(ValueError, match="name at least one of naive, ") as err:
        chosen_contenders([], None, "telco")
    assert all(c in str(err.value) for c in CONTENDERS)


# ------------------------------------------------------------------ latency phase
def test_p99_by_window_groups_scores_by_their_timestamps():
    from churn_stream.bench.stream_latency import p99_by_window_ms

    # Window 0 (t 100.0-101.9): 100 scores at 5 ms; window 1: 99 at 5 ms and one at 80 ms; window 3 alone.
    stamps = [100.0 + 0.019 * i for i in range(100)] + [102.0 + 0.019 * i for i in range(100)] + [106.5]
    lat = [0.005] * 100 + [0.005] * 99 + [0.080] + [0.012]
    got = p99_by_window_ms(lat, stamps)
    assert got[0] == 5.0 and got[2] == 12.0  # the empty window 2 is skipped
    assert 5.0 < got[1] < 80.0  # numpy's linear interpolation between the 99th and the 100th score
    assert p99_by_window_ms([], []) == []


def test_core_sampler_reads_a_busy_process_and_nothing_without_one():
    import time

    import psutil

    from churn_stream.bench.stream_latency import CoreSampler

    with CoreSampler(psutil.Process(), interval_s=0.1) as busy:
        end = time.perf_counter() + 0.45
        while time.perf_counter() < end:
            pass  # one thread spinning: about one core
    assert len(busy.cores) >= 3 and all(0.2 < c <= 2.0 for c in busy.cores), busy.cores
    with CoreSampler(None) as none:
        time.sleep(0.01)
    assert none.cores == []


# ------------------------------------------------------------------ report lines
def test_collector_line_counts_the_measured_scores_and_names_whose():
    from churn_stream.bench.stream_report import collector_line

    col = {"records": 200000, "seconds": 1.25, "eps": 160000.0, "cpu_s": 1.1, "headroom": 3.4, "contender": "worker"}
    assert collector_line(col) == (
        "collector: 200,000 scores read again (worker, its measured phase's only, not the warm-up's) in 1.25 s "
        "= 160,000 events/s, 3.4x the fastest contender"
    )
    none = collector_line({**col, "records": 0, "eps": None, "headroom": None, "contender": "relay"})
    assert none == (
        "collector: 0 scores read again (aiokafka relay, its measured phase's only, not the warm-up's) in 1.25 s "
        "= - events/s"
    )
    assert collector_line({**col, "records": 1}).startswith("collector: 1 score read again (worker, ")


def _figures(eps: float | None, **extra) -> dict:
    """One contender's figures as :meth:`Bench.timed` gives them (cores and load made up)."""
    return {
        "eps": eps,
        "client_cpu_s": 0.5,
        "seconds": 2.0,
        "contender_cores": 0.9,
        "machine_cores": 1.6,
        "load_avg": {"start": 0.4, "end": 0.9},
        **extra,
    }


def test_contender_rows_give_the_worker_ratio_only_when_the_worker_ran():
    from churn_stream.bench.stream_report import contender_lines

    no_worker = contender_lines(
        {"contenders": {"relay": _figures(6500.0), "librdkafka": _figures(None)}, "worker_eps": None, "scaling": None}
    )
    assert no_worker[0] == ("contender            events/s bench CPU its CPU machine   load avg start -> end")
    assert no_worker[1] == "aiokafka relay          6,500      0.25    0.90    1.60   0.4 -> 0.9"
    assert no_worker[2] == "librdkafka relay            -      0.25    0.90    1.60   0.4 -> 0.9"

    ran = contender_lines(
        {
            "contenders": {"relay": _figures(20000.0), "naive": _figures(None), "worker": _figures(45000.0)},
            "worker_eps": 45000.0,
            "scaling": None,
        }
    )
    assert "worker/this" in ran[0]
    assert ran[1] == "aiokafka relay         20,000       2.25x      0.25    0.90    1.60   0.4 -> 0.9"
    # A contender that scored nothing has no ratio: "-", not "-x".
    assert ran[2] == "naive Faust                 -           -      0.25    0.90    1.60   0.4 -> 0.9"
    assert ran[3].startswith("worker                 45,000       1.00x")


def test_stage_table_without_the_worker_says_why_and_has_no_floors():
    from churn_stream.bench.stream_report import stage_lines

    lines = stage_lines({"contenders": {"relay": _figures(6500.0)}})
    assert lines == ["stages: not measured, nor their floors (no worker contender; its /metrics give the stage costs)"]
    assert not any("exposes no stage counter" in line for line in lines)


def test_stage_table_with_the_worker_sets_each_stage_beside_its_floor():
    from churn_stream.bench.stream_report import stage_lines

    us = dict.fromkeys(WORKER_STAGES, 2.0)
    result = {
        "contenders": {"worker": _figures(45000.0, stage_counter=True)},
        "stage_us": us,
        "floor_us": {**dict.fromkeys(WORKER_STAGES, 1.0), "reasons": None},
        "score_batch_stage_us": {"decode": 1.5},
        "floor_load_avg": {"start": 0.5, "end": 0.7},
        "floor_cpu_us": {"fetch_commit": 1.2, "produce": 2.6},
    }
    lines = stage_lines(result)
    assert "exposes no stage counter" not in lines[0]
    assert lines[1 + WORKER_STAGES.index("decode")] == "decode          2.00      1.00        1.50"
    assert lines[1 + WORKER_STAGES.index("reasons")] == "reasons         2.00         -           -"
    assert lines[-1] == "floors: load avg 0.5 -> 0.7; CPU us/record {'fetch_commit': 1.2, 'produce': 2.6}"
    old = stage_lines({**result, "contenders": {"worker": _figures(45000.0, stage_counter=False)}})
    assert "(worker exposes no stage counter)" in old[0]


def test_floors_are_not_measured_without_the_worker(monkeypatch):
    from types import SimpleNamespace

    from churn_stream.bench import score, stream_stages
    from churn_stream.bench.stream import FLOOR_KEYS, _floors

    calls: list[str] = []

    def fake(name, value):
        def measure(*args, **kwargs):
            calls.append(name)
            return value

        return measure

    monkeypatch.setattr(
        stream_stages,
        "fetch_commit_floor",
        fake("fetch", {"fetch_us": 1.0, "commit_us": 0.5, "cpu_us": 1.2, "records": 10, "commits": 1}),
    )
    monkeypatch.setattr(
        stream_stages, "produce_floor", fake("produce", {"produce_us": 2.0, "cpu_us": 2.5, "events": 10})
    )
    monkeypatch.setattr(stream_stages, "score_records", fake("records", []))
    monkeypatch.setattr(
        score, "run_bench_score", fake("score", {"floor_us": {"decode": 1.5}, "stage_us": {}, "score_batch_us": 9.0})
    )
    bench = SimpleNamespace(conf={}, events=10, settings=None, topics=lambda kind: {"out": "o", "alerts": "a"})
    profile = SimpleNamespace(name="telco")

    assert _floors(bench, profile, "x.csv", {"in": "i"}, worker=False) == dict.fromkeys(FLOOR_KEYS)
    assert calls == []  # nothing measured: no broker round trip, no churn bench score
    measured = _floors(bench, profile, "x.csv", {"in": "i"}, worker=True)
    assert sorted(calls) == ["fetch", "produce", "records", "score"]
    assert set(measured) == set(FLOOR_KEYS)  # the keys a run without the worker sets to None
    assert measured["floor_us"] == {"fetch": 1.0, "decode": 1.5, "produce": 2.0, "commit": 0.5}


def test_reload_line_says_why_no_reload_was_measured():
    from churn_stream.bench.stream_report import reload_line

    worker = {"contenders": {"worker": _figures(45000.0)}}
    relay = {"contenders": {"relay": _figures(6500.0)}}
    assert reload_line(worker, reload=False, latency_s=20.0) == "hot reload: not measured (--no-reload)"
    assert reload_line(relay, reload=False, latency_s=0.0) == "hot reload: not measured (--no-reload)"
    assert reload_line(worker, reload=True, latency_s=0.0) == (
        "hot reload: not measured (--latency-s 0: the swaps run during the worker's latency phase)"
    )
    assert reload_line(relay, reload=True, latency_s=20.0) is None  # no worker: nothing to reload

    swaps = [
        {"from": "12", "to": "13", "reload_s": 0.26, "first_new_s": 0.2},
        {"from": "13", "to": "12", "reload_s": None, "first_new_s": None},
    ]
    measured = {"contenders": {"worker": _figures(45000.0, reloads=swaps, reload_error=None)}}
    line = reload_line(measured, reload=True, latency_s=20.0)
    assert line is not None and line.endswith(
        "v12 -> v13 0.260 s (first score by v13 at 0.200 s), v13 -> v12 - s (first score by v12 at - s)"
    )


def test_latency_line_says_why_no_latency_phase_ran():
    from churn_stream.bench.stream_report import latency_line

    relay = {"contenders": {"relay": _figures(6500.0), "naive": _figures(1400.0)}, "latency_floor": None}
    assert latency_line(relay, latency_s=5.0) == (
        "latency: not measured (--latency-s 5 applies to the librdkafka relay and the worker only, with the "
        "pass-through run beside the worker; this run's contenders: aiokafka relay, naive Faust)"
    )
    assert latency_line(relay, latency_s=0.0) == "latency: not measured (--latency-s 0)"
    # One contender with a latency phase is enough: no line (the latency table says the rest).
    ran = {"contenders": {"relay": _figures(6500.0), "librdkafka": _figures(9000.0, p50_ms=80.0)}}
    assert latency_line({**ran, "latency_floor": None}, latency_s=5.0) is None
    worker = {"contenders": {"worker": _figures(45000.0, p50_ms=9.0)}, "latency_floor": {"p50_ms": 8.0}}
    assert latency_line(worker, latency_s=20.0) is None


def test_stage_table_says_which_kafka_floors_had_too_few_records():
    from churn_stream.bench.stream_report import stage_lines
    from churn_stream.bench.stream_stages import FLOOR_MIN_RECORDS

    result = {
        "contenders": {"worker": _figures(18000.0, stage_counter=True)},
        "stage_us": dict.fromkeys(WORKER_STAGES, 2.0),
        "floor_us": {**dict.fromkeys(WORKER_STAGES, 1.0), "fetch": None, "commit": None, "produce": None},
        "score_batch_stage_us": {},
        "floor_load_avg": {"start": 0.5, "end": 0.7},
        "floor_cpu_us": {"fetch_commit": None, "produce": None},
        "floor_records": {"fetch": 1500, "commits": 3, "produce_events": 2000, "min": FLOOR_MIN_RECORDS},
    }
    lines = stage_lines(result)
    assert lines[1 + WORKER_STAGES.index("fetch")] == "fetch           2.00         -           -"
    assert lines[-1] == (
        "fetch, commit, produce floors: not measured (fewer than 5,000 records timed: fetch 1,500, produce 2,000; "
        "over a few calls one call's hiccup would be the floor)"
    )
    # Produce had enough events, fetch not (its short last batch is not timed): only fetch and commit are named.
    some = stage_lines({**result, "floor_records": {**result["floor_records"], "produce_events": 50000}})
    assert some[-1].startswith("fetch, commit floors: not measured (fewer than 5,000 records timed: fetch 1,500;")
    full = {**result["floor_records"], "fetch": 199500, "produce_events": 50000}
    assert stage_lines({**result, "floor_records": full})[-1].startswith("floors: load avg 0.5 -> 0.7")


# ------------------------------------------------------------------ bench copies and interrupts
def test_a_copy_owner_is_alive_by_its_pid_here_and_by_its_heartbeat_elsewhere():
    import socket
    import subprocess
    import sys

    import psutil

    from churn_stream.bench.stream_reload import (
        HEARTBEAT_TAG,
        OWNER_TAG,
        STALE_AFTER_S,
        _owner,
        copy_owner_alive,
    )

    here = socket.gethostname()
    me = {OWNER_TAG: _owner("r1"), HEARTBEAT_TAG: "0"}  # a heartbeat long stale: the pid decides here
    assert copy_owner_alive(me, now=1e10)
    assert f"pid={os.getpid()}" in me[OWNER_TAG] and f"host={here}" in me[OWNER_TAG]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {OWNER_TAG: f"run=r2 host={here} pid={gone.stdout.strip()} started=1.00", HEARTBEAT_TAG: "100.0"}
    assert not copy_owner_alive(dead, now=100.0)  # a fresh heartbeat does not revive a dead pid
    # The pid of this process, but not its start time: another process that reused the pid.
    reused = {OWNER_TAG: f"run=r3 host={here} pid={os.getpid()} started={psutil.Process().create_time() - 60:.2f}"}
    assert not copy_owner_alive(reused)

    elsewhere = {OWNER_TAG: "run=r4 host=other-host pid=1 started=5.00", HEARTBEAT_TAG: "1000.0"}
    assert copy_owner_alive(elsewhere, now=1000.0 + STALE_AFTER_S - 1, host=here)
    assert not copy_owner_alive(elsewhere, now=1000.0 + STALE_AFTER_S + 1, host=here)
    assert not copy_owner_alive({OWNER_TAG: "run=r5 host=other-host pid=1"}, host=here)  # no heartbeat
    assert not copy_owner_alive({})  # a copy from a bench without owners: left over


def test_a_signal_in_a_held_block_is_delivered_when_the_block_ends(capsys):
    import signal

    from churn_stream.bench.stream_reload import _signals_held

    before = signal.getsignal(signal.SIGINT)
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with _signals_held("still putting it back"):
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the first")
    assert steps == ["after the first"]  # the block ran to its end
    assert capsys.readouterr().err == "still putting it back\n"
    assert signal.getsignal(signal.SIGINT) is before

    with pytest.raises(KeyboardInterrupt):
        with _signals_held("still putting it back"):
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the first")
            os.kill(os.getpid(), signal.SIGINT)  # a second: at once
            steps.append("after the second")
    assert steps == ["after the first"] * 2
    assert signal.getsignal(signal.SIGINT) is before


def _bench_stream_exit(monkeypatch, stand_in) -> tuple[int, str]:
    """``churn bench stream --contenders relay`` with ``stand_in`` as the run: exit code and output."""
    import logging

    from click.testing import CliRunner

    from churn_stream.bench import stream
    from churn_stream.cli import main
    from plumbing.progress import PROGRESS_LOGGER

    monkeypatch.setattr(stream, "run_bench_stream", stand_in)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    try:
        result = CliRunner().invoke(main, ["bench", "stream", "--contenders", "relay"])
    finally:
        logging.getLogger(PROGRESS_LOGGER).setLevel(logging.NOTSET)
    return result.exit_code, result.output


def test_an_interrupted_bench_stream_exits_128_plus_the_signal(monkeypatch):
    import signal
    import sys

    before = signal.getsignal(signal.SIGTERM)

    def ctrl_c(settings, **kwargs):
        print("interrupted: moving churn-classifier@champion back to version 12", file=sys.stderr)
        raise KeyboardInterrupt

    code, output = _bench_stream_exit(monkeypatch, ctrl_c)
    assert code == 130
    assert output.splitlines() == ["interrupted: moving churn-classifier@champion back to version 12", "", "Aborted!"]

    def sigterm(settings, **kwargs):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # the handler the command installed

    code, output = _bench_stream_exit(monkeypatch, sigterm)
    assert code == 143 and output.splitlines()[-1] == "Aborted!"
    assert signal.getsignal(signal.SIGTERM) is before  # put back


@pytest.mark.parametrize(
    "error",
    [
        "SwapInProgress:another churn bench stream is measuring hot reloads on churn-classifier: run r1",
        "ContenderFailed:a contender process exited (code 3) during the measured phase, 0 of 2000 scores read",
    ],
)
def test_a_refused_or_failed_run_is_a_one_line_error(monkeypatch, error):
    from churn_stream.bench import stream_phases, stream_reload

    kind, message = error.split(":", 1)
    cls = getattr(stream_reload, kind, None) or getattr(stream_phases, kind)

    def fails(settings, **kwargs):
        raise cls(message)

    code, output = _bench_stream_exit(monkeypatch, fails)
    assert code == 1
    assert output == f"Error: {message}\n"


def test_scores_acked_sums_each_workers_acknowledged_scores_between_scrapes():
    workers = [WorkerMetrics(), WorkerMetrics()]
    for m, n in zip(workers, (5, 7)):
        m.events_out.labels("scores").inc(n)
        m.events_out.labels("alerts").inc(100)  # another output: not counted
    before = [parse_worker_counters(m.render().decode()) for m in workers]
    for m, n in zip(workers, (1200, 800)):
        m.events_out.labels("scores").inc(n)
    after = [parse_worker_counters(m.render().decode()) for m in workers]
    assert [a["scores_out"] for a in after] == [1205.0, 807.0]
    assert scores_acked(before, after) == 2000
    assert scores_acked([before[0], None], after) is None  # a worker that did not answer


@pytest.mark.parametrize(
    ("figures", "ends"),
    [
        ({"scored": 100}, None),
        (
            {"scored": 90, "missing_in_topic": 10, "missing_sample": ["e1", "e2", "e3"], "scores_acked": 100},
            "read again from the topic's start, 10 of them are there: the bench's collector missed them",
        ),
        (
            {"scored": 90, "missing_in_topic": 0, "missing_sample": ["e1"], "scores_acked": 100},
            "records the broker acknowledged and does not hold",
        ),
        (
            {"scored": 90, "missing_in_topic": 0, "missing_sample": ["e1"], "scores_acked": 95},
            "the broker acknowledged 95 scores to the worker: it stopped or fell behind",
        ),
        (
            {"scored": 90, "missing_in_topic": 0, "missing_sample": ["e1"]},
            "(a contender that stopped, or records the broker lost)",
        ),
    ],
)
def test_missing_scores_are_told_apart_as_a_collector_miss_a_loss_or_a_stop(figures, ends):
    from churn_stream.bench.stream_report import missing_line

    line = missing_line("worker", 100, figures, "/tmp/logs")
    if ends is None:
        assert line is None
        return
    assert line.startswith("warning: worker: 10 of 100 scores never read back (event ids e1")
    assert line.endswith(f"{ends}; logs in /tmp/logs"), line
