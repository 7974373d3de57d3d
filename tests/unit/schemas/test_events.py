"""The customer event contract: parsing, UTC times, finite numbers and readable errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydantic import ValidationError

from churn_stream.produce import csv_to_customer_events
from schemas.events import (
    SCHEMA_VERSION,
    ChurnAlert,
    CustomerEvent,
    EventValidationError,
    ScoreEvent,
    format_validation_error,
)


@pytest.fixture(scope="module")
def first_event(telco_csv) -> tuple[bytes, bytes]:
    """(key, value) of the Telco file's first row as produced to ``customers``."""
    return csv_to_customer_events(telco_csv, limit=1)[0]


@pytest.fixture
def doc(first_event) -> dict:
    """The first row's event as a fresh JSON-like dict."""
    return orjson.loads(first_event[1])


def errors_of(payload: dict) -> list[str]:
    with pytest.raises(ValidationError) as info:
        CustomerEvent.model_validate_json(json.dumps(payload))
    err = format_validation_error(info.value)
    assert isinstance(err, EventValidationError)
    assert str(err) == "; ".join(err.errors)
    return err.errors


def test_first_telco_row_parses_from_json(first_event):
    key, value = first_event
    event = CustomerEvent.model_validate_json(value)
    assert key == b"7590-VHVEG"
    assert event.customer_id == "7590-VHVEG"
    assert event.gender == "Female"
    assert event.senior_citizen is False
    assert event.partner is True
    assert event.dependents is False
    assert event.tenure_months == 1
    assert event.phone_service is False
    assert event.multiple_lines == "No phone service"
    assert event.internet_service == "DSL"
    assert event.contract == "Month-to-month"
    assert event.paperless_billing is True
    assert event.payment_method == "Electronic check"
    assert event.monthly_charges_usd == 29.85
    assert event.total_charges_usd == 29.85
    assert event.churned is False
    assert event.schema_version == SCHEMA_VERSION
    assert len(event.event_id) == 36
    assert event.event_time.tzinfo is not None
    assert event.event_time.utcoffset() == timedelta(0)


def test_event_time_with_offset_is_converted_to_utc(doc):
    doc["event_time"] = "2024-03-01T12:30:00+02:00"
    event = CustomerEvent.model_validate_json(json.dumps(doc))
    assert event.event_time == datetime(2024, 3, 1, 10, 30, tzinfo=UTC)
    assert event.event_time.utcoffset() == timedelta(0)
    assert event.event_time.hour == 10


def test_naive_event_time_is_rejected(doc):
    doc["event_time"] = "2024-03-01T12:30:00"
    lines = errors_of(doc)
    assert len(lines) == 1
    assert lines[0].startswith("event_time: ")
    assert "timezone" in lines[0]
    assert lines[0].endswith("got '2024-03-01T12:30:00'")


def test_naive_python_datetime_is_rejected(doc):
    doc["event_time"] = datetime(2024, 3, 1, 12, 30)
    with pytest.raises(ValidationError):
        CustomerEvent.model_validate(doc)


@pytest.mark.parametrize("field", ["monthly_charges_usd", "total_charges_usd"])
@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_json_are_rejected(first_event, field, token):
    doc = orjson.loads(first_event[1])
    # json.dumps writes NaN/Infinity tokens, exactly what a sloppy producer would send.
    doc[field] = float(token.lower().replace("infinity", "inf"))
    raw = json.dumps(doc)
    assert token in raw
    lines = errors_of(doc)
    assert len(lines) == 1
    assert lines[0].startswith(f"{field}: ")
    assert "finite number" in lines[0]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_infinity_in_python_values_are_rejected(doc, value):
    doc["monthly_charges_usd"] = value
    with pytest.raises(ValidationError, match="finite number"):
        CustomerEvent.model_validate(doc)


def test_wrong_type_names_field_expectation_and_value(doc):
    doc["tenure_months"] = "twelve"
    lines = errors_of(doc)
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("tenure_months: input should be a valid integer")
    assert line.endswith(", got 'twelve'")


def test_several_errors_give_one_line_each(doc):
    doc["tenure_months"] = -3
    doc["partner"] = "perhaps"
    doc["contract"] = ""
    lines = errors_of(doc)
    fields = sorted(line.split(":")[0] for line in lines)
    assert fields == ["contract", "partner", "tenure_months"]
    by_field = {line.split(":")[0]: line for line in lines}
    assert "greater than or equal to 0" in by_field["tenure_months"]
    assert by_field["tenure_months"].endswith("got -3")
    assert by_field["partner"].endswith("got 'perhaps'")


def test_missing_field_is_reported_as_required(doc):
    del doc["contract"]
    assert errors_of(doc) == ["contract: required field missing"]


def test_negative_charges_rejected(doc):
    doc["monthly_charges_usd"] = -1.0
    lines = errors_of(doc)
    assert len(lines) == 1 and lines[0].startswith("monthly_charges_usd: ")


def test_null_total_charges_follows_the_profiles_blank_rule(doc):
    # telco.yaml: a blank TotalCharges is 0.0 at tenure 0 and invalid elsewhere; a null on the
    # stream is the same blank (issue 18: it used to be imputed with the training median).
    doc["total_charges_usd"] = None
    doc["tenure_months"] = 0
    assert CustomerEvent.model_validate_json(json.dumps(doc)).total_charges_usd is None
    doc["tenure_months"] = 5
    with pytest.raises(ValidationError) as info:
        CustomerEvent.model_validate_json(json.dumps(doc))
    assert format_validation_error(info.value).errors == [
        "total_charges_usd: expected a number (null is only valid when tenure_months is 0), got None"
    ]


def test_extra_fields_are_ignored(doc):
    doc["loyalty_tier"] = "gold"
    doc["nested"] = {"a": [1, 2, 3]}
    event = CustomerEvent.model_validate_json(json.dumps(doc))
    assert not hasattr(event, "loyalty_tier")
    assert "loyalty_tier" not in event.model_dump()
    assert event.customer_id == "7590-VHVEG"


def test_huge_values_are_truncated_in_messages(doc):
    doc["tenure_months"] = "9" * 10 + "x" * 100_000
    lines = errors_of(doc)
    assert len(lines) == 1
    line = lines[0]
    shown = line.split(", got ", 1)[1]
    assert len(shown) <= 40
    assert shown.startswith("'9999999999xxx")
    assert shown.endswith("...")
    assert len(line) < 200


def test_every_error_is_named_unless_limited(doc):
    for name in [
        "gender",
        "multiple_lines",
        "internet_service",
        "online_security",
        "online_backup",
        "device_protection",
        "tech_support",
        "streaming_tv",
        "streaming_movies",
        "contract",
        "payment_method",
        "customer_id",
    ]:
        doc[name] = None
    with pytest.raises(ValidationError) as info:
        CustomerEvent.model_validate_json(json.dumps(doc))
    assert len(info.value.errors()) == 12
    assert len(format_validation_error(info.value).errors) == 12  # every error named by default
    assert len(format_validation_error(info.value, limit=3).errors) == 3


def test_future_schema_version_rejected(doc):
    doc["schema_version"] = SCHEMA_VERSION + 1
    lines = errors_of(doc)
    assert len(lines) == 1 and lines[0].startswith("schema_version: ")


def test_events_are_frozen(first_event):
    event = CustomerEvent.model_validate_json(first_event[1])
    with pytest.raises(ValidationError):
        event.tenure_months = 5


def test_field_names_spelled_once_are_the_models_fields():
    from schemas.events import PREDICTED_VALUE_FIELD, REASONS_FIELD, SCORE_FIELDS, VALUE_AT_RISK_FIELD
    from schemas.http import Prediction

    assert SCORE_FIELDS == tuple(ScoreEvent.model_fields)
    alert_only = set(ChurnAlert.model_fields) - set(SCORE_FIELDS)
    assert alert_only == {REASONS_FIELD, PREDICTED_VALUE_FIELD, VALUE_AT_RISK_FIELD}
    # An API prediction and an alert name the predicted value and the reasons alike, with one type.
    for name in (REASONS_FIELD, PREDICTED_VALUE_FIELD):
        assert Prediction.model_fields[name].annotation == ChurnAlert.model_fields[name].annotation
        assert Prediction.model_fields[name].metadata == ChurnAlert.model_fields[name].metadata
    shared = set(Prediction.model_fields) & set(ChurnAlert.model_fields)
    assert shared >= {"event_id", "customer_id", "churn_probability", "churn_label", "threshold", "model_name"}


def test_the_api_body_keeps_the_blank_rules_beside_its_examples():
    """The docs' examples were once set by replacing the generated model's JSON Schema extras,
    which dropped its blank rule: schemathesis then sent a Telco customer with tenure 560 and no
    total charges as "valid"."""
    from schemas.http import EXAMPLE_CUSTOMER, CustomerInput

    schema = CustomerInput.model_json_schema()
    assert EXAMPLE_CUSTOMER in schema["examples"]
    (rule,) = schema["allOf"]
    assert rule["then"] == {"required": ["tenure_months"], "properties": {"tenure_months": {"const": 0}}}
