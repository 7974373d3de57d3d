"""Settings, read once from the environment at the entry point.

Nothing else in the code base reads ``os.environ``: entry points call
:meth:`Settings.from_env` and pass the result (or clients built from it) down.
Defaults point at the local stack (``churn stack up``); the credentials below are
**local development defaults only**, never production values.

MLflow credentials are deliberately not settings: MLflow's client reads its own
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` from the environment on every
request and artifact download, in every process (the worker's, the API's, the batch
job's), so a copy here would be a second source that could disagree with the one MLflow
uses. ``churn stack up --secure`` writes them, per service, into ``stack[-client].env``
beside the ``KAFKA_SASL_*`` settings (``docs/security.md``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Local-stack default credentials (clearly not secrets; override in production).
LOCAL_DEFAULT_ACCESS_KEY = "churn-local"
LOCAL_DEFAULT_SECRET_KEY = "churn-local-secret"
#: ``CHURN_API_AUTH`` values: authentication on (the default) or explicitly off.
API_AUTH_MODES = ("on", "none")
#: ``CHURN_DASHBOARD_AUTH`` values: the dashboard's login on (the default) or explicitly off.
DASHBOARD_AUTH_MODES = ("on", "none")


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


class SettingsError(ValueError):
    """An environment variable that cannot be read as its setting's type."""


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
    dataset : str
        ``CHURN_DATASET``: the dataset profile served, a shipped name or a profile file
        (default ``telco``); ``--dataset`` overrides it per command.
    consumer_group : str
        ``CHURN_CONSUMER_GROUP``: Kafka consumer group of the scoring workers.
    topic_partitions : int
        ``CHURN_TOPIC_PARTITIONS``: partitions of the ``customers`` topic when created.
    worker_web_port : int
        ``CHURN_WORKER_WEB_PORT``: the worker's ``/health`` port.
    topic_suffix : str
        ``CHURN_TOPIC_SUFFIX``: appended to the worker's input and output topic names
        (default empty; ``churn bench stream`` gives each run its own topics).
    kafka_security_protocol : str
        ``KAFKA_SECURITY_PROTOCOL``: ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
    kafka_sasl_mechanism : str
        ``KAFKA_SASL_MECHANISM``: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``; empty when SASL is off.
    kafka_sasl_username, kafka_sasl_password : str
        ``KAFKA_SASL_USERNAME`` / ``KAFKA_SASL_PASSWORD``; the password is hidden from ``repr``.
    kafka_ssl_cafile : str
        ``KAFKA_SSL_CAFILE``: CA bundle that signed the brokers' certificates; empty means the
        system's trust store (only read when the protocol is ``SSL`` or ``SASL_SSL``).
    batch_cron : str
        ``CHURN_BATCH_CRON``: crontab (UTC) of ``churn batch serve``'s scheduled cycle (default ``0 2 * * *``).
    batch_watch_interval_s : int
        ``CHURN_BATCH_WATCH_S``: seconds between looks for new CSVs under the incoming prefix (default 30).
    batch_incoming_prefix : str
        ``CHURN_BATCH_INCOMING_PREFIX``: prefix in the ``raw-data`` bucket watched for new CSVs
        (default ``incoming/``).
    batch_lock_ttl_s : int
        ``CHURN_BATCH_LOCK_TTL_S``: expiry of the cross-process cycle lock, renewed while a cycle
        runs (default 600).
    dq_max_source_age_h : int
        ``CHURN_DQ_MAX_SOURCE_AGE_H``: data-quality freshness limit in hours; 0 disables (default 48).
    dq_freshness_fail : bool
        ``CHURN_DQ_FRESHNESS_FAIL``: a stale source fails the gate instead of warning (default false).
    health_stall_s : float
        ``CHURN_HEALTH_STALL_S``: the worker's ``/health`` reports ``stalled`` (503) when its consumer
        lag is positive and no micro-batch has completed for this many seconds (default 15).
    worker_commit_interval_s : float
        ``CHURN_WORKER_COMMIT_INTERVAL_S``: least seconds between the worker's offset commits, in
        (0, 60]; a crashed worker's successor re-scores up to about this much acknowledged input
        (default 0.2). A worker stopped by SIGTERM commits everything acknowledged before it leaves.
    drift_window : int
        ``CHURN_DRIFT_WINDOW``: most recent events the worker's PSI drift window holds (default 5000).
    drift_interval_s : float
        ``CHURN_DRIFT_INTERVAL_S``: seconds between drift records on ``churn-drift`` (default 60).
    drift_psi_threshold : float
        ``CHURN_DRIFT_PSI_THRESHOLD``: PSI above which a feature counts as drifted (default 0.25).
    promotion_max_champion_drop : float
        ``CHURN_PROMOTION_MAX_CHAMPION_DROP``: a cycle whose data lowers the current champion's
        ROC-AUC (or R^2) by more than this against its registered value registers its best
        model as ``challenger`` instead of promoting it: labels changed (default 0.05; 1 disables).
    model_reconcile_s : float
        ``CHURN_MODEL_RECONCILE_S``: seconds (at least 1) between the worker's and the API's checks of the
        registry's aliases against the models they serve; a difference (an announcement they
        missed, or an alias moved by hand to roll back) is loaded like an announcement (default 30).
    shadow : bool
        ``CHURN_SHADOW``: also score each micro-batch with the registered ``challenger`` in shadow
        (its scores only go to metrics; default false).
    batch_oof_max_rows : int
        ``CHURN_BATCH_OOF_MAX_ROWS``: training rows up to which classifier thresholds are tuned on
        5-fold out-of-fold probabilities; above, on one stratified 10 % validation split with a
        single fit per model (default 50000).
    batch_sample_max_rows : int
        ``CHURN_BATCH_SAMPLE_MAX_ROWS``: most training rows of the per-row / many-epoch zoo models
        (SVMs, perceptron, MLP, k-means, agglomerative), a stratified sample (default 50000).
    batch_poly_max_rows : int
        ``CHURN_BATCH_POLY_MAX_ROWS``: most training rows of the polynomial regression, whose
        degree-2 design is ~45x wider than its input (default 20000).
    batch_fit_max_rows : int
        ``CHURN_BATCH_FIT_MAX_ROWS``: most training rows of every other zoo model; 0 means all
        (default 0).
    batch_ensemble_max_rows : int
        ``CHURN_BATCH_ENSEMBLE_MAX_ROWS``: most training rows of the tree ensembles (both random
        forests and both gradient boosting models), a sample stratified on the churn label; 0 means
        all (default 200000, chosen from ``churn bench batch-curve``'s learning curve on retail).
    batch_blas_threads : int
        ``CHURN_BATCH_BLAS_THREADS``: OpenBLAS threads while a cycle trains and evaluates its models;
        0 leaves the library default (one per core). Default 1: the zoo's numpy models make many small
        matrix products (Lloyd iterations, coordinate descent, mini-batches) whose thread hand-offs
        cost more than they save on 2 shared cores, and the tree ensembles run their own threads.
    batch_min_rows_per_class : int
        ``CHURN_BATCH_MIN_ROWS_PER_CLASS``: a cycle trains only when its input has at least this many
        churned and this many retained customers (default 100); otherwise nothing is trained, and
        incoming files wait under the incoming prefix for more rows.
    batch_cycle_timeout_s : float
        ``CHURN_BATCH_CYCLE_TIMEOUT_S``: ``churn batch serve`` ends a cycle still running after this
        many seconds (its process is killed), reports it failed and releases the lock; 0 means no
        limit (default 3600; a 1M-row retail cycle takes ~450 s on 2 cores).
    promotion_min_recall_ratio : float
        ``CHURN_PROMOTION_MIN_RECALL_RATIO``: a new churn classifier is promoted only if its churn
        recall at its tuned threshold is at least this times the champion's recall on the same
        hold-out (default 0.9; 0 disables).
    api_auth : str
        ``CHURN_API_AUTH``: ``on`` (default) makes every prediction API route but ``/health`` and
        the documentation require an API key or a bearer token; ``none`` turns that off, for
        local development only (the API then logs a warning that it runs open).
    api_keys_file : str
        ``CHURN_API_KEYS_FILE``: the API key file (salted scrypt hashes, mode 600); empty means
        ``$CHURN_DATA_DIR/api_keys.json`` (see :attr:`api_keys_path`).
    api_jwt_issuer, api_jwt_audience : str
        ``CHURN_API_JWT_ISSUER`` / ``CHURN_API_JWT_AUDIENCE``: the ``iss`` and ``aud`` a bearer JWT
        must carry; both required when :attr:`api_jwks_url` is set.
    api_jwks_url : str
        ``CHURN_API_JWKS_URL``: the issuer's JWKS; when set, the API also accepts OAuth2 bearer
        JWTs signed by those keys, scopes from their ``scope`` or ``scp`` claim (default empty: keys only).
    api_auth_max_failures : int
        ``CHURN_API_AUTH_MAX_FAILURES``: refused credentials per client address and minute after
        which that address gets 429 with ``Retry-After`` until the minute has passed (default 20).
    api_key : str
        ``CHURN_API_KEY``: the key clients of the API send; the dashboard's score form sends it
        only with ``CHURN_DASHBOARD_AUTH=none`` (otherwise each user's own key); hidden from ``repr``.
    dashboard_auth : str
        ``CHURN_DASHBOARD_AUTH``: ``on`` (default) makes every dashboard page and callback
        require a login with an API key of the key file (:attr:`api_keys_path`); ``none``
        turns the login off, for local development only (the dashboard logs a warning).
    dashboard_secret_key : str
        ``CHURN_DASHBOARD_SECRET_KEY``: signs the dashboard's session cookie; empty (default)
        means a random key per process. Hidden from ``repr``.
    dashboard_login_max_failures : int
        ``CHURN_DASHBOARD_LOGIN_MAX_FAILURES``: refused logins per client address and minute
        after which that address gets 429 until the minute has passed (default 10).
    dashboard_cookie_secure : bool
        ``CHURN_DASHBOARD_COOKIE_SECURE``: mark the session cookie ``Secure`` (sent over HTTPS
        only); set it when the dashboard is served behind a TLS proxy (default false).
    """

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    minio_endpoint: str = "127.0.0.1:9000"
    minio_access_key: str = field(default=LOCAL_DEFAULT_ACCESS_KEY, repr=False)
    minio_secret_key: str = field(default=LOCAL_DEFAULT_SECRET_KEY, repr=False)
    minio_secure: bool = False
    mlflow_tracking_uri: str = "http://127.0.0.1:5001"
    data_dir: Path = Path(".churn")
    dataset: str = "telco"
    consumer_group: str = "churn-scorer"
    topic_partitions: int = 4
    worker_web_port: int = 6066
    topic_suffix: str = ""
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    batch_cron: str = "0 2 * * *"
    batch_watch_interval_s: int = 30
    batch_incoming_prefix: str = "incoming/"
    batch_lock_ttl_s: int = 600
    dq_max_source_age_h: int = 48
    dq_freshness_fail: bool = False
    health_stall_s: float = 15.0
    worker_commit_interval_s: float = 0.2
    drift_window: int = 5000
    drift_interval_s: float = 60.0
    drift_psi_threshold: float = 0.25
    model_reconcile_s: float = 30.0
    promotion_max_champion_drop: float = 0.05
    shadow: bool = False
    batch_oof_max_rows: int = 50_000
    batch_sample_max_rows: int = 50_000
    batch_poly_max_rows: int = 20_000
    batch_fit_max_rows: int = 0
    batch_ensemble_max_rows: int = 200_000
    batch_blas_threads: int = 1
    batch_min_rows_per_class: int = 100
    batch_cycle_timeout_s: float = 3600.0
    promotion_min_recall_ratio: float = 0.9
    api_auth: str = "on"
    api_keys_file: str = ""
    api_jwt_issuer: str = ""
    api_jwt_audience: str = ""
    api_jwks_url: str = ""
    api_auth_max_failures: int = 20
    api_key: str = field(default="", repr=False)
    dashboard_auth: str = "on"
    dashboard_secret_key: str = field(default="", repr=False)
    dashboard_login_max_failures: int = 10
    dashboard_cookie_secure: bool = False

    _ENV = {
        "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
        "minio_endpoint": "MINIO_ENDPOINT",
        "minio_access_key": "MINIO_ACCESS_KEY",
        "minio_secret_key": "MINIO_SECRET_KEY",
        "minio_secure": "MINIO_SECURE",
        "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
        "data_dir": "CHURN_DATA_DIR",
        "dataset": "CHURN_DATASET",
        "consumer_group": "CHURN_CONSUMER_GROUP",
        "topic_partitions": "CHURN_TOPIC_PARTITIONS",
        "worker_web_port": "CHURN_WORKER_WEB_PORT",
        "topic_suffix": "CHURN_TOPIC_SUFFIX",
        "kafka_security_protocol": "KAFKA_SECURITY_PROTOCOL",
        "kafka_sasl_mechanism": "KAFKA_SASL_MECHANISM",
        "kafka_sasl_username": "KAFKA_SASL_USERNAME",
        "kafka_sasl_password": "KAFKA_SASL_PASSWORD",
        "kafka_ssl_cafile": "KAFKA_SSL_CAFILE",
        "batch_cron": "CHURN_BATCH_CRON",
        "batch_watch_interval_s": "CHURN_BATCH_WATCH_S",
        "batch_incoming_prefix": "CHURN_BATCH_INCOMING_PREFIX",
        "batch_lock_ttl_s": "CHURN_BATCH_LOCK_TTL_S",
        "dq_max_source_age_h": "CHURN_DQ_MAX_SOURCE_AGE_H",
        "dq_freshness_fail": "CHURN_DQ_FRESHNESS_FAIL",
        "health_stall_s": "CHURN_HEALTH_STALL_S",
        "worker_commit_interval_s": "CHURN_WORKER_COMMIT_INTERVAL_S",
        "drift_window": "CHURN_DRIFT_WINDOW",
        "drift_interval_s": "CHURN_DRIFT_INTERVAL_S",
        "drift_psi_threshold": "CHURN_DRIFT_PSI_THRESHOLD",
        "model_reconcile_s": "CHURN_MODEL_RECONCILE_S",
        "promotion_max_champion_drop": "CHURN_PROMOTION_MAX_CHAMPION_DROP",
        "shadow": "CHURN_SHADOW",
        "batch_oof_max_rows": "CHURN_BATCH_OOF_MAX_ROWS",
        "batch_sample_max_rows": "CHURN_BATCH_SAMPLE_MAX_ROWS",
        "batch_poly_max_rows": "CHURN_BATCH_POLY_MAX_ROWS",
        "batch_fit_max_rows": "CHURN_BATCH_FIT_MAX_ROWS",
        "batch_ensemble_max_rows": "CHURN_BATCH_ENSEMBLE_MAX_ROWS",
        "batch_blas_threads": "CHURN_BATCH_BLAS_THREADS",
        "batch_min_rows_per_class": "CHURN_BATCH_MIN_ROWS_PER_CLASS",
        "batch_cycle_timeout_s": "CHURN_BATCH_CYCLE_TIMEOUT_S",
        "promotion_min_recall_ratio": "CHURN_PROMOTION_MIN_RECALL_RATIO",
        "api_auth": "CHURN_API_AUTH",
        "api_keys_file": "CHURN_API_KEYS_FILE",
        "api_jwt_issuer": "CHURN_API_JWT_ISSUER",
        "api_jwt_audience": "CHURN_API_JWT_AUDIENCE",
        "api_jwks_url": "CHURN_API_JWKS_URL",
        "api_auth_max_failures": "CHURN_API_AUTH_MAX_FAILURES",
        "api_key": "CHURN_API_KEY",
        "dashboard_auth": "CHURN_DASHBOARD_AUTH",
        "dashboard_secret_key": "CHURN_DASHBOARD_SECRET_KEY",
        "dashboard_login_max_failures": "CHURN_DASHBOARD_LOGIN_MAX_FAILURES",
        "dashboard_cookie_secure": "CHURN_DASHBOARD_COOKIE_SECURE",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``), falling back to defaults.

        Raises
        ------
        SettingsError
            (a ``ValueError``) If a numeric or boolean variable cannot be parsed; the
            message names the variable and the value (credentials are never parsed).
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
                elif f.type in ("float", float):
                    kwargs[f.name] = float(raw)
                elif f.type in ("bool", bool):
                    kwargs[f.name] = _bool(raw)
                elif f.type in ("Path", Path):
                    kwargs[f.name] = Path(raw)
                else:
                    kwargs[f.name] = raw
            except ValueError:
                raise SettingsError(f"{var}: expected {f.type}, got {raw!r}") from None
        return cls(**kwargs)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if "://" in self.minio_endpoint:
            raise SettingsError(
                f"MINIO_ENDPOINT: expected host:port without a scheme (MINIO_SECURE=true for "
                f"https), got {self.minio_endpoint!r}"
            )
        if not 0 < self.worker_web_port <= 65535:
            raise SettingsError(f"CHURN_WORKER_WEB_PORT: expected a port in 1..65535, got {self.worker_web_port}")
        if self.api_auth not in API_AUTH_MODES:
            raise SettingsError(f"CHURN_API_AUTH: expected one of {', '.join(API_AUTH_MODES)}, got {self.api_auth!r}")
        if self.api_auth_max_failures < 1:
            raise SettingsError(
                f"CHURN_API_AUTH_MAX_FAILURES: expected an integer >= 1, got {self.api_auth_max_failures}"
            )
        if self.dashboard_auth not in DASHBOARD_AUTH_MODES:
            raise SettingsError(
                f"CHURN_DASHBOARD_AUTH: expected one of {', '.join(DASHBOARD_AUTH_MODES)}, got {self.dashboard_auth!r}"
            )
        if self.dashboard_login_max_failures < 1:
            raise SettingsError(
                f"CHURN_DASHBOARD_LOGIN_MAX_FAILURES: expected an integer >= 1, got {self.dashboard_login_max_failures}"
            )
        if self.api_jwks_url and not (self.api_jwt_issuer and self.api_jwt_audience):
            raise SettingsError(
                "CHURN_API_JWKS_URL is set: CHURN_API_JWT_ISSUER and CHURN_API_JWT_AUDIENCE are required"
            )

    def with_overrides(self, **changes: Any) -> Settings:
        """Copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    @property
    def api_keys_path(self) -> Path:
        """The API key file: :attr:`api_keys_file`, or ``api_keys.json`` in :attr:`data_dir`."""
        return Path(self.api_keys_file) if self.api_keys_file else self.data_dir / "api_keys.json"

    @property
    def s3_endpoint_url(self) -> str:
        """``http(s)://`` URL of the S3 API, for clients that want a URL."""
        return f"{'https' if self.minio_secure else 'http'}://{self.minio_endpoint}"
