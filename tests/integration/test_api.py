"""The prediction API on the real local stack: uvicorn on a free port, champion from a real batch cycle."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import orjson
import pytest

# Imported while collecting, before any server thread runs: pytest rewrites schemathesis's
# modules (it is a pytest plugin) with ast.parse, and CPython 3.11.7's AST constructor can
# fail with "SystemError: AST constructor recursion depth mismatch" when another thread is
# active (python/cpython#106905, fixed in 3.11.8). The lazy import inside the test hit it in CI.
import schemathesis.specs.openapi.schemas  # noqa: F401

pytestmark = pytest.mark.integration

#: Train only these zoo models: quick, and a classifier plus a regressor whenever the zoo has them.
ONLY = {"logistic_regression", "linear_regression"}
#: The API's registry check interval in these tests (default 30 s).
RECONCILE_S = 2.0


@pytest.fixture(scope="module")
def tracker(stack_settings):
    from plumbing.clients import make_tracker

    return make_tracker(stack_settings)


@pytest.fixture(scope="module")
def champion(stack_settings, tracker):
    from batch.cycle import run_cycle
    from plumbing.clients import make_storage

    result = run_cycle(stack_settings, make_storage(stack_settings), tracker, only=ONLY, margin=-1.0)
    assert result.registered["alias"] == "champion"
    return result.registered


def _free_port() -> int:
    from churn_stream.stack import LocalStack

    return LocalStack.free_ports(1)[0]


@pytest.fixture(scope="module")
def api_settings(stack_settings, tmp_path_factory):
    """The stack's settings with a key file (refusals are tested in test_api_auth.py; no rate limit here:
    schemathesis also sends requests without the credential, to check that they are refused)."""
    path = tmp_path_factory.mktemp("api-keys") / "api_keys.json"
    return stack_settings.with_overrides(api_keys_file=str(path), api_auth_max_failures=1_000_000)


@pytest.fixture(scope="module")
def auth(api_settings) -> dict[str, str]:
    """An ``Authorization`` header with an admin key of :func:`api_settings`' key file."""
    from plumbing.api_keys import ApiKeyStore

    _, key = ApiKeyStore(api_settings.api_keys_path).create("test-api", ["admin"])
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def api_url(api_settings, auth, tracker, champion):
    """uvicorn serving the app in a thread of this process, with a small body limit for the 413 test."""
    import uvicorn

    from stream_app.api import create_app

    # A short registry check, for the test of a champion that was never announced.
    app = create_app(api_settings.with_overrides(model_reconcile_s=RECONCILE_S), tracker, max_body_bytes=64 * 1024)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="api-test-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "API did not load a champion within 120 s"
        assert thread.is_alive(), "API server thread died"
        time.sleep(0.2)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def client(api_url, auth):
    with httpx.Client(base_url=api_url, timeout=30, headers=auth) as c:
        yield c


@pytest.fixture(scope="module")
def customers(telco_csv) -> list[dict]:
    """The first 20 Telco rows as customer events (the stream's JSON documents)."""
    from churn_stream.produce import csv_to_customer_events

    return [orjson.loads(v) for _, v in csv_to_customer_events(telco_csv, limit=20)]


@pytest.fixture(scope="module")
def champion_pipeline(stack_settings, champion):
    from plumbing.artifacts import download_pipeline

    return download_pipeline(stack_settings.mlflow_tracking_uri, champion["artifact_uri"], champion["sha256"])


def _expected_proba(pipeline, docs: list[dict]) -> np.ndarray:
    """The pipeline's own predict_proba on the same rows (columns built the batch way from a frame)."""
    import pandas as pd

    from batch.features import frame_columns

    frame = pd.DataFrame(docs)
    for c in pipeline.feature_names_in:
        if frame[c].dtype == object and c == "total_charges_usd":
            frame[c] = frame[c].astype(np.float64)
    return pipeline.predict_proba(frame_columns(frame, pipeline.feature_names_in))


def _current_champion_version(client: httpx.Client) -> str:
    return client.get("/health").json()["model_version"]


# ------------------------------------------------------------------- predict
def test_predict_one_customer_matches_pipeline(client, customers, champion_pipeline, champion):
    doc = {k: v for k, v in customers[0].items() if k not in {"event_id", "event_time"}}
    r = client.post("/api/predict", json=doc)
    assert r.status_code == 200, r.text
    body = r.json()
    (pred,) = body["predictions"]
    expected = _expected_proba(champion_pipeline, [customers[0]])[0]
    assert abs(pred["churn_probability"] - expected) <= 1e-12
    assert pred["threshold"] == pytest.approx(champion_pipeline.threshold, abs=0)
    assert pred["churn_label"] == (expected >= champion_pipeline.threshold)
    assert pred["customer_id"] == customers[0]["customer_id"]
    assert pred["event_id"]  # generated
    assert pred["model_name"] == "churn-classifier" and pred["model_version"] == _current_champion_version(client)
    assert body["classifier"] == {"model_name": "churn-classifier", "model_version": pred["model_version"]}
    assert len(pred["reasons"]) <= 3
    contributions = [r["contribution"] for r in pred["reasons"]]
    assert contributions == sorted(contributions, reverse=True) and all(c > 0 for c in contributions)


def test_predict_list_matches_pipeline_in_order(client, customers, champion_pipeline):
    r = client.post("/api/predict", json=customers)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["event_id"] for p in preds] == [c["event_id"] for c in customers]
    got = np.array([p["churn_probability"] for p in preds])
    np.testing.assert_allclose(got, _expected_proba(champion_pipeline, customers), rtol=0, atol=1e-12)
    threshold = champion_pipeline.threshold
    assert [p["churn_label"] for p in preds] == [p >= threshold for p in got.tolist()]
    assert any(p["churn_label"] for p in preds) and not all(p["churn_label"] for p in preds)


def test_predicted_customer_value_from_regressor_champion_when_registered(client, tracker, customers):
    from mlflow.exceptions import MlflowException

    try:
        mv = tracker.get_model_version_by_alias("sales-regressor", "champion")
    except MlflowException:
        mv = None
    # A brand-new customer (tenure 1): a linear value model extrapolates below zero there.
    new = {
        **customers[0],
        "customer_id": "new-1",
        "tenure_months": 1,
        "monthly_charges_usd": 85.0,
        "total_charges_usd": 170.0,
        "contract": "Month-to-month",
        "internet_service": "Fiber optic",
    }
    deadline = time.monotonic() + 10
    while True:
        body = client.post("/api/predict", json=[*customers[:3], new]).json()
        if mv is None or body["value_model"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    values = [p["predicted_value_usd"] for p in body["predictions"]]
    if mv is None:
        assert body["value_model"] is None and values == [None, None, None, None]
    else:
        assert body["value_model"]["model_name"] == "sales-regressor"
        # Clipped at 0, as the worker does for alerts' predicted_value_usd.
        assert all(isinstance(v, float) and np.isfinite(v) and v >= 0 for v in values), values
    # Alone, a customer takes the API's one-row path: the same prediction as in the list
    # (up to the last bit a one-row matrix product may round differently).
    (alone,) = client.post("/api/predict", json=new).json()["predictions"]
    listed = body["predictions"][3]
    for number in ("churn_probability", "predicted_value_usd"):
        assert alone.pop(number) == pytest.approx(listed.pop(number), rel=1e-12, abs=1e-12)
    assert alone == listed


def test_envelope_body_and_query_model_name_select_a_version(client, customers, champion, stack_settings):
    from plumbing.artifacts import download_pipeline

    version = champion["model_version"]
    pipeline = download_pipeline(stack_settings.mlflow_tracking_uri, champion["artifact_uri"], champion["sha256"])
    expected = _expected_proba(pipeline, customers[:5])
    for r in (
        client.post("/api/predict", params={"model_name": f"churn-classifier/{version}"}, json=customers[:5]),
        client.post("/api/predict", json={"customers": customers[:5], "model_name": f"churn-classifier/{version}"}),
    ):
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert {p["model_version"] for p in preds} == {version}
        np.testing.assert_allclose([p["churn_probability"] for p in preds], expected, rtol=0, atol=1e-12)


def test_model_name_selects_challenger_by_alias_and_by_number(
    client, customers, stack_settings, tracker, champion_pipeline
):
    from batch.cycle import run_cycle
    from plumbing.artifacts import download_pipeline
    from plumbing.clients import make_storage

    # A margin no model can beat: the new version becomes the challenger, the champion stays.
    champion_version = _current_champion_version(client)
    challenger = run_cycle(stack_settings, make_storage(stack_settings), tracker, only=ONLY, margin=1.0).registered
    assert challenger["alias"] == "challenger" and challenger["model_version"] != champion_version
    pipeline = download_pipeline(stack_settings.mlflow_tracking_uri, challenger["artifact_uri"], challenger["sha256"])
    expected = _expected_proba(pipeline, customers[:4])
    for ref in ("churn-classifier@challenger", f"churn-classifier/{challenger['model_version']}"):
        r = client.post("/api/predict", params={"model_name": ref}, json=customers[:4])
        assert r.status_code == 200, r.text
        assert r.json()["classifier"]["model_version"] == challenger["model_version"]
        preds = r.json()["predictions"]
        assert {p["model_version"] for p in preds} == {challenger["model_version"]}
        np.testing.assert_allclose([p["churn_probability"] for p in preds], expected, rtol=0, atol=1e-12)
    # The champion still serves requests without model_name.
    r = client.post("/api/predict", json=customers[0])
    assert r.json()["predictions"][0]["model_version"] == champion_version
    # A bare name means its champion.
    r = client.post("/api/predict", params={"model_name": "churn-classifier"}, json=customers[0])
    assert r.json()["predictions"][0]["model_version"] == champion_version


@pytest.mark.parametrize(
    "ref", ["churn-classifier/99999", "no-such-model", "churn-classifier@no-such-alias", "no-such-model/1"]
)
def test_unknown_model_is_404(client, customers, ref):
    r = client.post("/api/predict", params={"model_name": ref}, json=customers[0])
    assert r.status_code == 404, r.text
    assert "model_name" in r.json()["fields"]


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "change, field",
    [
        ({"tenure_months": "twelve"}, "tenure_months"),
        ({"monthly_charges_usd": -5}, "monthly_charges_usd"),
        ({"gender": None}, "gender"),
        ({"contract": ""}, "contract"),
        ({"event_time": "2024-01-01T00:00:00"}, "event_time"),  # naive time: not UTC-aware
    ],
)
def test_bad_fields_are_422_naming_them(client, customers, change, field):
    r = client.post("/api/predict", json={**customers[0], **change})
    assert r.status_code == 422, r.text
    body = r.json()
    assert field in body["fields"]
    assert any(line.startswith(field) for line in body["errors"])


def test_missing_field_and_bad_list_item_are_422(client, customers):
    doc = {k: v for k, v in customers[0].items() if k != "contract"}
    r = client.post("/api/predict", json=doc)
    assert r.status_code == 422 and "contract" in r.json()["fields"]
    r = client.post("/api/predict", json=[customers[0], {**customers[1], "tenure_months": -1}])
    assert r.status_code == 422 and "1.tenure_months" in r.json()["fields"]
    r = client.post("/api/predict", json=[])
    assert r.status_code == 422


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_infinity_are_422_naming_the_field(client, customers, literal):
    doc = orjson.dumps({**customers[0], "monthly_charges_usd": 1.5}).replace(b"1.5", literal, 1)
    r = client.post("/api/predict", content=doc, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "monthly_charges_usd" in r.json()["fields"]


@pytest.mark.parametrize("body", [b"not json at all", b"", b"\xff\xfe\x00", b'{"customer_id": ', b"42", b"null"])
def test_non_json_and_non_objects_are_422(client, body):
    r = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"]


def test_body_over_limit_is_413(client, customers):
    big = customers * 200  # ~150 kB > the 64 KiB limit of this test server
    r = client.post("/api/predict", json=big)
    assert r.status_code == 413, r.text

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(100):
            yield b" " * 1024

    r = client.post("/api/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text


# --------------------------------------------------------- registry, metrics
def test_models_lists_versions_and_aliases(client, champion):
    r = client.get("/api/models")
    assert r.status_code == 200, r.text
    by_name = {m["name"]: m for m in r.json()["models"]}
    clf = by_name["churn-classifier"]
    assert clf["aliases"]["champion"] == _current_champion_version(client)
    versions = {v["version"]: v for v in clf["versions"]}
    assert champion["model_version"] in versions
    assert "roc_auc" in versions[champion["model_version"]]["metrics"]
    assert "champion" in versions[clf["aliases"]["champion"]]["aliases"]
    if "challenger" in clf["aliases"]:
        assert "challenger" in versions[clf["aliases"]["challenger"]]["aliases"]


def test_metrics_has_champion_evaluation_and_live_figures(client, customers):
    client.post("/api/predict", json=customers[0])
    body = client.get("/api/metrics").json()
    champ = body["champion"]
    assert champ["model_version"] == _current_champion_version(client)
    assert 0.5 < champ["metrics"]["roc_auc"] <= 1.0
    live = body["live"]
    assert live["predict_requests"] >= 1 and live["customers_scored"] >= 1
    assert live["latency"]["count"] >= 1 and live["latency"]["p50_ms"] > 0
    assert live["model_version"] == champ["model_version"]
    assert live["responses_by_status"]["200"] >= 1


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_health_is_503_without_a_champion(api_settings, auth, tracker):
    import asyncio

    from stream_app.api import create_app

    app = create_app(api_settings, tracker, follow_updates=False)  # nothing loads a champion

    async def check() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=auth) as c:
            assert (await c.get("/health")).status_code == 503
            assert (await c.post("/api/predict", json={})).status_code == 422
            r = await c.post("/api/predict", json={"customers": []})
            assert r.status_code == 422 and "customers" in r.json()["fields"]

    asyncio.run(check())


# -------------------------------------------------------------------- OpenAPI
def test_openapi_document_is_valid_openapi_3(client):
    from openapi_spec_validator import validate

    doc = client.get("/openapi.json").json()
    validate(doc)
    assert doc["openapi"].startswith("3.")
    assert {"/api/predict", "/api/metrics", "/api/models", "/health"} <= set(doc["paths"])
    assert "tenure_months" in doc["components"]["schemas"]["CustomerInput"]["properties"]
    # Swagger UI and ReDoc, their assets served by the API itself (details: tests/unit/stream_app/test_api_docs.py).
    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        page = client.get(path)
        assert page.status_code == 200 and "openapi.json" in page.text and "https://" not in page.text
        assert client.get(f"/docs/assets/{asset}").status_code == 200


# --------------------------------------------------------------- hot reload
def test_new_champion_is_served_without_restart(client, stack_settings, tracker, customers):
    from batch.cycle import run_cycle
    from plumbing.clients import make_storage

    before = _current_champion_version(client)
    second = run_cycle(stack_settings, make_storage(stack_settings), tracker, only=ONLY, margin=-1.0)
    new_version = second.registered["model_version"]
    assert second.registered["alias"] == "champion" and new_version != before
    announced = time.monotonic()
    while True:
        r = client.post("/api/predict", json=customers[0])
        if r.json()["predictions"][0]["model_version"] == new_version:
            break
        assert time.monotonic() - announced < 5, "API did not serve the new champion within 5 s"
        time.sleep(0.05)
    assert _current_champion_version(client) == new_version


def _wait_served(client: httpx.Client, customer: dict, version: str, within_s: float) -> float:
    t0 = time.monotonic()
    while client.post("/api/predict", json=customer).json()["predictions"][0]["model_version"] != version:
        assert time.monotonic() - t0 < within_s, f"API did not serve version {version} within {within_s} s"
        time.sleep(0.1)
    return time.monotonic() - t0


def test_unannounced_champion_and_alias_moved_by_hand_are_served_after_the_registry_check(
    client, stack_settings, tracker, customers
):
    """The registry is the source of truth: a champion whose announcement was never read (here: a
    cycle run without announcing) and a rollback made by moving the alias in MLflow are both served
    within the check interval, without restart."""
    from batch.cycle import run_cycle
    from batch.promotion import CLASSIFIER_NAME
    from plumbing.clients import make_storage

    before = _current_champion_version(client)
    quiet = run_cycle(stack_settings, make_storage(stack_settings), tracker, only=ONLY, margin=-1.0, announce=False)
    new_version = quiet.registered["model_version"]
    assert quiet.registered["alias"] == "champion" and not quiet.announced and new_version != before
    _wait_served(client, customers[0], new_version, within_s=RECONCILE_S + 10)

    tracker.set_registered_model_alias(CLASSIFIER_NAME, "champion", before)  # roll back by hand
    _wait_served(client, customers[0], before, within_s=RECONCILE_S + 10)
    assert _current_champion_version(client) == before
    tracker.set_registered_model_alias(CLASSIFIER_NAME, "champion", new_version)
    _wait_served(client, customers[0], new_version, within_s=RECONCILE_S + 10)

    # An alias moved to a version whose artifact fails verification: refused once, not every check.
    failed_before = client.get("/api/metrics").json()["live"]["reloads_failed"]
    sha = tracker.get_model_version(CLASSIFIER_NAME, before).tags["sha256"]
    tracker.set_model_version_tag(CLASSIFIER_NAME, before, "sha256", "0" * 64)
    tracker.set_registered_model_alias(CLASSIFIER_NAME, "champion", before)
    try:
        time.sleep(4 * RECONCILE_S + 1)
        live = client.get("/api/metrics").json()["live"]
        assert live["model_version"] == new_version
        assert live["reloads_failed"] == failed_before + 1
        assert "ArtifactVerificationError" in live["last_reload_error"]
    finally:
        tracker.set_model_version_tag(CLASSIFIER_NAME, before, "sha256", sha)
        tracker.set_registered_model_alias(CLASSIFIER_NAME, "champion", new_version)


# -------------------------------------------------------------- schemathesis
def test_schemathesis_finds_no_server_errors_or_schema_violations(api_url, auth):
    """Property-based run over /openapi.json: valid and invalid requests, 50 of each per operation.

    Every built-in check runs on each response: no 5xx, status codes and content types
    documented, bodies conforming to the response schemas, invalid data rejected, and
    (ignored_auth) the same request without the credential, or with a made-up one, refused.
    """
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.config import SchemathesisConfig

    # A body over the body limit (64 KiB on this test server, 1 MiB by default) is refused
    # with a documented 413 before it is parsed: for an invalid body generated that large it
    # is the right refusal, but it is not in schemathesis' default list of rejections.
    rejected = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
    # The key as a configured header: the ignored_auth check then also sends each accepted request
    # without it and with a made-up one, and expects 401/403.
    config = SchemathesisConfig.from_dict(
        {
            "headers": {"Authorization": auth["authorization"]},
            "checks": {"negative_data_rejection": {"expected-statuses": rejected}},
        }
    )
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json", config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/api/predict", "/api/metrics", "/api/models", "/health"}
    failures: list[str] = []
    calls = 0
    live = httpx.get(f"{api_url}/api/metrics", headers=auth, timeout=30).json()["live"]
    started = time.monotonic()
    for op in operations:
        # Invalid data exists only for operations that take input.
        modes = [GenerationMode.POSITIVE]
        if len(op.query) or len(op.body):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=50, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
            )
            def run(case) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(timeout=30)

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
                failures.append(f"{op.method.upper()} {op.path} [{mode}]: {type(exc).__name__}: {exc}"[:3000])
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures)
    assert calls >= 100  # at least the predict operation's 50 valid + 50 invalid requests
    after = httpx.get(f"{api_url}/api/metrics", headers=auth, timeout=30).json()["live"]
    # The key was sent: the valid requests reached the handler; the probes without it were refused.
    assert after["predict_requests"] - live["predict_requests"] >= 50
    assert after["auth_failures_by_reason"].get("missing_credential", 0) > live["auth_failures_by_reason"].get(
        "missing_credential", 0
    )
    assert elapsed < 120


def test_bench_api_runs_open_loop_at_the_target_rate_beside_its_references(stack_settings, champion, tmp_path):
    """``churn bench api`` end to end (short): every request answered, the schedule kept, figures consistent."""
    import json

    from churn_stream.bench.api import run_bench_api

    out = tmp_path / "bench-api.json"
    result = run_bench_api(stack_settings, json_path=out, rate=200, duration_s=3)

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["requests"] == 600 and result["ok_200"] == 600 and result["statuses"] == {"200": 600}
    assert result["rps"] == pytest.approx(200, rel=0.1)
    # Latency from the due time includes the wait for the send, so it is never below latency from the send.
    assert result["p50_ms"] >= result["service_p50_ms"] > 0
    assert result["p99_ms"] >= result["p50_ms"]
    assert result["client_send_lag_p50_ms"] >= 0
    assert result["server_side_p50_ms"] > 0 and result["server_cpu_ms_per_request"] > 0
    assert result["sklearn_predict_proba_ms"] > 0 and 0 < result["sklearn_probability"] < 1
    assert result["model_name"] == "churn-classifier"
    assert result["p50_target_met"] == (result["p50_ms"] <= 1.0)
    assert result["p99_target_met"] == (result["p99_ms"] <= 5.0)
    # The bare Starlette floor, loaded the same way in the same run.
    assert result["bare_ok_200"] == 600 and 0 < result["bare_p50_ms"] <= result["bare_p99_ms"]
    assert result["bare_server_cpu_ms_per_request"] > 0 and result["bare_client_cpu_ms_per_request"] > 0
    loads = ("load_avg_before", "load_avg_after_bare", "load_avg_after_api", "load_avg_after")
    assert all(len(result[k]) == 3 for k in loads)
