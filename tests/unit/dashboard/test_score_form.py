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


@pytest.fixture(scope="module")
def api_url(telco_csv):
    """The real prediction API (uvicorn in a thread, a Telco champion installed, no registry)."""
    import threading
    import time

    import httpx
    import uvicorn

    from batch.features import classification_data
    from batch.ingest import read_source_csv
    from plumbing.settings import Settings
    from schemas.profiles import TELCO
    from scratch_models import LogisticRegression, ScoringPipeline
    from stream_app.api import create_app
    from stream_app.model_store import ModelStore

    data = classification_data(read_source_csv(telco_csv, TELCO), TELCO)
    store = ModelStore("http://registry.invalid", expected_features=list(TELCO.features))
    model = LogisticRegression(C=1.0).fit(data.X_train, data.y_train)
    store.install(ScoringPipeline(data.preprocessor, model, threshold=0.4), "churn-classifier", "7")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(Settings(), tracker=None, store=store, follow_updates=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="api-for-form-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/api/predict"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_the_form_posts_the_apis_contract_and_reads_its_prediction(api_url):
    from dashboard.app import score_output
    from schemas.http import Prediction

    answer = post_customer(api_url, build_customer(form_defaults()))
    assert answer["ok"] is True
    p = answer["prediction"]
    assert isinstance(p, Prediction) and p.customer_id == "c-1" and p.model_version == "7"
    assert p.predicted_value_usd is None  # no value model in this store
    page = str(score_output(api_url, form_defaults()))
    assert f"{p.churn_probability:.3f}" in page and "predicted customer value" not in page


def test_an_api_error_names_the_failing_fields(api_url):
    bad = build_customer(form_defaults()) | {"tenure_months": "twelve"}  # past the form's own check
    answer = post_customer(api_url, bad)
    assert answer["ok"] is False and answer["unreachable"] is False
    assert answer["message"].startswith("The API answered 422: request body failed validation")
    assert any(e.startswith("tenure_months") for e in answer["errors"])
