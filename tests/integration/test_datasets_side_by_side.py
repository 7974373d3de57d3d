"""Telco and retail trained, served and scored side by side on one stack (issue 14 points 4-6, 18 point 4).

One batch cycle per data set (logistic regression + multiple regression), one ``churn worker
--dataset`` each, events produced to each data set's ``customers`` topic: every event is
scored on its own namespace's topics by its own champion, nothing crosses, each consumer
group commits only its own offsets, ``churn api --dataset retail`` predicts a retail customer,
and a retail worker refuses a Telco-trained model registered as the retail champion, saying
why. ``churn produce --rate`` stamps event_time as it sends.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import httpx
import orjson
import pytest

from tests.integration.kafka_tools import read_topic, wait_for_count

pytestmark = pytest.mark.integration

FAST_ZOO = {"logistic_regression", "multiple_regression"}
SUFFIX = ".sbs"
BASE_GROUP = "churn-scorer-sbs"
N_EVENTS = 300


@pytest.fixture(scope="module")
def retail_csv(tmp_path_factory):
    from batch.retail import write_retail_csv

    path = tmp_path_factory.mktemp("retail") / "retail.csv"
    write_retail_csv(path, rows=3000, seed=0)
    return path


@pytest.fixture(scope="module")
def champions(stack_settings, retail_csv):
    from batch.cycle import run_cycle
    from plumbing.clients import make_storage, make_tracker

    out = {}
    for dataset, source in (("telco", None), ("retail", retail_csv)):
        result = run_cycle(
            stack_settings,
            make_storage(stack_settings),
            make_tracker(stack_settings),
            dataset=dataset,
            source=source,
            only=FAST_ZOO,
            margin=-1.0,
        )
        assert result.registered["alias"] == "champion", dataset
        out[dataset] = result.registered
    assert out["retail"]["model_name"] == "retail-churn-classifier"
    assert out["telco"]["model_name"] == "churn-classifier"
    return out


def _settings_for(stack_settings, dataset: str, tmp_path_factory):
    from churn_stream.stack import LocalStack

    return stack_settings.with_overrides(
        dataset=dataset,
        consumer_group=BASE_GROUP,
        topic_suffix=SUFFIX,
        worker_web_port=LocalStack.free_ports(1)[0],
        data_dir=tmp_path_factory.mktemp(f"worker-{dataset}"),
    )


@pytest.fixture(scope="module")
def workers(stack_settings, champions, tmp_path_factory):
    from churn_stream.demo import start_cli, stop_worker, wait_worker_ready

    procs = {}
    settings = {}
    try:
        for dataset in ("telco", "retail"):
            s = settings[dataset] = _settings_for(stack_settings, dataset, tmp_path_factory)
            procs[dataset] = start_cli(
                s,
                ["worker", "--dataset", dataset],
                s.data_dir / "worker.log",
                {
                    "CHURN_CONSUMER_GROUP": BASE_GROUP,
                    "CHURN_WORKER_WEB_PORT": str(s.worker_web_port),
                    "CHURN_TOPIC_SUFFIX": SUFFIX,
                    "CHURN_MODEL_RECONCILE_S": "2",
                },
            )
        for dataset, proc in procs.items():
            wait_worker_ready(settings[dataset], proc, timeout_s=180)
        yield settings, procs
    finally:
        for proc in procs.values():
            stop_worker(proc)


def _health(settings) -> dict:
    return httpx.get(f"http://127.0.0.1:{settings.worker_web_port}/health", timeout=5).json()


def _health_when_committed(settings, n: int, timeout_s: float = 15.0) -> dict:
    """``/health`` once ``scored`` reached ``n`` (or the last one read, after ``timeout_s``).

    The counters advance when a batch is committed, which may follow the scores'
    arrival on their topic by a commit interval or more.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        health = _health(settings)
        if health["scored"] >= n or time.monotonic() > deadline:
            return health
        time.sleep(0.2)


async def _committed(settings, group: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from plumbing.clients import kafka_kwargs

    consumer = AIOKafkaConsumer(**kafka_kwargs(settings), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        total = 0
        for p in partitions:
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


def test_each_dataset_scored_on_its_own_topics_by_its_own_champion(
    stack_settings, champions, workers, telco_csv, retail_csv
):
    from batch.ingest import read_source_csv
    from churn_stream.produce import produce_csv
    from schemas.namespace import Namespace
    from schemas.profiles import RETAIL, TELCO

    settings, _ = workers
    for dataset, path in (("telco", telco_csv), ("retail", retail_csv)):
        assert produce_csv(settings[dataset], path, limit=N_EVENTS) == N_EVENTS
    ids = {
        "telco": set(read_source_csv(telco_csv, TELCO)["customer_id"][:N_EVENTS]),
        "retail": set(read_source_csv(retail_csv, RETAIL)["customer_id"][:N_EVENTS]),
    }
    for dataset in ("telco", "retail"):
        ns = Namespace.for_dataset(dataset, BASE_GROUP)
        scores = wait_for_count(settings[dataset], ns.scores + SUFFIX, lambda r: True, N_EVENTS, timeout_s=180)
        docs = [r["value"] for r in scores]
        assert {d["customer_id"] for d in docs} == ids[dataset]
        assert {(d["model_name"], d["model_version"]) for d in docs} == {
            (champions[dataset]["model_name"], champions[dataset]["model_version"])
        }
        assert all("unknown_categories" in d for d in docs)
        health = _health_when_committed(settings[dataset], N_EVENTS)
        assert health["dataset"] == dataset and health["consumer_group"] == ns.consumer_group
        assert health["scored"] == N_EVENTS and health["dead_letters"] == 0

    # Nothing crosses: no event of one data set on the other's topics.
    time.sleep(2.0)
    for dataset, other in (("telco", "retail"), ("retail", "telco")):
        ns = Namespace.for_dataset(dataset, BASE_GROUP)
        for topic in (ns.customers, ns.scores, ns.alerts, ns.customers_dlq):
            records = read_topic(settings[dataset], topic + SUFFIX, timeout_s=3.0)
            keys = {r["key"] for r in records}
            assert not keys & ids[other], (topic, sorted(keys & ids[other])[:3])
            if topic in (ns.customers, ns.scores):
                assert len(records) == N_EVENTS, topic
            if topic == ns.customers_dlq:
                assert records == []

    # Each group committed its own input and never the other's.
    telco_ns, retail_ns = Namespace.for_dataset("telco", BASE_GROUP), Namespace.for_dataset("retail", BASE_GROUP)
    assert telco_ns.consumer_group != retail_ns.consumer_group

    async def offsets() -> tuple[int, int, int, int]:
        s = settings["telco"]
        return (
            await _committed(s, telco_ns.consumer_group, telco_ns.customers + SUFFIX),
            await _committed(s, retail_ns.consumer_group, retail_ns.customers + SUFFIX),
            await _committed(s, telco_ns.consumer_group, retail_ns.customers + SUFFIX),
            await _committed(s, retail_ns.consumer_group, telco_ns.customers + SUFFIX),
        )

    deadline = time.monotonic() + 30
    while True:
        got = asyncio.run(offsets())
        if got == (N_EVENTS, N_EVENTS, 0, 0) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert got == (N_EVENTS, N_EVENTS, 0, 0)


def test_api_serving_retail_predicts_a_retail_customer(stack_settings, champions, retail_csv, tmp_path):
    from churn_stream.demo import start_cli, stop_worker
    from churn_stream.produce import csv_to_customer_docs
    from churn_stream.stack import LocalStack
    from plumbing.api_keys import ApiKeyStore
    from schemas.profiles import RETAIL

    api_settings = stack_settings.with_overrides(api_keys_file=str(tmp_path / "api_keys.json"))
    _, key = ApiKeyStore(api_settings.api_keys_path).create("retail-test", ["predict", "models:read"])
    headers = {"Authorization": f"Bearer {key}"}
    port = LocalStack.free_ports(1)[0]
    proc = start_cli(
        api_settings,
        ["api", "--dataset", "retail", "--port", str(port)],
        tmp_path / "api.log",
        extra_env={"CHURN_API_KEYS_FILE": str(api_settings.api_keys_path)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "api.log").read_text()[-2000:]
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        _, doc = csv_to_customer_docs(retail_csv, RETAIL, limit=1)[0]
        r = httpx.post(f"{base}/api/predict", json=doc, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        prediction = r.json()["predictions"][0]
        assert prediction["customer_id"] == doc["customer_id"]
        assert (prediction["model_name"], prediction["model_version"]) == (
            "retail-churn-classifier",
            champions["retail"]["model_version"],
        )
        assert 0.0 <= prediction["churn_probability"] <= 1.0
        body = httpx.get(f"{base}/openapi.json", timeout=5).json()["components"]["schemas"]["CustomerInput"]
        assert "days_since_last_purchase" in body["properties"] and "tenure_months" not in body["properties"]
        # A Telco customer is not a retail customer: 422 naming the missing fields.
        bad = httpx.post(
            f"{base}/api/predict", json={"customer_id": "x", "tenure_months": 3}, headers=headers, timeout=10
        )
        assert bad.status_code == 422 and "age" in bad.json()["fields"]
    finally:
        stop_worker(proc)


def test_retail_worker_refuses_a_telco_model_registered_as_retail_champion(
    stack_settings, champions, workers, tmp_path
):
    from batch.promotion import register_version
    from plumbing.artifacts import download_pipeline
    from plumbing.clients import make_tracker

    settings, _ = workers
    telco = champions["telco"]
    local = tmp_path / "telco"
    download_pipeline(stack_settings.mlflow_tracking_uri, telco["artifact_uri"], telco["sha256"], dst_dir=local)
    path = next(local.rglob("*.npz"))
    tracker = make_tracker(stack_settings)
    wrong = register_version(
        tracker,
        "retail-churn-classifier",
        telco["run_id"],
        path,
        {"roc_auc": 0.99},
        telco["feature_names"],
        model="logistic_regression",
        metric="roc_auc",
    )
    tracker.set_registered_model_alias("retail-churn-classifier", "champion", wrong["model_version"])
    try:
        deadline = time.monotonic() + 60
        health = _health(settings["retail"])
        while health.get("model_refusals", {}).get("contract", 0) < 1 and time.monotonic() < deadline:
            time.sleep(1.0)
            health = _health(settings["retail"])
        assert health["model_refusals"]["contract"] >= 1, health
        assert health["model_version"] == champions["retail"]["model_version"]  # still the retail champion
        assert "is not retail@" in health["last_reload_error"]
        log = (settings["retail"].data_dir / "worker.log").read_text()
        assert "reason=contract" in log and f"model_version={wrong['model_version']}" in log
        metrics = httpx.get(f"http://127.0.0.1:{settings['retail'].worker_web_port}/metrics", timeout=5).text
        assert 'churn_model_refusals_total{reason="contract"}' in metrics
        assert _health(settings["telco"])["model_refusals"]["contract"] == 0
    finally:
        tracker.set_registered_model_alias("retail-churn-classifier", "champion", champions["retail"]["model_version"])


def test_produce_at_a_rate_stamps_event_time_as_it_sends(stack_settings, telco_csv, tmp_path_factory):
    from churn_stream.produce import produce_csv

    s = stack_settings.with_overrides(topic_suffix=".sbs-rate")
    start = time.time()
    assert produce_csv(s, telco_csv, rate=20.0, limit=40) == 40
    records = read_topic(s, "customers.sbs-rate", timeout_s=5.0)
    times = sorted(datetime.fromisoformat(orjson.loads(orjson.dumps(r["value"]))["event_time"]) for r in records)
    assert len(times) == 40
    spread = (times[-1] - times[0]).total_seconds()
    assert 1.5 <= spread <= 10.0  # 40 events at 20/s: ~2 s apart first to last (read-time stamps: 0 s)
    assert times[0].timestamp() >= start - 1.0
