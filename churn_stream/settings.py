"""Settings, read once from the environment at the entry point.

Nothing else in the code base reads ``os.environ``: entry points call
:meth:`Settings.from_env` and pass the result (or clients built from it) down.
Defaults point at the local stack (``churn stack up``); the credentials below are
**local development defaults only**, never production values.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Local-stack default credentials (clearly not secrets; override in production).
LOCAL_DEFAULT_ACCESS_KEY = "churn-local"
LOCAL_DEFAULT_SECRET_KEY = "churn-local-secret"


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Every endpoint, credential and tunable of the system.

    Attributes
    ----------
    kafka_bootstrap_servers : str
        ``KAFKA_BOOTSTRAP_SERVERS``, comma-separated ``host:port`` list.
    minio_endpoint : str
        ``MINIO_ENDPOINT``, ``host:port`` of the S3 API (no scheme).
    minio_access_key, minio_secret_key : str
        ``MINIO_ACCESS_KEY`` / ``MINIO_SECRET_KEY``; hidden from ``repr``.
    minio_secure : bool
        ``MINIO_SECURE``: use TLS to reach S3.
    mlflow_tracking_uri : str
        ``MLFLOW_TRACKING_URI``.
    data_dir : Path
        ``CHURN_DATA_DIR``: local stack data and logs (default ``.churn``).
    consumer_group : str
        ``CHURN_CONSUMER_GROUP``: Kafka consumer group of the scoring workers.
    topic_partitions : int
        ``CHURN_TOPIC_PARTITIONS``: partitions of the ``customers`` topic when created.
    """

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    minio_endpoint: str = "127.0.0.1:9000"
    minio_access_key: str = field(default=LOCAL_DEFAULT_ACCESS_KEY, repr=False)
    minio_secret_key: str = field(default=LOCAL_DEFAULT_SECRET_KEY, repr=False)
    minio_secure: bool = False
    mlflow_tracking_uri: str = "http://127.0.0.1:5001"
    data_dir: Path = Path(".churn")
    consumer_group: str = "churn-scorer"
    topic_partitions: int = 4
    worker_web_port: int = 6066

    _ENV = {
        "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
        "minio_endpoint": "MINIO_ENDPOINT",
        "minio_access_key": "MINIO_ACCESS_KEY",
        "minio_secret_key": "MINIO_SECRET_KEY",
        "minio_secure": "MINIO_SECURE",
        "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
        "data_dir": "CHURN_DATA_DIR",
        "consumer_group": "CHURN_CONSUMER_GROUP",
        "topic_partitions": "CHURN_TOPIC_PARTITIONS",
        "worker_web_port": "CHURN_WORKER_WEB_PORT",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``environ`` (default ``os.environ``), falling back to defaults.

        Raises
        ------
        ValueError
            If a numeric or boolean variable cannot be parsed; the message names the
            variable, never its value when it is a credential.
        """
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            var = cls._ENV.get(f.name)
            if var is None or var not in env:
                continue
            raw = env[var]
            try:
                if f.type in ("int", int):
                    kwargs[f.name] = int(raw)
                elif f.type in ("bool", bool):
                    kwargs[f.name] = _bool(raw)
                elif f.type in ("Path", Path):
                    kwargs[f.name] = Path(raw)
                else:
                    kwargs[f.name] = raw
            except ValueError:
                raise ValueError(f"{var}: expected {f.type}, got {raw!r}") from None
        return cls(**kwargs)  # type: ignore[arg-type]

    def with_overrides(self, **changes: object) -> "Settings":
        """Copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    @property
    def s3_endpoint_url(self) -> str:
        """``http(s)://`` URL of the S3 API, for clients that want a URL."""
        return f"{'https' if self.minio_secure else 'http'}://{self.minio_endpoint}"
