"""The ``churn`` group: logging, settings and error handling shared by every command."""

from __future__ import annotations

import logging
import os
import sys
from urllib.parse import urlsplit

import click

from plumbing.settings import Settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "aiokafka", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def predict_url(api_url: str) -> str:
    """The prediction endpoint of ``api_url``: a bare ``http://host:port`` (what ``churn api``
    prints) gets ``/api/predict``; a URL with a path is kept as given."""
    return api_url.rstrip("/") + "/api/predict" if urlsplit(api_url).path in ("", "/") else api_url


#: A TCP port (click would pass 99999 through; uvicorn then listened on 99999 mod 65536).
PORT = click.IntRange(1, 65535)
#: Events per second: positive.
RATE = click.FloatRange(min=0, min_open=True)

#: MLflow client retries and per-request timeout (s) unless set in the environment. MLflow's own
#: defaults (7 retries with exponential backoff, 120 s) made a worker or a batch run facing an
#: unreachable tracking server wait about 4 minutes to fail or to stop.
MLFLOW_CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}


def _bound_mlflow_retries(environ=os.environ) -> None:
    """Set :data:`MLFLOW_CLIENT_DEFAULTS` where the environment does not already choose."""
    for key, value in MLFLOW_CLIENT_DEFAULTS.items():
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
}


class _Group(click.Group):
    """A click group that turns known operational errors into ``Error: ...`` and exit code 1."""

    def invoke(self, ctx: click.Context):  # click's signature
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # re-raised unless it is a known operational error
            if any(cls.__name__ in _USER_ERRORS for cls in type(exc).__mro__):
                raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
            raise


@click.group(cls=_Group)
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """churn-stream: streaming churn scoring with from-scratch numpy models."""
    _configure_logging(log_level)
    _bound_mlflow_retries()
    ctx.obj = Settings.from_env()
