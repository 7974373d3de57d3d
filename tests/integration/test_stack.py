"""The local stack with real servers on free ports in a temp dir.

The tests share one stack and run in file order: health, idempotent ``up``, mode
mismatch, a durable topic surviving a broker restart, and finally ``down``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from churn_stream.stack import BUCKETS, SERVICES, LocalStack, StackError, port_in_use

pytestmark = pytest.mark.integration

SECRET = "integration-secret-key"


def _listening_pids(port: int) -> set[int]:
    return {
        c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
    }


def _bindable(port: int) -> bool:
    return not port_in_use("127.0.0.1", port)


def _family(pid: int) -> set[int]:
    proc = psutil.Process(pid)
    return {proc.pid, *(child.pid for child in proc.children(recursive=True))}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    st = LocalStack.for_tests(tmp_path_factory.mktemp("stack"), access_key="itest", secret_key=SECRET)
    started = time.monotonic()
    try:
        st.up()
        print(f"stack up in {time.monotonic() - started:.1f} s")
        yield st
    finally:
        st.down()


def test_every_service_is_healthy_and_ours(stack: LocalStack) -> None:
    statuses = {s.name: s for s in stack.status()}
    assert list(statuses) == list(SERVICES)
    for name, s in statuses.items():
        assert s.healthy, name
        assert s.pid is not None and psutil.pid_exists(s.pid)
        assert stack.pid_path(name).read_text().strip() == str(s.pid)
        assert s.log == stack.log_path(name) and s.log.stat().st_size > 0
    assert statuses["kafka"].mode == "durable"
    # Every port is held by the process (tree) this stack started, and only on 127.0.0.1.
    for name in SERVICES:
        family = _family(statuses[name].pid)
        for port in stack.ports(name):
            assert _listening_pids(port) and _listening_pids(port) <= family, (name, port)
    ours = set().union(*(_family(s.pid) for s in statuses.values()))
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in ours:
            assert conn.laddr.ip == "127.0.0.1", conn


def test_buckets_exist_and_wrong_credentials_are_rejected(stack: LocalStack) -> None:
    from minio import Minio
    from minio.error import S3Error

    good = Minio(stack.s3_endpoint, access_key="itest", secret_key=SECRET, secure=False)
    assert {b.name for b in good.list_buckets()} >= set(BUCKETS)
    bad = Minio(stack.s3_endpoint, access_key="itest", secret_key="wrong-secret", secure=False)
    with pytest.raises(S3Error) as err:
        bad.list_buckets()
    assert err.value.code == "SignatureDoesNotMatch"


def test_mlflow_stores_runs(stack: LocalStack) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stack.mlflow_tracking_uri)
    experiment_id = client.create_experiment(f"stack-test-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "auc", 0.75)
    assert client.get_run(run.info.run_id).data.metrics == {"auc": 0.75}
    assert (stack.data_dir / "mlflow" / "mlflow.db").stat().st_size > 0


def test_second_up_starts_no_duplicates(stack: LocalStack) -> None:
    before = {s.name: s.pid for s in stack.status()}
    started = time.monotonic()
    statuses = stack.up()
    assert time.monotonic() - started < 5.0
    assert {s.name: s.pid for s in statuses} == before
    assert all(s.healthy for s in statuses)


def test_other_mode_is_refused_while_running(stack: LocalStack) -> None:
    pid = stack.pid("kafka")
    with pytest.raises(StackError, match="kafka is already running in durable mode"):
        stack.up(ephemeral=True)
    with pytest.raises(StackError, match="ephemeral was asked for"):
        stack.start_service("kafka", ephemeral=True)
    assert stack.pid("kafka") == pid
    assert stack.running_mode() == "durable"


def test_durable_topic_survives_broker_restart(stack: LocalStack) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    bootstrap = stack.kafka_bootstrap_servers

    async def produce() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"record-1", key=b"customer-1")
        finally:
            await producer.stop()

    async def consume() -> list[tuple[bytes, bytes]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=10_000, max_records=10)
        finally:
            await consumer.stop()
        return [(r.key, r.value) for records in batches.values() for r in records]

    asyncio.run(produce())
    old_pid = stack.pid("kafka")
    assert stack.stop_service("kafka") is True
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
    assert _bindable(stack.kafka_port)
    assert not stack.check_health("kafka")

    status = stack.start_service("kafka")  # no mode given: the remembered one
    assert status.healthy and status.mode == "durable"
    assert status.pid != old_pid
    assert asyncio.run(consume()) == [(b"customer-1", b"record-1")]


def test_down_frees_every_port_and_leaves_no_process(stack: LocalStack) -> None:
    pids = {s.name: s.pid for s in stack.status()}
    family = set().union(*(_family(pid) for pid in pids.values()))
    ports = [port for name in SERVICES for port in stack.ports(name)]

    assert stack.down() == ["mlflow", "kafka", "s3"]

    alive = [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert [port for port in ports if not _bindable(port)] == []
    assert [name for name in SERVICES if stack.pid_path(name).exists()] == []
    assert [s.healthy for s in stack.status()] == [False, False, False]
    # Data and logs stay.
    assert (stack.data_dir / "mlflow" / "mlflow.db").exists()
    assert all(stack.log_path(name).exists() for name in SERVICES)
    assert stack.down() == []


def test_secret_never_in_logs_or_status(stack: LocalStack) -> None:
    texts = [stack.log_path(name).read_text(errors="replace") for name in SERVICES]
    texts.append(stack.status_table())
    assert not any(SECRET in text for text in texts)
    run_files = [path for path in Path(stack.data_dir, "run").iterdir() if path.is_file()]
    assert sorted(path.name for path in run_files) == ["kafka.mode"]  # pid files gone, mode remembered
    assert SECRET not in run_files[0].read_text()
