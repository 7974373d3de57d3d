"""The score-a-customer form: values checked against CustomerEvent before posting; API down is a clear message."""

from __future__ import annotations

import socket

import pytest

from dashboard.score_form import BOOLEAN_FIELDS, CATEGORICAL_FIELDS, NUMERIC_FIELDS, build_customer, post_customer
from schemas.events import CustomerEvent, EventValidationError


def form_defaults() -> dict:
    values = {"customer_id": "c-1"}
    values |= {k: v[0] for k, v in CATEGORICAL_FIELDS.items()}
    values |= {k: "Yes" if v else "No" for k, v in BOOLEAN_FIELDS.items()}
    values |= {k: v[0] for k, v in NUMERIC_FIELDS.items()}
    return values


def test_form_defaults_make_a_valid_customer_event():
    doc = build_customer(form_defaults())
    event = CustomerEvent.model_validate(doc)
    assert event.customer_id == "c-1" and event.phone_service is True and event.partner is False
    assert "churned" not in doc


def test_empty_total_charges_is_a_customer_not_billed_yet():
    assert build_customer(form_defaults() | {"total_charges_usd": None})["total_charges_usd"] is None


def test_bad_values_name_the_field():
    with pytest.raises(EventValidationError) as err:
        build_customer(form_defaults() | {"tenure_months": -3, "monthly_charges_usd": None})
    text = str(err.value)
    assert "tenure_months" in text and "monthly_charges_usd" in text


def test_unreachable_api_is_reported_not_raised():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    answer = post_customer(f"http://127.0.0.1:{port}/api/predict", build_customer(form_defaults()), timeout_s=2)
    assert answer["ok"] is False and answer["unreachable"] is True
    assert answer["message"].startswith(f"Prediction API unreachable at http://127.0.0.1:{port}/api/predict")
