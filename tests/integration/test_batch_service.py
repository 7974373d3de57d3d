"""The batch service on real servers: the data-quality gate stops bad data with its report in S3 and MLflow,
the S3 lock lets exactly one of two schedulers run a cycle, the incoming watcher ingests new CSVs, and an
S3 outage mid-cycle fails clearly without moving the champion (then the next cycle succeeds)."""

from __future__ import annotations

import io
import json
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

FAST = {"logistic_regression", "multiple_regression"}
CYCLE = {"only": FAST, "announce": False}


def champion_version(tracker) -> str | None:
    from batch.promotion import CLASSIFIER_NAME, current_champion

    champ = current_champion(tracker, CLASSIFIER_NAME)
    return None if champ is None else str(champ.version)


def s3_json(storage, bucket: str, key: str) -> dict:
    resp = storage.get_object(bucket, key)
    try:
        return json.loads(resp.read())
    finally:
        resp.close()
        resp.release_conn()


def put_bytes(storage, bucket: str, key: str, body: bytes) -> None:
    storage.put_object(bucket, key, io.BytesIO(body), len(body), content_type="text/csv")


@pytest.fixture(scope="module")
def clients(stack_settings):
    from plumbing.clients import ensure_buckets, make_storage, make_tracker

    storage, tracker = make_storage(stack_settings), make_tracker(stack_settings)
    ensure_buckets(storage)
    return stack_settings, storage, tracker


@pytest.fixture(scope="module")
def with_champion(clients):
    """A champion trained on the shipped Telco file (also the drift reference)."""
    from batch.cycle import run_cycle

    settings, storage, tracker = clients
    result = run_cycle(settings, storage, tracker, margin=-1.0, **CYCLE)
    assert result.quality.status in ("pass", "warn")
    print(
        json.dumps(
            {"cycle_timings_s": result.summary()["timings_s"], "gate_check_s": round(result.quality.duration_s, 3)}
        )
    )
    return result


@pytest.fixture(scope="module")
def telco_raw(telco_csv) -> pd.DataFrame:
    return pd.read_csv(telco_csv, dtype=str, keep_default_na=False)


# ---------------------------------------------------------------------- lock
def test_seaweedfs_conditional_put_gives_the_lock_to_exactly_one(clients):
    from batch.lock import S3Lock

    _, storage, _ = clients
    key = "locks/test-lock"
    a, b = S3Lock(storage, key=key, owner="a"), S3Lock(storage, key=key, owner="b")
    barrier, got = threading.Barrier(8), []

    def contend(lock):
        barrier.wait()
        got.append((lock.owner, lock.acquire()))

    contenders = [S3Lock(storage, key=key, owner=f"c{i}") for i in range(8)]
    threads = [threading.Thread(target=contend, args=(c,)) for c in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [owner for owner, ok in got if ok]
    assert len(winners) == 1, got
    assert s3_json(storage, "models", key)["owner"] == winners[0]
    next(c for c in contenders if c.owner == winners[0]).release()

    assert a.acquire() and not b.acquire()
    assert a.renew()
    a.release()
    assert b.acquire()
    b.release()
    # A holder that stopped renewing is taken over after its expiry, and then knows it lost.
    short = S3Lock(storage, key=key, owner="short", ttl_s=0.3)
    assert short.acquire()
    assert not b.acquire()
    time.sleep(0.5)
    assert b.acquire()
    assert not short.renew()
    short.release()  # not its lock any more: nothing happens
    assert s3_json(storage, "models", key)["owner"] == "b"
    b.release()
    assert b.read() is None


# ---------------------------------------------------------------------- gate
def test_non_numeric_monthly_charges_stop_at_the_gate(clients, with_champion, telco_raw, tmp_path):
    from batch.cycle import run_cycle
    from batch.quality import DataQualityError

    settings, storage, tracker = clients
    before = champion_version(tracker)
    bad = telco_raw.copy()
    bad.loc[[5, 17, 40], "MonthlyCharges"] = ["n/a", "lots", "12,50"]
    path = tmp_path / "corrupt.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(DataQualityError) as info:
        run_cycle(settings, storage, tracker, source=path, **CYCLE)
    msg = str(info.value)
    assert "schema: " in msg and "MonthlyCharges: expected a finite number >= 0, got 'n/a' at data row 6" in msg
    assert "(3 bad value(s) in all)" in msg
    cycle_id = info.value.report.cycle_id
    report = s3_json(storage, "processed-data", f"telco/{cycle_id}/dq_report.json")
    assert report["status"] == "fail"
    assert {c["name"]: c["status"] for c in report["checks"]}["schema"] == "fail"
    md = storage.get_object("processed-data", f"telco/{cycle_id}/dq_report.md").read().decode()
    assert "| schema | FAIL |" in md
    assert champion_version(tracker) == before


def test_drifted_copy_stops_at_the_gate_with_psi_in_s3_and_mlflow(clients, with_champion, telco_raw, tmp_path):
    from batch.cycle import run_cycle
    from batch.quality import DataQualityError

    settings, storage, tracker = clients
    before = champion_version(tracker)
    drifted = telco_raw.copy()
    drifted["MonthlyCharges"] = (drifted["MonthlyCharges"].astype(float) * 1.6).round(2).astype(str)
    path = tmp_path / "drifted.csv"
    drifted.to_csv(path, index=False)
    with pytest.raises(DataQualityError) as info:
        run_cycle(settings, storage, tracker, source=path, **CYCLE)
    report = info.value.report
    assert "drift: PSI >= 0.25" in str(info.value) and "monthly_charges_usd=" in str(info.value)
    psi = report.check("drift").details["psi"]
    assert psi["monthly_charges_usd"]["psi"] > 0.25 and psi["tenure_months"]["psi"] < 0.1
    stored = s3_json(storage, "processed-data", f"telco/{report.cycle_id}/dq_report.json")
    assert stored["status"] == "fail" and stored["reference_cycle"] is not None
    runs = tracker.search_runs(
        [tracker.get_experiment_by_name("churn-telco").experiment_id],
        filter_string=f"tags.cycle_id = '{report.cycle_id}'",
    )
    assert len(runs) == 1  # the parent run only: no model was trained
    run = runs[0]
    assert run.info.status == "FAILED" and run.data.tags["dq_status"] == "fail"
    assert {a.path for a in tracker.list_artifacts(run.info.run_id)} >= {"dq_report.json", "dq_report.md"}
    assert champion_version(tracker) == before
    # The rejected data did not become the drift reference.
    assert s3_json(storage, "processed-data", "telco/dq_reference.json")["cycle_id"] != report.cycle_id


# ------------------------------------------------------------------- service
def listed(storage, prefix: str) -> set[str]:
    return {o.object_name for o in storage.list_objects("raw-data", prefix=prefix, recursive=True)}


def test_each_incoming_file_is_judged_on_its_own(clients, with_champion, telco_csv, telco_raw):
    """Bad files are quarantined with a report naming file, reason and row; the good ones train."""
    from batch.service import BatchService

    settings, storage, tracker = clients
    service = BatchService(settings, storage, tracker, cycle_kwargs=CYCLE, owner="watcher")
    lines = telco_csv.read_bytes().splitlines(keepends=True)
    header = lines[0]
    bad_value = telco_raw.head(10).copy()
    bad_value.loc[3, "MonthlyCharges"] = "n/a"
    latin1 = header + b"".join(lines[1:3]) + lines[3][:2] + b"\xe4" + lines[3][2:] + b"".join(lines[4:6])
    files = {
        "incoming/day1/part-1.csv": b"".join(lines[:3001]),
        "incoming/day1/part-2.csv": header + b"".join(lines[3001:7000]),  # 43 rows short of the file
        "incoming/day1/empty.csv": b"",
        "incoming/day1/header-only.csv": b"\xef\xbb\xbf" + header,
        "incoming/day1/latin1.csv": latin1,
        "incoming/day1/bad-value.csv": bad_value.to_csv(index=False).encode(),
        "incoming/readme.txt": b"not a csv",
    }
    for key, body in files.items():
        put_bytes(storage, "raw-data", key, body)
    outcome = service.poll_incoming()
    assert outcome.status == "finished", outcome
    assert outcome.sources == ["incoming/day1/part-1.csv", "incoming/day1/part-2.csv"]
    reasons = {q["source"]: (q["reason"], q["row"]) for q in outcome.quarantined}
    assert reasons == {
        "incoming/day1/bad-value.csv": (
            "MonthlyCharges: expected a finite number >= 0, got 'n/a' at data row 4 (1 bad value(s) in all)",
            4,
        ),
        "incoming/day1/empty.csv": ("empty input", None),
        "incoming/day1/header-only.csv": ("empty input", None),
        "incoming/day1/latin1.csv": (reasons["incoming/day1/latin1.csv"][0], 3),
    }
    assert reasons["incoming/day1/latin1.csv"][0].startswith("not UTF-8 text (invalid")
    for item in outcome.quarantined:  # moved, with a report object beside it
        assert item["key"].startswith("incoming-quarantine/") and item["key"].endswith(item["source"][9:])
        report = s3_json(storage, "raw-data", item["key"] + ".report.json")
        assert (report["source"], report["reason"], report["row"]) == (item["source"], item["reason"], item["row"])
    import pyarrow.parquet as pq

    raw = storage.get_object("raw-data", f"telco/{outcome.input_sha256[:16]}/customers.parquet").read()
    assert pq.read_table(io.BytesIO(raw)).num_rows == 6999
    assert listed(storage, "incoming/") == {"incoming/readme.txt"}
    assert listed(storage, f"incoming-done/{outcome.cycle_id}/") == {
        f"incoming-done/{outcome.cycle_id}/day1/part-{i}.csv" for i in (1, 2)
    }
    assert service.poll_incoming() is None  # nothing new

    # The same rows again, in other files: unchanged input, nothing registered, files consumed.
    versions = len(tracker.search_model_versions("name = 'churn-classifier'"))
    put_bytes(storage, "raw-data", "incoming/day2/all.csv", b"\xef\xbb\xbf" + b"".join(lines[:7000]))
    again = service.poll_incoming()
    assert again.status == "unchanged" and again.detail.startswith(f"unchanged input: same as cycle {outcome.cycle_id}")
    assert len(tracker.search_model_versions("name = 'churn-classifier'")) == versions
    assert listed(storage, "incoming/") == {"incoming/readme.txt"}

    # Too few rows per class: nothing trains, the file waits for more rows and is not re-read every look.
    put_bytes(storage, "raw-data", "incoming/day3/few.csv", b"".join(lines[:51]))
    waiting = service.poll_incoming()
    assert waiting.status == "skipped" and "waiting for more rows: too few rows per class to train" in waiting.detail
    assert "CHURN_BATCH_MIN_ROWS_PER_CLASS=100" in waiting.detail
    assert service.poll_incoming() is None
    assert "incoming/day3/few.csv" in listed(storage, "incoming/")
    storage.remove_object("raw-data", "incoming/day3/few.csv")

    # A drifted file is rejected by the gate and moved aside, not retried every poll.
    drifted = telco_raw.copy()
    drifted["tenure"] = (drifted["tenure"].astype(int) // 3).astype(str)
    put_bytes(storage, "raw-data", "incoming/drifted.csv", drifted.to_csv(index=False).encode())
    outcome = service.poll_incoming()
    assert outcome.status == "rejected" and "tenure_months=" in outcome.detail
    assert s3_json(storage, "processed-data", f"telco/{outcome.cycle_id}/dq_report.json")["status"] == "fail"
    assert [o.object_name for o in storage.list_objects("raw-data", prefix="incoming-rejected/", recursive=True)] == [
        f"incoming-rejected/{outcome.cycle_id}/drifted.csv"
    ]
    storage.remove_object("raw-data", "incoming/readme.txt")


def test_a_rerun_on_the_same_input_overwrites_its_s3_objects(clients, with_champion):
    from batch.cycle import run_cycle

    settings, storage, tracker = clients
    before = {o.object_name for o in storage.list_objects("raw-data", prefix="telco/", recursive=True)}
    result = run_cycle(settings, storage, tracker, margin=-1.0, **CYCLE)
    assert result.input_sha256 == with_champion.input_sha256
    assert (
        result.raw_uri == with_champion.raw_uri == f"s3://raw-data/telco/{result.input_sha256[:16]}/customers.parquet"
    )
    assert {o.object_name for o in storage.list_objects("raw-data", prefix="telco/", recursive=True)} == before
    # With skip_unchanged (churn batch serve's default) the same input and models register nothing.
    versions = len(tracker.search_model_versions("name = 'churn-classifier'"))
    same = run_cycle(settings, storage, tracker, margin=-1.0, skip_unchanged=True, **CYCLE)
    assert same.status == "unchanged input" and same.unchanged_since == result.cycle_id and not same.promoted
    assert len(tracker.search_model_versions("name = 'churn-classifier'")) == versions


def hang_forever(*args, **kwargs):
    """A cycle that never returns (runs in the cycle's child process)."""
    time.sleep(3600)


def test_a_hung_cycle_times_out_releases_the_lock_and_the_next_tick_runs(clients, with_champion):
    from batch.cycle import run_cycle
    from batch.lock import S3Lock
    from batch.service import BatchService

    settings, storage, tracker = clients
    settings = settings.with_overrides(batch_watch_interval_s=3600, batch_cycle_timeout_s=3)
    service = BatchService(settings, storage, tracker, cycle_kwargs=CYCLE, owner="hung", run=hang_forever)
    service.start()
    try:
        service.trigger()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not service.outcomes:
            time.sleep(0.2)
        assert [o.status for o in service.outcomes] == ["failed"], service.outcomes
        assert "timed out after 3 s (CHURN_BATCH_CYCLE_TIMEOUT_S)" in service.outcomes[0].detail
        assert S3Lock(storage).read() is None  # released
        service._run = run_cycle
        service.trigger()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(service.outcomes) < 2:
            time.sleep(0.2)
    finally:
        service.shutdown(wait=True)
    assert service.outcomes[1].status in ("finished", "unchanged"), service.outcomes


def test_two_schedulers_on_one_stack_run_exactly_one_cycle(clients, with_champion):
    from batch.service import BatchService

    settings, storage, tracker = clients
    settings = settings.with_overrides(batch_watch_interval_s=3600)
    services = [BatchService(settings, storage, tracker, cycle_kwargs=CYCLE, owner=f"serve-{i}") for i in (1, 2)]
    for s in services:
        s.start()
    try:
        for s in services:
            s.trigger()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(s.outcomes for s in services):
            time.sleep(0.2)
    finally:
        for s in services:
            s.shutdown(wait=True)
    outcomes = [o for s in services for o in s.outcomes]
    # "unchanged" when an earlier test's last accepted cycle had the same input and models.
    assert sorted(o.status for o in outcomes) in (["finished", "skipped"], ["skipped", "unchanged"]), outcomes
    skipped = next(o for o in outcomes if o.status == "skipped")
    assert "lock held by serve-" in skipped.detail
    from batch.lock import S3Lock

    assert S3Lock(storage).read() is None  # released after the cycle


# -------------------------------------------------------------------- outage
@pytest.fixture
def own_stack(monkeypatch):
    """A separate stack for destructive tests, so the session stack is never disturbed."""
    from churn_stream.stack import LocalStack

    # MLflow's client retries a 500 for minutes by default; the outage must surface quickly here.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    data_dir = Path(tempfile.mkdtemp(prefix="churn-test-outage-"))
    stack = LocalStack.for_tests(data_dir)
    try:
        # No Kafka: these cycles do not announce, and the broker is the slowest to start.
        stack.start_service("s3")
        stack.start_service("mlflow")
        yield stack
    finally:
        stack.down()
        shutil.rmtree(data_dir, ignore_errors=True)


class _StopS3OnFirstTrainedModel(logging.Handler):
    def __init__(self, stack):
        super().__init__(logging.INFO)
        self.stack, self.stopped = stack, False

    def emit(self, record):
        if not self.stopped and record.getMessage().startswith("trained model="):
            self.stopped = True
            self.stack.stop_service("s3")


def test_s3_outage_mid_cycle_fails_clearly_and_the_next_cycle_succeeds(own_stack):
    from batch.cycle import CycleError, run_cycle
    from plumbing.clients import make_storage, make_tracker

    settings = own_stack.settings()
    storage, tracker = make_storage(settings), make_tracker(settings)
    first = run_cycle(settings, storage, tracker, **CYCLE)
    champion = champion_version(tracker)
    assert champion == first.registered["model_version"]

    handler = _StopS3OnFirstTrainedModel(own_stack)
    training_log = logging.getLogger("batch.training")
    training_log.addHandler(handler)
    training_log.setLevel(logging.INFO)
    t0 = time.monotonic()
    try:
        with pytest.raises(CycleError) as info:
            run_cycle(settings, storage, tracker, margin=-1.0, **CYCLE)
    finally:
        training_log.removeHandler(handler)
    failed_after_s = time.monotonic() - t0
    assert handler.stopped
    err = info.value
    assert err.service == "S3" and err.stage == "train_classification"
    assert str(err).startswith(f"S3 unreachable at {own_stack.s3_endpoint_url} during train_classification: ")
    assert failed_after_s < 90
    assert champion_version(tracker) == champion  # margin -1 would have promoted anything
    failed = tracker.search_runs(
        [tracker.get_experiment_by_name("churn-telco").experiment_id], filter_string="attributes.status = 'FAILED'"
    )
    assert len(failed) == 1 and failed[0].data.tags.get("mlflow.parentRunId") is None

    t1 = time.monotonic()
    own_stack.start_service("s3")
    restart_s = time.monotonic() - t1
    second = run_cycle(settings, storage, tracker, margin=-1.0, **CYCLE)
    assert champion_version(tracker) == second.registered["model_version"] != champion
    assert second.quality.status in ("pass", "warn")
    print(
        json.dumps(
            {
                "first_cycle_timings_s": first.summary()["timings_s"],
                "failed_after_s": round(failed_after_s, 2),
                "s3_restart_s": round(restart_s, 2),
                "next_cycle_timings_s": second.summary()["timings_s"],
                "error": str(err)[:160],
            }
        )
    )
