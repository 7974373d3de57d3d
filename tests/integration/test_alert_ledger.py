"""At most one alert per event when a worker takes over a crashed worker's uncommitted work.

The crashed worker is reproduced exactly at its worst moment: its micro-batches' scores and
alerts are acknowledged by the broker, but the input offsets are not committed (it died
between the two). A real worker then joins the same consumer group, re-scores every one of
those events (at-least-once) and must not alert on any of them a second time, while still
alerting on the events the crashed worker never reached. A SIGKILL mid-stream is covered by
``tests/integration/test_faults.py`` (``pytest -m faults``).
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.kafka_tools import read_topic, wait_for_count

pytestmark = pytest.mark.integration

FAST_ZOO = {"logistic_regression", "multiple_regression"}
EVENTS = 3000
CRASHED_AFTER = 2000  # the crashed worker had scored and alerted on the first 2,000 events


@pytest.fixture(scope="module")
def ledger_settings(stack_settings):
    from churn_stream.stack import LocalStack

    return stack_settings.with_overrides(
        topic_suffix="-ledger", consumer_group="churn-scorer-ledger", worker_web_port=LocalStack.free_ports(1)[0]
    )


@pytest.fixture(scope="module")
def champion(stack_settings):
    from batch.cycle import run_cycle
    from plumbing.clients import make_storage, make_tracker
    from stream_app.model_store import ModelStore

    run_cycle(stack_settings, make_storage(stack_settings), make_tracker(stack_settings), only=FAST_ZOO, margin=-1.0)
    store = ModelStore(stack_settings.mlflow_tracking_uri, value_models=True)
    assert store.load_champion()
    store.load_secondary()
    return store


def _crashed_worker_outputs(settings, topics, champion, telco_csv) -> list[str]:
    """Produce EVENTS input events; write the crashed worker's scores and alerts for the first CRASHED_AFTER."""
    from churn_stream.demo import replicate_events
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import ensure_topics
    from stream_app.commit import BatchAcks
    from stream_app.scoring import RawRecord, score_batch
    from stream_app.sender import OutputProducer
    from stream_app.topics import ensure_worker_topics

    ensure_topics(settings)
    ensure_worker_topics(settings, topics)
    base = csv_to_customer_events(telco_csv)
    events = replicate_events(base, len(base) + EVENTS)[len(base) :]
    records = [RawRecord(topics.customers, 0, i, k, v) for i, (k, v) in enumerate(events[:CRASHED_AFTER])]
    model = champion.current
    result = score_batch(model, records, value_model=champion.value_model)

    producer = OutputProducer.from_settings(settings)  # the worker's producer
    acks = BatchAcks()
    producer.send(topics.customers, events, acks)
    producer.send(topics.scores, result.scores, acks)
    producer.send(topics.alerts, result.alerts, acks)
    assert producer.flush(30) == 0
    assert acks.done and acks.error is None
    assert len(result.alerts) > 200  # many alerting events, or the test proves little
    return result.alert_event_ids


def _metric(settings, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                return s.value
    raise AssertionError(f"{name} not in /metrics")


def test_worker_taking_over_uncommitted_work_alerts_each_event_once(ledger_settings, champion, telco_csv):
    from churn_stream.demo import start_worker, stop_worker, wait_worker_ready
    from stream_app.topics import WorkerTopics

    topics = WorkerTopics.from_settings(ledger_settings)
    crashed_alert_ids = _crashed_worker_outputs(ledger_settings, topics, champion, telco_csv)
    log = ledger_settings.data_dir / "logs" / "worker-ledger-test.log"
    proc = start_worker(ledger_settings, log)
    try:
        wait_worker_ready(ledger_settings, proc, timeout_s=180)
        # Every input event is scored by the new worker: the crashed one committed nothing.
        scores = wait_for_count(
            ledger_settings,
            topics.scores,
            lambda r: r["value"]["scored_at"] is not None,
            CRASHED_AFTER + EVENTS,
            timeout_s=180,
        )
        by_event = Counter(r["value"]["event_id"] for r in scores)
        assert len(by_event) == EVENTS  # nothing lost
        assert sum(c == 2 for c in by_event.values()) == CRASHED_AFTER  # re-scored: at-least-once
        labelled = {r["value"]["event_id"] for r in scores if r["value"]["churn_label"]}
        alerts = read_topic(ledger_settings, topics.alerts, timeout_s=3.0)
        alert_counts = Counter(a["value"]["event_id"] for a in alerts)
        assert [eid for eid, c in alert_counts.items() if c > 1] == []  # at most once per event
        assert set(alert_counts) == labelled  # and every alerting event has its alert
        assert set(crashed_alert_ids) <= set(alert_counts)
        assert _metric(ledger_settings, "churn_alerts_suppressed_total") == len(crashed_alert_ids)
        assert _metric(ledger_settings, "churn_alert_ledger_recovery_alerts") == len(crashed_alert_ids)
    finally:
        stop_worker(proc)
