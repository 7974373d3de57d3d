"""The score form acts with the dashboard's API key (``CHURN_API_KEY``) against the real API on loopback."""

from __future__ import annotations

import pytest

from dashboard.score_form import build_customer, customer_form_fields, post_customer
from dashboard.tab_score import score_output
from tests.unit.dashboard.conftest import FORM_CUSTOMER

FIELDS = customer_form_fields(hidden={"churned"})
CUSTOMER = FORM_CUSTOMER


def test_the_form_sends_its_key_and_gets_a_prediction(keyed_api):
    url, keys = keyed_api
    answer = post_customer(url, build_customer(FIELDS, CUSTOMER), api_key=keys["predict"])
    assert answer["ok"] is True and answer["prediction"].model_version == "7"
    block, errors = score_output(url, FIELDS, CUSTOMER, api_key=keys["predict"])
    assert block.id == "score-answer" and not any(errors)


@pytest.mark.parametrize(("scope", "status"), [(None, 401), ("models:read", 403)])
def test_without_a_key_or_with_the_wrong_scope_the_form_says_what_to_set(keyed_api, scope, status):
    url, keys = keyed_api
    answer = post_customer(url, build_customer(FIELDS, CUSTOMER), api_key=keys[scope] if scope else "")
    assert answer["ok"] is False and not answer["unreachable"]
    assert answer["message"].startswith(f"The API answered {status}: ")
    assert "CHURN_API_KEY" in answer["message"]
    assert all(k not in answer["message"] for k in keys.values())
