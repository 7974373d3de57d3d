"""The quickstart's main job, `churn demo --exit`, as a user runs it: a fresh data directory, a stack the
command starts itself (durable broker), a champion trained because none exists, every Telco customer scored.
Then a second run on the same stack (champion kept, nothing retrained) and `churn stack down`."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TELCO_ROWS = 7043


def _free(port: int) -> bool:
    from churn_stream.stack import port_in_use

    return not port_in_use("127.0.0.1", port)


def _s3_base_port() -> int:
    """An S3 port whose SeaweedFS companions (+1..+4, each also + GRPC_OFFSET) are free too."""
    from churn_stream.stack import GRPC_OFFSET, WEED_PORT_NAMES

    for _ in range(500):
        base = random.randint(20_000, 50_000)
        http = [base + i for i in range(len(WEED_PORT_NAMES) + 1)]
        if all(_free(p) and _free(p + GRPC_OFFSET) for p in http):
            return base
    raise RuntimeError("no free port range for SeaweedFS")


def _run(args: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    churn = Path(sys.executable).with_name("churn")
    return subprocess.run([str(churn), *args], env=env, capture_output=True, text=True, timeout=timeout_s)


def test_churn_demo_on_a_fresh_machine_scores_every_customer_once():
    from churn_stream.stack import LocalStack

    data_dir = Path(tempfile.mkdtemp(prefix="churn-test-demo-"))
    s3 = _s3_base_port()
    kafka, mlflow, web = LocalStack.free_ports(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "KAFKA_", "MINIO_", "MLFLOW_", "AWS_"))}
    env.update(
        {
            "CHURN_DATA_DIR": str(data_dir),
            "MINIO_ENDPOINT": f"127.0.0.1:{s3}",
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka}",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow}",
            "CHURN_WORKER_WEB_PORT": str(web),
        }
    )
    try:
        t0 = time.monotonic()
        first = _run(["demo", "--exit"], env, timeout_s=1200)
        first_s = time.monotonic() - t0
        assert first.returncode == 0, first.stderr[-4000:]
        summary = json.loads(first.stdout.strip().splitlines()[-1])
        print(json.dumps({"first_run_s": round(first_s, 1), **summary}))
        assert "no champion registered: running a batch cycle first" in first.stderr
        assert summary["produced"] == summary["scored"] == TELCO_ROWS
        assert summary["duplicates"] == 0
        # About a quarter of Telco churns; the champion's tuned threshold flags more than that.
        assert 0.2 * TELCO_ROWS < summary["alerts"] < 0.6 * TELCO_ROWS
        # Every zoo classifier is registered as a version; the champion is the best of them.
        assert summary["champion_model"] in {"gradient_boosting", "logistic_regression", "mlp", "svm", "random_forest"}
        assert summary["champion_roc_auc"] > 0.84

        second = _run(["demo", "--exit", "--events", "300"], env, timeout_s=600)
        assert second.returncode == 0, second.stderr[-4000:]
        again = json.loads(second.stdout.strip().splitlines()[-1])
        assert "running a batch cycle first" not in second.stderr
        assert again["produced"] == again["scored"] == 300 and again["duplicates"] == 0
        assert again["model_version"] == summary["model_version"]
    finally:
        down = _run(["stack", "down"], env, timeout_s=120)
        shutil.rmtree(data_dir, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert _free(kafka) and _free(mlflow) and _free(s3) and _free(web)
