"""The MLflow tracking server: SQLite backend store in the data dir, artifacts on the stack's S3."""

from __future__ import annotations

import urllib.request

from churn_stream.stack.seaweedfs import SeaweedFSService
from churn_stream.stack.service import Service, StackConfig, find_executable


class MLflowService(Service):
    """``mlflow server`` on ``port``, with artifacts under ``s3://mlflow/artifacts`` of ``storage``.

    Parameters
    ----------
    config : StackConfig
    port : int
        Port of the tracking server.
    storage : SeaweedFSService
        The S3 API that holds the artifacts.
    """

    name = "mlflow"
    health_timeout_s = 90.0

    def __init__(self, config: StackConfig, port: int, storage: SeaweedFSService) -> None:
        super().__init__(config)
        self.port = port
        self.storage = storage

    @property
    def endpoint(self) -> str:
        """``http://host:port`` of the tracking server."""
        return f"http://{self.config.host}:{self.port}"

    def ports(self) -> list[int]:
        """The tracking server's port."""
        return [self.port]

    @property
    def _backend_store_uri(self) -> str:
        return f"sqlite:///{self.config.data_dir / 'mlflow' / 'mlflow.db'}"

    def command(self, ephemeral: bool = False) -> list[str]:
        """``mlflow server`` with one worker (``ephemeral`` is ignored)."""
        return [
            find_executable("mlflow"),
            "server",
            "--backend-store-uri",
            self._backend_store_uri,
            "--artifacts-destination",
            "s3://mlflow/artifacts",
            "--host",
            self.config.host,
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def _identity(self) -> list[str]:
        return ["server", self._backend_store_uri, "--port", str(self.port)]

    def _service_environment(self) -> dict[str, str]:
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.storage.endpoint,
            # MLflow 3's server otherwise starts a huey job runner (six consumer
            # processes) for GenAI evaluation jobs, which this product never submits.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }

    def _probe(self, timeout: float) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/health", timeout=timeout) as response:
            return bool(response.status == 200)
