"""The secure stack without its servers: credentials files, commands, and the Kafka gateway's login.

The gateway tests run the real gateway in-process over TLS with a trustme certificate; the
broker behind it is never reached (login happens before any byte goes to it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import stat
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scramp import ScramMechanism

from churn_stream.stack import SECURE_SERVICES, LocalStack, StackError
from churn_stream.stack import credentials as creds
from churn_stream.stack.kafka_gateway import (
    AUTH_FAILED_MESSAGE,
    KafkaGateway,
    _RefusalLog,
    read_users_file,
    server_ssl_context,
    write_users_file,
)
from churn_stream.stack.kafka_probe import _round_trip, _scram_sha512_login


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------ credentials
def test_credentials_are_made_once_private_and_complete(tmp_path: Path) -> None:
    layout = creds.SecretsLayout(tmp_path)
    first = creds.load_or_create(layout, backend_port=19999)
    assert _mode(layout.root) == 0o700 and _mode(layout.credentials) == 0o600
    assert set(first.kafka_passwords) == set(creds.KAFKA_USERS)
    assert set(first.mlflow_passwords) == set(creds.MLFLOW_READERS) | set(creds.MLFLOW_EDITORS)
    assert first.kafka_backend_port == 19999
    secrets = first.secrets()
    assert len(secrets) == len(set(secrets)) == 13 and min(map(len, secrets)) >= 32
    assert not any(s in repr(first) for s in secrets)
    # Idempotent, and only a deleted entry is made anew (rotation).
    assert creds.load_or_create(layout, backend_port=1) == first
    doc = json.loads(layout.credentials.read_text())
    del doc["kafka"]["users"]["worker"]
    layout.credentials.write_text(json.dumps(doc))
    rotated = creds.load_or_create(layout, backend_port=1)
    assert rotated.kafka_passwords["worker"] != first.kafka_passwords["worker"]
    assert {u: p for u, p in rotated.kafka_passwords.items() if u != "worker"} == {
        u: p for u, p in first.kafka_passwords.items() if u != "worker"
    }
    assert _mode(layout.credentials) == 0o600


def test_server_files_hold_no_password(tmp_path: Path) -> None:
    layout = creds.SecretsLayout(tmp_path)
    c = creds.load_or_create(layout, backend_port=19999)
    creds.ensure_server_files(layout, c, "127.0.0.1")
    for path in (layout.server_key, layout.kafka_users, layout.seaweedfs_grpc_key):
        assert _mode(path) == 0o600, path
    toml = (layout.seaweedfs_config_dir / "security.toml").read_text()
    assert _mode(layout.seaweedfs_config_dir / "security.toml") == 0o600
    for section in ("[jwt.signing]", "[jwt.filer_signing.read]", "[grpc]", "[grpc.filer]", "[grpc.client]"):
        assert section in toml
    ini = layout.mlflow_auth_ini.read_text()
    assert "default_permission = NO_PERMISSIONS" in ini
    every = "\n".join(p.read_text() for p in layout.root.rglob("*") if p.is_file() and p != layout.credentials)
    assert not any(secret in every for secret in c.secrets())
    # The users file verifies the real password (RFC 5802) and nothing else.
    users = read_users_file(layout.kafka_users)
    assert set(users) == set(creds.KAFKA_USERS)
    mech = ScramMechanism("SCRAM-SHA-512")
    salt, stored, server, iterations = mech.make_auth_info(
        c.kafka_passwords["api"], iteration_count=8192, salt=users["api"].salt
    )
    assert (stored, server, iterations) == (users["api"].stored_key, users["api"].server_key, 8192)
    # Certificates are kept across calls (clients keep trusting the same CA).
    ca = layout.ca.read_text()
    creds.ensure_server_files(layout, c, "127.0.0.1")
    assert layout.ca.read_text() == ca


def test_client_env_files(tmp_path: Path) -> None:
    layout = creds.SecretsLayout(tmp_path)
    c = creds.load_or_create(layout, backend_port=19999)
    endpoints = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "CHURN_DATA_DIR": str(tmp_path)}
    written = creds.write_client_env_files(layout, c, endpoints)
    assert [p.name for p in written] == [
        "stack.env",
        "stack-worker.env",
        "stack-api.env",
        "stack-dashboard.env",
        "stack-cli.env",
    ]
    envs = {}
    for path in written:
        assert _mode(path) == 0o600
        lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
        envs[path.name] = dict(line.split("=", 1) for line in lines)
    batch, worker = envs["stack.env"], envs["stack-worker.env"]
    assert batch["KAFKA_SASL_USERNAME"] == batch["MLFLOW_TRACKING_USERNAME"] == "batch"
    assert batch["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and batch["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert batch["MINIO_SECRET_KEY"] == c.s3_secret_key and batch["KAFKA_SSL_CAFILE"] == str(layout.ca)
    assert worker["KAFKA_SASL_PASSWORD"] == c.kafka_passwords["worker"]
    assert worker["MLFLOW_TRACKING_PASSWORD"] == c.mlflow_passwords["worker"]
    assert "MINIO_SECRET_KEY" not in worker


# ------------------------------------------------------------------- the stack
@pytest.fixture
def secure(tmp_path: Path) -> LocalStack:
    return LocalStack(tmp_path / "data", 19100, 19192, 19500, secure=True, kafka_backend_port=19193)


def test_secure_commands_and_environments(secure: LocalStack) -> None:
    assert secure.names == SECURE_SERVICES and secure.kafka_bootstrap_servers == "127.0.0.1:19192"
    assert secure.access_key.startswith("churn-") and secure.access_key != "churn-local"
    tansu = secure.command("kafka")
    assert tansu[tansu.index("--listener-url") + 1] == "tcp://127.0.0.1:19193"
    assert tansu[tansu.index("--advertised-listener-url") + 1] == "tcp://127.0.0.1:19192"
    weed = secure.command("s3")
    assert weed[1] == f"-config_dir={secure.layout.seaweedfs_config_dir}" and weed[2] == "mini"
    mlflow = secure.command("mlflow")
    assert mlflow[-2:] == ["--app-name", "basic-auth"]
    gateway = secure.command("kafka-gateway")
    assert gateway[1:3] == ["-m", "churn_stream.stack.kafka_gateway"]
    assert gateway[gateway.index("--broker") + 1] == "127.0.0.1:19193"
    assert secure.credentials is not None
    secrets = secure.credentials.secrets()
    everything = " ".join(" ".join(secure.command(n)) for n in SECURE_SERVICES) + repr(secure)
    assert not any(s in everything for s in secrets)
    env = secure.environment("mlflow", base={})
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(secure.layout.mlflow_auth_ini)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == secure.credentials.mlflow_admin_password
    gateway_env = secure.environment("kafka-gateway", base={"AWS_SECRET_ACCESS_KEY": "inherited"})
    assert "AWS_SECRET_ACCESS_KEY" not in gateway_env  # the gateway never needs S3
    table = secure.status_table()
    assert "kafka-gateway" in table and str(secure.layout.client_env()) in table
    assert not any(s in table for s in secrets)


def test_settings_of_a_client(secure: LocalStack) -> None:
    assert secure.credentials is not None
    worker = secure.settings(client="worker")
    assert (worker.kafka_security_protocol, worker.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert worker.kafka_sasl_username == "worker"
    assert worker.kafka_sasl_password == secure.credentials.kafka_passwords["worker"]
    assert worker.minio_secret_key == secure.credentials.s3_secret_key
    assert secure.client_environment("api")["MLFLOW_TRACKING_USERNAME"] == "api"


def test_from_settings_finds_the_secure_stack(secure: LocalStack) -> None:
    settings = secure.settings().with_overrides(minio_access_key="churn-local", minio_secret_key="churn-local-secret")
    again = LocalStack.from_settings(settings)
    assert again.secure and again.access_key == secure.access_key and again.kafka.port == 19193
    assert not LocalStack.from_settings(settings, secure=False).secure


def test_security_of_a_running_process_is_recognised(secure: LocalStack, tmp_path: Path) -> None:
    plain = LocalStack(tmp_path / "data", 19100, 19192, 19500)
    for name in ("s3", "kafka", "mlflow"):
        assert secure.service(name).runs_secure(secure.command(name)), name
        assert not secure.service(name).runs_secure(plain.command(name)), name
        # The same process is found from either kind of stack (so `down` stops it).
        assert plain.service(name).matches(secure.command(name)), name
    assert plain.kafka_gateway.matches(["/venv/bin/python3", *secure.command("kafka-gateway")[1:]])


def test_a_plain_stack_is_not_kept_when_secure_is_asked(secure: LocalStack, monkeypatch) -> None:
    class Running:  # the plain MLflow process this stack's pid file would point at
        pid = 4242

        def cmdline(self) -> list[str]:
            return LocalStack(secure.data_dir, 19100, 19192, 19500).command("mlflow")

    monkeypatch.setattr(type(secure.mlflow), "process", lambda self: Running())
    with pytest.raises(StackError, match="already running as part of a plain stack .pid 4242., a secure one"):
        secure.mlflow.check_security()


# -------------------------------------------------------------- the gateway itself
@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str, ssl.SSLContext]]:
    import trustme

    root = tmp_path_factory.mktemp("gateway")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    issued.private_key_pem.write_to_path(root / "key.pem")
    issued.cert_chain_pems[0].write_to_path(root / "cert.pem")
    write_users_file(root / "users.json", {"alice": "alice-password-1234567890"})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens: the broker is never reached
    server = KafkaGateway(
        root / "users.json",
        ("127.0.0.1", closed_port),
        server_ssl_context(root / "cert.pem", root / "key.pem"),
        login_timeout_s=1.0,
    )
    loop = asyncio.new_event_loop()
    task = loop.create_task(server.serve("127.0.0.1", port))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    client = ssl.create_default_context()
    ca.configure_trust(client)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield port, "alice-password-1234567890", client
    finally:
        loop.call_soon_threadsafe(task.cancel)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def _tls(port: int, client: ssl.SSLContext) -> ssl.SSLSocket:
    return client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="127.0.0.1")


def test_gateway_logs_in_the_right_password_only(gateway) -> None:
    port, password, client = gateway
    with _tls(port, client) as sock:
        _scram_sha512_login(sock, "alice", password)  # server signature verified by scramp
    for user, pw in (("alice", password + "x"), ("mallory", password)):
        with _tls(port, client) as sock, pytest.raises(StackError, match="error code 58"):
            _scram_sha512_login(sock, user, pw)


def test_gateway_refuses_other_mechanisms_and_requests_before_login(gateway) -> None:
    port, _, client = gateway
    with _tls(port, client) as sock:
        answer = _round_trip(sock, 17, 1, struct.pack(">h", 5) + b"PLAIN")
        assert struct.unpack(">h", answer[:2])[0] == 33
    with _tls(port, client) as sock, pytest.raises(ConnectionError):
        _round_trip(sock, 3, 1, struct.pack(">i", -1))  # Metadata before login


def test_gateway_closes_a_silent_client_after_the_login_deadline(gateway) -> None:
    port, _, client = gateway
    with _tls(port, client) as sock:
        sock.settimeout(5)
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert 0.5 < time.monotonic() - started < 4


def test_refusals_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    log = _RefusalLog(interval_s=0.2)
    with caplog.at_level(logging.WARNING, logger="churn_stream.stack.kafka_gateway"):
        for _ in range(5):
            log.refused("authentication-failed", "127.0.0.1:1")
        time.sleep(0.25)
        log.refused("authentication-failed", "127.0.0.1:2")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[1].endswith("also_refused_since_last_line=4")
    assert AUTH_FAILED_MESSAGE.endswith("SCRAM-SHA-512")
