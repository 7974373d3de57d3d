"""The production services in throw-away containers (testcontainers), for tests.

The default integration backend is the local stack (``churn stack``: SeaweedFS, Tansu,
MLflow as processes). Where a Docker engine is reachable, the same tests can run against
the production implementations instead: Apache Kafka's protocol from a real Kafka broker
(KRaft), MinIO, and PostgreSQL as MLflow's backend store.

>>> if docker_available():
...     stack = start_container_stack()
...     settings = Settings.from_env({}).with_overrides(**stack.settings_overrides())
...     ...
...     stack.stop()

``start_container_stack`` does not start MLflow: :meth:`ContainerStack.mlflow_server_args`
and :meth:`ContainerStack.mlflow_server_env` give the command line and environment of an
``mlflow server`` process on PostgreSQL + MinIO (the server needs ``psycopg2-binary``),
so a fixture can run it like ``churn stack`` runs its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

#: Images, overridable per run (``CHURN_TC_KAFKA_IMAGE`` ...). testcontainers' KafkaContainer
#: drives Confluent's start script, so its Kafka image is cp-kafka (Apache Kafka 3.6, KRaft).
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
MINIO_IMAGE = "minio/minio:RELEASE.2025-04-22T22-12-26Z"
POSTGRES_IMAGE = "postgres:16-alpine"

#: Buckets the production stack creates (docker-compose.yaml, minio-init).
BUCKETS = ("raw-data", "processed-data", "models", "mlflow")

#: Upper bound of :func:`docker_available`, seconds.
DOCKER_PING_TIMEOUT_S = 5.0


def _docker_host(environ: Mapping[str, str]) -> str | None:
    """``DOCKER_HOST`` of ``environ``, else the engine testcontainers would use (its
    properties file, then the current docker context); ``None`` means the SDK's default socket."""
    if environ.get("DOCKER_HOST"):
        return environ["DOCKER_HOST"]
    try:
        from testcontainers.core.docker_client import get_docker_host
    except ImportError:  # older testcontainers
        return None
    try:
        return get_docker_host()
    except Exception:  # a broken config means "no engine", not a test error
        logger.debug("testcontainers could not resolve a docker host", exc_info=True)
        return None


def _ping_sdk(environ: Mapping[str, str], timeout_s: float) -> bool:
    import docker  # testcontainers' own dependency

    env = dict(environ)
    host = _docker_host(environ)
    if host:
        env["DOCKER_HOST"] = host
    client = docker.from_env(environment=env, timeout=max(1, int(timeout_s)))
    try:
        return bool(client.ping())
    finally:
        client.close()


def _ping_cli(timeout_s: float) -> bool:
    exe = shutil.which("docker")
    if exe is None:
        return False
    try:
        done = subprocess.run(
            [exe, "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout_s, check=False
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return done.returncode == 0


def docker_available(timeout_s: float = DOCKER_PING_TIMEOUT_S, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a Docker engine answers, within ``timeout_s`` seconds; never raises.

    Pings the engine testcontainers would use with the docker SDK; without the SDK,
    runs ``docker info``. A docker CLI without an engine (as on the CI machines) is
    ``False``.

    Parameters
    ----------
    timeout_s : float, default 5.0
        Hard upper bound of the whole check, seconds.
    environ : mapping, optional
        Environment to resolve the engine from (default: this process's); never modified.

    Returns
    -------
    bool
    """
    env = dict(os.environ if environ is None else environ)
    result: list[bool] = []

    def check() -> None:
        try:
            try:
                import docker  # noqa: F401
            except ImportError:
                result.append(_ping_cli(timeout_s))
                return
            result.append(_ping_sdk(env, timeout_s))
        except Exception as err:  # every failure to reach an engine means "no"
            logger.debug("docker engine not reachable: %s", type(err).__name__)
            result.append(False)

    # A thread bounds the check even if the SDK blocks past its own timeout (e.g. ssh hosts).
    thread = threading.Thread(target=check, name="docker-ping", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


@dataclass
class ContainerStack:
    """Running containers and the endpoints tests need; :meth:`stop` removes them.

    Attributes
    ----------
    kafka_bootstrap_servers : str
        ``host:port`` of the broker as seen from this machine.
    minio_endpoint : str
        ``host:port`` of MinIO's S3 API (plain HTTP).
    minio_access_key, minio_secret_key : str
        MinIO root credentials of this throw-away container (hidden from ``repr``).
    postgres_url : str
        SQLAlchemy URL (``postgresql://...``) of the MLflow backend database (hidden from ``repr``).
    """

    kafka_bootstrap_servers: str
    minio_endpoint: str
    minio_access_key: str = field(repr=False)
    minio_secret_key: str = field(repr=False)
    postgres_url: str = field(repr=False)
    containers: list[Any] = field(default_factory=list, repr=False)

    def settings_overrides(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`Settings.with_overrides` (MLflow not included)."""
        return {
            "kafka_bootstrap_servers": self.kafka_bootstrap_servers,
            "kafka_security_protocol": "PLAINTEXT",
            "minio_endpoint": self.minio_endpoint,
            "minio_access_key": self.minio_access_key,
            "minio_secret_key": self.minio_secret_key,
            "minio_secure": False,
        }

    def mlflow_server_args(self, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
        """``mlflow server`` arguments (after the executable) for these containers, as in production."""
        return [
            "server",
            "--backend-store-uri",
            self.postgres_url,
            "--artifacts-destination",
            "s3://mlflow/artifacts",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
        ]

    def mlflow_server_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment of that ``mlflow server`` process: ``base`` plus S3 endpoint and credentials."""
        env = dict(base or {})
        env.update(
            {
                "MLFLOW_S3_ENDPOINT_URL": f"http://{self.minio_endpoint}",
                "AWS_ACCESS_KEY_ID": self.minio_access_key,
                "AWS_SECRET_ACCESS_KEY": self.minio_secret_key,
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
        return env

    def stop(self) -> None:
        """Stop and remove every container, newest first; keeps going past failures."""
        while self.containers:
            container = self.containers.pop()
            try:
                container.stop()
            except Exception:  # teardown must reach the other containers
                logger.warning("could not stop %s", type(container).__name__, exc_info=True)


def _import_containers():
    # testcontainers >= 4.14 moved these to testcontainers.community (old paths warn).
    try:
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.minio import MinioContainer
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        from testcontainers.kafka import KafkaContainer
        from testcontainers.minio import MinioContainer
        from testcontainers.postgres import PostgresContainer
    return KafkaContainer, MinioContainer, PostgresContainer


def start_container_stack(environ: Mapping[str, str] | None = None) -> ContainerStack:
    """Start Kafka (KRaft), MinIO (with the production buckets) and PostgreSQL.

    Parameters
    ----------
    environ : mapping, optional
        Where ``CHURN_TC_KAFKA_IMAGE``, ``CHURN_TC_MINIO_IMAGE`` and ``CHURN_TC_POSTGRES_IMAGE``
        may override the images (default: this process's environment).

    Returns
    -------
    ContainerStack
        Call :meth:`ContainerStack.stop` when done (also done here if a start fails).

    Raises
    ------
    RuntimeError
        If no Docker engine is reachable.
    """
    env = os.environ if environ is None else environ
    if not docker_available(environ=env):
        raise RuntimeError("no Docker engine reachable: use the local stack (churn stack) instead")
    from plumbing.settings import LOCAL_DEFAULT_ACCESS_KEY, LOCAL_DEFAULT_SECRET_KEY

    KafkaContainer, MinioContainer, PostgresContainer = _import_containers()
    stack_containers: list[Any] = []
    try:
        kafka = KafkaContainer(env.get("CHURN_TC_KAFKA_IMAGE", KAFKA_IMAGE)).with_kraft()
        kafka.with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        kafka.start()
        stack_containers.append(kafka)

        minio = MinioContainer(
            env.get("CHURN_TC_MINIO_IMAGE", MINIO_IMAGE),
            access_key=LOCAL_DEFAULT_ACCESS_KEY,
            secret_key=LOCAL_DEFAULT_SECRET_KEY,
        )
        # Current MinIO releases read only the MINIO_ROOT_* names.
        minio.with_env("MINIO_ROOT_USER", LOCAL_DEFAULT_ACCESS_KEY)
        minio.with_env("MINIO_ROOT_PASSWORD", LOCAL_DEFAULT_SECRET_KEY)
        minio.start()
        stack_containers.append(minio)
        minio_config = minio.get_config()

        postgres = PostgresContainer(env.get("CHURN_TC_POSTGRES_IMAGE", POSTGRES_IMAGE), driver=None)
        postgres.start()
        stack_containers.append(postgres)

        stack = ContainerStack(
            kafka_bootstrap_servers=kafka.get_bootstrap_server(),
            minio_endpoint=minio_config["endpoint"],
            minio_access_key=minio_config["access_key"],
            minio_secret_key=minio_config["secret_key"],
            postgres_url=postgres.get_connection_url(),
            containers=stack_containers,
        )
        from plumbing.clients import ensure_buckets

        ensure_buckets(minio.get_client(), BUCKETS)
    except BaseException:
        ContainerStack("", "", "", "", "", containers=stack_containers).stop()
        raise
    logger.info("container stack up kafka=%s minio=%s", stack.kafka_bootstrap_servers, stack.minio_endpoint)
    return stack
