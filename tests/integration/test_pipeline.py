"""The walking skeleton end to end on real servers: batch cycle, Faust worker, Kafka topics, kcat."""

from __future__ import annotations

import time

import httpx
import numpy as np
import orjson
import pytest

from schemas.events import ChurnAlert, DeadLetter, ScoreEvent
from schemas.topics import Topics
from tests.integration.kafka_tools import kcat_read, parse_json_lines, wait_for_count

pytestmark = pytest.mark.integration

#: A quick zoo for the streaming tests; the full zoo is exercised in test_batch_cycle.py.
FAST_ZOO = {"logistic_regression", "multiple_regression"}


@pytest.fixture(scope="module")
def champion(stack_settings):
    from batch.cycle import run_cycle
    from plumbing.clients import make_storage, make_tracker

    # margin=-1: promote this cycle's model even if another module registered a better one.
    result = run_cycle(
        stack_settings, make_storage(stack_settings), make_tracker(stack_settings), only=FAST_ZOO, margin=-1.0
    )
    assert result.registered["alias"] == "champion"
    assert result.announced
    return result


@pytest.fixture(scope="module")
def worker(stack_settings, champion):
    from churn_stream.demo import start_worker, stop_worker, wait_worker_ready

    log = stack_settings.data_dir / "logs" / "worker-test.log"
    proc = start_worker(stack_settings, log)
    try:
        wait_worker_ready(stack_settings, proc, timeout_s=120)
        yield proc
    finally:
        stop_worker(proc)


def _health(settings) -> dict:
    return httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/health", timeout=5).json()


def _batch_probabilities(settings, registered: dict, telco_csv, n: int) -> tuple[dict[str, float], float]:
    """Probabilities of the same model version computed the batch way (frame -> columns -> pipeline)."""
    from batch.features import frame_columns
    from batch.ingest import read_source_csv
    from plumbing.artifacts import download_pipeline
    from schemas import TELCO

    pipeline = download_pipeline(settings.mlflow_tracking_uri, registered["artifact_uri"], registered["sha256"])
    frame = read_source_csv(telco_csv, TELCO).iloc[:n]
    proba = pipeline.predict_proba(frame_columns(frame, pipeline.feature_names_in))
    return dict(zip(frame["customer_id"], proba.tolist())), pipeline.threshold


def test_thousand_telco_rows_scored_exactly_once_and_match_batch(stack_settings, champion, worker, telco_csv):
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import produce_records

    records = csv_to_customer_events(telco_csv, limit=1000)
    ids = {orjson.loads(v)["event_id"] for _, v in records}
    assert produce_records(stack_settings, Topics.CUSTOMERS, records) == 1000

    scores = wait_for_count(stack_settings, Topics.SCORES, lambda r: r["value"]["event_id"] in ids, 1000)
    score_ids = [s["value"]["event_id"] for s in scores]
    assert len(score_ids) == 1000 and set(score_ids) == ids  # every event once, no duplicates

    expected, threshold = _batch_probabilities(stack_settings, champion.registered, telco_csv, 1000)
    got = {s["value"]["customer_id"]: s["value"]["churn_probability"] for s in scores}
    diffs = np.array([abs(got[c] - p) for c, p in expected.items()])
    assert diffs.max() <= 1e-9
    for s in scores:
        ScoreEvent.model_validate(s["value"])
        assert s["value"]["model_version"] == champion.registered["model_version"]
        assert s["key"] == s["value"]["customer_id"].encode()

    should_alert = {c for c, p in expected.items() if p >= threshold}
    assert 100 < len(should_alert) < 900  # the threshold really separates customers
    # Alerts come with their batch's scores; allow a moment for the tail.
    alerts = wait_for_count(
        stack_settings, Topics.ALERTS, lambda r: r["value"]["event_id"] in ids, len(should_alert), timeout_s=30
    )
    alerted = [a["value"]["customer_id"] for a in alerts]
    assert len(alerted) == len(set(alerted)) == len(should_alert)
    assert set(alerted) == should_alert
    for a in alerts:
        alert = ChurnAlert.model_validate(a["value"])
        assert alert.churn_probability >= alert.threshold
        assert 1 <= len(alert.reasons) <= 3


def test_kcat_reads_valid_json_scores(stack_settings, worker, telco_csv):
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import produce_records

    records = csv_to_customer_events(telco_csv, limit=300)
    ids = {orjson.loads(v)["event_id"] for _, v in records}
    produce_records(stack_settings, Topics.CUSTOMERS, records)
    wait_for_count(stack_settings, Topics.SCORES, lambda r: r["value"]["event_id"] in ids, 300)

    docs = parse_json_lines(kcat_read(stack_settings.kafka_bootstrap_servers, Topics.SCORES))
    assert ids <= {d["event_id"] for d in docs}
    for doc in docs:
        ScoreEvent.model_validate(doc)


def test_bad_events_go_to_dead_letters_and_valid_ones_are_scored(stack_settings, worker, telco_csv):
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import produce_records

    good = csv_to_customer_events(telco_csv, limit=20)
    base = orjson.loads(good[0][1])
    bad_values = [
        b"not json at all",
        b"\xff\xfe\x00 not utf-8",
        b"",
        orjson.dumps({**base, "event_id": "bad-tenure", "tenure_months": "twelve"}),
        orjson.dumps({**base, "event_id": "bad-negative", "monthly_charges_usd": -5}),
        orjson.dumps({k: v for k, v in base.items() if k != "contract"} | {"event_id": "bad-missing"}),
        orjson.dumps({**base, "event_id": "bad-null", "gender": None}),
        b'{"event_id": "bad-nan", "monthly_charges_usd": NaN}',
    ]
    mixed = []
    for i, (k, v) in enumerate(good):
        mixed.append((k, v))
        if i < len(bad_values):
            mixed.append((b"bad", bad_values[i]))
    good_ids = {orjson.loads(v)["event_id"] for _, v in good}
    produce_records(stack_settings, Topics.CUSTOMERS, mixed)

    scores = wait_for_count(stack_settings, Topics.SCORES, lambda r: r["value"]["event_id"] in good_ids, 20)
    assert {s["value"]["event_id"] for s in scores} == good_ids

    originals = {v for v in bad_values}
    dlq = wait_for_count(stack_settings, Topics.CUSTOMERS_DLQ, lambda r: True, len(bad_values), timeout_s=30)
    assert len(dlq) == len(bad_values)
    import base64

    seen = set()
    for rec in dlq:
        letter = DeadLetter.model_validate(rec["value"])
        raw = base64.b64decode(letter.original_value_b64) if letter.original_value_b64 is not None else b""
        seen.add(raw)
        assert letter.topic == Topics.CUSTOMERS and letter.offset >= 0
        assert letter.stage in {"decode", "validate"}
        assert letter.error_message
    assert seen == originals
    by_value = {
        base64.b64decode(orjson.loads(orjson.dumps(r["value"]))["original_value_b64"] or b""): r["value"] for r in dlq
    }
    assert "tenure_months" in by_value[bad_values[3]]["error_message"]
    assert by_value[bad_values[0]]["stage"] == "decode"


def test_new_champion_is_hot_reloaded_and_names_its_version(stack_settings, champion, worker, telco_csv):
    from batch.cycle import run_cycle
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import make_storage, make_tracker, produce_records

    before = _health(stack_settings)["model_version"]
    second = run_cycle(
        stack_settings, make_storage(stack_settings), make_tracker(stack_settings), margin=-1.0, only=FAST_ZOO
    )
    new_version = second.registered["model_version"]
    assert second.registered["alias"] == "champion" and new_version != before
    announced = time.monotonic()
    while _health(stack_settings)["model_version"] != new_version:
        assert time.monotonic() - announced < 10, "worker did not swap in the new champion"
        time.sleep(0.1)
    swap_s = time.monotonic() - announced
    assert swap_s < 5

    records = csv_to_customer_events(telco_csv, limit=50)
    ids = {orjson.loads(v)["event_id"] for _, v in records}
    produce_records(stack_settings, Topics.CUSTOMERS, records)
    scores = wait_for_count(stack_settings, Topics.SCORES, lambda r: r["value"]["event_id"] in ids, 50)
    assert {s["value"]["model_version"] for s in scores} == {new_version}


def test_churn_consume_prints_json_lines(stack_settings, worker, telco_csv):
    from click.testing import CliRunner

    from churn_stream.cli import main
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import produce_records

    records = csv_to_customer_events(telco_csv, limit=5)
    produce_records(stack_settings, Topics.CUSTOMERS, records)
    env = {"KAFKA_BOOTSTRAP_SERVERS": stack_settings.kafka_bootstrap_servers}
    result = CliRunner().invoke(main, ["consume", Topics.CUSTOMERS, "--from-beginning", "--limit", "3"], env=env)
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.output.strip().splitlines()]
    assert len(lines) == 3
    assert all(rec["topic"] == Topics.CUSTOMERS and "customer_id" in rec["value"] for rec in lines)


def test_cli_reports_unreachable_broker_in_one_line(telco_csv):
    from click.testing import CliRunner

    from churn_stream.cli import main

    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = CliRunner().invoke(main, ["produce", str(telco_csv), "--limit", "1"], env=env)
    assert result.exit_code == 1
    assert "KafkaConnectionError" in result.output and "Traceback" not in result.output


def test_new_champion_under_load_scores_within_2s_and_nothing_is_lost(stack_settings, champion, worker, telco_csv):
    """Events flow at ~2,000/s while a cycle promotes and announces a new champion."""
    import threading
    from datetime import datetime

    from batch.cycle import run_cycle
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import make_storage, make_tracker, produce_records
    from schemas.events import new_event_id

    base = [(k, orjson.loads(v)) for k, v in csv_to_customer_events(telco_csv, limit=1000)]
    produced_ids: set[str] = set()
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            chunk = [(k, orjson.dumps({**doc, "event_id": new_event_id()})) for k, doc in base]
            produce_records(stack_settings, Topics.CUSTOMERS, chunk, rate=2000)
            produced_ids.update(orjson.loads(v)["event_id"] for _, v in chunk)

    before = _health(stack_settings)["model_version"]
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        time.sleep(2)
        cycle = run_cycle(
            stack_settings, make_storage(stack_settings), make_tracker(stack_settings), margin=-1.0, only=FAST_ZOO
        )
        new_version = cycle.registered["model_version"]
        assert cycle.announced and new_version != before
        time.sleep(4)  # keep the load on after the swap
    finally:
        stop.set()
        producer.join(60)

    announcements = wait_for_count(
        stack_settings,
        Topics.MODEL_UPDATED,
        lambda r: r["value"]["model_name"] == "churn-classifier" and r["value"]["model_version"] == new_version,
        1,
    )
    announced_at = datetime.fromisoformat(announcements[0]["value"]["event_time"])
    seen: set[str] = set()

    def first_score(rec: dict) -> bool:
        eid = rec["value"]["event_id"]
        if eid in produced_ids and eid not in seen:
            seen.add(eid)
            return True
        return False

    scores = wait_for_count(stack_settings, Topics.SCORES, first_score, len(produced_ids), timeout_s=180)
    assert seen == produced_ids  # nothing lost under the swap
    versions = {s["value"]["model_version"] for s in scores}
    assert versions <= {before, new_version} and new_version in versions  # never a half-loaded model
    first_new = min(
        datetime.fromisoformat(s["value"]["scored_at"]) for s in scores if s["value"]["model_version"] == new_version
    )
    swap_s = (first_new - announced_at).total_seconds()
    print(f"events={len(produced_ids)} versions={sorted(versions)} announcement->first new score {swap_s:.3f} s")
    assert swap_s <= 2.0
