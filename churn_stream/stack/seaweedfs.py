"""SeaweedFS's ``weed mini``: the stack's S3 API (buckets, objects, the broker's durable topics)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from churn_stream.stack.ports import GRPC_OFFSET, WEED_PORT_NAMES
from churn_stream.stack.service import Service, StackConfig, find_executable

logger = logging.getLogger(__name__)

#: Buckets created once S3 answers.
BUCKETS: tuple[str, ...] = ("tansu", "mlflow", "raw-data", "processed-data", "models")


class SeaweedFSService(Service):
    """S3 API on ``port``, with SeaweedFS's master, volume, filer and admin on ``weed_ports``.

    Parameters
    ----------
    config : StackConfig
    port : int
        Port of the S3 API.
    weed_ports : mapping of str to int
        Internal HTTP ports keyed by :data:`~churn_stream.stack.ports.WEED_PORT_NAMES`;
        each gRPC port is HTTP + :data:`~churn_stream.stack.ports.GRPC_OFFSET`.
    config_dir : Path, optional
        ``weed -config_dir``: a folder with ``security.toml`` (the secure stack's JWT
        signing keys for the volume and filer ports).
    """

    name = "s3"
    health_timeout_s = 60.0

    def __init__(
        self, config: StackConfig, port: int, weed_ports: Mapping[str, int], config_dir: Path | None = None
    ) -> None:
        super().__init__(config)
        self.port = port
        self.weed_ports = dict(weed_ports)
        self.config_dir = config_dir

    @property
    def endpoint(self) -> str:
        """``http://host:port`` of the S3 API."""
        return f"http://{self.config.host}:{self.port}"

    def ports(self) -> list[int]:
        """The S3 port and SeaweedFS's internal ports, each with its gRPC twin."""
        http = [self.port, *self.weed_ports.values()]
        return http + [port + GRPC_OFFSET for port in http]

    def command(self, ephemeral: bool = False) -> list[str]:
        """``weed [-config_dir=DIR] mini`` with every port set explicitly (``ephemeral`` is ignored)."""
        p = self.weed_ports
        data_dir, host = self.config.data_dir, self.config.host
        return [
            find_executable("weed"),
            *([f"-config_dir={self.config_dir}"] if self.config_dir is not None else []),
            "mini",
            f"-dir={data_dir / 's3'}",
            f"-ip={host}",
            f"-ip.bind={host}",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={self.port + GRPC_OFFSET}",
            *(flag for name in WEED_PORT_NAMES for flag in _port_flags(name, p[name])),
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-admin.ui=false",
            "-master.telemetry=false",
            *self._socket_flags(),
        ]

    def _socket_flags(self) -> list[str]:
        # weed defaults these to /tmp/seaweedfs-<kind>-<port>.sock and leaves the S3 one
        # behind; keep them in the data dir unless the path is too long for a unix socket.
        flags = []
        for kind in ("s3", "filer"):
            path = self.config.data_dir / "run" / f"{kind}.sock"
            if len(str(path).encode()) <= 100:
                flags.append(f"-{kind}.localSocket={path}")
        return flags

    def _identity(self) -> list[str]:
        return ["mini", f"-dir={self.config.data_dir / 's3'}", f"-s3.port={self.port}"]

    def runs_secure(self, cmdline) -> bool:
        """Secure when weed was given a config dir (its security.toml)."""
        return any(str(arg).startswith("-config_dir=") for arg in cmdline)

    def client(self, timeout: float = 5.0):
        """A MinIO client on this S3 API with the stack's credentials and no retries.

        Parameters
        ----------
        timeout : float, default 5.0
            Connect and read timeout, seconds.

        Returns
        -------
        minio.Minio
        """
        import urllib3
        from minio import Minio

        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=urllib3.Retry(total=0)
        )
        return Minio(
            f"{self.config.host}:{self.port}",
            access_key=self.config.access_key,
            secret_key=self.config.secret_key,
            secure=False,
            http_client=http,
        )

    def _probe(self, timeout: float) -> bool:
        # list_buckets with this stack's credentials.
        self.client(timeout).list_buckets()
        return True

    def ensure_buckets(self, buckets: Sequence[str] = BUCKETS) -> None:
        """Create each of ``buckets`` that does not exist yet.

        Parameters
        ----------
        buckets : sequence of str, default :data:`BUCKETS`
        """
        client = self.client(10.0)
        for bucket in buckets:
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
                logger.info("bucket created bucket=%s", bucket)

    def _after_healthy(self) -> None:
        self.ensure_buckets()


def _port_flags(name: str, port: int) -> tuple[str, str]:
    return f"-{name}.port={port}", f"-{name}.port.grpc={port + GRPC_OFFSET}"
