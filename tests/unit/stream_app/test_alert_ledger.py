"""The alert ledger: which alerts are emitted, what is forgotten, and the alert ids a batch reports."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from batch.features import classification_data
from batch.ingest import read_source_csv
from churn_stream.produce import csv_to_customer_events
from schemas.profiles import TELCO
from scratch_models import LogisticRegression, ScoringPipeline
from stream_app.alert_ledger import AlertLedger
from stream_app.scoring import LoadedModel, RawRecord, score_batch


def test_admit_keeps_first_occurrence_and_counts_the_rest():
    ledger = AlertLedger(capacity=10)
    ledger.add(["e1"])
    assert ledger.admit(["e1", "e2", "e3", "e2"]) == [1, 2]
    assert ledger.suppressed == 2
    assert ledger.admit(["e3", "e4"]) == [1]
    assert ledger.suppressed == 3
    assert len(ledger) == 4 and "e4" in ledger


def test_capacity_forgets_oldest_first():
    ledger = AlertLedger(capacity=3)
    ledger.admit(["a", "b", "c"])
    ledger.add(["a"])  # seen again: now the newest
    ledger.admit(["d"])
    assert "b" not in ledger
    assert {"a", "c", "d"} == {e for e in ("a", "b", "c", "d") if e in ledger}
    assert ledger.admit(["b"]) == [0]  # forgotten: alerted again
    assert len(ledger) == 3


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_must_be_positive(capacity):
    with pytest.raises(ValueError, match="capacity: expected a positive integer"):
        AlertLedger(capacity=capacity)


def test_batch_reports_each_alerts_event_id_in_order(telco_csv):
    frame = read_source_csv(telco_csv, TELCO)
    data = classification_data(frame, TELCO)
    model = LogisticRegression(C=1.0).fit(data.X_train, data.y_train)
    loaded = LoadedModel(ScoringPipeline(data.preprocessor, model, threshold=0.3), "churn-classifier", "4")
    events = csv_to_customer_events(telco_csv)[:300]
    records = [RawRecord("customers", 0, i, k, v) for i, (k, v) in enumerate(events)]
    result = score_batch(loaded, records, now=datetime(2024, 5, 1, tzinfo=UTC))
    assert 0 < len(result.alerts) < len(records)
    assert result.alert_event_ids == [orjson.loads(v)["event_id"] for _, v in result.alerts]
    labelled = [orjson.loads(v)["event_id"] for _, v in result.scores if orjson.loads(v)["churn_label"]]
    assert result.alert_event_ids == labelled
