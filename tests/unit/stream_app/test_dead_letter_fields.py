"""A dead letter names every contract violation of its record, not the first ten (issue 18, point 8)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batch.features import classification_data
from batch.ingest import read_source_csv
from schemas.events import CustomerEvent
from schemas.profiles import TELCO
from schemas.registry import CLASSIFIER_NAME
from schemas.topics import Topics
from scratch_models.linear import LogisticRegression
from scratch_models.pipeline import ScoringPipeline
from stream_app.scoring import LoadedModel, RawRecord, decode_batch, score_batch

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
REQUIRED = [name for name, spec in CustomerEvent.model_fields.items() if spec.is_required()]


@pytest.fixture(scope="module")
def loaded(telco_csv) -> LoadedModel:
    data = classification_data(read_source_csv(telco_csv, TELCO), TELCO)
    model = LogisticRegression(C=1.0).fit(data.X_train, data.y_train)
    return LoadedModel(ScoringPipeline(data.preprocessor, model, 0.5, {"dataset": "telco"}), CLASSIFIER_NAME, "1")


def test_the_contract_has_more_than_ten_required_fields():
    assert len(REQUIRED) > 10  # otherwise the test below proves nothing


def test_an_empty_object_names_every_missing_field_in_its_dead_letter(loaded):
    record = RawRecord(Topics.CUSTOMERS, 0, 7, None, b"{}")
    result = score_batch(loaded, [record], now=NOW)
    assert result.scores == [] and len(result.failures) == 1
    message = result.failures[0].error_message
    assert [f"{name}: required field missing" for name in REQUIRED] == message.split("; ")
    _, _, failures = decode_batch([record])
    assert failures[0].error_message == message
