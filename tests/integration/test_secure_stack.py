"""The secure local stack (``churn stack up --secure``) refuses strangers and still runs the main job.

One secure stack for the whole module, on free ports in a temp dir, with a durable broker
(Tansu on SeaweedFS, so the broker's own S3 access goes through the random keys and the
JWT-signed ports too). Every refusal is checked against the real server with real clients:
aiokafka (what the product uses), librdkafka (confluent-kafka and Debian's kcat), raw
Kafka wire requests for the exact error codes, httpx against MLflow, boto3/minio and plain
HTTP against SeaweedFS. Then a batch cycle, a ``churn worker`` subprocess and a few hundred
Telco events run with the credentials of ``stack[-client].env``, and ``churn api`` started
with ``stack-api.env`` refuses requests without the dashboard's key (``stack-dashboard.env``)
and serves them with it; finally every log the stack, the worker and the API wrote is
searched for every secret.

Tests run in file order; the last one reads the logs the others produced.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import ssl
import stat
import struct
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from churn_stream.stack import SECURE_SERVICES, LocalStack, StackError
from churn_stream.stack.kafka_probe import kafka_answers
from schemas.topics import Topics
from tests.integration.kafka_tools import librdkafka_dir, wait_for_count

pytestmark = pytest.mark.integration

#: Apache Kafka's text for a failed SCRAM login, which the gateway answers with error 58.
AUTH_FAILED = "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
EVENTS = 300


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    st = LocalStack.for_tests(tmp_path_factory.mktemp("secure-stack"), secure=True)
    try:
        st.up()
        yield st
    finally:
        st.down()


@pytest.fixture(scope="module")
def cli_env(stack: LocalStack) -> dict[str, str]:
    return stack.client_environment("cli")


def _read_env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


# ----------------------------------------------------------------- the stack itself
def test_four_services_healthy_and_files_private(stack: LocalStack) -> None:
    statuses = {s.name: s for s in stack.status()}
    assert list(statuses) == list(SECURE_SERVICES)
    assert all(s.healthy and s.pid for s in statuses.values()), statuses
    # The broker's plaintext port is bound to loopback only, behind the gateway.
    assert statuses["kafka"].endpoint == f"127.0.0.1:{stack.kafka.port}" != stack.kafka_bootstrap_servers
    layout = stack.layout
    assert stat.S_IMODE(layout.root.stat().st_mode) == 0o700
    private = [
        layout.credentials,
        layout.kafka_users,
        layout.server_key,
        layout.seaweedfs_grpc_key,
        layout.seaweedfs_config_dir / "security.toml",
        *(layout.client_env(c) for c in ("batch", "worker", "api", "dashboard", "cli")),
        layout.api_keys_file,
    ]
    assert {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in private} == {str(p): "0o600" for p in private}
    env = _read_env_file(layout.client_env())
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["KAFKA_SASL_USERNAME"] == env["MLFLOW_TRACKING_USERNAME"] == "batch"
    assert env["KAFKA_SSL_CAFILE"] == str(layout.ca) and env["MINIO_ACCESS_KEY"] == stack.access_key
    worker_env = _read_env_file(layout.client_env("worker"))
    assert worker_env["KAFKA_SASL_USERNAME"] == "worker" and "MINIO_SECRET_KEY" not in worker_env
    # The API's key file holds the dashboard's key as a hash; only the dashboard's env file holds the key.
    assert stack.credentials is not None
    dashboard_key = stack.credentials.api_keys["dashboard"]
    assert _read_env_file(layout.client_env("dashboard"))["CHURN_API_KEY"] == dashboard_key
    assert _read_env_file(layout.client_env("api"))["CHURN_API_KEYS_FILE"] == str(layout.api_keys_file)
    key_file = layout.api_keys_file.read_text()
    assert dashboard_key not in key_file and "stack-dashboard" in key_file
    # The gateway's users file verifies passwords; it does not hold them.
    users_file = layout.kafka_users.read_text()
    assert stack.credentials is not None
    assert not any(pw in users_file for pw in stack.credentials.kafka_passwords.values())


def test_plain_up_is_refused_while_the_secure_stack_runs(stack: LocalStack) -> None:
    plain = LocalStack(
        stack.data_dir, stack.s3_port, stack.kafka_port, stack.mlflow_port, weed_ports=stack.weed_ports, secure=False
    )
    with pytest.raises(StackError, match="already running as part of a secure stack"):
        plain.up()
    assert all(s.healthy for s in stack.status())


# --------------------------------------------------------------------------- Kafka
def _raw(stack: LocalStack, *, tls: bool = True) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", stack.kafka_port), timeout=10)
    return stack.kafka_gateway.client_ssl_context().wrap_socket(sock, server_hostname="127.0.0.1") if tls else sock


def _round_trip(sock: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
    header = struct.pack(">hhih", api_key, version, 7, 4) + b"test"
    sock.sendall(struct.pack(">i", len(header + body)) + header + body)
    size = struct.unpack(">i", _recv(sock, 4))[0]
    return _recv(sock, size)[4:]


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the gateway")
        data += chunk
    return data


def _authenticate(sock: socket.socket, token: bytes) -> tuple[int, str | None, bytes]:
    """SaslAuthenticate v1: error code, error message, auth bytes."""
    answer = _round_trip(sock, 36, 1, struct.pack(">i", len(token)) + token)
    code, n = struct.unpack(">hh", answer[:4])
    message = answer[4 : 4 + n].decode() if n >= 0 else None
    offset = 4 + max(n, 0)
    (size,) = struct.unpack(">i", answer[offset : offset + 4])
    return code, message, answer[offset + 4 : offset + 4 + size]


def test_kafka_wire_refusals_carry_kafkas_error_codes(stack: LocalStack) -> None:
    from scramp import ScramClient

    # Metadata before login: the connection is closed, nothing is answered.
    with _raw(stack) as sock, pytest.raises(ConnectionError):
        _round_trip(sock, 3, 1, struct.pack(">i", -1))
    # SaslHandshake v1 for PLAIN: error 33 UNSUPPORTED_SASL_MECHANISM, offering SCRAM-SHA-512 only.
    with _raw(stack) as sock:
        answer = _round_trip(sock, 17, 1, struct.pack(">h", 5) + b"PLAIN")
        assert struct.unpack(">h", answer[:2])[0] == 33 and b"SCRAM-SHA-512" in answer
    # A wrong password (and an unknown user, identically): error 58 with Kafka's message.
    for user, password in (("cli", "wrong-password"), ("mallory", "wrong-password")):
        with _raw(stack) as sock:
            assert struct.unpack(">h", _round_trip(sock, 17, 1, struct.pack(">h", 13) + b"SCRAM-SHA-512")[:2])[0] == 0
            client = ScramClient(["SCRAM-SHA-512"], user, password)
            code, _, server_first = _authenticate(sock, client.get_client_first().encode())
            assert code == 0
            client.set_server_first(server_first.decode())
            code, message, _ = _authenticate(sock, client.get_client_final().encode())
            assert (code, message) == (58, AUTH_FAILED), user
    # Plaintext to the TLS port: the TLS layer drops it.
    with _raw(stack, tls=False) as sock, pytest.raises((ConnectionError, OSError)):
        _round_trip(sock, 18, 0, b"")
    # The right login reaches the broker behind (what `churn stack status` checks).
    assert stack.credentials is not None
    password = stack.credentials.kafka_passwords["dashboard"]
    ctx = stack.kafka_gateway.client_ssl_context()
    assert kafka_answers("127.0.0.1", stack.kafka_port, 10, ssl_context=ctx, scram_login=("dashboard", password))
    with pytest.raises(StackError, match="error code 58"):
        kafka_answers("127.0.0.1", stack.kafka_port, 10, ssl_context=ctx, scram_login=("dashboard", password + "x"))
    # Another CA's client does not trust the gateway.
    with pytest.raises(ssl.SSLCertVerificationError):
        kafka_answers("127.0.0.1", stack.kafka_port, 10, ssl_context=ssl.create_default_context())


def _aiokafka_produce(kwargs: dict, topic: str) -> str:
    from aiokafka import AIOKafkaProducer

    async def run() -> str:
        producer = AIOKafkaProducer(request_timeout_ms=5000, **kwargs)
        try:
            await asyncio.wait_for(producer.start(), 30)
            await producer.send_and_wait(topic, b"probe", key=b"k")
            return "accepted"
        except Exception as exc:  # the refusal's type and text are the result
            return f"{type(exc).__name__}: {exc}"
        finally:
            await producer.stop()

    return asyncio.run(run())


def test_aiokafka_is_refused_without_the_right_credentials(
    stack: LocalStack,
    cli_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiokafka.helpers import create_ssl_context

    ca = cli_env["KAFKA_SSL_CAFILE"]
    boot = {"bootstrap_servers": stack.kafka_bootstrap_servers}
    sasl = {"security_protocol": "SASL_SSL", "ssl_context": create_ssl_context(cafile=ca)}
    cases = {
        "plaintext": boot,
        "TLS without SASL": {**boot, "security_protocol": "SSL", "ssl_context": create_ssl_context(cafile=ca)},
        "wrong password": {
            **boot,
            **sasl,
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "cli",
            "sasl_plain_password": "wrong-password",
        },
        "PLAIN with the right password": {
            **boot,
            **sasl,
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": "cli",
            "sasl_plain_password": cli_env["KAFKA_SASL_PASSWORD"],
        },
    }
    topic = f"secure-{uuid.uuid4().hex[:8]}"
    # A command run in-process earlier in the session may have rate-limited aiokafka's loggers
    # (plumbing.logs): every refusal below is one kind of record, and each one is wanted here.
    for name in ["aiokafka", *(n for n in logging.Logger.manager.loggerDict if n.startswith("aiokafka."))]:
        monkeypatch.setattr(logging.getLogger(name), "filters", [])
    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        results = {case: _aiokafka_produce(kwargs, topic) for case, kwargs in cases.items()}
    for case, result in results.items():
        assert result.startswith("KafkaConnectionError: ") and "Unable to bootstrap" in result, (case, result)
    assert AUTH_FAILED in caplog.text  # aiokafka logs the broker's answer to the wrong password
    right = {
        **boot,
        **sasl,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "cli",
        "sasl_plain_password": cli_env["KAFKA_SASL_PASSWORD"],
    }
    assert _aiokafka_produce(right, topic) == "accepted"


def _librdkafka_produce(conf: dict, topic: str) -> tuple[list, list[str]]:
    from confluent_kafka import Producer

    errors: list[str] = []
    delivered: list = []
    producer = Producer(
        {"message.timeout.ms": 6000, "log_level": 0, "error_cb": lambda e: errors.append(e.str()), **conf}
    )
    producer.produce(topic, b"probe", key=b"k", on_delivery=lambda err, msg: delivered.append(err))
    producer.flush(15)
    return delivered, errors


def test_librdkafka_is_refused_without_the_right_credentials(stack: LocalStack, cli_env: dict[str, str]) -> None:
    from confluent_kafka import Consumer, KafkaError

    topic = f"secure-rd-{uuid.uuid4().hex[:8]}"
    base = {"bootstrap.servers": stack.kafka_bootstrap_servers}
    tls = {**base, "security.protocol": "SASL_SSL", "ssl.ca.location": cli_env["KAFKA_SSL_CAFILE"]}
    scram = {**tls, "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "cli"}

    delivered, errors = _librdkafka_produce(base, topic)  # no credentials, plaintext
    assert [e.code() for e in delivered] == [KafkaError._MSG_TIMED_OUT] and errors
    assert any("Disconnected" in e or "brokers are down" in e for e in errors), errors

    delivered, errors = _librdkafka_produce({**scram, "sasl.password": "wrong-password"}, topic)
    assert delivered[0] is not None
    assert any(f"SASL authentication error: {AUTH_FAILED}" in e for e in errors), errors

    delivered, errors = _librdkafka_produce({**scram, "sasl.password": cli_env["KAFKA_SASL_PASSWORD"]}, topic)
    assert delivered == [None] and errors == []
    consumer = Consumer(
        {**scram, "sasl.password": cli_env["KAFKA_SASL_PASSWORD"], "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    try:
        got = None
        for _ in range(30):
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                got = msg.value()
                break
    finally:
        consumer.close()
    assert got == b"probe"


def test_kcat_needs_the_right_credentials(stack: LocalStack, cli_env: dict[str, str], tmp_path: Path) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.skip("kcat is not installed (Debian package 'kcat'; `make test` installs it)")

    def kcat_list(password: str) -> subprocess.CompletedProcess:
        config = tmp_path / "kcat.conf"  # the password stays off the command line
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(
                "security.protocol=SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username=cli\n"
                f"sasl.password={password}\nssl.ca.location={cli_env['KAFKA_SSL_CAFILE']}\n"
            )
        env = dict(os.environ, LD_LIBRARY_PATH=str(librdkafka_dir()))
        return subprocess.run(
            [kcat, "-F", str(config), "-b", stack.kafka_bootstrap_servers, "-L", "-m", "10"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = kcat_list("wrong-password")
    assert refused.returncode != 0 and AUTH_FAILED in refused.stderr, refused.stderr[-500:]
    accepted = kcat_list(cli_env["KAFKA_SASL_PASSWORD"])
    assert accepted.returncode == 0 and "1 brokers" in accepted.stdout, accepted.stderr[-500:]


# -------------------------------------------------------------------------- MLflow
def test_mlflow_refuses_strangers(stack: LocalStack, cli_env: dict[str, str]) -> None:
    url = f"{stack.mlflow_tracking_uri}/api/2.0/mlflow/experiments/search"
    anonymous = httpx.get(url, params={"max_results": 1}, timeout=30)
    assert anonymous.status_code == 401 and "You are not authenticated" in anonymous.text
    wrong = httpx.get(url, params={"max_results": 1}, auth=("cli", "wrong-password"), timeout=30)
    assert wrong.status_code == 401
    assert httpx.get(f"{stack.mlflow_tracking_uri}/health", timeout=30).status_code == 200  # probes stay open
    right = httpx.get(url, params={"max_results": 1}, auth=("cli", cli_env["MLFLOW_TRACKING_PASSWORD"]), timeout=30)
    assert right.status_code == 200


# ------------------------------------------------------------------------------ S3
def test_s3_refuses_wrong_keys_and_the_filer_refuses_requests_without_a_jwt(stack: LocalStack) -> None:
    from minio import Minio
    from minio.error import S3Error

    assert stack.credentials is not None
    secret = stack.credentials.s3_secret_key
    good = Minio(stack.s3_endpoint, access_key=stack.access_key, secret_key=secret, secure=False)
    good.put_object("raw-data", "secure-test/probe.txt", __import__("io").BytesIO(b"probe"), 5)
    for (access, key), code in {
        (stack.access_key, "wrong-secret"): "SignatureDoesNotMatch",
        ("churn-local", "churn-local-secret"): "InvalidAccessKeyId",  # the plain stack's defaults
    }.items():
        with pytest.raises(S3Error) as err:
            Minio(stack.s3_endpoint, access_key=access, secret_key=key, secure=False).list_buckets()
        assert err.value.code == code
    anonymous = httpx.get(f"{stack.s3_endpoint_url}/raw-data/secure-test/probe.txt", timeout=10)
    assert anonymous.status_code == 403 and "AccessDenied" in anonymous.text
    # SeaweedFS's own HTTP ports: the filer serves and takes objects only with a signed JWT.
    filer = f"http://127.0.0.1:{stack.weed_ports['filer']}"
    read = httpx.get(f"{filer}/buckets/raw-data/secure-test/probe.txt", timeout=10)
    write = httpx.post(f"{filer}/buckets/raw-data/secure-test/evil.txt", files={"file": b"evil"}, timeout=10)
    assert (read.status_code, read.json()) == (401, {"error": "wrong jwt"})
    assert (write.status_code, write.json()) == (401, {"error": "wrong jwt"})
    # gRPC: `weed shell` without the stack's certificate cannot reach the filer; with it, it can.
    weed = stack.s3.command()[0]
    shell = [
        "shell",
        f"-master=127.0.0.1:{stack.weed_ports['master']}",
        f"-filer=127.0.0.1:{stack.weed_ports['filer']}",
    ]

    def weed_shell(*global_flags: str) -> str:
        try:
            done = subprocess.run(
                [weed, *global_flags, *shell],
                input="fs.ls /buckets\nexit\n",
                capture_output=True,
                text=True,
                timeout=15,
            )
        except subprocess.TimeoutExpired as timeout:
            return f"timed out: {timeout.stdout or ''}"
        return done.stdout

    assert "raw-data" not in weed_shell()
    assert "raw-data" in weed_shell(f"-config_dir={stack.layout.seaweedfs_config_dir}")
    names = [o.object_name for o in good.list_objects("raw-data", prefix="secure-test/")]
    assert names == ["secure-test/probe.txt"]
    assert good.get_object("raw-data", "secure-test/probe.txt").read() == b"probe"


# ---------------------------------------------------------------- the main flow
@pytest.fixture(scope="module")
def champion(stack: LocalStack) -> Iterator[dict]:
    """One quick cycle as the batch user: every call of it authenticates (Kafka, MLflow, S3)."""
    from batch.cycle import run_cycle
    from plumbing.clients import ensure_topics, make_storage, make_tracker

    settings = stack.settings(client="batch")
    with pytest.MonkeyPatch.context() as mp:
        # MLflow's client reads its credentials from the environment itself.
        for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            mp.setenv(var, stack.client_environment("batch")[var])
        ensure_topics(settings)
        result = run_cycle(
            settings, make_storage(settings), make_tracker(settings), only={"logistic_regression"}, margin=-1.0
        )
    assert result.registered["alias"] == "champion" and result.announced
    yield result.registered


def test_registry_roles_worker_reads_but_cannot_move_an_alias_batch_can(stack: LocalStack, champion: dict) -> None:
    name, version = champion["model_name"], champion["model_version"]
    alias_url = f"{stack.mlflow_tracking_uri}/api/2.0/mlflow/registered-models/alias"
    worker = ("worker", stack.client_environment("worker")["MLFLOW_TRACKING_PASSWORD"])
    batch = ("batch", stack.client_environment("batch")["MLFLOW_TRACKING_PASSWORD"])
    read = httpx.get(alias_url, params={"name": name, "alias": "champion"}, auth=worker, timeout=30)
    assert read.status_code == 200 and read.json()["model_version"]["version"] == version
    body = {"name": name, "alias": "secure-test", "version": version}
    denied = httpx.post(alias_url, json=body, auth=worker, timeout=30)
    assert denied.status_code == 403 and "Permission denied" in denied.text
    assert httpx.post(alias_url, json=body, auth=batch, timeout=30).status_code == 200
    cleanup = {"name": name, "alias": "secure-test"}
    assert httpx.request("DELETE", alias_url, json=cleanup, auth=batch, timeout=30).status_code == 200


@pytest.fixture(scope="module")
def worker(stack: LocalStack, champion: dict) -> Iterator[subprocess.Popen]:
    """``churn worker`` as the worker user: Faust, hot-path consumer/producer and model follower on SASL_SSL."""
    from churn_stream.demo import start_cli, stop_worker, wait_worker_ready

    settings = stack.settings(client="worker").with_overrides(worker_web_port=LocalStack.free_ports(1)[0])
    env = stack.client_environment("worker") | {"CHURN_WORKER_WEB_PORT": str(settings.worker_web_port)}
    proc = start_cli(settings, ["worker"], stack.data_dir / "logs" / "worker.log", env)
    try:
        health = wait_worker_ready(settings, proc, timeout_s=180)
        assert health["model_version"] == champion["model_version"]
        yield proc
    finally:
        stop_worker(proc)


def test_main_flow_scores_every_event_on_the_secure_stack(
    stack: LocalStack, champion: dict, worker: subprocess.Popen, telco_csv: Path
) -> None:
    from churn_stream.produce import csv_to_customer_events
    from plumbing.clients import produce_records

    records = csv_to_customer_events(telco_csv, limit=EVENTS)
    ids = {orjson.loads(v)["event_id"] for _, v in records}
    cli = stack.settings(client="cli")
    assert produce_records(cli, Topics.CUSTOMERS, records) == EVENTS
    scores = wait_for_count(
        stack.settings(client="dashboard"), Topics.SCORES, lambda r: r["value"]["event_id"] in ids, EVENTS
    )
    assert sorted(s["value"]["event_id"] for s in scores) == sorted(ids)
    assert {s["value"]["model_version"] for s in scores} == {champion["model_version"]}
    assert worker.poll() is None


# ------------------------------------------------------------------ the prediction API
@pytest.fixture(scope="module")
def api(stack: LocalStack, champion: dict) -> Iterator[str]:
    """``churn api`` with ``stack-api.env`` (the api user, authentication on); yields its URL."""
    import time

    from churn_stream.bench.api import stop_api
    from churn_stream.demo import start_cli

    port = LocalStack.free_ports(1)[0]
    env = _read_env_file(stack.layout.client_env("api"))
    log = stack.data_dir / "logs" / "api.log"
    proc = start_cli(stack.settings(client="api"), ["--log-level", "DEBUG", "api", "--port", str(port)], log, env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "churn api served no champion within 180 s"
            time.sleep(0.3)
        yield url
    finally:
        stop_api(proc)


def test_api_refuses_without_the_dashboards_key_and_serves_with_it(
    stack: LocalStack, champion: dict, api: str, telco_csv: Path
) -> None:
    from churn_stream.produce import csv_to_customer_events

    key = _read_env_file(stack.layout.client_env("dashboard"))["CHURN_API_KEY"]
    models = f"{api}/api/models"
    anonymous = httpx.get(models, timeout=30)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
    assert key not in anonymous.text
    wrong_id = key[:4] + "0" * 12 + key[16:]
    for presented in (key[:-1] + ("A" if key[-1] != "A" else "B"), wrong_id, "not-a-key"):
        assert httpx.get(models, headers={"authorization": f"Bearer {presented}"}, timeout=30).status_code == 401
    bearer = {"authorization": f"Bearer {key}"}
    listed = httpx.get(models, headers=bearer, timeout=30)
    assert listed.status_code == 200 and champion["model_version"] in listed.text
    customer = orjson.loads(csv_to_customer_events(telco_csv, limit=1)[0][1])
    scored = httpx.post(f"{api}/api/predict", json=customer, headers=bearer, timeout=30)
    assert scored.status_code == 200, scored.text
    assert scored.json()["predictions"][0]["model_version"] == champion["model_version"]


# ---------------------------------------------------------------- secrets stay secret
def test_cli_prints_the_env_file_path_never_a_secret(stack: LocalStack) -> None:
    from click.testing import CliRunner

    from churn_stream.cli import main

    env = {
        "CHURN_DATA_DIR": str(stack.data_dir),
        "MINIO_ENDPOINT": stack.s3_endpoint,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
        "MLFLOW_TRACKING_URI": stack.mlflow_tracking_uri,
    }
    up = CliRunner().invoke(main, ["stack", "up", "--secure"], env=env)
    assert up.exit_code == 0, up.output
    assert f"set -a; . {stack.layout.client_env()}; set +a" in up.output
    status = CliRunner().invoke(main, ["stack", "status"], env=env)
    assert status.exit_code == 0 and "kafka-gateway" in status.output
    assert stack.credentials is not None
    for secret in stack.credentials.secrets():
        assert secret not in up.output and secret not in status.output


def test_no_secret_in_any_log(stack: LocalStack) -> None:
    assert stack.credentials is not None
    secrets_ = stack.credentials.secrets()
    # 1 S3 + 1 MLflow admin + 1 Flask + 5 Kafka + 5 MLflow users + the dashboard's API key.
    assert len(secrets_) == len(set(secrets_)) == 14 and all(len(s) >= 32 for s in secrets_)
    logs = sorted((stack.data_dir / "logs").iterdir())
    assert {p.name for p in logs} >= {f"{name}.log" for name in SECURE_SERVICES} | {"worker.log", "api.log"}
    # Every service wrote something, and the search finds secrets where they are.
    assert all(p.stat().st_size > 0 for p in logs)
    assert all(s in stack.layout.credentials.read_text() for s in secrets_)
    hits = [(p.name, i) for p in logs for i, s in enumerate(secrets_) if s in p.read_text(errors="replace")]
    assert hits == []
    gateway_log = stack.log_path("kafka-gateway").read_text()
    assert "refused reason=authentication-failed" in gateway_log and "authenticated" in gateway_log
