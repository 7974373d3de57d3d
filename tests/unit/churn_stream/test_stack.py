"""Unit tests of the local stack launcher: construction, ports, command lines, pid handling.

No server is started here; the one child process is a short ``sh`` script.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from churn_stream.stack import (
    GRPC_OFFSET,
    SERVICES,
    WEED_PORT_NAMES,
    LocalStack,
    ServiceStatus,
    StackError,
    derive_weed_ports,
)
from churn_stream.stack.ports import split_host_port
from plumbing.settings import Settings

SECRET = "s3cr3t-never-shown"


@pytest.fixture()
def stack(tmp_path: Path) -> LocalStack:
    return LocalStack(
        tmp_path / "churn", s3_port=19100, kafka_port=19192, mlflow_port=19101, access_key="alice", secret_key=SECRET
    )


def _flag(argv: list[str], name: str) -> str:
    """Value of ``-name=value`` in a weed argv."""
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"-{name}=")]
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


def _option(argv: list[str], name: str) -> str:
    """Value following ``--name`` in an argv."""
    assert argv.count(name) == 1
    return argv[argv.index(name) + 1]


# ----------------------------------------------------------------- construction
def test_from_settings_parses_default_endpoints() -> None:
    st = LocalStack.from_settings(Settings())
    assert (st.host, st.s3_port, st.kafka_port, st.mlflow_port) == ("127.0.0.1", 9000, 9092, 5001)
    assert st.data_dir == Path(".churn").absolute()
    assert st.access_key == Settings().minio_access_key
    assert st.weed_ports == {"master": 9001, "volume": 9002, "filer": 9003, "admin": 9004}


def test_from_settings_takes_first_bootstrap_server_and_scheme_default_port(tmp_path: Path) -> None:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:29092, 127.0.0.1:29093",
        minio_endpoint="127.0.0.1:29000",
        mlflow_tracking_uri="https://127.0.0.1",
        data_dir=tmp_path,
    )
    st = LocalStack.from_settings(settings)
    assert (st.s3_port, st.kafka_port, st.mlflow_port) == (29000, 29092, 443)
    assert st.data_dir == tmp_path


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("localhost:9092,other:9093", ("localhost", 9092)),
        ("http://127.0.0.1:5001", ("127.0.0.1", 5001)),
        ("http://127.0.0.1:5001/some/path", ("127.0.0.1", 5001)),
    ],
)
def testsplit_host_port(endpoint: str, expected: tuple[str, int]) -> None:
    assert split_host_port(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["127.0.0.1", "127.0.0.1:notaport", ":9000"])
def test_split_host_port_rejects_endpoints_without_host_or_port(endpoint: str) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        split_host_port(endpoint)


def test_from_settings_rejects_endpoint_without_port() -> None:
    with pytest.raises(ValueError, match="expected host:port, got '127.0.0.1'"):
        LocalStack.from_settings(Settings(minio_endpoint="127.0.0.1"))


def test_settings_round_trip(stack: LocalStack) -> None:
    s = stack.settings(Settings(consumer_group="g1"))
    assert s.kafka_bootstrap_servers == "127.0.0.1:19192"
    assert s.minio_endpoint == "127.0.0.1:19100"
    assert s.s3_endpoint_url == "http://127.0.0.1:19100"
    assert s.mlflow_tracking_uri == "http://127.0.0.1:19101"
    assert (s.minio_access_key, s.minio_secret_key) == ("alice", SECRET)
    assert s.data_dir == stack.data_dir
    assert s.consumer_group == "g1"  # untouched fields kept
    again = LocalStack.from_settings(s)
    assert (again.s3_port, again.kafka_port, again.mlflow_port, again.data_dir) == (19100, 19192, 19101, stack.data_dir)


def test_repr_hides_the_secret(stack: LocalStack) -> None:
    assert SECRET not in repr(stack)
    assert "alice" in repr(stack)


def test_derive_weed_ports() -> None:
    assert derive_weed_ports(9000) == {"master": 9001, "volume": 9002, "filer": 9003, "admin": 9004}


def test_ports_must_leave_room_for_grpc(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="s3 port: expected 1..55535"):
        LocalStack(tmp_path, s3_port=60000, kafka_port=9092, mlflow_port=5001)
    with pytest.raises(ValueError, match="weed_ports: missing"):
        LocalStack(tmp_path, 9000, 9092, 5001, weed_ports={"master": 9001})


def test_weed_sockets_fall_back_to_tmp_for_long_data_dirs(tmp_path: Path) -> None:
    argv = LocalStack(tmp_path / ("d" * 120), 19100, 19192, 19101).command("s3")
    assert not any("localSocket" in arg for arg in argv)


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = LocalStack.free_ports(5)
    assert len(set(ports)) == 5
    paired = LocalStack.free_ports(5, paired_offset=GRPC_OFFSET)
    assert len(set(paired) | {p + GRPC_OFFSET for p in paired}) == 10
    # Both ports of a pair below the kernel's ephemeral range.
    assert all(10000 <= p and p + GRPC_OFFSET <= 32767 for p in paired)
    for port in paired:
        for candidate in (port, port + GRPC_OFFSET):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", candidate))


def test_for_tests_uses_distinct_free_ports(tmp_path: Path) -> None:
    st = LocalStack.for_tests(tmp_path)
    every = [*st.ports("s3"), *st.ports("kafka"), *st.ports("mlflow")]
    assert len(every) == 2 * (1 + len(WEED_PORT_NAMES)) + 2
    assert len(set(every)) == len(every)
    assert all(1024 < port <= 65535 for port in every)


# ---------------------------------------------------------------- command lines
def test_weed_command_sets_every_port_explicitly(stack: LocalStack) -> None:
    argv = stack.command("s3")
    assert Path(argv[0]).name == "weed" and argv[1] == "mini"
    assert _flag(argv, "dir") == str(stack.data_dir / "s3")
    assert _flag(argv, "ip") == _flag(argv, "ip.bind") == "127.0.0.1"
    assert _flag(argv, "s3.port") == "19100"
    assert _flag(argv, "s3.port.grpc") == "29100"
    assert [_flag(argv, f"{name}.port") for name in WEED_PORT_NAMES] == ["19101", "19102", "19103", "19104"]
    assert [_flag(argv, f"{name}.port.grpc") for name in WEED_PORT_NAMES] == ["29101", "29102", "29103", "29104"]
    for disabled in ("webdav", "admin.ui", "master.telemetry"):
        assert _flag(argv, disabled) == "false"
    assert _flag(argv, "s3.port.iceberg") == _flag(argv, "s3.port.lance") == "0"
    assert _flag(argv, "s3.localSocket") == str(stack.data_dir / "run" / "s3.sock")
    assert _flag(argv, "filer.localSocket") == str(stack.data_dir / "run" / "filer.sock")
    assert sorted(stack.ports("s3")) == [19100, 19101, 19102, 19103, 19104, 29100, 29101, 29102, 29103, 29104]


@pytest.mark.parametrize(("ephemeral", "storage"), [(False, "s3://tansu/"), (True, "memory://tansu/")])
def test_broker_command(stack: LocalStack, ephemeral: bool, storage: str) -> None:
    argv = stack.command("kafka", ephemeral=ephemeral)
    assert os.access(argv[0], os.X_OK)
    assert argv[1] == "broker"
    assert _option(argv, "--listener-url") == "tcp://127.0.0.1:19192"
    assert _option(argv, "--advertised-listener-url") == "tcp://127.0.0.1:19192"
    assert _option(argv, "--storage-engine") == storage


def test_mlflow_command(stack: LocalStack) -> None:
    argv = stack.command("mlflow")
    assert argv[0] == str(Path(sys.executable).parent / "mlflow")
    assert argv[1] == "server"
    assert _option(argv, "--backend-store-uri") == f"sqlite:///{stack.data_dir}/mlflow/mlflow.db"
    assert _option(argv, "--backend-store-uri").startswith("sqlite:////")  # absolute path
    assert _option(argv, "--artifacts-destination") == "s3://mlflow/artifacts"
    assert (_option(argv, "--host"), _option(argv, "--port"), _option(argv, "--workers")) == ("127.0.0.1", "19101", "1")


def test_no_secret_on_any_command_line(stack: LocalStack) -> None:
    for name in SERVICES:
        assert not any(SECRET in arg for arg in stack.command(name))


def test_environment_carries_credentials_and_endpoints(stack: LocalStack) -> None:
    base = {"PATH": "/usr/bin", "STORAGE_ENGINE": "memory://evil/", "MLFLOW_TRACKING_URI": "http://x"}
    kafka = stack.environment("kafka", base)
    assert kafka["PATH"] == "/usr/bin"
    assert "STORAGE_ENGINE" not in kafka and "MLFLOW_TRACKING_URI" not in kafka
    assert (kafka["AWS_ACCESS_KEY_ID"], kafka["AWS_SECRET_ACCESS_KEY"]) == ("alice", SECRET)
    assert kafka["AWS_ENDPOINT"] == "http://127.0.0.1:19100"
    assert kafka["AWS_ALLOW_HTTP"] == "true"
    assert kafka["AWS_DEFAULT_REGION"] == "us-east-1"
    mlflow = stack.environment("mlflow", base)
    assert mlflow["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:19100"
    assert mlflow["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "AWS_ENDPOINT" not in mlflow
    assert base == {"PATH": "/usr/bin", "STORAGE_ENGINE": "memory://evil/", "MLFLOW_TRACKING_URI": "http://x"}


def test_unknown_service_is_rejected(stack: LocalStack) -> None:
    with pytest.raises(ValueError, match="expected one of s3, kafka, kafka-gateway, mlflow, got .redis."):
        stack.command("redis")


# ------------------------------------------------------------ pid files, status
def test_cmdline_matching(stack: LocalStack) -> None:
    mlflow = stack.command("mlflow")
    matches = {name: stack.service(name).matches for name in SERVICES}
    # Scripts run as "python /venv/bin/mlflow server ...".
    assert matches["mlflow"](["/venv/bin/python3", *mlflow])
    assert not matches["mlflow"](["/venv/bin/python3", *mlflow[:-3], "--port", "5001", "--workers", "1"])
    assert matches["kafka"](stack.command("kafka", ephemeral=True))
    assert matches["kafka"](stack.command("kafka", ephemeral=False))
    assert not matches["s3"](stack.command("kafka"))
    weed = stack.command("s3")
    # Incidental flags may differ (older versions of the launcher); identity may not.
    assert matches["s3"]([f for f in weed if "localSocket" not in f] + ["-debug"])
    assert not matches["s3"]([f.replace("-s3.port=19100", "-s3.port=9000") for f in weed])
    assert not matches["s3"]([f.replace(str(stack.data_dir), "/elsewhere") for f in weed])
    assert not matches["s3"](["/usr/bin/python3", "-c", "pass", *weed[1:]])


def test_no_pid_file_means_not_running(stack: LocalStack) -> None:
    assert stack.pid("kafka") is None
    assert stack.running_mode() is None
    assert stack.stop_service("kafka") is False
    assert stack.remembered_mode() == "durable"


def test_pid_of_a_foreign_process_is_never_killed(stack: LocalStack) -> None:
    # The pid file points at this very test process: a recycled pid running another command.
    stack.pid_path("mlflow").parent.mkdir(parents=True)
    stack.pid_path("mlflow").write_text(f"{os.getpid()}\n")
    assert stack.pid("mlflow") is None
    assert stack.stop_service("mlflow") is False  # we are still alive to assert this
    assert not stack.pid_path("mlflow").exists()
    assert stack.down() == []


def test_port_taken_by_a_foreign_process_is_reported(tmp_path: Path) -> None:
    st = LocalStack.for_tests(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", st.kafka_port))
        squatter.listen()
        with pytest.raises(StackError) as err:
            st.start_service("kafka", ephemeral=True)
    message = str(err.value)
    assert f"port {st.kafka_port} on 127.0.0.1 is already in use by pid {os.getpid()}" in message
    assert "did not start" in message
    assert not st.pid_path("kafka").exists()


def test_service_that_dies_reports_its_log_tail_without_the_secret(tmp_path: Path, monkeypatch) -> None:
    kafka_port = LocalStack.free_ports(1)[0]
    stack = LocalStack(tmp_path / "churn", 19100, kafka_port, 19101, access_key="alice", secret_key=SECRET)
    script = ["/bin/sh", "-c", 'echo "broker says: bad config, key=$AWS_SECRET_ACCESS_KEY"; exit 3']
    monkeypatch.setattr(stack.kafka, "command", lambda ephemeral=False: script)
    with pytest.raises(StackError) as err:
        stack.start_service("kafka", ephemeral=True)
    message = str(err.value)
    assert message.startswith(f"kafka exited with code 3 before answering at 127.0.0.1:{stack.kafka_port}")
    assert str(stack.log_path("kafka")) in message
    assert "broker says: bad config, key=***" in message
    assert SECRET not in message
    assert not stack.pid_path("kafka").exists()
    assert stack.remembered_mode() == "ephemeral"


def test_status_table_formats_rows(stack: LocalStack) -> None:
    rows = [
        ServiceStatus("s3", "http://127.0.0.1:19100", 41, True, "", stack.log_path("s3")),
        ServiceStatus("kafka", "127.0.0.1:19192", None, False, "durable", stack.log_path("kafka")),
    ]
    lines = stack.status_table(rows).splitlines()
    assert lines[0].split() == ["service", "endpoint", "pid", "healthy", "mode"]
    assert lines[1].split() == ["s3", "http://127.0.0.1:19100", "41", "yes", "-"]
    assert lines[2].split() == ["kafka", "127.0.0.1:19192", "-", "no", "durable"]
    assert "alice" in lines[3] and SECRET not in "\n".join(lines)


def test_status_of_a_stopped_stack(tmp_path: Path) -> None:
    # Free ports: the fixture's fixed ones may be another stack's on a shared host.
    stack = LocalStack.for_tests(tmp_path)
    statuses = stack.status()
    assert [s.name for s in statuses] == list(SERVICES)
    assert [(s.pid, s.healthy) for s in statuses] == [(None, False)] * 3


def test_stop_service_kills_the_whole_tree_even_when_sigterm_is_ignored(stack: LocalStack, monkeypatch) -> None:
    import subprocess
    import time

    import psutil

    # A service that ignores SIGTERM, with one child and one orphan (reparented, same group).
    argv = ["/bin/sh", "-c", "(sleep 30 &); trap '' TERM; while :; do sleep 0.1; done"]
    monkeypatch.setattr(stack.kafka, "matches", lambda cmdline: list(cmdline) == argv)
    proc = subprocess.Popen(argv, start_new_session=True)
    try:
        stack.pid_path("kafka").parent.mkdir(parents=True)
        stack.pid_path("kafka").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 5
        orphans: list[int] = []
        while not orphans and time.monotonic() < deadline:
            time.sleep(0.05)
            orphans = [
                p.pid
                for p in psutil.process_iter(["cmdline", "ppid"])
                if _pgid(p.pid) == proc.pid and p.info["cmdline"] == ["sleep", "30"] and p.info["ppid"] != proc.pid
            ]
        assert len(orphans) == 1
        group = {p.pid for p in psutil.process_iter() if _pgid(p.pid) == proc.pid}
        assert {proc.pid, *orphans} <= group
        assert stack.pid("kafka") == proc.pid

        started = time.monotonic()
        assert stack.stop_service("kafka", grace_s=0.5) is True
        assert 0.5 <= time.monotonic() - started < 5  # SIGTERM ignored: killed after the grace period
        assert [pid for pid in group if _alive(pid)] == []
        assert not stack.pid_path("kafka").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # only if the test failed midway
        proc.wait()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
