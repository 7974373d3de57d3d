"""Worker metrics in the Prometheus text format, and the /health stall verdict on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from batch.features import classification_data
from batch.ingest import read_source_csv
from churn_stream.produce import csv_to_customer_events
from schemas.events import ChurnAlert
from schemas.profiles import TELCO
from schemas.topics import Topics
from scratch_models import LogisticRegression, ScoringPipeline
from stream_app.metrics import BulkHistogram, StallDetector, WorkerMetrics, event_time_seconds
from stream_app.scoring import LoadedModel, RawRecord, score_batch

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def samples(text: bytes) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture(scope="module")
def loaded(telco_csv) -> LoadedModel:
    frame = read_source_csv(telco_csv, TELCO)
    data = classification_data(frame, TELCO)
    model = LogisticRegression(C=1.0).fit(data.X_train, data.y_train)
    return LoadedModel(ScoringPipeline(data.preprocessor, model, threshold=0.3), "churn-classifier", "4")


@pytest.fixture(scope="module")
def batch_result(telco_csv, loaded):
    events = csv_to_customer_events(telco_csv, limit=100)
    # Every event happened 2 s before NOW.
    events = [
        (k, orjson.dumps(orjson.loads(v) | {"event_time": (NOW - timedelta(seconds=2)).isoformat()})) for k, v in events
    ]
    records = [RawRecord(Topics.CUSTOMERS, 0, i, k, v) for i, (k, v) in enumerate(events)]
    records += [
        RawRecord(Topics.CUSTOMERS, 0, 100, b"x", b"not json"),
        RawRecord(
            Topics.CUSTOMERS, 0, 101, b"x", orjson.dumps(orjson.loads(events[0][1]) | {"tenure_months": "twelve"})
        ),
    ]
    return records, score_batch(loaded, records, now=NOW)


def test_prometheus_text_has_every_metric_after_one_batch(batch_result, loaded):
    records, result = batch_result
    m = WorkerMetrics()
    m.record_batch(len(records), result, scoring_s=0.004, acked_at=NOW.timestamp())
    m.set_lag({("customers", 0): 5, ("customers", 1): 0})
    m.set_drift({"tenure_months": 0.4, "contract": 0.01}, window_size=102, threshold=0.25)

    class Store:
        current = loaded
        value_model = LoadedModel(loaded.pipeline, "sales-regressor", "9")
        challenger = None
        reloads_ok, reloads_failed = 2, 1

    m.sync_store(Store)
    m.sync_store(Store)  # counters follow the store's totals, not the number of scrapes
    got = samples(m.render())
    n_alerts = len(result.alerts)
    assert 0 < n_alerts < 100
    assert got[("churn_events_in_total", ())] == 102
    assert got[("churn_scores_total", ())] == 100
    assert got[("churn_alerts_total", ())] == n_alerts
    assert got[("churn_events_out_total", (("output", "scores"),))] == 100
    assert got[("churn_events_out_total", (("output", "alerts"),))] == n_alerts
    assert got[("churn_events_out_total", (("output", "dead_letters"),))] == 2
    assert got[("churn_dead_letters_total", (("stage", "decode"),))] == 1
    assert got[("churn_dead_letters_total", (("stage", "validate"),))] == 1
    assert got[("churn_batches_total", ())] == 1
    assert got[("churn_batch_size_events_count", ())] == 1
    assert got[("churn_batch_size_events_sum", ())] == 102
    assert got[("churn_batch_size_events_bucket", (("le", "100.0"),))] == 0
    assert got[("churn_batch_size_events_bucket", (("le", "250.0"),))] == 1
    assert got[("churn_scoring_seconds_count", ())] == 1
    assert got[("churn_scoring_seconds_bucket", (("le", "0.005"),))] == 1
    assert got[("churn_scoring_seconds_bucket", (("le", "0.0025"),))] == 0
    assert got[("churn_end_to_end_latency_seconds_count", ())] == 100
    assert got[("churn_end_to_end_latency_seconds_sum", ())] == pytest.approx(200.0)
    assert got[("churn_end_to_end_latency_seconds_bucket", (("le", "1.0"),))] == 0
    assert got[("churn_end_to_end_latency_seconds_bucket", (("le", "2.5"),))] == 100
    assert got[("churn_consumer_lag", (("partition", "0"), ("topic", "customers")))] == 5
    assert got[("churn_model_version", (("model_name", "churn-classifier"), ("role", "champion")))] == 4
    assert got[("churn_model_version", (("model_name", "sales-regressor"), ("role", "value")))] == 9
    assert got[("churn_model_reloads_total", (("result", "ok"),))] == 2
    assert got[("churn_model_reloads_total", (("result", "failed"),))] == 1
    assert got[("churn_feature_psi", (("feature", "tenure_months"),))] == pytest.approx(0.4)
    assert got[("churn_drift_alert", ())] == 1
    assert got[("churn_drift_window_events", ())] == 102


def test_lag_gauges_follow_the_assignment():
    m = WorkerMetrics()
    m.set_lag({("customers", 0): 5, ("customers", 1): 3})
    m.set_lag({("customers", 1): 0})  # partition 0 moved to another worker
    got = samples(m.render())
    assert ("churn_consumer_lag", (("partition", "0"), ("topic", "customers"))) not in got
    assert got[("churn_consumer_lag", (("partition", "1"), ("topic", "customers")))] == 0


def test_shadow_agreement_and_mean_scores(loaded):
    m = WorkerMetrics()
    challenger = LoadedModel(loaded.pipeline, "churn-classifier", "5")
    champion_p = np.array([0.1, 0.5, 0.9, 0.2])
    shadow_p = np.array([0.1, 0.1, 0.9, 0.9])  # threshold 0.3: labels agree on 2 of 4
    m.record_shadow(loaded, champion_p, challenger, shadow_p)
    got = samples(m.render())
    assert got[("churn_shadow_agreement", (("model_name", "churn-classifier"), ("model_version", "5")))] == 0.5
    assert got[
        ("churn_shadow_mean_score", (("model_name", "churn-classifier"), ("model_version", "4"), ("role", "champion")))
    ] == pytest.approx(0.425)
    assert got[("churn_shadow_events_total", (("model_name", "churn-classifier"),))] == 4


def test_bulk_histogram_matches_prometheus_le_semantics():
    h = BulkHistogram("x_seconds", "x", (0.1, 1.0))
    h.observe_many(np.array([0.1, 0.5, 1.0, 3.0, np.nan]))
    family = next(iter(h.collect()))
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name == "x_seconds_bucket"}
    assert buckets == {"0.1": 1, "1.0": 3, "+Inf": 4}
    assert h.count == 4


def test_event_time_seconds_parses_scorer_timestamps():
    t = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    got = event_time_seconds([t.isoformat(), (t + timedelta(seconds=1)).isoformat()])
    assert got.tolist() == pytest.approx([t.timestamp(), t.timestamp() + 1])


def test_value_at_risk_on_alerts(telco_csv, loaded):
    from batch.features import regression_data
    from scratch_models.regression import MultipleRegression

    frame = read_source_csv(telco_csv, TELCO)
    reg_data = regression_data(frame, TELCO)
    reg = MultipleRegression().fit(reg_data.X_train, reg_data.y_train)
    value = LoadedModel(ScoringPipeline(reg_data.preprocessor, reg), "sales-regressor", "2")
    assert "total_charges_usd" not in value.pipeline.feature_names_in
    events = csv_to_customer_events(telco_csv, limit=200)
    records = [RawRecord(Topics.CUSTOMERS, 0, i, k, v) for i, (k, v) in enumerate(events)]
    plain = score_batch(loaded, records, now=NOW)
    result = score_batch(loaded, records, now=NOW, value_model=value)
    assert result.scores == plain.scores and len(result.alerts) == len(plain.alerts) > 0
    rows = {orjson.loads(v)["customer_id"]: orjson.loads(v) for _, v in events}
    for (_, a), (_, b) in zip(result.alerts, plain.alerts):
        alert = ChurnAlert.model_validate_json(a)
        assert orjson.loads(a)["reasons"] == orjson.loads(b)["reasons"]
        cols = {k: np.asarray([rows[alert.customer_id][k]]) for k in value.pipeline.feature_names_in}
        expected = max(float(value.pipeline.predict(cols)[0]), 0.0)
        assert alert.predicted_value_usd == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert alert.value_at_risk_usd == pytest.approx(alert.churn_probability * expected, rel=1e-9, abs=1e-9)
    assert ChurnAlert.model_validate_json(plain.alerts[0][1]).value_at_risk_usd is None


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_health_is_starting_until_model_and_partitions():
    d = StallDetector(15.0, clock=FakeClock())
    assert d.evaluate(model_loaded=False, assigned_partitions=4).status == "starting"
    v = d.evaluate(model_loaded=True, assigned_partitions=0)
    assert (v.status_code, v.status, v.reason) == (503, "starting", "no partitions assigned")
    assert d.evaluate(model_loaded=True, assigned_partitions=4).ready


def test_health_turns_stalled_when_lag_waits_without_progress():
    clock = FakeClock()
    d = StallDetector(15.0, clock=clock)
    ok = dict(model_loaded=True, assigned_partitions=2)
    d.progressed()
    d.observe_lag({("customers", 0): 0, ("customers", 1): 0})
    clock.t += 3600  # idle for an hour with nothing to do: healthy
    assert d.evaluate(**ok).ready
    d.observe_lag({("customers", 0): 40, ("customers", 1): 2})  # new events arrive
    clock.t += 5
    assert d.evaluate(**ok).ready  # not stalled just because the last batch was long ago
    clock.t += 11
    v = d.evaluate(**ok)
    assert (v.status_code, v.status) == (503, "stalled")
    assert "lag 42 events" in v.reason and "15 s" in v.reason
    d.progressed()  # a batch completes: healthy again
    d.observe_lag({("customers", 0): 30, ("customers", 1): 0})
    assert d.evaluate(**ok).ready
    clock.t += 16
    assert d.evaluate(**ok).status == "stalled"
    d.observe_lag({("customers", 0): 0, ("customers", 1): 0})  # caught up
    assert d.evaluate(**ok).ready


def test_health_turns_broker_unreachable_when_lag_stays_unreadable():
    clock = FakeClock()
    d = StallDetector(15.0, clock=clock)
    ok = dict(model_loaded=True, assigned_partitions=4)
    d.observe_lag({("customers", 0): 0})
    for _ in range(3):  # failed readings for 15 s: within the limit, the last reading stands
        d.lag_unreadable("TimeoutError")
        clock.t += 5
    assert d.evaluate(**ok).ready
    clock.t += 1
    v = d.evaluate(**ok)
    assert (v.status_code, v.status) == (503, "broker_unreachable")
    assert v.reason == "consumer lag unreadable for 16 s (limit 15 s): TimeoutError"
    # Before the model is loaded too: the broker is the more basic problem.
    assert d.evaluate(model_loaded=False, assigned_partitions=4).status == "broker_unreachable"
    # And after the partitions were given up (librdkafka does, a session timeout into the outage).
    assert d.evaluate(model_loaded=True, assigned_partitions=0).status == "broker_unreachable"
    d.observe_lag({("customers", 0): 0})  # the broker answers again
    assert d.evaluate(**ok).ready


def test_health_keeps_progressing_consumer_ready_under_constant_lag():
    clock = FakeClock()
    d = StallDetector(15.0, clock=clock)
    for _ in range(10):  # a backlog that never empties, but batches keep completing
        d.observe_lag({("customers", 0): 10_000})
        clock.t += 10
        d.progressed()
        assert d.evaluate(model_loaded=True, assigned_partitions=1).ready


def test_after_batch_feeds_drift_window_and_shadow_metrics(telco_csv, loaded, batch_result):
    from batch.cycle import reference_profile
    from batch.features import classification_data
    from stream_app.loop import WorkerStats, _after_batch

    frame = read_source_csv(telco_csv, TELCO)
    data = classification_data(frame, TELCO)
    champion = LoadedModel(
        ScoringPipeline(
            data.preprocessor,
            loaded.pipeline.model,
            threshold=0.3,
            metadata={"reference_profile": reference_profile(data.preprocessor, data.X_train)},
        ),
        "churn-classifier",
        "4",
    )
    challenger = LoadedModel(
        ScoringPipeline(data.preprocessor, LogisticRegression(C=0.01).fit(data.X_train, data.y_train), threshold=0.5),
        "churn-classifier",
        "5",
    )
    records, _ = batch_result
    result = score_batch(champion, records, now=NOW)

    class Store:
        value_model = None

    Store.challenger = challenger
    stats = WorkerStats(drift_window=1000, shadow=True)
    _after_batch(stats, Store, champion, len(records), result, 0.002, NOW.timestamp())
    assert stats.drift is not None and stats.drift.size == 100
    got = samples(stats.metrics.render())
    agreement = got[("churn_shadow_agreement", (("model_name", "churn-classifier"), ("model_version", "5")))]
    assert 0.0 <= agreement <= 1.0
    assert got[("churn_shadow_events_total", (("model_name", "churn-classifier"),))] == 100
    # Shadow off: the challenger is not scored.
    quiet = WorkerStats(shadow=False)
    _after_batch(quiet, Store, champion, len(records), result, 0.002, NOW.timestamp())
    assert ("churn_shadow_events_total", (("model_name", "churn-classifier"),)) not in samples(quiet.metrics.render())
