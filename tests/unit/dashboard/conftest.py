"""Real servers on loopback for the dashboard's tests: the prediction API requiring keys."""

from __future__ import annotations

import socket
import threading
import time

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


@pytest.fixture(scope="package")
def keyed_api(telco_csv, api_keys_file):
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
    keys_file = api_keys_file
    keys = {s: ApiKeyStore(keys_file).create(s.replace(":", "-"), [s])[1] for s in ("predict", "models:read")}
    app = create_app(Settings(api_keys_file=str(keys_file)), tracker=None, store=store, follow_updates=False)
    port = free_port()
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
