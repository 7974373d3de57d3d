"""The secure stack's Kafka endpoint: :mod:`~churn_stream.stack.kafka_gateway` as a stack service."""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Sequence

from churn_stream.stack.credentials import SecretsLayout
from churn_stream.stack.errors import StackError
from churn_stream.stack.kafka_probe import kafka_answers
from churn_stream.stack.service import Service, StackConfig
from churn_stream.stack.tansu import TansuService

_MODULE = "churn_stream.stack.kafka_gateway"


class KafkaGatewayService(Service):
    """SASL_SSL (SCRAM-SHA-512) on ``port`` in front of the loopback-only ``broker``.

    Health is a real client's path: TLS handshake trusting the stack's CA, SCRAM login as
    ``probe_login``'s user, then a Metadata request answered by the broker behind.

    Parameters
    ----------
    config : StackConfig
    port : int
        The public Kafka port (clients' ``KAFKA_BOOTSTRAP_SERVERS``).
    broker : TansuService
        The plaintext broker on its backend port.
    layout : SecretsLayout
        Where the users file, certificate, key and CA are.
    probe_login : tuple of (str, str), optional
        ``(user, password)`` the health check logs in with; without it the check stops
        after the TLS handshake and ApiVersions.
    """

    name = "kafka-gateway"
    health_timeout_s = 30.0
    # It reads no S3: keep the stack's S3 keys out of its environment.
    needs_s3_credentials = False

    def __init__(
        self,
        config: StackConfig,
        port: int,
        broker: TansuService,
        layout: SecretsLayout,
        probe_login: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(config)
        self.port = port
        self.broker = broker
        self.layout = layout
        self._probe_login = probe_login

    def __repr__(self) -> str:
        return f"KafkaGatewayService(endpoint={self.endpoint!r}, broker={self.broker.endpoint!r})"

    @property
    def endpoint(self) -> str:
        """``host:port`` clients bootstrap from."""
        return f"{self.config.host}:{self.port}"

    def ports(self) -> list[int]:
        """The public Kafka port."""
        return [self.port]

    def command(self, ephemeral: bool = False) -> list[str]:
        """``python -m churn_stream.stack.kafka_gateway`` with its files and ports (no secret)."""
        return [
            sys.executable,
            "-m",
            _MODULE,
            "--users",
            str(self.layout.kafka_users),
            "--listen",
            self.endpoint,
            "--broker",
            f"{self.config.host}:{self.broker.port}",
            "--cert",
            str(self.layout.server_cert),
            "--key",
            str(self.layout.server_key),
        ]

    def _identity(self) -> list[str]:
        return [_MODULE, "--listen", self.endpoint]

    def matches(self, cmdline: Sequence[str]) -> bool:
        """Any Python running this module on this stack's port (the interpreter's path may differ)."""
        if not any(os.path.basename(part).startswith("python") for part in cmdline[:1]):
            return False
        return all(token in cmdline for token in self._identity())

    def runs_secure(self, cmdline: Sequence[str]) -> bool:
        """The gateway exists only on the secure stack."""
        return True

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only the stack's CA."""
        return ssl.create_default_context(cafile=str(self.layout.ca))

    def _probe(self, timeout: float) -> bool:
        return kafka_answers(
            self.config.host, self.port, timeout, ssl_context=self.client_ssl_context(), scram_login=self._probe_login
        )

    def _before_launch(self, ephemeral: bool) -> None:
        missing = [
            str(p) for p in (self.layout.kafka_users, self.layout.server_cert, self.layout.server_key) if not p.exists()
        ]
        if missing:
            raise StackError(f"cannot start {self.name}: missing {', '.join(missing)} (run `churn stack up --secure`)")
        if not self.broker.check_health():
            raise StackError(f"cannot start {self.name}: the broker at {self.broker.endpoint} is not answering")
