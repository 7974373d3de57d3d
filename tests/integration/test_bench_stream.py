"""``churn bench stream`` on the session stack with a small event count: fields, no loss, ratios.

Throughput figures are not asserted here (timed assertions belong in the benchmark);
only that every contender scored every event and the ratios come from the measured rates.
The Quix Streams contender runs when ``CHURN_TEST_QUIX_PYTHON`` names the python of a
virtualenv with quixstreams, numpy, orjson and pyyaml (see :mod:`churn_stream.bench.stream_quix`).
"""

from __future__ import annotations

import os
import time

import orjson
import pytest

pytestmark = pytest.mark.integration

EVENTS = 3000


def test_bench_stream_small_run(stack_settings, tmp_path):
    from churn_stream.bench.stream import run_bench_stream
    from churn_stream.bench.stream_stages import FLOOR_BATCH, FLOOR_MIN_RECORDS, WORKER_STAGES

    quix_python = os.environ.get("CHURN_TEST_QUIX_PYTHON") or None
    out = tmp_path / "bench.json"
    result = run_bench_stream(stack_settings, events=EVENTS, json_path=out, latency_s=6.0, quix_python=quix_python)

    saved = orjson.loads(out.read_text())
    for name in (
        "worker_eps",
        "naive_eps",
        "relay_eps",
        "librdkafka_relay_eps",
        "quix_eps",
        "ratio_vs_relay",
        "ratio_vs_librdkafka",
        "ratio_vs_naive",
        "p50_ms",
        "p99_ms",
        "librdkafka_p50_ms",
        "librdkafka_p99_ms",
        "floor_p50_ms",
        "floor_p99_ms",
        "load_avg",
        "stage_us",
        "floor_us",
        "worker2_eps",
        "scaling",
        "worker_rss_mb",
        "events",
        "broker_mode",
        "load_avg_1m_start",
        "load_avg_1m_end",
        "collector",
    ):
        assert name in saved, name
    assert saved["events"] == EVENTS and saved["broker_mode"] == "ephemeral"
    kinds = ["naive", "relay", "librdkafka", "worker", "worker2"] + (["quix"] if quix_python else [])
    assert sorted(saved["contenders"]) == sorted(kinds)
    for kind in kinds:
        figures = saved["contenders"][kind]
        assert figures["scored"] == EVENTS, kind  # no loss
        assert figures["eps"] > 0, kind
        # CPU over the phase: the contender's own processes, within what the whole machine used.
        assert 0 < figures["contender_cores"] <= figures["machine_cores"] + 0.05, (kind, figures)
        assert figures["machine_cores"] <= saved["cpus"] + 0.05, (kind, figures)
        assert figures["load_avg"]["start"] >= 0 and figures["load_avg"]["end"] >= 0, kind
    if not quix_python:
        assert saved["quix_eps"] is None and saved["ratio_vs_quix"] is None
    w = saved["worker_eps"]
    assert saved["librdkafka_relay_eps"] == saved["contenders"]["librdkafka"]["eps"]
    assert saved["ratio_vs_naive"] == pytest.approx(w / saved["naive_eps"], abs=0.01)
    assert saved["ratio_vs_relay"] == pytest.approx(w / saved["relay_eps"], abs=0.01)
    assert saved["ratio_vs_librdkafka"] == pytest.approx(w / saved["librdkafka_relay_eps"], abs=0.01)
    assert saved["scaling"] == pytest.approx(saved["worker2_eps"] / w, abs=0.01)
    # Both workers of the scaling phase took part: the group split the 4 partitions between them.
    by_worker = saved["contenders"]["worker2"]["events_in_by_worker"]
    assert len(by_worker) == 2 and all(n > 0 for n in by_worker) and sum(by_worker) >= EVENTS
    # Every score read back was acknowledged to the workers, as their own /metrics count it.
    for kind in ("worker", "worker2"):
        got = saved["contenders"][kind]
        assert got["scores_acked"] >= got["scored"] == EVENTS, (kind, got["scores_acked"])
        assert got["missing_in_topic"] is None and got["missing_sample"] == []
    # Latency: the pass-through (the broker's floor), the librdkafka relay and the worker, each on fresh
    # topics of their own, every event scored.
    for kind in ("pipe", "worker", "librdkafka"):
        figures = saved["latency_floor"] if kind == "pipe" else saved["contenders"][kind]
        assert figures["latency_scored"] == figures["latency_events"] == 6 * 2000, kind
        assert 0 < figures["p50_ms"] <= figures["p99_ms"], kind
        # One p99 per 2-s window of the 6-s phase (a straggler may open one more).
        assert 3 <= len(figures["p99_by_window_ms"]) <= 5, (kind, figures["p99_by_window_ms"])
        # The stack's Tansu is a process of this machine: its cores were sampled, once per window.
        cores = figures["broker_cores_by_window"]
        assert cores and len(cores) >= 3 and all(0 < x <= saved["cpus"] + 0.05 for x in cores), (kind, cores)
    assert saved["p99_ms"] == saved["contenders"]["worker"]["p99_ms"]
    assert saved["librdkafka_p99_ms"] == saved["contenders"]["librdkafka"]["p99_ms"]
    assert f"bench-{saved['run']}-worker-latency" in saved["contenders"]["worker"]["latency_topic"]
    assert saved["floor_p99_ms"] == saved["latency_floor"]["p99_ms"]
    assert f"bench-{saved['run']}-pipe-latency" in saved["latency_floor"]["latency_topic"]
    assert saved["worker_rss_mb"] > 50  # a Python worker with numpy and a model: tens of MiB at least
    # Stage figures: every stage named; None until the worker exposes churn_worker_stage_seconds.
    assert sorted(saved["stage_us"]) == sorted(WORKER_STAGES)  # the JSON has its keys sorted
    # The worker's stage counter is read: every stage cost something per event.
    assert all(v is not None and v > 0 for v in saved["stage_us"].values()), saved["stage_us"]
    assert saved["contenders"]["worker"]["stage_counter"] is True
    assert sorted(saved["floor_us"]) == sorted(WORKER_STAGES)
    # 3,000 events are too few for the Kafka floors: null, their keys kept, the records they had given.
    records = saved["floor_records"]
    assert records["min"] == FLOOR_MIN_RECORDS and records["produce_events"] == EVENTS
    assert 0 < records["fetch"] < FLOOR_MIN_RECORDS and records["fetch"] % FLOOR_BATCH == 0, records
    assert saved["floor_cpu_us"] == {"fetch_commit": None, "produce": None}
    for stage, floor in saved["floor_us"].items():
        if stage in ("fetch", "commit", "produce"):
            assert floor is None, stage
        elif not (stage == "reasons" and floor is None):  # a champion without feature_contributions has none
            assert floor > 0, stage
    # The collector re-read the worker's measured phase only: its scores, not the warm-up's before them.
    collector = saved["collector"]
    assert collector["contender"] == "worker" and collector["eps"] > 0
    assert collector["records"] == EVENTS + saved["contenders"]["worker"]["duplicates"], collector
    assert saved["load_avg"]["start"] >= 0 and saved["load_avg"]["end"] >= 0
    assert result["worker_eps"] == saved["worker_eps"]
    # The run's topics are deleted at its end: an in-memory broker would hold every event otherwise.
    from confluent_kafka.admin import AdminClient

    from plumbing.clients import rdkafka_config

    left = AdminClient(rdkafka_config(stack_settings)).list_topics(timeout=10).topics
    assert not [t for t in left if f"bench-{saved['run']}-" in t]
    # latency_topic names one of them, gone too (documented: a name for the logs, not a topic to read).
    assert saved["latency_floor"]["latency_topic"] not in left
    assert saved["contenders"]["worker"]["latency_topic"] not in left
    assert isinstance(saved["busy"], bool)  # flags a run on a loaded machine

    # Hot reloads: the champion swapped to a copy and back mid-phase, both served, nothing lost.
    first, back = saved["reloads"]
    version = saved["model_version"]
    assert first["from"] == version == back["to"] and first["to"] == back["from"] != version
    assert saved["contenders"]["worker"]["reload_error"] is None
    for swap in (first, back):
        assert swap["first_new_s"] is not None and 0 <= swap["first_new_s"] <= swap["reload_s"]
        assert 0 <= swap["last_old_s"] <= swap["reload_s"]
    assert saved["reload_s"] == max(first["reload_s"], back["reload_s"])
    from mlflow import MlflowClient

    from schemas.namespace import Namespace
    from schemas.registry import CHAMPION

    client = MlflowClient(tracking_uri=stack_settings.mlflow_tracking_uri)
    name = Namespace.for_dataset(saved["dataset"]).classifier_name
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == version  # restored
    left = {mv.version for mv in client.search_model_versions(f"name='{name}'")}
    assert first["to"] not in left  # the copy is deleted


@pytest.mark.timeout(120)  # without the stall bound the collector would wait its whole timeout_s
def test_collector_stops_waiting_for_scores_that_never_come(stack_settings, telco_csv, monkeypatch):
    """No contender on the input topic: every event is sent, no score arrives, the collector gives up.

    30 of the ids were in the scores topic before the collector started (it reads from the
    end): reading the topic again from its start finds those 30, and only those.
    """
    import asyncio
    import uuid

    from confluent_kafka import Producer

    from churn_stream.bench import stream_collect
    from churn_stream.bench.stream_phases import _create_topics
    from churn_stream.demo import replicate_events
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import rdkafka_config

    monkeypatch.setattr(stream_collect, "STALL_TIMEOUT_S", 2.0)
    conf = rdkafka_config(stack_settings)
    run = uuid.uuid4().hex[:8]
    src, dst = f"bench-stall-in-{run}", f"bench-stall-out-{run}"
    asyncio.run(_create_topics(stack_settings, [src, dst], 2))
    base = csv_to_customer_events(telco_csv, limit=50)
    records = replicate_events(base, 100)
    early = Producer(conf)
    for key, value in records[:30]:
        early.produce(dst, value, key)
    early.flush(30)
    # Then one record alone per partition, so each partition's high watermark is its end (Tansu
    # answers the last batch's base offset + 1) and the collector reads none of the 30.
    for partition in (0, 1):
        early.produce(dst, b'{"event_id": "filler"}', partition=partition)
        early.flush(30)
    got = stream_collect.produce_and_collect(conf, src, dst, records, timeout_s=300)
    assert (got["events"], got["scored"]) == (100, 0)
    assert got["produce_s"] is not None and got["seconds"] == 0  # no score read: nothing to time
    assert got["missing_in_topic"] == 30
    assert len(got["missing_sample"]) == 3


def test_read_rate_leaves_out_the_scores_a_warm_up_read(stack_settings, telco_csv):
    """A re-read starts past the warm-up's records (``next_offsets``) and counts the measured ones only."""
    import asyncio
    import uuid

    from churn_stream.bench.stream_collect import produce_and_collect, read_rate
    from churn_stream.bench.stream_phases import _create_topics
    from churn_stream.demo import replicate_events
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import rdkafka_config

    conf = rdkafka_config(stack_settings)
    topic = f"bench-reread-{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_topics(stack_settings, [topic], 3))
    records = replicate_events(csv_to_customer_events(telco_csv, limit=50), 257)
    # The events are their own "scores": sent to the topic the collector reads (no contender needed).
    warm = produce_and_collect(conf, topic, topic, records[:200], note_offsets=True, timeout_s=60)
    assert warm["scored"] == 200 and sum(warm["next_offsets"].values()) == 200, warm["next_offsets"]
    measured = produce_and_collect(conf, topic, topic, records[200:], timeout_s=60)
    assert measured["scored"] == 57 and measured["next_offsets"] is None

    again = read_rate(conf, topic, 57, warm["next_offsets"], timeout_s=30)
    whole = read_rate(conf, topic, 257, timeout_s=30)
    assert again["records"] == 57 and whole["records"] == 257


#: A bench run reduced to its swap: register a copy of the champion, move the alias to it unless told
#: not to, print the copy's version, then wait to be killed.
SWAP_THEN_WAIT = """
import sys, time
from churn_stream.bench.stream_reload import ChampionSwap
from plumbing.settings import Settings
from schemas.registry import CHAMPION
uri, name, version, move = sys.argv[1:5]
swap = ChampionSwap(Settings().with_overrides(mlflow_tracking_uri=uri), name, version, "unused", "other-run")
copy = swap._register_copy()
if move == "move":
    swap.client.set_registered_model_alias(name, CHAMPION, copy)  # killed before announcing it
print(copy, flush=True)
time.sleep(600)
"""


def _other_run(stack_settings, name: str, version: str, move: bool):
    """Another bench run's process holding a copy of ``version`` (the alias on it with ``move``): (process, copy)."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", SWAP_THEN_WAIT, stack_settings.mlflow_tracking_uri, name, version, str(move and "move")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLFLOW_LOGGING_LEVEL": "WARNING"},
    )
    copy = proc.stdout.readline().strip()
    assert copy.isdigit(), f"the other run registered no copy (exit {proc.poll()})"
    return proc, copy


def _killed_run(stack_settings, name: str, version: str, move: bool) -> str:
    """:func:`_other_run`, killed with SIGKILL (and reaped) once it holds its copy: the copy."""
    import signal

    proc, copy = _other_run(stack_settings, name, version, move)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return copy


def _versions(client, name: str) -> set[str]:
    return {mv.version for mv in client.search_model_versions(f"name='{name}'")}


def test_a_copy_of_a_run_still_going_is_left_alone_and_repaired_once_it_is_killed(stack_settings):
    """Two runs on one data set: the second's start-up does not take the first's live copy; after a kill -9 it does."""
    import signal

    from mlflow import MlflowClient

    from churn_stream.bench.stream_reload import COPY_TAG, OWNER_TAG, SwapInProgress, repair_interrupted_swap
    from schemas.namespace import Namespace
    from schemas.registry import CHAMPION

    ns = Namespace.for_dataset("telco")
    client = MlflowClient(tracking_uri=stack_settings.mlflow_tracking_uri)
    original = _champion_version(stack_settings, client, ns.classifier_name)
    assert repair_interrupted_swap(stack_settings, client, ns.classifier_name, ns.model_updated) is None
    proc, copy = _other_run(stack_settings, ns.classifier_name, original, move=True)
    try:
        tags = client.get_model_version(ns.classifier_name, copy).tags
        assert tags[COPY_TAG] == original and f"pid={proc.pid} " in tags[OWNER_TAG]
        with pytest.raises(
            SwapInProgress, match=f"run other-run \\(pid {proc.pid} on .* holds version {copy}, its copy"
        ):
            repair_interrupted_swap(stack_settings, client, ns.classifier_name, ns.model_updated)
        # Nothing touched: the other run's alias and copy are as it left them.
        assert str(client.get_model_version_by_alias(ns.classifier_name, CHAMPION).version) == copy
        assert copy in _versions(client, ns.classifier_name)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    assert repair_interrupted_swap(stack_settings, client, ns.classifier_name, ns.model_updated) == original
    assert str(client.get_model_version_by_alias(ns.classifier_name, CHAMPION).version) == original
    assert copy not in _versions(client, ns.classifier_name)


def test_a_copy_left_without_the_alias_is_deleted_too(stack_settings):
    """A run killed after moving the alias back, before deleting its copy: the next start-up deletes it."""

    from mlflow import MlflowClient

    from churn_stream.bench.stream_reload import repair_interrupted_swap
    from schemas.namespace import Namespace
    from schemas.registry import CHAMPION

    ns = Namespace.for_dataset("telco")
    client = MlflowClient(tracking_uri=stack_settings.mlflow_tracking_uri)
    original = _champion_version(stack_settings, client, ns.classifier_name)
    copy = _killed_run(stack_settings, ns.classifier_name, original, move=False)

    assert repair_interrupted_swap(stack_settings, client, ns.classifier_name, ns.model_updated) == original
    assert str(client.get_model_version_by_alias(ns.classifier_name, CHAMPION).version) == original
    assert copy not in _versions(client, ns.classifier_name)
    assert repair_interrupted_swap(stack_settings, client, ns.classifier_name, ns.model_updated) is None


def test_two_start_ups_repairing_at_once_neither_fails_nor_trains(stack_settings, monkeypatch, tmp_path):
    """Both list the killed run's copy; the first deletes it; the second finds it gone and goes on.

    The second's delete used to raise RESOURCE_DOES_NOT_EXIST, which the bench's start-up read
    as "no champion registered" and answered with a whole training cycle.
    """

    from mlflow import MlflowClient

    from churn_stream.bench import stream_reload
    from churn_stream.bench.stream_phases import _champion
    from schemas.namespace import Namespace
    from schemas.profiles import TELCO
    from schemas.registry import CHAMPION

    ns = Namespace.for_dataset("telco")
    client = MlflowClient(tracking_uri=stack_settings.mlflow_tracking_uri)
    original = _champion_version(stack_settings, client, ns.classifier_name)
    copy = _killed_run(stack_settings, ns.classifier_name, original, move=True)
    listed = stream_reload._copies(client, ns.classifier_name)  # what both start-ups saw
    assert [mv.version for mv in listed] == [copy]

    assert stream_reload.repair_interrupted_swap(stack_settings, client, ns.classifier_name, ns.model_updated) == (
        original
    )
    monkeypatch.setattr(stream_reload, "_copies", lambda _client, _name: listed)  # the second listed before
    assert stream_reload.repair_interrupted_swap(stack_settings, client, ns.classifier_name, ns.model_updated) == (
        original
    )
    # The start-up itself: the champion is downloaded, no cycle runs (its source does not exist).
    path, names = _champion(stack_settings, tmp_path / "champion", TELCO, tmp_path / "no-such.csv")
    assert names == {"name": ns.classifier_name, "version": original} and path.suffix == ".npz"
    assert str(client.get_model_version_by_alias(ns.classifier_name, CHAMPION).version) == original
    assert copy not in _versions(client, ns.classifier_name)


def test_a_swap_is_not_made_while_another_runs_copy_is_live(stack_settings, monkeypatch):
    """The second run's swap finds the first's live copy (heartbeat refreshed): no move, an error for the figures."""
    from mlflow import MlflowClient

    from churn_stream.bench import stream_reload
    from churn_stream.bench.stream_reload import HEARTBEAT_TAG, ChampionSwap
    from schemas.namespace import Namespace
    from schemas.registry import CHAMPION

    monkeypatch.setattr(stream_reload, "HEARTBEAT_S", 0.2)
    ns = Namespace.for_dataset("telco")
    client = MlflowClient(tracking_uri=stack_settings.mlflow_tracking_uri)
    original = _champion_version(stack_settings, client, ns.classifier_name)
    first = ChampionSwap(stack_settings, ns.classifier_name, original, ns.model_updated, "first")
    copy = first._register_copy()
    try:
        beat = float(client.get_model_version(ns.classifier_name, copy).tags[HEARTBEAT_TAG])
        deadline = time.monotonic() + 30
        while float(client.get_model_version(ns.classifier_name, copy).tags[HEARTBEAT_TAG]) == beat:
            assert time.monotonic() < deadline, "the heartbeat was never refreshed"
            time.sleep(0.1)
        second = ChampionSwap(stack_settings, ns.classifier_name, original, ns.model_updated, "second")
        second.run(0.003, lambda version: False)
        assert second.error is not None and second.error.startswith("SwapInProgress: another churn bench stream")
        assert "run first (pid" in second.error
        assert second.announced == [] and second.copy is None
    finally:
        first.restore()
    assert first._beat is not None and not first._beat.is_alive()  # no heartbeat once the copy is gone
    assert str(client.get_model_version_by_alias(ns.classifier_name, CHAMPION).version) == original
    assert copy not in _versions(client, ns.classifier_name)


def test_a_second_ctrl_c_waits_until_the_champion_is_back(stack_settings):
    """Ctrl-C during restore (here: as the copy is being deleted) is held until restore is done, then raised."""
    import signal

    from mlflow import MlflowClient

    from churn_stream.bench.stream_reload import ChampionSwap
    from schemas.namespace import Namespace
    from schemas.registry import CHAMPION

    class CtrlCWhileDeleting(MlflowClient):
        def delete_model_version(self, name, version):
            os.kill(os.getpid(), signal.SIGINT)
            return super().delete_model_version(name, version)

    ns = Namespace.for_dataset("telco")
    uri = stack_settings.mlflow_tracking_uri
    client = CtrlCWhileDeleting(tracking_uri=uri, registry_uri=uri)
    original = _champion_version(stack_settings, client, ns.classifier_name)
    swap = ChampionSwap(stack_settings, ns.classifier_name, original, ns.model_updated, "ctrl-c", client=client)
    copy = swap._register_copy()
    swap._move(copy, original)

    with pytest.raises(KeyboardInterrupt):
        swap.restore()
    assert str(client.get_model_version_by_alias(ns.classifier_name, CHAMPION).version) == original
    assert copy not in _versions(client, ns.classifier_name) and swap.copy is None
    assert [(left, to) for _, left, to in swap.announced] == [(original, copy), (copy, original)]


def test_the_bench_admin_client_logs_through_logging_not_on_stderr(stack_settings, capfd, caplog):
    """librdkafka's own lines (here its debug ones) go to the bench's logger, never straight to fd 2."""
    import gc
    import logging

    from churn_stream.bench.stream_collect import RDKAFKA_LOGGER, bench_admin
    from plumbing.clients import rdkafka_config

    caplog.set_level(logging.DEBUG, logger=RDKAFKA_LOGGER.name)
    admin = bench_admin({**rdkafka_config(stack_settings), "debug": "generic"})
    assert admin.list_topics(timeout=10).topics is not None
    admin.poll(0)
    del admin
    gc.collect()  # destroyed: what it logs now (BGQUEUE's "Purging ... unserved events") is dropped

    err = capfd.readouterr().err
    assert not [line for line in err.splitlines() if line.startswith("%")], err
    logged = [r for r in caplog.records if r.name == RDKAFKA_LOGGER.name]
    assert logged and any("INIT" in r.getMessage() for r in logged), [r.getMessage() for r in logged][:5]


def test_the_fetch_floor_times_whole_batches_only(stack_settings, telco_csv):
    """The short batch at the topic's end waits out consume's timeout: it is read, not timed."""
    import asyncio
    import uuid

    from churn_stream.bench.stream_collect import bench_producer
    from churn_stream.bench.stream_phases import _create_topics
    from churn_stream.bench.stream_stages import FLOOR_BATCH, FLOOR_MIN_RECORDS, fetch_commit_floor
    from plumbing.clients import rdkafka_config

    conf = rdkafka_config(stack_settings)
    many, few = f"bench-floor-many-{uuid.uuid4().hex[:8]}", f"bench-floor-few-{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_topics(stack_settings, [many, few], 3))
    producer, failed = bench_producer(conf)
    value = telco_csv.read_bytes()[:300]
    for topic, n in ((many, FLOOR_MIN_RECORDS + 3 * FLOOR_BATCH + 137), (few, 2 * FLOOR_BATCH + 137)):
        for i in range(n):
            producer.produce(topic, value, str(i).encode())
    producer.flush()
    assert not failed

    floor = fetch_commit_floor(conf, many, FLOOR_MIN_RECORDS + 2 * FLOOR_BATCH + 137, timeout_s=60)
    # First batch untimed; the whole ones after it timed; the last 137 read but not timed.
    assert floor["records"] == FLOOR_MIN_RECORDS + 2 * FLOOR_BATCH and floor["commits"] == floor["records"] // 500
    assert floor["fetch_us"] > 0 and floor["commit_us"] > 0 and floor["cpu_us"] > 0

    short = fetch_commit_floor(conf, few, FLOOR_BATCH + 137, timeout_s=60)
    assert short["records"] == FLOOR_BATCH < FLOOR_MIN_RECORDS
    assert short["fetch_us"] is None and short["commit_us"] is None and short["cpu_us"] is None


def test_an_interrupted_swap_stops_and_the_champion_is_put_back(stack_settings):
    """Ctrl-C in the latency phase: the swap thread ends at once (not at its next wait's end); restore undoes it."""
    from mlflow import MlflowClient

    from churn_stream.bench.stream_reload import ChampionSwap, start_swaps
    from schemas.namespace import Namespace
    from schemas.registry import CHAMPION

    ns = Namespace.for_dataset("telco")
    client = MlflowClient(tracking_uri=stack_settings.mlflow_tracking_uri)
    original = _champion_version(stack_settings, client, ns.classifier_name)
    swap = ChampionSwap(stack_settings, ns.classifier_name, original, ns.model_updated, "interrupted")
    # A short phase: the first move at once, then up to SERVED_TIMEOUT_S waiting for a worker that
    # never serves the copy (as a run interrupted while the worker loads it).
    thread = start_swaps(swap, 0.003, lambda version: False)
    deadline = time.monotonic() + 60
    while not swap.announced and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(left, to) for _, left, to in swap.announced] == [(original, swap.copy)]
    swap.stopped.set()
    thread.join(timeout=10)
    assert not thread.is_alive()  # else it waits SERVED_TIMEOUT_S (20 s), then moves the alias back itself
    assert len(swap.announced) == 1 and swap.error is None
    swap.restore()
    assert str(client.get_model_version_by_alias(ns.classifier_name, CHAMPION).version) == original
    assert swap.copy is None


def _champion_version(stack_settings, client, name: str) -> str:
    """The Telco champion's version, after a quick batch cycle if none is registered (a test run alone)."""
    if not _has_champion(client, name):
        from batch.cycle import run_cycle
        from churn_stream.bench.faults.harness import FAST_ZOO
        from plumbing.clients import make_storage, make_tracker

        run_cycle(stack_settings, make_storage(stack_settings), make_tracker(stack_settings), only=FAST_ZOO)
    from schemas.registry import CHAMPION

    return str(client.get_model_version_by_alias(name, CHAMPION).version)


def _has_champion(client, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    from schemas.registry import CHAMPION

    try:
        client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return False
    return True


def test_a_contender_that_exits_mid_phase_gets_no_figure(stack_settings, telco_csv, monkeypatch):
    """Its process exits with events still unscored: the phase stops at once and says so, no events/s.

    The stall timeout is an hour here: only the exit, seen by the collector, can end the phase
    before the test's own timeout.
    """
    import subprocess
    import sys

    from mlflow import MlflowClient

    from churn_stream.bench import stream_collect
    from churn_stream.bench.stream_phases import Bench, ContenderFailed
    from schemas.namespace import Namespace
    from schemas.profiles import TELCO

    client = MlflowClient(tracking_uri=stack_settings.mlflow_tracking_uri)
    _champion_version(stack_settings, client, Namespace.for_dataset("telco").classifier_name)
    monkeypatch.setattr(stream_collect, "STALL_TIMEOUT_S", 3600.0)
    bench = Bench(stack_settings, TELCO, telco_csv, events=2000)
    try:
        topics = bench.topics("worker")  # nothing scores them: the "contender" only exits
        proc = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(2); sys.exit(3)"])
        with pytest.raises(ContenderFailed) as info:
            bench.timed(topics, [proc])
    finally:
        bench.drop_topics()
    assert str(info.value).startswith(
        "a contender process exited (code 3) during the measured phase, 0 of 2000 scores read: no figure for it; "
        "logs in "
    ), info.value
