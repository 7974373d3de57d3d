"""``churn schemas export DIR``: one valid JSON Schema per topic, matching real records."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from batch.features import classification_data
from batch.ingest import read_source_csv
from churn_stream.cli import main
from churn_stream.produce import csv_to_customer_events
from schemas.jsonschema import json_schema_for
from schemas.profiles import TELCO
from schemas.topics import Topics
from scratch_models import LogisticRegression, ScoringPipeline
from stream_app.scoring import LoadedModel, RawRecord, score_batch


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("schemas") / "contracts"
    result = CliRunner().invoke(main, ["schemas", "export", str(out)], env={})
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def schemas_by_topic(exported) -> dict[str, dict]:
    out, _ = exported
    return {t: json.loads((out / f"{t}.schema.json").read_text()) for t in Topics.all()}


@pytest.fixture(scope="module")
def batch_result(telco_csv):
    frame = read_source_csv(telco_csv, TELCO)
    data = classification_data(frame, TELCO)
    model = LogisticRegression().fit(data.X_train, data.y_train)
    # A low threshold guarantees some alerts in the small batch.
    pipeline = ScoringPipeline(data.preprocessor, model, threshold=0.3)
    loaded = LoadedModel(pipeline, "churn-classifier", "7")
    values = [v for _, v in csv_to_customer_events(telco_csv, limit=50)]
    records = [RawRecord(Topics.CUSTOMERS, 0, i, b"k", v) for i, v in enumerate(values)]
    records.append(RawRecord(Topics.CUSTOMERS, 1, 99, None, b"not json"))
    return score_batch(loaded, records)


def test_export_writes_one_file_per_topic(exported):
    out, output = exported
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(f"{t}.schema.json" for t in Topics.all())
    assert len(files) == len(Topics.all()) == 6
    # The command echoes each path it wrote.
    assert sorted(Path(line).name for line in output.split()) == files


@pytest.mark.parametrize("topic", Topics.all())
def test_each_file_is_a_valid_draft_2020_12_schema(schemas_by_topic, topic):
    schema = schemas_by_topic[topic]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:churn-stream:topic:{topic}"
    assert schema["type"] == "object"
    for common in ("event_id", "event_time", "schema_version"):
        assert common in schema["properties"]
    assert schema == json_schema_for(topic)


def test_customer_schema_lists_required_fields(schemas_by_topic):
    schema = schemas_by_topic[Topics.CUSTOMERS]
    assert "tenure_months" in schema["required"]
    assert "contract" in schema["required"]
    assert "total_charges_usd" not in schema["required"]


def test_real_customer_event_validates_and_broken_one_does_not(schemas_by_topic, telco_csv):
    schema = schemas_by_topic[Topics.CUSTOMERS]
    doc = orjson.loads(csv_to_customer_events(telco_csv, limit=1)[0][1])
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    doc["tenure_months"] = "twelve"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


def test_real_score_record_validates_against_churn_scores_schema(schemas_by_topic, batch_result):
    schema = schemas_by_topic[Topics.SCORES]
    validator = jsonschema.Draft202012Validator(schema)
    assert len(batch_result.scores) == 50
    for _, value in batch_result.scores:
        validator.validate(orjson.loads(value))
    # The schema is not vacuous: a probability above 1 or a missing field fails.
    doc = orjson.loads(batch_result.scores[0][1])
    bad = dict(doc, churn_probability=1.5)
    assert not validator.is_valid(bad)
    missing = {k: v for k, v in doc.items() if k != "model_version"}
    assert not validator.is_valid(missing)


def test_real_alert_and_dead_letter_validate(schemas_by_topic, batch_result):
    assert batch_result.alerts, "threshold 0.3 should alert on some of 50 Telco customers"
    alerts = jsonschema.Draft202012Validator(schemas_by_topic[Topics.ALERTS])
    for _, value in batch_result.alerts:
        alerts.validate(orjson.loads(value))
    dlq = jsonschema.Draft202012Validator(schemas_by_topic[Topics.CUSTOMERS_DLQ])
    assert len(batch_result.dead_letters) == 1
    doc = orjson.loads(batch_result.dead_letters[0][1])
    dlq.validate(doc)
    assert not dlq.is_valid(dict(doc, stage="somewhere"))
    assert np.all((batch_result.probabilities >= 0) & (batch_result.probabilities <= 1))
