"""The ``churn`` command line: the single entry point of every service and tool.

Settings are read here, once, from the environment; clients are built here and
passed down. Heavy imports happen inside each command so ``churn --help`` is quick.

:mod:`~churn_stream.cli.app` holds the ``churn`` group (logging, settings, errors); each
other module adds one family of commands to it: :mod:`~churn_stream.cli.stack` (stack,
demo), :mod:`~churn_stream.cli.batch` (batch, data, schemas), :mod:`~churn_stream.cli.stream`
(worker, produce, consume, dlq, api, dashboard) and :mod:`~churn_stream.cli.bench`.
``churn = "churn_stream.cli:main"`` in ``pyproject.toml``.
"""

from churn_stream.api_keys_cmd import api_with_keys
from churn_stream.cli import batch, bench, stack, stream
from churn_stream.cli.app import MLFLOW_CLIENT_DEFAULTS, PORT, RATE, _bound_mlflow_retries, main, predict_url
from churn_stream.profile_cmd import profile as _profile_group
from plumbing.settings import Settings  # the class the entry point reads (tests patch Settings.from_env)

# Dataset profiles: `churn profile infer|check|schema`.
main.add_command(_profile_group)
# API keys: `churn api keys create|list|revoke` (`churn api` itself still serves).
main.add_command(api_with_keys(main.commands["api"]))

__all__ = [
    "MLFLOW_CLIENT_DEFAULTS",
    "PORT",
    "RATE",
    "Settings",
    "_bound_mlflow_retries",
    "batch",
    "bench",
    "main",
    "predict_url",
    "stack",
    "stream",
]
