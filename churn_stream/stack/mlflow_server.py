"""The MLflow tracking server: SQLite backend store in the data dir, artifacts on the stack's S3.

On the secure stack it runs MLflow's basic-auth app (``--app-name basic-auth``) with
``default_permission = NO_PERMISSIONS``, and once it answers, the stack provisions one user
per service through MLflow's own REST API as the administrator: readers (two roles'
worth: ``READ`` on every experiment and every registered model, which is what loading a
champion and downloading its artifact need) and editors (``EDIT`` on both: the batch
service creates runs, versions and aliases).
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churn_stream.stack.errors import StackError
from churn_stream.stack.seaweedfs import SeaweedFSService
from churn_stream.stack.service import Service, StackConfig, find_executable

logger = logging.getLogger(__name__)

#: MLflow's workspace for a server without workspaces.
_WORKSPACE = "default"
#: Role name -> permission it grants on every experiment and every registered model.
ROLES = {"churn-reader": "READ", "churn-editor": "EDIT"}


@dataclass(frozen=True)
class MLflowAuth:
    """What the basic-auth app needs: its config file and the users to provision.

    Attributes
    ----------
    config_path : Path
        ``MLFLOW_AUTH_CONFIG_PATH`` (no password in it).
    admin_username : str
    admin_password : str
        Read by MLflow on the first start only (``MLFLOW_AUTH_ADMIN_PASSWORD``).
    flask_secret_key : str
        ``MLFLOW_FLASK_SERVER_SECRET_KEY``.
    readers, editors : mapping of str to str
        User name to password.
    """

    config_path: Path
    admin_username: str
    admin_password: str = field(repr=False)
    flask_secret_key: str = field(repr=False)
    readers: Mapping[str, str] = field(repr=False, default_factory=dict)
    editors: Mapping[str, str] = field(repr=False, default_factory=dict)


class MLflowService(Service):
    """``mlflow server`` on ``port``, with artifacts under ``s3://mlflow/artifacts`` of ``storage``.

    Parameters
    ----------
    config : StackConfig
    port : int
        Port of the tracking server.
    storage : SeaweedFSService
        The S3 API that holds the artifacts.
    auth : MLflowAuth, optional
        Run the basic-auth app and provision these users (the secure stack).
    """

    name = "mlflow"
    health_timeout_s = 90.0

    def __init__(
        self, config: StackConfig, port: int, storage: SeaweedFSService, auth: MLflowAuth | None = None
    ) -> None:
        super().__init__(config)
        self.port = port
        self.storage = storage
        self.auth = auth

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
            *(["--app-name", "basic-auth"] if self.auth is not None else []),
        ]

    def _identity(self) -> list[str]:
        return ["server", self._backend_store_uri, "--port", str(self.port)]

    def runs_secure(self, cmdline: Sequence[str]) -> bool:
        """Secure when the server runs the basic-auth app."""
        return "basic-auth" in cmdline

    def _service_environment(self) -> dict[str, str]:
        env = {
            "MLFLOW_S3_ENDPOINT_URL": self.storage.endpoint,
            # MLflow 3's server otherwise starts a huey job runner (six consumer
            # processes) for GenAI evaluation jobs, which this product never submits.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        if self.auth is not None:
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(self.auth.config_path)
            env["MLFLOW_AUTH_ADMIN_PASSWORD"] = self.auth.admin_password
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = self.auth.flask_secret_key
        return env

    def _probe(self, timeout: float) -> bool:
        # /health answers without credentials on the secure stack too; provisioning (an
        # authenticated call) follows it.
        with urllib.request.urlopen(f"{self.endpoint}/health", timeout=timeout) as response:
            return bool(response.status == 200)

    def _after_healthy(self) -> None:
        if self.auth is not None:
            self.provision_users()

    def provision_users(self) -> None:
        """Create (or re-password) every user and give it its role; idempotent.

        Raises
        ------
        StackError
            If the administrator cannot log in (its password changed outside the stack)
            or MLflow refuses a request.
        """
        assert self.auth is not None
        auth = self.auth
        with _AuthAdmin(self.endpoint, auth.admin_username, auth.admin_password) as admin:
            roles = {
                role["name"]: role["id"]
                for role in admin.call("GET", _ROLES_LIST, params={"workspace": _WORKSPACE})["roles"]
            }
            for role, permission in ROLES.items():
                if role not in roles:
                    created = admin.call("POST", _ROLES_CREATE, json={"workspace": _WORKSPACE, "name": role})
                    roles[role] = created["role"]["id"]
                granted = admin.call("GET", _ROLE_PERMISSIONS_LIST, params={"role_id": str(roles[role])})
                have = {
                    (p["resource_type"], p["resource_pattern"], p["permission"]) for p in granted["role_permissions"]
                }
                for resource_type in ("experiment", "registered_model"):
                    if (resource_type, "*", permission) not in have:
                        grant = {"resource_type": resource_type, "resource_pattern": "*", "permission": permission}
                        admin.call("POST", _ROLE_PERMISSIONS_ADD, json={"role_id": roles[role], **grant})
            for role, users in (("churn-reader", auth.readers), ("churn-editor", auth.editors)):
                for user, password in users.items():
                    body = {"username": user, "password": password}
                    if admin.user_exists(user):
                        admin.call("PATCH", _USERS_UPDATE_PASSWORD, json=body)
                    else:
                        admin.call("POST", _USERS_CREATE, json=body)
                    assigned = admin.call("GET", _USER_ROLES_LIST, params={"username": user})["roles"]
                    if roles[role] not in {r["id"] for r in assigned}:
                        admin.call("POST", _ROLES_ASSIGN, json={"username": user, "role_id": roles[role]})
                    logger.info("mlflow user provisioned user=%s role=%s", user, role)


# MLflow basic-auth REST paths (mlflow/server/auth/routes.py).
_USERS_GET = "/api/2.0/mlflow/users/get"
_USERS_CREATE = "/api/2.0/mlflow/users/create"
_USERS_UPDATE_PASSWORD = "/api/2.0/mlflow/users/update-password"
_USER_ROLES_LIST = "/api/3.0/mlflow/users/roles/list"
_ROLES_LIST = "/api/3.0/mlflow/roles/list"
_ROLES_CREATE = "/api/3.0/mlflow/roles/create"
_ROLES_ASSIGN = "/api/3.0/mlflow/roles/assign"
_ROLE_PERMISSIONS_LIST = "/api/3.0/mlflow/roles/permissions/list"
_ROLE_PERMISSIONS_ADD = "/api/3.0/mlflow/roles/permissions/add"


class _AuthAdmin:
    """MLflow's basic-auth REST API as its administrator (httpx: no process-wide MLflow env vars)."""

    def __init__(self, endpoint: str, username: str, password: str) -> None:
        import httpx

        self.username = username
        self.http = httpx.Client(base_url=endpoint, auth=(username, password), timeout=30.0)

    def __enter__(self) -> _AuthAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(method, path, **kwargs)
        if response.status_code == 401:
            raise StackError(
                f"mlflow: the administrator {self.username!r} cannot log in with the password in the stack's "
                "credentials file; see docs/security.md (rotating the MLflow admin password)"
            )
        if response.status_code >= 400:
            raise StackError(f"mlflow: {method} {path} answered {response.status_code}: {response.text[:200]}")
        return dict(response.json()) if response.content else {}

    def user_exists(self, user: str) -> bool:
        return bool(self.http.get(_USERS_GET, params={"username": user}).status_code == 200)
