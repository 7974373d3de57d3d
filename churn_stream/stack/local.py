"""The stack as a whole: three services on one host (four when secure), from explicit ports or settings."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from churn_stream.stack import credentials as creds
from churn_stream.stack.errors import StackError
from churn_stream.stack.gateway_service import KafkaGatewayService
from churn_stream.stack.mlflow_server import MLflowAuth, MLflowService
from churn_stream.stack.ports import GRPC_OFFSET, WEED_PORT_NAMES, derive_weed_ports, free_ports, split_host_port
from churn_stream.stack.seaweedfs import BUCKETS, SeaweedFSService
from churn_stream.stack.service import STOP_GRACE_S, Service, ServiceStatus, StackConfig
from churn_stream.stack.tansu import TansuService
from plumbing.settings import LOCAL_DEFAULT_ACCESS_KEY, LOCAL_DEFAULT_SECRET_KEY, Settings

logger = logging.getLogger(__name__)

#: Service names, in start order.
SERVICES: tuple[str, ...] = ("s3", "kafka", "mlflow")
#: Service names of the secure stack, in start order.
SECURE_SERVICES: tuple[str, ...] = ("s3", "kafka", "kafka-gateway", "mlflow")
#: The Kafka user the gateway's health check logs in as.
_PROBE_USER = "cli"


class LocalStack:
    """SeaweedFS, Tansu and MLflow on one host, managed through pid files in ``data_dir``.

    Construct it directly with explicit ports (tests use :meth:`for_tests`, which picks free
    ones) or from settings with :meth:`from_settings`. Each service is an object of its
    own (:attr:`s3`, :attr:`kafka`, :attr:`mlflow`); the methods taking a service name
    delegate to it.

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
    secure : bool, default False
        The secure stack (:data:`SECURE_SERVICES`): Tansu on a loopback backend port behind
        the SASL_SSL gateway on ``kafka_port``, MLflow with basic-auth and one user per
        service, SeaweedFS with random S3 keys (``access_key``/``secret_key`` are then
        ignored) and JWT-signed internal ports. Credentials are read from, or first made
        in, ``<data_dir>/secrets/`` (:mod:`churn_stream.stack.credentials`).
    kafka_backend_port : int, optional
        Secure stack only: the broker's backend port when the credentials file does not
        name one yet; default a free port.

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
        secure: bool = False,
        kafka_backend_port: int | None = None,
    ) -> None:
        root = Path(data_dir).expanduser().absolute()
        self.layout = creds.SecretsLayout(root)
        self.credentials: creds.StackCredentials | None = None
        if secure:
            backend = kafka_backend_port
            if backend is None and not self.layout.exists():
                backend = free_ports(1, host)[0]
            self.credentials = creds.load_or_create(self.layout, backend or 0)
            access_key, secret_key = self.credentials.s3_access_key, self.credentials.s3_secret_key
        redact = tuple(self.credentials.secrets()) if self.credentials else ()
        config = StackConfig(root, host, access_key, secret_key, secure=secure, redact=redact)
        ports = derive_weed_ports(int(s3_port)) if weed_ports is None else dict(weed_ports)
        missing = set(WEED_PORT_NAMES) - set(ports)
        if missing:
            raise ValueError(f"weed_ports: missing {sorted(missing)}")
        weed = {name: int(ports[name]) for name in WEED_PORT_NAMES}
        for name, port in [("s3", int(s3_port)), *weed.items()]:
            if not 0 < port <= 65535 - GRPC_OFFSET:
                raise ValueError(
                    f"{name} port: expected 1..{65535 - GRPC_OFFSET} (its gRPC port is +{GRPC_OFFSET}), got {port}"
                )
        self.config = config
        self.secure = secure
        self.s3 = SeaweedFSService(
            config, int(s3_port), weed, config_dir=self.layout.seaweedfs_config_dir if secure else None
        )
        c = self.credentials
        backend_port = c.kafka_backend_port if c is not None else int(kafka_port)
        self.kafka = TansuService(config, backend_port, storage=self.s3, advertised_port=int(kafka_port))
        self.kafka_gateway = KafkaGatewayService(
            config,
            int(kafka_port),
            self.kafka,
            self.layout,
            probe_login=(_PROBE_USER, c.kafka_passwords[_PROBE_USER]) if c is not None else None,
        )
        auth = None
        if c is not None:
            auth = MLflowAuth(
                self.layout.mlflow_auth_ini,
                creds.MLFLOW_ADMIN,
                c.mlflow_admin_password,
                c.flask_secret_key,
                readers={u: c.mlflow_passwords[u] for u in creds.MLFLOW_READERS},
                editors={u: c.mlflow_passwords[u] for u in creds.MLFLOW_EDITORS},
            )
        self.mlflow = MLflowService(config, int(mlflow_port), storage=self.s3, auth=auth)
        # Every service of either kind, so `down` stops a gateway whatever this object's kind.
        self._services: dict[str, Service] = {
            "s3": self.s3,
            "kafka": self.kafka,
            "kafka-gateway": self.kafka_gateway,
            "mlflow": self.mlflow,
        }

    def __repr__(self) -> str:
        return (
            f"LocalStack(data_dir={str(self.data_dir)!r}, s3_port={self.s3_port}, "
            f"kafka_port={self.kafka_port}, mlflow_port={self.mlflow_port}, "
            f"access_key={self.access_key!r}, host={self.host!r}, secure={self.secure})"
        )

    @property
    def names(self) -> tuple[str, ...]:
        """This stack's services in start order: :data:`SERVICES` or :data:`SECURE_SERVICES`."""
        return SECURE_SERVICES if self.secure else SERVICES

    # ------------------------------------------------------------ construction
    @classmethod
    def from_settings(cls, settings: Settings, secure: bool | None = None) -> LocalStack:
        """The stack that ``settings`` points at.

        Ports come from ``minio_endpoint``, the first of ``kafka_bootstrap_servers`` and
        ``mlflow_tracking_uri``; the bind host from ``minio_endpoint``.

        Parameters
        ----------
        settings : Settings
        secure : bool, optional
            ``None``: secure when the data directory holds a secure stack's credentials
            (as ``churn stack up --secure`` left them), so ``status`` and ``down`` find
            the gateway without being told.

        Raises
        ------
        ValueError
            If an endpoint has no parsable port (the MLflow URI defaults to 80/443).
        """
        host, s3_port = split_host_port(settings.minio_endpoint)
        _, kafka_port = split_host_port(settings.kafka_bootstrap_servers)
        scheme = urlsplit(settings.mlflow_tracking_uri).scheme
        _, mlflow_port = split_host_port(settings.mlflow_tracking_uri, 443 if scheme == "https" else 80)
        return cls(
            settings.data_dir,
            s3_port,
            kafka_port,
            mlflow_port,
            settings.minio_access_key,
            settings.minio_secret_key,
            host=host,
            secure=creds.SecretsLayout(Path(settings.data_dir).expanduser().absolute()).exists()
            if secure is None
            else secure,
        )

    free_ports = staticmethod(free_ports)

    @classmethod
    def for_tests(
        cls,
        data_dir: Path | str,
        access_key: str = LOCAL_DEFAULT_ACCESS_KEY,
        secret_key: str = LOCAL_DEFAULT_SECRET_KEY,
        host: str = "127.0.0.1",
        secure: bool = False,
    ) -> LocalStack:
        """A stack in ``data_dir`` on free ports, every SeaweedFS port (and its gRPC twin) included."""
        weed = free_ports(1 + len(WEED_PORT_NAMES), host, paired_offset=GRPC_OFFSET)
        while True:
            kafka_port, mlflow_port, backend_port = free_ports(3, host)
            # The kernel's picks must not collide with a SeaweedFS gRPC port.
            if not {kafka_port, mlflow_port, backend_port} & {p + GRPC_OFFSET for p in weed}:
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
            secure=secure,
            kafka_backend_port=backend_port,
        )

    def settings(self, base: Settings | None = None, client: str = creds.DEFAULT_CLIENT) -> Settings:
        """``base`` (default: ``Settings()``) pointed at this stack.

        On the secure stack also with ``client``'s Kafka credentials (SASL_SSL,
        SCRAM-SHA-512, the stack's CA). MLflow's credentials are not settings: MLflow's
        client reads ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` itself
        (:meth:`client_environment` has them).

        Parameters
        ----------
        base : Settings, optional
        client : str, default "batch"
            One of :data:`~churn_stream.stack.credentials.KAFKA_USERS`; ignored when not secure.
        """
        settings = (base or Settings()).with_overrides(
            kafka_bootstrap_servers=self.kafka_bootstrap_servers,
            minio_endpoint=self.s3_endpoint,
            minio_access_key=self.access_key,
            minio_secret_key=self.config.secret_key,
            minio_secure=False,
            mlflow_tracking_uri=self.mlflow_tracking_uri,
            data_dir=self.data_dir,
        )
        if self.credentials is None:
            return settings
        return settings.with_overrides(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username=client,
            kafka_sasl_password=self.credentials.kafka_passwords[client],
            kafka_ssl_cafile=str(self.layout.ca),
        )

    def client_environment(self, client: str = creds.DEFAULT_CLIENT) -> dict[str, str]:
        """The variables ``client`` needs on the secure stack, as ``stack[-client].env`` holds them.

        Holds passwords: never log it.

        Raises
        ------
        StackError
            If the stack is not secure.
        """
        if self.credentials is None:
            raise StackError("client_environment: the stack is not secure (no credentials)")
        return creds.client_environment(self.layout, self.credentials, client, self._client_endpoints())

    def _client_endpoints(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "MINIO_ENDPOINT": self.s3_endpoint,
            "CHURN_DATA_DIR": str(self.data_dir),
        }

    # ----------------------------------------------------------------- config
    @property
    def data_dir(self) -> Path:
        """Root of the stack's data, logs and pid files (absolute)."""
        return self.config.data_dir

    @property
    def host(self) -> str:
        """Address every service binds to and advertises."""
        return self.config.host

    @property
    def access_key(self) -> str:
        """S3 access key of the stack."""
        return self.config.access_key

    @property
    def s3_port(self) -> int:
        """Port of the S3 API."""
        return self.s3.port

    @property
    def weed_ports(self) -> dict[str, int]:
        """SeaweedFS internal HTTP ports keyed by :data:`WEED_PORT_NAMES`."""
        return self.s3.weed_ports

    @property
    def kafka_port(self) -> int:
        """Port clients bootstrap from (the gateway's on the secure stack)."""
        return self.kafka_gateway.port

    @property
    def mlflow_port(self) -> int:
        """Port of the MLflow tracking server."""
        return self.mlflow.port

    # --------------------------------------------------------------- endpoints
    @property
    def s3_endpoint(self) -> str:
        """``host:port`` of the S3 API."""
        return f"{self.host}:{self.s3_port}"

    @property
    def s3_endpoint_url(self) -> str:
        """``http://host:port`` of the S3 API."""
        return self.s3.endpoint

    @property
    def kafka_bootstrap_servers(self) -> str:
        """``host:port`` clients bootstrap from (the gateway's on the secure stack)."""
        return self.kafka_gateway.endpoint

    @property
    def mlflow_tracking_uri(self) -> str:
        """``http://host:port`` of the MLflow tracking server."""
        return self.mlflow.endpoint

    # ------------------------------------------------------ one service by name
    def service(self, name: str) -> Service:
        """The service called ``name``.

        Parameters
        ----------
        name : str
            ``"s3"``, ``"kafka"``, ``"kafka-gateway"`` or ``"mlflow"``.

        Returns
        -------
        Service

        Raises
        ------
        ValueError
            For any other name.
        """
        try:
            return self._services[name]
        except KeyError:
            raise ValueError(f"service: expected one of {', '.join(SECURE_SERVICES)}, got {name!r}") from None

    def endpoint(self, name: str) -> str:
        """Client-facing endpoint of service ``name``."""
        return self.service(name).endpoint

    def ports(self, name: str) -> list[int]:
        """Every TCP port service ``name`` listens on."""
        return self.service(name).ports()

    def log_path(self, name: str) -> Path:
        """Log file of service ``name``."""
        return self.service(name).log_path

    def pid_path(self, name: str) -> Path:
        """Pid file of service ``name``."""
        return self.service(name).pid_path

    def command(self, name: str, ephemeral: bool = False) -> list[str]:
        """argv that starts service ``name`` (no secrets: credentials go in the environment).

        Parameters
        ----------
        name : str
            ``"s3"``, ``"kafka"`` or ``"mlflow"``.
        ephemeral : bool, default False
            Kafka only: ``memory://`` storage instead of ``s3://tansu/``.
        """
        return self.service(name).command(ephemeral=ephemeral)

    def environment(self, name: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment of service ``name``: ``base`` (default: this process's) plus credentials.

        Holds the secret key: never log it.
        """
        return self.service(name).environment(base)

    def check_health(self, name: str, timeout: float = 2.0) -> bool:
        """True when service ``name`` answers a real request within ``timeout`` seconds.

        S3: ``list_buckets`` with this stack's credentials. Kafka: ApiVersions and a
        Metadata request listing at least one broker. MLflow: ``GET /health`` is 200.
        """
        return self.service(name).check_health(timeout)

    def ensure_buckets(self, buckets: Sequence[str] = BUCKETS) -> None:
        """Create each of ``buckets`` that does not exist yet."""
        self.s3.ensure_buckets(buckets)

    def pid(self, name: str) -> int | None:
        """Pid of the live process this stack started for ``name``, else ``None``.

        A pid file whose process is gone, or whose pid now belongs to another command
        (pid reuse), counts as no process.
        """
        return self.service(name).pid()

    def running_mode(self) -> str | None:
        """``"durable"`` / ``"ephemeral"`` of the running broker, ``None`` if it is not running."""
        return self.kafka.running_mode()

    def remembered_mode(self) -> str:
        """Mode the broker last ran in (``"durable"`` if it never ran)."""
        return self.kafka.remembered_mode()

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
        self.kafka.check_mode(ephemeral)  # before anything starts
        for service in self._services.values():
            service.check_security()
        if self.credentials is not None:
            creds.ensure_server_files(self.layout, self.credentials, self.host)
        for name in self.names:
            self.start_service(name, ephemeral=ephemeral if name == "kafka" else None)
        if self.credentials is not None:
            written = creds.write_client_env_files(self.layout, self.credentials, self._client_endpoints())
            logger.info("client settings written files=%s", ",".join(str(p) for p in written))
        return self.status()

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
        return self.service(name).start(ephemeral)

    def stop_service(self, name: str, grace_s: float = STOP_GRACE_S) -> bool:
        """Stop the process this stack started for ``name`` (and its children); remove its pid file.

        SIGTERM, wait up to ``grace_s`` seconds, then SIGKILL. A pid file whose pid now
        runs another command is removed without killing anything.

        Returns
        -------
        bool
            True if a process was stopped.
        """
        return self.service(name).stop(grace_s)

    def down(self) -> list[str]:
        """Stop every service this stack started, in reverse start order.

        Returns
        -------
        list of str
            Names of the services that were stopped (a gateway too, whatever this
            object's kind).
        """
        return [name for name in reversed(SECURE_SERVICES) if self.stop_service(name)]

    # ------------------------------------------------------------------ status
    def status(self) -> list[ServiceStatus]:
        """Status of every service, in start order.

        A service answering on its port without a pid of ours shows ``pid=None`` and
        ``healthy=True`` (someone else runs it).
        """
        return [self.service(name).status() for name in self.names]

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
        if self.secure:
            lines += [
                f"secure: Kafka clients need SASL_SSL + SCRAM-SHA-512 at {self.kafka_bootstrap_servers} "
                f"(CA {self.layout.ca}); the broker's own port {self.kafka.port} is loopback-only and "
                "unauthenticated (docs/security.md)",
                "        MLflow basic-auth, one user per service; S3 random keys; SeaweedFS internal ports need a JWT",
                f"credentials: {self.layout.client_env()} (batch user) and stack-<client>.env beside it, mode 600; "
                f"load with: set -a; . {self.layout.client_env()}; set +a",
            ]
        return "\n".join(lines)
