"""The prediction API's request handling without servers: a Telco pipeline fitted here is installed in the store.

No registry or broker is involved (``follow_updates=False``, no tracker): these tests
cover body parsing, validation, limits, scoring equality and the OpenAPI document.
Everything that talks to MLflow or Kafka is in ``tests/integration/test_api.py``.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import orjson
import pytest

from plumbing.settings import Settings
from schemas.profiles import TELCO


@pytest.fixture(scope="module")
def telco_docs(telco_csv) -> list[dict]:
    from churn_stream.produce import csv_to_customer_events

    return [orjson.loads(v) for _, v in csv_to_customer_events(telco_csv, limit=400)]


@pytest.fixture(scope="module")
def store(telco_csv):
    from batch.features import classification_data
    from batch.ingest import read_source_csv
    from scratch_models import LogisticRegression, ScoringPipeline
    from stream_app.model_store import ModelStore

    data = classification_data(read_source_csv(telco_csv, TELCO), TELCO)
    model = LogisticRegression(C=1.0).fit(data.X_train, data.y_train)
    store = ModelStore("http://registry.invalid", expected_features=list(TELCO.features))
    store.install(ScoringPipeline(data.preprocessor, model, threshold=0.4), "churn-classifier", "7")
    return store


def _call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
            return await c.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def app(store):
    from stream_app.api import create_app

    # Authentication is tested in test_api_auth.py; here only the request handling.
    settings = Settings(api_auth="none")
    return create_app(settings, tracker=None, store=store, follow_updates=False, max_body_bytes=32 * 1024)


def test_predict_equals_pipeline_and_generates_ids(app, store, telco_docs):
    import pandas as pd

    from batch.features import frame_columns

    docs = [{k: v for k, v in d.items() if k not in {"event_id", "event_time"}} for d in telco_docs[:30]]
    r = _call(app, "POST", "/api/predict", json=docs)
    assert r.status_code == 200, r.text
    body = r.json()
    preds = body["predictions"]
    frame = pd.DataFrame(telco_docs[:30])
    frame["total_charges_usd"] = frame["total_charges_usd"].astype(np.float64)
    expected = store.current.pipeline.predict_proba(frame_columns(frame, store.current.pipeline.feature_names_in))
    np.testing.assert_allclose([p["churn_probability"] for p in preds], expected, rtol=0, atol=1e-12)
    assert len({p["event_id"] for p in preds}) == 30
    assert body["classifier"] == {"model_name": "churn-classifier", "model_version": "7"}
    assert body["value_model"] is None and all(p["predicted_value_usd"] is None for p in preds)
    from schemas.http import Prediction, PredictResponse

    assert all(list(p) == list(Prediction.model_fields) for p in preds)  # the documented fields, in order
    PredictResponse.model_validate(body)
    for p in preds:
        assert p["churn_label"] == (p["churn_probability"] >= 0.4)
        assert all(reason["contribution"] > 0 for reason in p["reasons"])


def test_single_object_and_envelope(app, telco_docs):
    one = _call(app, "POST", "/api/predict", json=telco_docs[0]).json()
    env = _call(app, "POST", "/api/predict", json={"customers": telco_docs[0]}).json()
    assert one["predictions"][0]["churn_probability"] == env["predictions"][0]["churn_probability"]
    assert one["predictions"][0]["event_id"] == telco_docs[0]["event_id"]


def test_one_customer_alone_scores_as_in_a_list(app, telco_docs):
    # One customer takes the look-up path (stream_app.api.one_row), a list the matrix path.
    docs = [*telco_docs[:5], {**telco_docs[5], "contract": "Handshake", "payment_method": "Barter"}]
    listed = _call(app, "POST", "/api/predict", json=docs).json()["predictions"]
    assert listed[-1]["unknown_categories"] == ["contract", "payment_method"]
    for doc, expected in zip(docs, listed):
        (alone,) = _call(app, "POST", "/api/predict", json=doc).json()["predictions"]
        # A one-row matrix product may round the last bit differently from a many-row one.
        assert alone.pop("churn_probability") == pytest.approx(expected.pop("churn_probability"), rel=0, abs=1e-12)
        assert alone == expected


@pytest.mark.parametrize(
    "body, field",
    [
        (b'{"monthly_charges_usd": NaN}', "monthly_charges_usd"),
        (b"[1, 2]", "0"),
        (b'{"customers": [], "model_name": "x"}', "customers"),
        (b'{"customers": [{}], "extra": 1}', "extra"),
        (b'"a string"', "<body>"),
    ],
)
def test_bad_bodies_are_422_with_fields(app, body, field):
    r = _call(app, "POST", "/api/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert any(f == field or f.startswith(field + ".") for f in r.json()["fields"]) or field == "<body>"


def test_model_name_bad_format_is_422_and_query_wins_over_body(app, telco_docs):
    r = _call(app, "POST", "/api/predict", params={"model_name": "bad name!"}, json=telco_docs[0])
    assert r.status_code == 422 and r.json()["fields"] == ["model_name"]
    # A well-formed query model_name takes precedence: the body's malformed one is not even looked at.
    r = _call(
        app,
        "POST",
        "/api/predict",
        params={"model_name": "bad name!"},
        json={"customers": [telco_docs[0]], "model_name": "churn-classifier"},
    )
    assert r.status_code == 422 and r.json()["fields"] == ["model_name"]
    r = _call(app, "POST", "/api/predict", json={"customers": [telco_docs[0]], "model_name": "bad name!"})
    assert r.status_code == 422 and r.json()["fields"] == ["model_name"]


def test_too_many_customers_and_too_large_bodies(app, telco_docs):
    r = _call(app, "POST", "/api/predict", json=telco_docs[:100])  # > 32 KiB limit of this app
    assert r.status_code == 413


def test_health_metrics_openapi_docs(app):
    from openapi_spec_validator import validate

    assert _call(app, "GET", "/health").json() == {
        "status": "ok",
        "model_name": "churn-classifier",
        "model_version": "7",
    }
    _call(app, "POST", "/api/predict", content=b"nope")
    live = _call(app, "GET", "/api/metrics").json()["live"]
    assert live["responses_by_status"].get("422", 0) >= 1 and live["model_version"] == "7"
    doc = _call(app, "GET", "/openapi.json").json()
    validate(doc)
    page = _call(app, "GET", "/docs").text  # Swagger UI; its assets: tests/unit/stream_app/test_api_docs.py
    assert "swagger-ui" in page and "http://" not in page and "https://" not in page
