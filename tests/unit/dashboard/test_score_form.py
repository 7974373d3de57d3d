"""The score-a-customer form: generated from the customer contract's JSON Schema; the API's messages shown."""

from __future__ import annotations

import socket

import pytest

from dashboard.score_form import (
    BOOLEAN,
    CHOICE,
    ENVELOPE_FIELDS,
    INTEGER,
    NUMBER,
    TEXT,
    build_customer,
    customer_form_fields,
    form_fields,
    post_customer,
)
from dashboard.tab_score import score_output
from schemas.events import CustomerEvent
from tests.unit.dashboard.conftest import FORM_CUSTOMER, serve_api

FIELDS = customer_form_fields(hidden={"churned"})
TYPED = FORM_CUSTOMER


def test_the_form_has_the_contracts_fields_types_and_constraints():
    by_name = {f.name: f for f in FIELDS}
    expected = [n for n in CustomerEvent.model_fields if n not in ENVELOPE_FIELDS | {"churned"}]
    assert list(by_name) == expected
    assert ENVELOPE_FIELDS == {"event_id", "event_time", "schema_version"}
    assert by_name["tenure_months"].kind == INTEGER and by_name["tenure_months"].required
    assert by_name["tenure_months"].hint.startswith("integer, 0 to 1,200")
    assert by_name["monthly_charges_usd"].kind == NUMBER
    assert by_name["senior_citizen"].kind == BOOLEAN and by_name["contract"].kind == TEXT
    total = by_name["total_charges_usd"]
    assert total.kind == NUMBER and total.nullable and not total.required


def test_any_profiles_contract_makes_a_form_enums_as_choices():
    schema = {
        "$defs": {"Plan": {"enum": ["basic", "premium"], "type": "string"}},
        "properties": {
            "event_id": {"type": "string"},
            "plan": {"$ref": "#/$defs/Plan"},
            "visits_30d": {"type": "integer", "minimum": 0, "examples": [4]},
            "churned": {"anyOf": [{"type": "boolean"}, {"type": "null"}], "default": None},
        },
        "required": ["event_id", "plan", "visits_30d"],
    }
    fields = form_fields(schema, ENVELOPE_FIELDS | {"churned"})
    assert [(f.name, f.kind) for f in fields] == [("plan", CHOICE), ("visits_30d", INTEGER)]
    assert fields[0].options == ("basic", "premium") and fields[1].default == 4
    assert fields[1].hint == "integer, at least 0"


def test_typed_values_are_sent_as_typed_for_the_api_to_judge():
    doc = build_customer(FIELDS, TYPED | {"tenure_months": "-5", "monthly_charges_usd": "twelve"})
    assert doc["tenure_months"] == -5 and doc["monthly_charges_usd"] == "twelve"
    assert build_customer(FIELDS, TYPED | {"tenure_months": "2.5"})["tenure_months"] == 2.5
    assert build_customer(FIELDS, TYPED)["total_charges_usd"] == 170.1
    empty = build_customer(FIELDS, TYPED | {"total_charges_usd": "", "gender": " ", "partner": None})
    assert empty["total_charges_usd"] is None  # nullable: sent as null (not billed yet)
    assert "gender" not in empty and "partner" not in empty  # required: left for the API to name
    assert "churned" not in empty and "event_id" not in empty
    CustomerEvent.model_validate(build_customer(FIELDS, TYPED) | {"event_id": "e", "event_time": "2026-01-01T00:00Z"})


def test_unreachable_api_is_reported_not_raised():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    answer = post_customer(f"http://127.0.0.1:{port}/api/predict", build_customer(FIELDS, TYPED), timeout_s=2)
    assert answer["ok"] is False and answer["unreachable"] is True
    assert answer["message"].startswith(f"Prediction API unreachable at http://127.0.0.1:{port}/api/predict")


@pytest.fixture(scope="module")
def api_url(telco_csv):
    """The real prediction API with auth off (the form's key: tests/unit/dashboard/test_score_form_auth.py)."""
    from plumbing.settings import Settings

    with serve_api(telco_csv, Settings(api_auth="none")) as url:
        yield url


def test_the_form_posts_the_apis_contract_and_reads_its_prediction(api_url):
    from schemas.http import Prediction

    answer = post_customer(api_url, build_customer(FIELDS, TYPED))
    assert answer["ok"] is True
    p = answer["prediction"]
    assert isinstance(p, Prediction) and p.customer_id == "c-1" and p.model_version == "7"
    assert p.predicted_value_usd is None  # no value model in this store
    block, errors = score_output(api_url, FIELDS, TYPED)
    page = str(block)
    assert f"{p.churn_probability:.3f}" in page and "predicted customer value" not in page
    assert errors == [""] * len(FIELDS)


@pytest.mark.parametrize(
    ("tenure", "message"),
    [
        ("-5", "input should be greater than or equal to 0, got -5"),
        ("2.5", "got 2.5"),
        ("twelve", "input should be a valid integer, got 'twelve'"),
    ],
)
def test_a_bad_tenure_shows_the_apis_own_message_not_got_none(api_url, tenure, message):
    """Issue 18: the form answered "got None" for tenure -5 or 2.5 instead of the API's message."""
    answer = post_customer(api_url, build_customer(FIELDS, TYPED | {"tenure_months": tenure}))
    assert answer["message"] == "The API answered 422: request body failed validation"
    assert answer["fields"] == ["tenure_months"]
    (line,) = answer["errors"]
    assert line.startswith("tenure_months: ") and message in line and "None" not in line
    block, errors = score_output(api_url, FIELDS, TYPED | {"tenure_months": tenure})
    assert line in str(block)  # the API's line, as it wrote it
    by_field = dict(zip([f.name for f in FIELDS], errors, strict=True))
    assert by_field["tenure_months"] == line.removeprefix("tenure_months: ")
    assert not any(v for k, v in by_field.items() if k != "tenure_months")


def test_every_missing_required_field_is_named_by_the_api(api_url):
    answer = post_customer(api_url, build_customer(FIELDS, {"customer_id": "c-2"}))
    assert answer["ok"] is False and "gender" in answer["fields"] and "tenure_months" in answer["fields"]
    assert "gender: required field missing" in answer["errors"]
