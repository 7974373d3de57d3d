"""Real servers on loopback for the dashboard's tests: the prediction API requiring keys."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, alive, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers (any status) or fail."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and alive(), f"{url} did not start"
        time.sleep(0.05)


@pytest.fixture(scope="package")
def api_keys_file(tmp_path_factory):
    """The key file of :func:`keyed_api` (the dashboard's login reads the same one)."""
    return tmp_path_factory.mktemp("keys") / "api_keys.json"


#: A Telco customer as a user types it in the form: numbers as text, yes/no as booleans (dropdowns).
FORM_CUSTOMER = {
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


@contextlib.contextmanager
def serve_api(telco_csv, settings) -> Iterator[str]:
    """The prediction API (uvicorn in a thread, a Telco champion installed, no registry); yields its predict URL."""
    import uvicorn

    from batch.features import classification_data
    from batch.ingest import read_source_csv
    from schemas.profiles import TELCO
    from scratch_models import LogisticRegression, ScoringPipeline
    from stream_app.api import create_app
    from stream_app.model_store import ModelStore

    data = classification_data(read_source_csv(telco_csv, TELCO), TELCO)
    store = ModelStore("http://registry.invalid", expected_features=list(TELCO.features))
    model = LogisticRegression(C=1.0).fit(data.X_train, data.y_train)
    store.install(ScoringPipeline(data.preprocessor, model, threshold=0.4), "churn-classifier", "7")
    app = create_app(settings, tracker=None, store=store, follow_updates=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="api-for-dashboard-tests", daemon=True)
    thread.start()
    wait_http(f"http://127.0.0.1:{port}/health", thread.is_alive)
    try:
        yield f"http://127.0.0.1:{port}/api/predict"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="package")
def keyed_api(telco_csv, api_keys_file):
    """The API requiring keys (:func:`serve_api`); yields (url, keys by scope)."""
    from plumbing.api_keys import ApiKeyStore
    from plumbing.settings import Settings

    keys = {s: ApiKeyStore(api_keys_file).create(s.replace(":", "-"), [s])[1] for s in ("predict", "models:read")}
    with serve_api(telco_csv, Settings(api_keys_file=str(api_keys_file))) as url:
        yield url, keys
