"""Worker operations on real servers: /health, /metrics, value at risk, DLQ replay, churn-drift.

The worker here has its own topics (suffix ``-ops``), consumer group and web port, so
it does not interfere with the other modules' workers on the session stack. The stall
verdict itself is unit-tested on a fake clock (tests/unit/stream_app/test_metrics.py):
a SIGSTOPped worker cannot answer HTTP.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from schemas.events import ChurnAlert, DriftRecord
from schemas.topics import Topics
from tests.integration.kafka_tools import wait_for_count

pytestmark = pytest.mark.integration

FAST_ZOO = {"logistic_regression", "multiple_regression"}
SUFFIX = "-ops"


@pytest.fixture(scope="module")
def ops_settings(stack_settings):
    from churn_stream.stack import LocalStack

    return stack_settings.with_overrides(
        topic_suffix=SUFFIX,
        consumer_group="churn-scorer-ops",
        worker_web_port=LocalStack.free_ports(1)[0],
        drift_interval_s=2.0,
    )


@pytest.fixture(scope="module")
def champions(stack_settings):
    from batch.cycle import run_cycle
    from plumbing.clients import make_storage, make_tracker

    result = run_cycle(
        stack_settings, make_storage(stack_settings), make_tracker(stack_settings), only=FAST_ZOO, margin=-1.0
    )
    assert result.promoted["churn-classifier"]["alias"] == "champion"
    assert result.promoted["sales-regressor"]["alias"] == "champion"
    return result


@pytest.fixture(scope="module")
def worker(ops_settings, champions):
    from churn_stream.demo import start_worker, stop_worker, wait_worker_ready

    log = ops_settings.data_dir / "logs" / "worker-ops-test.log"
    with pytest.MonkeyPatch.context() as mp:
        # start_worker passes the connection settings; the drift cadence comes from the environment.
        mp.setenv("CHURN_DRIFT_INTERVAL_S", str(ops_settings.drift_interval_s))
        proc = start_worker(ops_settings, log)
    try:
        wait_worker_ready(ops_settings, proc, timeout_s=180)
        yield proc
    finally:
        stop_worker(proc)


def _url(settings, path: str) -> str:
    return f"http://127.0.0.1:{settings.worker_web_port}{path}"


def _metrics(settings) -> dict[tuple[str, tuple], float]:
    text = httpx.get(_url(settings, "/metrics"), timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _wait_metric(settings, name: str, labels: tuple, at_least: float, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        got = _metrics(settings)
        if got.get((name, labels), float("-inf")) >= at_least or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


@pytest.fixture(scope="module")
def produced(ops_settings, worker, telco_csv):
    """200 Telco events on customers-ops, and their scores and alerts once all are scored."""
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import produce_records

    records = csv_to_customer_events(telco_csv, limit=200)
    ids = {orjson.loads(v)["event_id"] for _, v in records}
    assert produce_records(ops_settings, Topics.CUSTOMERS + SUFFIX, records) == 200
    scores = wait_for_count(ops_settings, Topics.SCORES + SUFFIX, lambda r: r["value"]["event_id"] in ids, 200)
    assert len(scores) == 200
    n_alerts = sum(s["value"]["churn_label"] for s in scores)
    alerts = wait_for_count(
        ops_settings, Topics.ALERTS + SUFFIX, lambda r: r["value"]["event_id"] in ids, n_alerts, timeout_s=60
    )
    return {"records": records, "ids": ids, "scores": scores, "alerts": alerts}


def test_health_is_ready_with_model_partitions_and_lag(ops_settings, worker, champions):
    r = httpx.get(_url(ops_settings, "/health"), timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["ready"] and body["status"] == "ok" and body["reason"] is None
    assert body["model_version"] == champions.promoted["churn-classifier"]["model_version"]
    assert body["value_model_version"] == champions.promoted["sales-regressor"]["model_version"]
    assert body["assigned_partitions"] == ops_settings.topic_partitions
    deadline = time.monotonic() + 30  # lag is refreshed once a second
    while not body["lag"] and time.monotonic() < deadline:
        time.sleep(0.5)
        body = httpx.get(_url(ops_settings, "/health"), timeout=10).json()
    assert set(body["lag"]) == {f"{Topics.CUSTOMERS}{SUFFIX}[{p}]" for p in range(ops_settings.topic_partitions)}
    assert all(v >= 0 for v in body["lag"].values())


def test_metrics_count_the_produced_events(ops_settings, produced, champions):
    got = _wait_metric(ops_settings, "churn_events_in_total", (), 200)
    assert got[("churn_events_in_total", ())] >= 200
    assert got[("churn_scores_total", ())] >= 200
    assert got[("churn_alerts_total", ())] >= len(produced["alerts"])
    assert got[("churn_events_out_total", (("output", "scores"),))] >= 200
    assert got[("churn_batch_size_events_count", ())] >= 1
    assert got[("churn_scoring_seconds_count", ())] == got[("churn_batches_total", ())]
    assert got[("churn_end_to_end_latency_seconds_count", ())] >= 200
    version = float(champions.promoted["churn-classifier"]["model_version"])
    assert got[("churn_model_version", (("model_name", "churn-classifier"), ("role", "champion")))] == version
    assert ("churn_model_version", (("model_name", "sales-regressor"), ("role", "value"))) in got
    assert ("churn_model_reloads_total", (("result", "ok"),)) in got
    lag = {k: v for k, v in got.items() if k[0] == "churn_consumer_lag"}
    deadline = time.monotonic() + 30
    while len(lag) < ops_settings.topic_partitions and time.monotonic() < deadline:
        time.sleep(1)
        lag = {k: v for k, v in _metrics(ops_settings).items() if k[0] == "churn_consumer_lag"}
    assert len(lag) == ops_settings.topic_partitions


def test_alerts_carry_value_at_risk(produced):
    assert produced["alerts"]
    for a in produced["alerts"]:
        alert = ChurnAlert.model_validate(a["value"])
        assert alert.predicted_value_usd is not None and alert.predicted_value_usd >= 0
        assert alert.value_at_risk_usd == pytest.approx(
            alert.churn_probability * alert.predicted_value_usd, rel=1e-9, abs=1e-9
        )
        assert 1 <= len(alert.reasons) <= 3  # logistic regression champion: reason codes


def _dead_letter(value: bytes, key: bytes, offset: int, stage: str) -> bytes:
    now = datetime.now(UTC).isoformat()
    return orjson.dumps(
        {
            "event_id": f"dlq-test-{offset}",
            "event_time": now,
            "schema_version": 1,
            "original_value_b64": base64.b64encode(value).decode(),
            "original_key_b64": base64.b64encode(key).decode(),
            "topic": Topics.CUSTOMERS + SUFFIX,
            "partition": 0,
            "offset": offset,
            "stage": stage,
            "error_class": "ValueError",
            "error_message": "transient featurisation failure",
            "failed_at": now,
        }
    )


def test_dlq_replay_resends_fixed_records_and_lists_invalid_ones(ops_settings, produced, telco_csv):
    from click.testing import CliRunner

    from churn_stream.cli import main
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import produce_records

    key, good = csv_to_customer_events(telco_csv, limit=1)[0]
    good_id = orjson.loads(good)["event_id"]
    bad = orjson.dumps(orjson.loads(good) | {"event_id": "ops-bad-tenure", "tenure_months": "twelve"})
    # A real dead letter written by the worker...
    produce_records(ops_settings, Topics.CUSTOMERS + SUFFIX, [(b"bad", bad)])
    dlq_topic = Topics.CUSTOMERS_DLQ + SUFFIX
    wait_for_count(
        ops_settings,
        dlq_topic,
        lambda r: r["value"]["offset"] >= 0 and "tenure_months" in r["value"]["error_message"],
        1,
        timeout_s=60,
    )
    # ... and a valid event that failed featurisation transiently, dead-lettered twice (at-least-once).
    letter = _dead_letter(good, key, offset=10_000_000, stage="featurise")
    produce_records(ops_settings, dlq_topic, [(key, letter), (key, letter)])

    env = {"KAFKA_BOOTSTRAP_SERVERS": ops_settings.kafka_bootstrap_servers, "CHURN_TOPIC_SUFFIX": SUFFIX}
    runner = CliRunner()
    dry = runner.invoke(main, ["dlq", "replay", "--dry-run", "--since", "1h"], env=env, catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.output.strip().splitlines()[-1])
    assert report["dry_run"] and report["replayed"] == 0
    assert report["valid"] == 1 and report["duplicates"] == 1 and report["invalid"] >= 1, json.dumps(report)
    listed = [r for r in report["invalid_records"] if "tenure_months" in r["error"]]
    assert listed and listed[0]["dlq_offset"] >= 0 and listed[0]["topic"] == Topics.CUSTOMERS + SUFFIX

    real = runner.invoke(main, ["dlq", "replay"], env=env, catch_exceptions=False)
    assert real.exit_code == 0, real.output
    report = json.loads(real.output.strip().splitlines()[-1])
    assert report["replayed"] == 1 and report["valid_by_topic"] == {Topics.CUSTOMERS + SUFFIX: 1}

    # The event was never on customers-ops before: its score can only come from the replay.
    scores = wait_for_count(
        ops_settings, Topics.SCORES + SUFFIX, lambda r: r["value"]["event_id"] == good_id, 1, timeout_s=60
    )
    assert len(scores) == 1 and scores[0]["key"] == key


def test_shifted_batch_produces_a_drift_record(ops_settings, produced, telco_csv):
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import produce_records

    shifted = []
    for key, value in csv_to_customer_events(telco_csv, limit=1000):
        doc = orjson.loads(value)
        doc["tenure_months"] = 0
        doc["monthly_charges_usd"] = doc["monthly_charges_usd"] * 3
        shifted.append((key, orjson.dumps(doc)))
    produced_at = datetime.now(UTC)
    produce_records(ops_settings, Topics.CUSTOMERS + SUFFIX, shifted)

    def drifted(rec) -> bool:
        v = rec["value"]
        return (
            v["alert"]
            and "tenure_months" in v["drifted_features"]
            and datetime.fromisoformat(v["event_time"]) >= produced_at
        )

    found = wait_for_count(ops_settings, Topics.DRIFT + SUFFIX, drifted, 1, timeout_s=90)
    assert found, "no drift record with an alert after the shifted batch"
    record = DriftRecord.model_validate(found[0]["value"])
    assert record.psi["tenure_months"] > 0.25 and record.psi["monthly_charges_usd"] > 0.25
    assert record.window_capacity == ops_settings.drift_window and 0 < record.window_size <= record.window_capacity
    got = _metrics(ops_settings)
    assert got[("churn_feature_psi", (("feature", "tenure_months"),))] > 0.25
    assert got[("churn_drift_alert", ())] == 1


def _committed_total(settings, topic: str, partitions: int) -> int:
    """Sum of the consumer group's committed offsets on ``topic`` (asked per partition: Tansu's form)."""
    import asyncio

    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from plumbing.clients import kafka_kwargs

    async def ask() -> int:
        admin = AIOKafkaAdminClient(**kafka_kwargs(settings))
        await admin.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            got = await admin.list_consumer_group_offsets(settings.consumer_group, partitions=tps)
            return sum(max(0, meta.offset) for meta in got.values())
        finally:
            await admin.close()

    return asyncio.run(ask())


def test_sigterm_commits_every_acknowledged_batch(stack_settings, champions, telco_csv):
    """A worker stopped by SIGTERM commits what it scored, so its successor re-scores nothing.

    The periodic commit is pushed out to 60 s, so every offset the group holds after the
    stop was committed by the shutdown path.
    """
    from churn_stream.demo import start_worker, stop_worker, wait_worker_ready
    from churn_stream.produce import csv_to_customer_events
    from churn_stream.stack import LocalStack
    from plumbing.clients import produce_records, topic_partitions

    settings = stack_settings.with_overrides(
        topic_suffix="-stop", consumer_group="churn-scorer-stop", worker_web_port=LocalStack.free_ports(1)[0]
    )
    customers = Topics.CUSTOMERS + settings.topic_suffix
    records = csv_to_customer_events(telco_csv, limit=500)
    ids = {orjson.loads(v)["event_id"] for _, v in records}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_WORKER_COMMIT_INTERVAL_S", "60")
        proc = start_worker(settings, settings.data_dir / "logs" / "worker-stop-test.log")
    try:
        wait_worker_ready(settings, proc, timeout_s=180)
        assert produce_records(settings, customers, records) == 500
        scores = wait_for_count(
            settings, Topics.SCORES + settings.topic_suffix, lambda r: r["value"]["event_id"] in ids, 500
        )
        assert len(scores) == 500
        n_partitions = topic_partitions(settings)[Topics.CUSTOMERS]
        assert _committed_total(settings, customers, n_partitions) == 0  # nothing committed while running
    finally:
        stop_worker(proc)
    assert proc.returncode is not None
    assert _committed_total(settings, customers, n_partitions) == 500
