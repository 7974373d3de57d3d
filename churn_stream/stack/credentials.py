"""The secure stack's credentials: made once, kept in mode-600 files, handed to clients as env files.

Everything lives under ``<data_dir>/secrets/`` (mode 700) except the clients' env files::

    secrets/credentials.json      every password and key (mode 600); the one source of truth
    secrets/kafka-users.json      SCRAM-SHA-512 salts and keys only, what the Kafka gateway reads
    secrets/ca.pem                the test CA (public): clients trust it (KAFKA_SSL_CAFILE)
    secrets/kafka-server.pem      the gateway's certificate chain for 127.0.0.1 and localhost
    secrets/kafka-server.key      its private key (mode 600)
    secrets/seaweedfs/security.toml  SeaweedFS's JWT signing keys and gRPC mTLS files (mode 600)
    secrets/seaweedfs/grpc.pem, grpc.key  the certificate SeaweedFS's parts present to each other
    secrets/mlflow-auth.ini       MLflow basic-auth config (no password in it)
    stack.env                     the batch user's client settings (mode 600)
    stack-<client>.env            the same for worker, api, dashboard, cli (mode 600)

Missing entries are generated and existing ones kept, so ``churn stack up --secure`` is
idempotent and rotating a credential is: stop the stack, delete its entry (or file), start
it again (``docs/security.md``).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Kafka users, one per client kind (the gateway authenticates; it does not authorise).
KAFKA_USERS: tuple[str, ...] = ("worker", "api", "batch", "dashboard", "cli")
#: MLflow users that may only read the registry and experiments (and download artifacts).
MLFLOW_READERS: tuple[str, ...] = ("worker", "api", "dashboard", "cli")
#: MLflow users that may create and edit experiments, runs, models and aliases.
MLFLOW_EDITORS: tuple[str, ...] = ("batch",)
#: The client whose settings ``stack.env`` holds.
DEFAULT_CLIENT = "batch"
#: Clients that get S3 keys (artifacts of the others go through MLflow's proxy).
S3_CLIENTS: tuple[str, ...] = ("batch",)
#: MLflow's administrator (provisions the users; no service runs as it).
MLFLOW_ADMIN = "admin"


def _new_password() -> str:
    # URL- and shell-safe: [A-Za-z0-9_-], 192 bits.
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class StackCredentials:
    """Every secret of one secure stack. Never logged; the repr shows names only.

    Attributes
    ----------
    s3_access_key : str
        The S3 key id (not secret by itself).
    s3_secret_key : str
    kafka_passwords : mapping of str to str
        One per :data:`KAFKA_USERS`.
    mlflow_admin_password : str
    mlflow_passwords : mapping of str to str
        One per :data:`MLFLOW_READERS` and :data:`MLFLOW_EDITORS`.
    flask_secret_key : str
        MLflow's Flask session key (``MLFLOW_FLASK_SERVER_SECRET_KEY``).
    kafka_backend_port : int
        Loopback port of the plaintext broker behind the gateway (not a secret; kept here
        so every command finds the same port).
    """

    s3_access_key: str
    s3_secret_key: str = field(repr=False)
    kafka_passwords: Mapping[str, str] = field(repr=False)
    mlflow_admin_password: str = field(repr=False)
    mlflow_passwords: Mapping[str, str] = field(repr=False)
    flask_secret_key: str = field(repr=False)
    kafka_backend_port: int

    def secrets(self) -> list[str]:
        """Every secret value (to search logs for, or to redact)."""
        return [
            self.s3_secret_key,
            self.mlflow_admin_password,
            self.flask_secret_key,
            *self.kafka_passwords.values(),
            *self.mlflow_passwords.values(),
        ]


class SecretsLayout:
    """Where the files of :mod:`churn_stream.stack.credentials` live for one data directory.

    Parameters
    ----------
    data_dir : Path
        The stack's data directory (absolute).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "secrets"

    @property
    def credentials(self) -> Path:
        """``credentials.json``: every password and key."""
        return self.root / "credentials.json"

    @property
    def kafka_users(self) -> Path:
        """The gateway's users file (SCRAM keys only)."""
        return self.root / "kafka-users.json"

    @property
    def ca(self) -> Path:
        """The test CA's certificate (public)."""
        return self.root / "ca.pem"

    @property
    def server_cert(self) -> Path:
        """The gateway's certificate chain."""
        return self.root / "kafka-server.pem"

    @property
    def server_key(self) -> Path:
        """The gateway's private key."""
        return self.root / "kafka-server.key"

    @property
    def seaweedfs_config_dir(self) -> Path:
        """``weed -config_dir``: holds ``security.toml``."""
        return self.root / "seaweedfs"

    @property
    def seaweedfs_grpc_cert(self) -> Path:
        """Certificate SeaweedFS's master, volume, filer and S3 parts present to each other (gRPC mTLS)."""
        return self.seaweedfs_config_dir / "grpc.pem"

    @property
    def seaweedfs_grpc_key(self) -> Path:
        """Its private key."""
        return self.seaweedfs_config_dir / "grpc.key"

    @property
    def mlflow_auth_ini(self) -> Path:
        """``MLFLOW_AUTH_CONFIG_PATH``."""
        return self.root / "mlflow-auth.ini"

    @property
    def mlflow_auth_db(self) -> Path:
        """MLflow's user and permission store."""
        return self.data_dir / "mlflow" / "auth.db"

    def client_env(self, client: str = DEFAULT_CLIENT) -> Path:
        """``stack.env`` for :data:`DEFAULT_CLIENT`, ``stack-<client>.env`` for the others."""
        return self.data_dir / ("stack.env" if client == DEFAULT_CLIENT else f"stack-{client}.env")

    def exists(self) -> bool:
        """Has a secure stack been set up in this data directory?"""
        return self.credentials.is_file()


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 600 from the first byte (atomically replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to an existing leftover
    os.replace(tmp, path)


def load_or_create(layout: SecretsLayout, backend_port: int) -> StackCredentials:
    """Read ``credentials.json``, generating (and saving) whatever is missing.

    Parameters
    ----------
    layout : SecretsLayout
    backend_port : int
        Broker backend port to record when the file does not name one yet.

    Returns
    -------
    StackCredentials
    """
    layout.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(layout.root, 0o700)
    doc: dict[str, Any] = json.loads(layout.credentials.read_text()) if layout.credentials.exists() else {}
    before = json.dumps(doc, sort_keys=True)
    s3 = doc.setdefault("s3", {})
    s3.setdefault("access_key", f"churn-{secrets.token_hex(6)}")
    s3.setdefault("secret_key", secrets.token_urlsafe(30))
    kafka = doc.setdefault("kafka", {})
    kafka.setdefault("backend_port", int(backend_port))
    kafka_users = kafka.setdefault("users", {})
    for user in KAFKA_USERS:
        kafka_users.setdefault(user, _new_password())
    mlflow = doc.setdefault("mlflow", {})
    mlflow.setdefault("admin_password", _new_password())
    mlflow.setdefault("flask_secret_key", secrets.token_urlsafe(32))
    mlflow_users = mlflow.setdefault("users", {})
    for user in (*MLFLOW_READERS, *MLFLOW_EDITORS):
        mlflow_users.setdefault(user, _new_password())
    if json.dumps(doc, sort_keys=True) != before:
        write_private(layout.credentials, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return StackCredentials(
        s3_access_key=s3["access_key"],
        s3_secret_key=s3["secret_key"],
        kafka_passwords=dict(kafka_users),
        mlflow_admin_password=mlflow["admin_password"],
        mlflow_passwords=dict(mlflow_users),
        flask_secret_key=mlflow["flask_secret_key"],
        kafka_backend_port=int(kafka["backend_port"]),
    )


def ensure_server_files(layout: SecretsLayout, credentials: StackCredentials, host: str) -> None:
    """Certificates (if missing), the gateway's users file, SeaweedFS's security.toml (if missing), auth ini.

    Parameters
    ----------
    layout : SecretsLayout
    credentials : StackCredentials
    host : str
        Address the gateway's certificate must name (``localhost`` is always added).
    """
    from churn_stream.stack.kafka_gateway import write_users_file

    certificates = (
        layout.ca,
        layout.server_cert,
        layout.server_key,
        layout.seaweedfs_grpc_cert,
        layout.seaweedfs_grpc_key,
    )
    if not all(path.exists() for path in certificates):
        # One CA for both; its key is never written, so new certificates mean a new CA.
        import trustme

        ca = trustme.CA(organization_name="churn-stream local stack")
        for cert_path, key_path in (
            (layout.server_cert, layout.server_key),
            (layout.seaweedfs_grpc_cert, layout.seaweedfs_grpc_key),
        ):
            issued = ca.issue_cert(*dict.fromkeys((host, "127.0.0.1", "localhost")))
            write_private(key_path, issued.private_key_pem.bytes().decode())
            cert_path.write_text("".join(blob.bytes().decode() for blob in issued.cert_chain_pems))
        layout.ca.write_text(ca.cert_pem.bytes().decode())
    write_users_file(layout.kafka_users, credentials.kafka_passwords)
    security_toml = layout.seaweedfs_config_dir / "security.toml"
    if not security_toml.exists():
        # JWT signing keys for the volume and filer HTTP ports: without a token they answer
        # 401 "wrong jwt", so only the S3 API (which checks the S3 keys) and SeaweedFS's own
        # parts get in. gRPC mTLS: without the certificate `weed shell` cannot reach them.
        sections = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
        text = "".join(
            f'[{name}]\nkey = "{secrets.token_hex(32)}"\nexpires_after_seconds = 10\n\n' for name in sections
        )
        text += f'[grpc]\nca = "{layout.ca}"\n\n'
        for part in ("master", "volume", "filer", "s3", "admin", "worker", "msg_broker", "client"):
            text += f'[grpc.{part}]\ncert = "{layout.seaweedfs_grpc_cert}"\nkey = "{layout.seaweedfs_grpc_key}"\n\n'
        write_private(security_toml, text)
    layout.mlflow_auth_ini.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{layout.mlflow_auth_db}\n"
        f"admin_username = {MLFLOW_ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
    )


def client_environment(
    layout: SecretsLayout,
    credentials: StackCredentials,
    client: str,
    endpoints: Mapping[str, str],
) -> dict[str, str]:
    """The variables client ``client`` needs on the secure stack (holds its passwords).

    Parameters
    ----------
    layout : SecretsLayout
    credentials : StackCredentials
    client : str
        One of :data:`KAFKA_USERS`.
    endpoints : mapping of str to str
        ``KAFKA_BOOTSTRAP_SERVERS``, ``MLFLOW_TRACKING_URI``, ``MINIO_ENDPOINT`` and ``CHURN_DATA_DIR``.

    Returns
    -------
    dict of str to str
    """
    env = dict(endpoints)
    env.update(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": client,
            "KAFKA_SASL_PASSWORD": credentials.kafka_passwords[client],
            "KAFKA_SSL_CAFILE": str(layout.ca),
            "MLFLOW_TRACKING_USERNAME": client,
            "MLFLOW_TRACKING_PASSWORD": credentials.mlflow_passwords[client],
        }
    )
    if client in S3_CLIENTS:
        env["MINIO_ACCESS_KEY"] = credentials.s3_access_key
        env["MINIO_SECRET_KEY"] = credentials.s3_secret_key
    return env


def write_client_env_files(
    layout: SecretsLayout, credentials: StackCredentials, endpoints: Mapping[str, str]
) -> list[Path]:
    """Write ``stack.env`` and ``stack-<client>.env`` (mode 600) for every Kafka user.

    Returns
    -------
    list of Path
        The files written, ``stack.env`` first.
    """
    written = []
    for client in (DEFAULT_CLIENT, *(c for c in KAFKA_USERS if c != DEFAULT_CLIENT)):
        env = client_environment(layout, credentials, client, endpoints)
        lines = [
            f"# churn-stream secure local stack: settings of the {client!r} client. Secrets: keep this file",
            "# private (mode 600), never commit it. Load with: set -a; . <this file>; set +a",
            *(f"{name}={shlex.quote(value)}" for name, value in env.items()),
        ]
        path = layout.client_env(client)
        write_private(path, "\n".join(lines) + "\n")
        written.append(path)
    return written
