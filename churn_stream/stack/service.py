"""One server process of the local stack: the lifecycle every service shares.

A :class:`Service` knows its ports, command line, environment and health check (each
subclass fills those in) and does the rest the same way for all: pid and log files,
start in a session of its own, wait until healthy, stop the whole process family.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import psutil

from churn_stream.stack.errors import StackError
from churn_stream.stack.ports import listener_of, port_in_use

logger = logging.getLogger(__name__)

#: Seconds between SIGTERM and SIGKILL when stopping a service.
STOP_GRACE_S = 10.0

# Variables that Tansu / MLflow / boto read on their own; dropped from the inherited
# environment so a stray value in the caller's shell cannot redirect a service.
_SCRUBBED_ENV = (
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "CLUSTER_ID",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_BACKEND_STORE_URI",
    "MLFLOW_ARTIFACTS_DESTINATION",
    "CALF_TANSU_BIN_ARGS",
)


@dataclass(frozen=True)
class StackConfig:
    """What every service of one stack shares.

    Attributes
    ----------
    data_dir : Path
        Root of the stack's data, logs and pid files (absolute).
    host : str
        Address every service binds to and advertises.
    access_key : str
        S3 access key the stack accepts and its services use.
    secret_key : str
        S3 secret key; never logged, not in the repr.
    secure : bool, default False
        The stack requires credentials everywhere (``churn stack up --secure``): Kafka
        behind the SASL_SSL gateway, MLflow with basic-auth, SeaweedFS with JWT-signed
        internal ports.
    redact : tuple of str, default ()
        Further secrets to mask when a log tail is shown (the secure stack's passwords).
    """

    data_dir: Path
    host: str
    access_key: str
    secret_key: str = field(repr=False)
    secure: bool = False
    redact: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class ServiceStatus:
    """What :meth:`Service.status` knows about one service.

    Attributes
    ----------
    name : str
        ``"s3"``, ``"kafka"``, ``"kafka-gateway"`` (secure stack) or ``"mlflow"``.
    endpoint : str
        Where clients reach it (``host:port`` or a URL).
    pid : int or None
        Pid of the process this stack started, if it is alive; ``None`` otherwise.
    healthy : bool
        The service answered its health check just now.
    mode : str
        ``"durable"`` / ``"ephemeral"`` for ``kafka``, ``""`` otherwise.
    log : Path
        The service's log file.
    """

    name: str
    endpoint: str
    pid: int | None
    healthy: bool
    mode: str
    log: Path


class Service(ABC):
    """One server of the stack, managed through ``run/<name>.pid`` and ``logs/<name>.log``.

    Subclasses set :attr:`name` and :attr:`health_timeout_s` and implement
    :attr:`endpoint`, :meth:`ports`, :meth:`command`, :meth:`_identity` and :meth:`_probe`.

    Parameters
    ----------
    config : StackConfig
        Data directory, host and credentials of the stack.
    """

    #: ``"s3"``, ``"kafka"`` or ``"mlflow"``.
    name: ClassVar[str]
    #: Seconds to wait for the service to answer after it is started.
    health_timeout_s: ClassVar[float]
    #: The process gets the stack's S3 keys in its environment.
    needs_s3_credentials: ClassVar[bool] = True

    def __init__(self, config: StackConfig) -> None:
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.endpoint!r}, data_dir={str(self.config.data_dir)!r})"

    # ---------------------------------------------------------- what subclasses say
    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Where clients reach the service (``host:port`` or a URL)."""

    @abstractmethod
    def ports(self) -> list[int]:
        """Every TCP port the service listens on."""

    @abstractmethod
    def command(self, ephemeral: bool = False) -> list[str]:
        """argv that starts the service (no secrets: credentials go in the environment).

        Parameters
        ----------
        ephemeral : bool, default False
            Storage mode; only the broker has one, the others ignore it.
        """

    @abstractmethod
    def _identity(self) -> list[str]:
        """argv tokens that tell this stack's instance from any other (data dir, ports)."""

    @abstractmethod
    def _probe(self, timeout: float) -> bool:
        """One real request to the service; raises or returns False when it does not answer."""

    def _service_environment(self) -> dict[str, str]:
        """Variables this service needs besides the shared credentials."""
        return {}

    def mode(self) -> str:
        """Storage mode of the running service (``""`` for services without one)."""
        return ""

    def runs_secure(self, cmdline: Sequence[str]) -> bool:
        """Does ``cmdline`` (of a process of this service) run with the secure stack's protections?"""
        return False

    def check_security(self) -> None:
        """Raise :class:`StackError` if the running process is not as secure as this stack asks.

        A plain service found running when the secure stack is asked for would otherwise be
        kept (``up`` is idempotent) and answer without credentials.
        """
        proc = self.process()
        if proc is None:
            return
        try:
            running_secure = self.runs_secure(proc.cmdline())
        except psutil.Error:
            return
        if running_secure != self.config.secure:
            have, want = ("secure", "plain") if running_secure else ("plain", "secure")
            raise StackError(
                f"{self.name} is already running as part of a {have} stack (pid {proc.pid}), "
                f"a {want} one was asked for; stop it first (`churn stack down`)"
            )

    # ------------------------------------------------------------------ files
    @property
    def log_path(self) -> Path:
        """Log file, appended across restarts."""
        return self.config.data_dir / "logs" / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        """Pid file of the process this stack started."""
        return self.config.data_dir / "run" / f"{self.name}.pid"

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment of the service: ``base`` (default: this process's) plus credentials.

        Holds the secret key: never log it.

        Parameters
        ----------
        base : mapping of str to str, optional
            Inherited variables; :data:`_SCRUBBED_ENV` are dropped from it.

        Returns
        -------
        dict of str to str
        """
        # Children need PATH, HOME, locale... from the caller's environment; this is
        # process plumbing, not configuration, so it is not routed through Settings.
        env = dict(os.environ if base is None else base)
        for var in _SCRUBBED_ENV:
            env.pop(var, None)
        if self.needs_s3_credentials:
            env["AWS_ACCESS_KEY_ID"] = self.config.access_key
            env["AWS_SECRET_ACCESS_KEY"] = self.config.secret_key
            env["AWS_DEFAULT_REGION"] = "us-east-1"
        else:
            for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                env.pop(var, None)
        env.update(self._service_environment())
        return env

    # ----------------------------------------------------------------- health
    def check_health(self, timeout: float = 2.0) -> bool:
        """True when the service answers a real request within ``timeout`` seconds.

        Parameters
        ----------
        timeout : float, default 2.0
            Seconds.

        Returns
        -------
        bool
        """
        try:
            return self._probe(timeout)
        except Exception as exc:  # noqa: BLE001 - any failure to answer means "not healthy", by definition
            logger.debug("health service=%s error=%s", self.name, type(exc).__name__)
            return False

    # -------------------------------------------------------------- processes
    def process(self) -> psutil.Process | None:
        """The live process this stack started, else ``None``.

        A pid file whose process is gone, or whose pid now belongs to another command
        (pid reuse), counts as no process.
        """
        try:
            pid = int(self.pid_path.read_text().strip())
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            if self.matches(proc.cmdline()):
                return proc
        except (FileNotFoundError, ValueError, psutil.Error):
            return None
        logger.warning("pid file does not match its process service=%s pid=%s", self.name, pid)
        return None

    def pid(self) -> int | None:
        """Pid of :meth:`process`, else ``None``."""
        proc = self.process()
        return proc.pid if proc is not None else None

    def matches(self, cmdline: Sequence[str]) -> bool:
        """Does ``cmdline`` run this service of this stack (in any mode)?

        Compares the executable and the arguments that identify this stack's instance
        (data dir, ports), not the whole argv, so a stack started by an older version of
        this module, with other incidental flags, is still recognised and stopped.
        """
        executable = os.path.basename(self.command()[0])
        # Scripts such as mlflow run as ``python /venv/bin/mlflow server ...``.
        if executable not in (os.path.basename(part) for part in cmdline[:2]):
            return False
        return all(token in cmdline for token in self._identity())

    # -------------------------------------------------------------- lifecycle
    def start(self, ephemeral: bool | None = None) -> ServiceStatus:
        """Start the service unless it already runs, then wait until it answers.

        Parameters
        ----------
        ephemeral : bool, optional
            Storage mode; only the broker has one (see :class:`~churn_stream.stack.tansu.TansuService`).

        Returns
        -------
        ServiceStatus

        Raises
        ------
        StackError
            If a port is held by a process this stack did not start, or if the service
            does not answer in time (the message names the service and its log, and ends
            with the log's tail).
        """
        self.check_security()
        proc = self.process()
        if proc is not None:
            logger.info("already running service=%s pid=%d", self.name, proc.pid)
            self._wait_healthy(proc, log_offset=None)
            self._after_healthy()
            return self.status()

        busy = [port for port in self.ports() if port_in_use(self.config.host, port)]
        if busy:
            port = busy[0]
            raise StackError(
                f"cannot start {self.name}: port {port} on {self.config.host} is already in use by "
                f"{listener_of(port)}, which this stack (data dir {self.config.data_dir}) did not start; "
                f"stop it or point the stack at other ports "
                f"(MINIO_ENDPOINT, KAFKA_BOOTSTRAP_SERVERS, MLFLOW_TRACKING_URI)"
                + ("" if len(busy) == 1 else f" (also busy: {', '.join(map(str, busy[1:]))})")
            )
        ephemeral = bool(ephemeral)
        self._before_launch(ephemeral)
        argv = self.command(ephemeral=ephemeral)
        data_dir = self.config.data_dir
        for sub in ("logs", "run", "s3", "mlflow"):
            (data_dir / sub).mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            log_offset = out.tell()
            out.write(f"\n=== churn stack: starting {self.name}: {' '.join(argv)}\n".encode())
            out.flush()
            handle = subprocess.Popen(
                argv,
                cwd=data_dir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.pid_path.write_text(f"{handle.pid}\n")
        self._after_launch(ephemeral)
        logger.info("started service=%s pid=%d endpoint=%s log=%s", self.name, handle.pid, self.endpoint, self.log_path)
        # Popen is kept as a handle only to reap the child if it exits during the wait.
        self._wait_healthy(handle, log_offset=log_offset)
        self._after_healthy()
        return self.status()

    def _before_launch(self, ephemeral: bool) -> None:
        """Refuse to launch (raise :class:`StackError`) when a prerequisite is missing."""
        return None  # nothing by default

    def _after_launch(self, ephemeral: bool) -> None:
        """Record what the launch chose, once the pid file is written."""
        return None  # nothing by default

    def _after_healthy(self) -> None:
        """Provision the service once it answers (both when started and when found running)."""
        return None  # nothing by default

    def _wait_healthy(self, proc: psutil.Process | subprocess.Popen, log_offset: int | None) -> None:
        started = time.monotonic()
        while True:
            if self.check_health():
                logger.info("healthy service=%s after_s=%.1f", self.name, time.monotonic() - started)
                return
            exit_code = _exit_code(proc)
            if exit_code is not None:
                self._forget()
                raise StackError(
                    f"{self.name} exited with code {exit_code} before answering at {self.endpoint}; "
                    f"see {self.log_path}:\n{self._log_tail(log_offset)}"
                )
            if time.monotonic() - started > self.health_timeout_s:
                raise StackError(
                    f"{self.name} did not answer at {self.endpoint} within {self.health_timeout_s:.0f} s "
                    f"(pid {proc.pid} still running: `churn stack down` stops it); see {self.log_path}:\n"
                    f"{self._log_tail(log_offset)}"
                )
            time.sleep(0.2)

    def _log_tail(self, offset: int | None, lines: int = 30) -> str:
        try:
            with self.log_path.open("rb") as f:
                if offset:
                    f.seek(offset)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        tail = "\n".join(text.splitlines()[-lines:])
        for secret in (self.config.secret_key, *self.config.redact):
            if secret:
                tail = tail.replace(secret, "***")
        return tail

    def stop(self, grace_s: float = STOP_GRACE_S) -> bool:
        """Stop the process this stack started (and its children); remove its pid file.

        SIGTERM, wait up to ``grace_s`` seconds, then SIGKILL. A pid file whose pid now
        runs another command is removed without killing anything.

        Parameters
        ----------
        grace_s : float, default :data:`STOP_GRACE_S`
            Seconds between SIGTERM and SIGKILL.

        Returns
        -------
        bool
            True if a process was stopped.
        """
        proc = self.process()
        if proc is None:
            self._forget()
            return False
        started = time.monotonic()
        procs = _process_family(proc)
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for p in alive:
            logger.warning("did not stop on SIGTERM, killing service=%s pid=%d", self.name, p.pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        self._forget()
        logger.info("stopped service=%s pid=%d after_s=%.1f", self.name, proc.pid, time.monotonic() - started)
        return True

    def _forget(self) -> None:
        self.pid_path.unlink(missing_ok=True)

    def status(self) -> ServiceStatus:
        """Pid, health and mode right now.

        A service answering on its port without a pid of ours shows ``pid=None`` and
        ``healthy=True`` (someone else runs it).
        """
        return ServiceStatus(
            name=self.name,
            endpoint=self.endpoint,
            pid=self.pid(),
            healthy=self.check_health(),
            mode=self.mode(),
            log=self.log_path,
        )


def _exit_code(proc: psutil.Process | subprocess.Popen) -> int | None:
    if isinstance(proc, subprocess.Popen):
        return proc.poll()
    try:
        return None if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE else -1
    except psutil.NoSuchProcess:
        return -1


def _process_family(proc: psutil.Process) -> list[psutil.Process]:
    """``proc``, its descendants, and members of its process group (orphans included).

    Services are started as session leaders, so their group id is their pid; MLflow's
    job runners would otherwise escape when reparented to init.
    """
    family = {proc.pid: proc}
    with contextlib.suppress(psutil.NoSuchProcess):
        family.update({child.pid: child for child in proc.children(recursive=True)})
    for other in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if other.pid not in family and os.getpgid(other.pid) == proc.pid:
                family[other.pid] = other
    return list(family.values())


def find_executable(name: str) -> str:
    """``name`` next to the running interpreter (the venv's ``bin``), else on ``PATH``.

    Parameters
    ----------
    name : str
        Executable name, e.g. ``"weed"``.

    Returns
    -------
    str
        Its path.

    Raises
    ------
    StackError
        If it is in neither place.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise StackError(
            f"cannot find the {name!r} executable next to {sys.executable} or on PATH; "
            "is the project installed with its dependencies?"
        )
    return found
