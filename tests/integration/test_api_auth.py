"""Who the prediction API refuses, proven on the real stack: ``churn api`` as a child process.

Each server here is the real command (``python -m churn_stream.cli api``) serving the
registry's champion from the session's MLflow and following ``model-updated`` on its
broker; keys are made and revoked with the real ``churn api keys`` commands. Its whole
log (DEBUG) is searched for every key and secret afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

pytestmark = pytest.mark.integration

ONLY = {"logistic_regression"}


@pytest.fixture(scope="module")
def champion(stack_settings):
    """The registry's churn champion (a quick cycle when there is none yet)."""
    from mlflow.exceptions import MlflowException

    from plumbing.clients import make_tracker

    tracker = make_tracker(stack_settings)
    try:
        return tracker.get_model_version_by_alias("churn-classifier", "champion").version
    except MlflowException:
        from batch.cycle import run_cycle
        from plumbing.clients import make_storage

        result = run_cycle(stack_settings, make_storage(stack_settings), tracker, only=ONLY, margin=-1.0)
        return result.registered["model_version"]


@pytest.fixture(scope="module")
def customer(telco_csv) -> dict:
    from churn_stream.produce import csv_to_customer_events

    return orjson.loads(csv_to_customer_events(telco_csv, limit=1)[0][1])


def _env(stack_settings, keys_file: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_API")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": stack_settings.kafka_bootstrap_servers,
            "MLFLOW_TRACKING_URI": stack_settings.mlflow_tracking_uri,
            "CHURN_DATA_DIR": str(keys_file.parent),
            "CHURN_API_KEYS_FILE": str(keys_file),
            "PYTHONPATH": os.pathsep.join(sys.path),
            **extra,
        }
    )
    return env


def _churn(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "churn_stream.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


class Api:
    """``churn api`` on a free port, logging to a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        from churn_stream.stack import LocalStack

        self.port = LocalStack.free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "churn_stream.cli", "--log-level", "DEBUG", "api", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_serving(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"churn api exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError("churn api loaded no champion within 120 s")

    def stop(self) -> None:
        from churn_stream.bench.api import stop_api

        stop_api(self.proc)


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def secured(stack_settings, champion, tmp_path_factory):
    """``churn api`` with a key file holding a predict, a models:read and an admin key; yields (api, keys, env)."""
    d = tmp_path_factory.mktemp("api-auth")
    env = _env(stack_settings, d / "api_keys.json", CHURN_API_AUTH_MAX_FAILURES="1000")
    keys = {}
    for name, scope in (("scorer", "predict"), ("reader", "models:read"), ("ops", "admin"), ("leaver", "predict")):
        done = _churn(env, "api", "keys", "create", "--name", name, "--scope", scope)
        assert done.returncode == 0, done.stderr
        keys[name] = done.stdout.strip()
    api = Api(env, d / "api.log")
    try:
        api.wait_serving()
        yield api, keys, env
    finally:
        api.stop()


def test_no_key_and_wrong_key_are_401(secured, customer):
    api, keys, _ = secured
    r = httpx.post(f"{api.url}/api/predict", json=customer)
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="churn-api"'
    assert r.json() == {
        "error": "authentication required",
        "errors": ["Authorization: expected 'Bearer <API key or token>'"],
        "fields": [],
    }
    key_id = keys["scorer"].split("_")[1]
    for wrong in (f"chs_{key_id}_{'A' * 43}", f"chs_{'f' * 12}_{'A' * 43}", "letmein"):
        r = httpx.post(f"{api.url}/api/predict", json=customer, headers=_bearer(wrong))
        assert r.status_code == 401, wrong
        assert r.json()["error"] == "invalid credential"
        assert r.headers["www-authenticate"] == 'Bearer realm="churn-api", error="invalid_token"'
    assert httpx.get(f"{api.url}/api/models").status_code == 401
    assert httpx.get(f"{api.url}/api/metrics").status_code == 401


def test_predict_key_scores_and_models_read_key_is_403_on_predict(secured, customer, champion):
    api, keys, _ = secured
    r = httpx.post(f"{api.url}/api/predict", json=customer, headers=_bearer(keys["scorer"]))
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["customer_id"] == customer["customer_id"]
    r = httpx.post(f"{api.url}/api/predict", json=customer, headers=_bearer(keys["reader"]))
    assert r.status_code == 403
    assert r.json() == {
        "error": "scope predict required",
        "errors": ["this credential's scopes: models:read"],
        "fields": [],
    }
    assert r.headers["www-authenticate"] == 'Bearer realm="churn-api", error="insufficient_scope", scope="predict"'
    assert httpx.get(f"{api.url}/api/models", headers=_bearer(keys["reader"])).status_code == 200
    assert httpx.get(f"{api.url}/api/models", headers=_bearer(keys["scorer"])).status_code == 403
    assert httpx.post(f"{api.url}/api/predict", json=customer, headers=_bearer(keys["ops"])).status_code == 200
    # Open without a credential: readiness and the documentation.
    for path in ("/health", "/openapi.json", "/docs", "/redoc"):
        assert httpx.get(f"{api.url}{path}").status_code == 200, path


def test_revoked_key_is_401_without_restart(secured, customer):
    api, keys, env = secured
    assert httpx.post(f"{api.url}/api/predict", json=customer, headers=_bearer(keys["leaver"])).status_code == 200
    done = _churn(env, "api", "keys", "revoke", "leaver")
    assert done.returncode == 0, done.stderr
    listed = _churn(env, "api", "keys", "list", "--json").stdout
    assert '"revoked_at": null' not in [line for line in listed.splitlines() if '"leaver"' in line][0]
    deadline = time.monotonic() + 5
    while (
        r := httpx.post(f"{api.url}/api/predict", json=customer, headers=_bearer(keys["leaver"]))
    ).status_code != 401:
        assert time.monotonic() < deadline, f"revoked key still answered {r.status_code} after 5 s"
        time.sleep(0.2)


def test_refusals_are_counted_by_reason(secured):
    api, keys, _ = secured
    live = httpx.get(f"{api.url}/api/metrics", headers=_bearer(keys["reader"])).json()["live"]
    print(
        "auth_failures_by_reason", live["auth_failures_by_reason"], "responses_by_status", live["responses_by_status"]
    )
    by_reason = live["auth_failures_by_reason"]
    assert by_reason["missing_credential"] >= 3 and by_reason["wrong_secret"] >= 1
    assert by_reason["unknown_key"] >= 1 and by_reason["malformed_key"] >= 1  # "letmein": not shaped like a key
    assert by_reason["insufficient_scope"] >= 2 and by_reason["revoked_key"] >= 1
    assert live["responses_by_status"]["401"] >= 7 and live["responses_by_status"]["403"] >= 2


def test_api_log_holds_no_key_or_secret(secured):
    """Runs after the refusals above (pytest keeps file order): the DEBUG log of everything they did."""
    api, keys, env = secured
    text = api.log.read_text()
    assert "reason=wrong_secret" in text and "reason=revoked_key" in text  # the log did see the refusals
    for key in keys.values():
        assert key not in text
        # The secret part alone: chs_<key id>_<secret>, and the secret itself may hold "_" (URL-safe base64).
        assert key.split("_", 2)[2] not in text
    created = _churn(env, "api", "keys", "list", "--json").stdout
    assert not any(k in created for k in keys.values()) and '"hash"' not in created


def test_rate_limit_answers_429_after_the_configured_failures(stack_settings, champion, tmp_path, customer):
    env = _env(stack_settings, tmp_path / "api_keys.json", CHURN_API_AUTH_MAX_FAILURES="5")
    key = _churn(env, "api", "keys", "create", "--name", "ops", "--scope", "admin").stdout.strip()
    api = Api(env, tmp_path / "api.log")
    try:
        api.wait_serving()
        statuses = [
            httpx.post(
                f"{api.url}/api/predict", json=customer, headers=_bearer(f"chs_{'0' * 12}_{'x' * 43}")
            ).status_code
            for _ in range(6)
        ]
        assert statuses == [401] * 5 + [429]
        r = httpx.post(f"{api.url}/api/predict", json=customer, headers=_bearer(key))  # a good key from there too
        assert r.status_code == 429 and 55 <= int(r.headers["retry-after"]) <= 60
        assert r.json()["error"] == "too many refused credentials"
        assert httpx.get(f"{api.url}/health").status_code == 200  # readiness probes are never limited
    finally:
        api.stop()
    text = api.log.read_text()
    assert "API client rate-limited client=127.0.0.1 failures=5" in text and key not in text


def test_auth_none_serves_open_and_says_so(stack_settings, champion, tmp_path, customer):
    api = Api(_env(stack_settings, tmp_path / "api_keys.json", CHURN_API_AUTH="none"), tmp_path / "api.log")
    try:
        api.wait_serving()
        assert httpx.post(f"{api.url}/api/predict", json=customer).status_code == 200
    finally:
        api.stop()
    assert "WARNING stream_app.api.app API authentication is OFF (CHURN_API_AUTH=none)" in api.log.read_text()


def test_auth_on_without_keys_refuses_to_start_with_one_line(stack_settings, tmp_path):
    done = _churn(_env(stack_settings, tmp_path / "api_keys.json"), "--log-level", "WARNING", "api", "--port", "1")
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("Error: AuthConfigError: API authentication is on") and "churn api keys create" in line
