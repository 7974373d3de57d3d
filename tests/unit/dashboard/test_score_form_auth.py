"""The score form acts with the dashboard's API key (``CHURN_API_KEY``) against the real API on loopback."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from dashboard.score_form import build_customer, customer_form_fields, post_customer
from dashboard.tab_score import score_output

FIELDS = customer_form_fields(hidden={"churned"})
CUSTOMER = {
    "customer_id": "c-1",
    "gender": "Female",
    "senior_citizen": False,
    "partner": False,
    "dependents": False,
    "tenure_months": "2",
    "phone_service": True,
    "multiple_lines": "No",
    "internet_service": "Fiber optic",
    "online_security": "No",
    "online_backup": "No",
    "device_protection": "No",
    "tech_support": "No",
    "streaming_tv": "No",
    "streaming_movies": "No",
    "contract": "Month-to-month",
    "paperless_billing": True,
    "payment_method": "Electronic check",
    "monthly_charges_usd": "85.05",
    "total_charges_usd": "170.1",
}


@pytest.fixture(scope="module")
def keyed_api(telco_csv, tmp_path_factory):
    """The API (uvicorn in a thread, a Telco champion installed) requiring keys; yields (url, keys by scope)."""
    import uvicorn

    from batch.features import classification_data
    from batch.ingest import read_source_csv
    from plumbing.api_keys import ApiKeyStore
    from plumbing.settings import Settings
    from schemas.profiles import TELCO
    from scratch_models import LogisticRegression, ScoringPipeline
    from stream_app.api import create_app
    from stream_app.model_store import ModelStore

    data = classification_data(read_source_csv(telco_csv, TELCO), TELCO)
    store = ModelStore("http://registry.invalid", expected_features=list(TELCO.features))
    model = LogisticRegression(C=1.0).fit(data.X_train, data.y_train)
    store.install(ScoringPipeline(data.preprocessor, model, threshold=0.4), "churn-classifier", "7")
    keys_file = tmp_path_factory.mktemp("keys") / "api_keys.json"
    keys = {s: ApiKeyStore(keys_file).create(s.replace(":", "-"), [s])[1] for s in ("predict", "models:read")}
    app = create_app(Settings(api_keys_file=str(keys_file)), tracker=None, store=store, follow_updates=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="keyed-api-for-form-test", daemon=True)
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
        yield f"http://127.0.0.1:{port}/api/predict", keys
    finally:
        server.should_exit = True
        thread.join(timeout=15)


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
