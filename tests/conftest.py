"""Session fixtures: real servers for the integration tests.

Backend (``CHURN_TEST_BACKEND``):

* ``local`` — the local stack (SeaweedFS, Tansu, MLflow as processes) on free ports
  in its own data directory, so tests run while a demo stack is up on the default ports;
* ``containers`` — Apache Kafka, MinIO and PostgreSQL in throw-away containers
  (testcontainers) plus an MLflow server process on them; needs a Docker engine;
* ``auto`` (default) — ``containers`` when a Docker engine answers, ``local`` otherwise.

Tests that stop and start services (fault injection) use :func:`local_stack` directly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TELCO_CSV = REPO / "data" / "telco_customer_churn.csv"


@pytest.fixture(scope="session")
def telco_csv() -> Path:
    """The shipped IBM Telco customer churn file."""
    return TELCO_CSV


@pytest.fixture(scope="session")
def local_stack():
    """A running LocalStack on free ports; topics in memory (ephemeral) for speed."""
    from churn_stream.stack import LocalStack

    data_dir = Path(tempfile.mkdtemp(prefix="churn-test-stack-"))
    stack = LocalStack.for_tests(data_dir)
    try:
        stack.up(ephemeral=True)
        yield stack
    finally:
        stack.down()
        if os.environ.get("CHURN_KEEP_TEST_DATA") != "1":
            shutil.rmtree(data_dir, ignore_errors=True)


def _backend() -> str:
    choice = os.environ.get("CHURN_TEST_BACKEND", "auto")
    if choice not in {"auto", "local", "containers"}:
        raise ValueError(f"CHURN_TEST_BACKEND: expected auto, local or containers, got {choice!r}")
    if choice == "auto":
        from tests.integration.containers import docker_available

        return "containers" if docker_available() else "local"
    return choice


@pytest.fixture(scope="session")
def container_settings():
    """Settings on testcontainers (Kafka, MinIO, PostgreSQL) plus a local MLflow server process on them."""
    import subprocess
    import sys
    import time

    import httpx

    from churn_stream.stack import LocalStack
    from plumbing.settings import Settings
    from tests.integration.containers import start_container_stack

    stack = start_container_stack()
    data_dir = Path(tempfile.mkdtemp(prefix="churn-test-containers-"))
    port = LocalStack.free_ports(1)[0]
    mlflow_exe = str(Path(sys.executable).with_name("mlflow"))
    log = open(data_dir / "mlflow.log", "ab")
    proc = subprocess.Popen(
        [mlflow_exe, *stack.mlflow_server_args(port=port)],
        env=stack.mlflow_server_env(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"MLflow on the containers did not start; see {data_dir / 'mlflow.log'}")
            time.sleep(1)
        yield Settings().with_overrides(
            **stack.settings_overrides(), data_dir=data_dir, mlflow_tracking_uri=f"http://127.0.0.1:{port}"
        )
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_settings(request):
    """Settings pointing at the session's servers (backend chosen by ``CHURN_TEST_BACKEND``)."""
    from churn_stream.stack import LocalStack

    if _backend() == "containers":
        base = request.getfixturevalue("container_settings")
    else:
        base = request.getfixturevalue("local_stack").settings()
    return base.with_overrides(worker_web_port=LocalStack.free_ports(1)[0])
