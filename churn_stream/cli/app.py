"""The ``churn`` group: logging, settings and error handling shared by every command."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from plumbing.progress import INTERVAL_S, PROGRESS_LOGGER, set_interval
from plumbing.settings import Settings

if TYPE_CHECKING:  # loading profiles imports numpy and PyYAML: only when a command needs a dataset
    from schemas.namespace import Namespace
    from schemas.profiles import DatasetProfile

#: Set on the click context when ``--log-level`` or ``-v`` chose the level: tools then stay verbose.
_LEVEL_CHOSEN = "churn.log_level_chosen"


class _ShortFormatter(logging.Formatter):
    """A tool's default output: progress lines bare, warnings and errors with their level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno < logging.WARNING:
            return message
        return f"{record.levelname.lower()}: {record.name}: {message}"


def _configure_logging(level: str | None, verbose: int = 0) -> None:
    """Configure the root logger once, on stderr.

    Parameters
    ----------
    level : str or None
        ``--log-level``; None: ``-v`` decides (none: INFO, 1: INFO, 2 or more: DEBUG).
    verbose : int, default 0
        How many ``-v``.
    """
    chosen = level.upper() if level else ("DEBUG" if verbose >= 2 else "INFO")
    logging.basicConfig(
        level=getattr(logging, chosen, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "aiokafka", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def tool_output(environ=os.environ) -> None:
    """Quiet a tool command's output unless ``-v`` or ``--log-level`` was given.

    Tools: demo, batch run, produce and every bench command. Services (worker, API, dashboard, batch
    serve) keep INFO logs; a tool run by hand shows its own lines, progress
    (:mod:`plumbing.progress`), warnings and errors. MLflow's own
    INFO records ("Waiting up to 300 seconds for model version ...") are left out too,
    through ``MLFLOW_LOGGING_LEVEL`` (read when mlflow is imported, so this runs first;
    children such as the demo's worker inherit it).

    Parameters
    ----------
    environ : mapping, default os.environ
    """
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().meta.get(_LEVEL_CHOSEN):
        return
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.INFO)
    for handler in root.handlers:
        handler.setFormatter(_ShortFormatter())
    environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def predict_url(api_url: str) -> str:
    """The prediction endpoint of ``api_url``: a bare ``http://host:port`` (what ``churn api``
    prints) gets ``/api/predict``; a URL with a path is kept as given."""
    return api_url.rstrip("/") + "/api/predict" if urlsplit(api_url).path in ("", "/") else api_url


#: A TCP port (click would pass 99999 through; uvicorn then listened on 99999 mod 65536).
PORT = click.IntRange(1, 65535)
#: Events per second: positive.
RATE = click.FloatRange(min=0, min_open=True)


class DatasetType(click.ParamType):
    """A dataset: a shipped profile's name (``telco``, ``retail``) or a path to a profile file.

    The value stays as given (a name or a path string, what ``CHURN_DATASET`` takes and
    child processes are handed); it is loaded once here so an unknown name or a bad file
    fails at parsing, in one line, before anything else runs.
    """

    name = "dataset"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from plumbing.clients import load_dataset

        try:
            load_dataset(str(value))
        except ValueError as err:  # KeyError and ProfileError both say what is wrong
            self.fail(str(err), param, ctx)
        return str(value)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "NAME|PROFILE.yaml"


#: ``--dataset``: a shipped name or a profile file.
DATASET = DatasetType()


def dataset_option(help_text: str = "Dataset: a shipped profile's name or a profile file (default: CHURN_DATASET)"):
    """The ``--dataset NAME|PROFILE.yaml`` option; None when not given (then ``CHURN_DATASET`` applies).

    Parameters
    ----------
    help_text : str
    """
    return click.option("--dataset", type=DATASET, default=None, help=help_text.rstrip(".") + ".")


def chosen_dataset(settings: Settings, dataset: str | None):
    """The dataset a command serves: ``--dataset``, else ``CHURN_DATASET`` (``settings.dataset``).

    Parameters
    ----------
    settings : Settings
    dataset : str or None
        The ``--dataset`` value.

    Returns
    -------
    schemas.profiles.DatasetProfile

    Raises
    ------
    click.BadParameter
        If ``CHURN_DATASET`` names no dataset (a bad ``--dataset`` fails at parsing).
    """
    from plumbing.clients import load_dataset

    try:
        return load_dataset(dataset if dataset is not None else settings.dataset)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--dataset (or CHURN_DATASET)") from None


def with_dataset(settings: Settings, dataset: str | None) -> tuple[Settings, DatasetProfile, Namespace]:
    """``settings`` serving ``dataset`` (``--dataset``, else ``CHURN_DATASET``), its profile and namespace.

    Parameters
    ----------
    settings : Settings
    dataset : str or None
        The ``--dataset`` value.

    Returns
    -------
    settings : Settings
        With ``dataset`` set, so child processes and clients serve the same data set.
    profile : DatasetProfile
    namespace : Namespace
        Topics, registered model names and consumer group of the data set.

    Raises
    ------
    click.BadParameter
        If the dataset names no shipped profile and no valid profile file (one line).
    """
    from schemas.namespace import Namespace

    if dataset is not None:
        settings = settings.with_overrides(dataset=dataset)
    profile = chosen_dataset(settings, None)
    return settings, profile, Namespace.for_dataset(profile.name, settings.consumer_group)


class OutputFile(click.Path):
    """A file to write: its folder must exist and be writable, checked before any work is done.

    A benchmark that runs for minutes, then fails to write its ``--json``, loses its figures.
    """

    def __init__(self) -> None:
        super().__init__(dir_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(os.fsdecode(super().convert(value, param, ctx)))
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            self.fail(f"{str(path)!r}: folder {str(folder)!r} does not exist", param, ctx)
        if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            self.fail(f"{str(path)!r}: not writable", param, ctx)
        return path


#: ``--json`` and ``--out`` files.
OUTPUT_FILE = OutputFile()


def check_port_free(host: str, port: int, what: str) -> None:
    """Fail in one line when ``host:port`` cannot be listened on, before a service loads anything.

    Binds the address the way the servers do (``SO_REUSEADDR``, so a port in ``TIME_WAIT``
    passes) and lets it go at once.

    Parameters
    ----------
    host : str
    port : int
    what : str
        The service and its setting, for the message (``"the API (--port)"``).

    Raises
    ------
    click.ClickException
        If the port is taken (or the host is not local).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise click.ClickException(
                f"{host}:{port} for {what} is not available ({err.strerror or err}); "
                "stop the process using it or choose another port"
            ) from None


def require_topic(settings: Settings, topic: str) -> None:
    """Fail in one line when ``topic`` does not exist; never creates it.

    Lists the broker's topics (a metadata request for all topics, which creates nothing),
    where subscribing to a missing topic would let a broker with automatic topic creation
    create it.

    Parameters
    ----------
    settings : Settings
    topic : str

    Raises
    ------
    click.ClickException
        If the broker has no such topic.
    """
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    from plumbing.clients import kafka_kwargs

    async def listed() -> list[str]:
        admin = AIOKafkaAdminClient(**kafka_kwargs(settings))
        await admin.start()
        try:
            return list(await admin.list_topics())
        finally:
            await admin.close()

    topics = asyncio.run(listed())
    if topic not in topics:
        shown = ", ".join(sorted(t for t in topics if not t.startswith("__"))[:20]) or "none"
        raise click.ClickException(
            f"topic {topic!r} does not exist on {settings.kafka_bootstrap_servers} (topics: {shown})"
        )


#: MLflow client retries and per-request timeout (s) unless set in the environment. MLflow's own
#: defaults (7 retries with exponential backoff, 120 s) made a worker or a batch run facing an
#: unreachable tracking server wait about 4 minutes to fail or to stop.
MLFLOW_CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}


#: MLflow's own output, off unless the environment chooses: a "🏃 View run ... at ..." and a
#: "🧪 View experiment at ..." line on stdout per run, and a download bar per artifact (the
#: cycle downloads every registered model once to verify it): 3 to 4 lines per model, over
#: 60 of `churn demo`'s 110 lines. ``-v`` keeps the links.
MLFLOW_QUIET_DEFAULTS = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def _bound_mlflow_retries(environ=os.environ) -> None:
    """Set :data:`MLFLOW_CLIENT_DEFAULTS` where the environment does not already choose."""
    for key, value in MLFLOW_CLIENT_DEFAULTS.items():
        environ.setdefault(key, value)


def _quiet_mlflow(environ=os.environ, verbose: int = 0) -> None:
    """Set :data:`MLFLOW_QUIET_DEFAULTS` where the environment does not already choose.

    Parameters
    ----------
    environ : mapping, default os.environ
    verbose : int, default 0
        With ``-v`` MLflow still prints its run links.
    """
    for key, value in MLFLOW_QUIET_DEFAULTS.items():
        if not (verbose and key == "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"):
            environ.setdefault(key, value)


#: Failures a user can act on: shown as one clear line instead of a traceback.
_USER_ERRORS = {
    "KafkaConnectionError",
    "KafkaTimeoutError",
    "NoBrokersAvailable",
    "CycleError",
    "DataQualityError",
    "IngestError",
    "StackError",
    "ArtifactError",
    "ArtifactVerificationError",
    "MaxRetryError",
    "ConnectionRefusedError",
    "ConnectionError",
    "MlflowException",
    "DemoError",
    "SettingsError",
    "MissingSourceError",
    "InsufficientRowsError",
    "ProfileError",
    # Files the user named: a folder that does not exist or cannot be written, ...
    "FileNotFoundError",
    "PermissionError",
    "NotADirectoryError",
    "IsADirectoryError",
    "FileExistsError",
}


def one_line(text: str) -> str:
    """``text`` on one line: its lines joined with "; " (blank lines dropped)."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


class _Group(click.Group):
    """A click group that turns known operational errors into ``Error: ...`` and exit code 1.

    Every user error is one line on stderr with a non-zero exit: click's usage errors
    (exit 2) too, which click itself prints with the usage and a hint over four lines.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # click's signature
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as err:
            hint = f" (see `{err.ctx.command_path} --help`)" if err.ctx is not None else ""
            click.echo(f"Error: {one_line(err.format_message())}{hint}", err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:
            click.echo(f"Error: {one_line(err.format_message())}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):  # click's signature
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # re-raised unless it is a known operational error
            if any(cls.__name__ in _USER_ERRORS for cls in type(exc).__mro__):
                raise click.ClickException(one_line(f"{type(exc).__name__}: {exc}")) from exc
            raise


@click.group(cls=_Group)
@click.version_option(package_name="churn-stream", prog_name="churn", message="%(prog)s %(version)s")
@click.option(
    "--log-level",
    default=None,
    help="Python logging level [default: INFO; demo, batch run, produce and bench commands show progress "
    "and warnings only].",
)
@click.option("-v", "--verbose", count=True, help="Details: INFO logs and MLflow's run links (-vv: DEBUG).")
@click.option(
    "--progress-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=INTERVAL_S,
    show_default=True,
    help="Seconds between progress lines when stderr is not a terminal (a bar is drawn on one).",
)
@click.pass_context
def main(ctx: click.Context, log_level: str | None, verbose: int, progress_interval: float) -> None:
    """churn-stream: streaming churn scoring with from-scratch numpy models."""
    _configure_logging(log_level, verbose)
    ctx.meta[_LEVEL_CHOSEN] = bool(log_level or verbose)
    set_interval(progress_interval)
    _bound_mlflow_retries()
    _quiet_mlflow(verbose=verbose)
    ctx.obj = Settings.from_env()
