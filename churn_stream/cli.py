"""The ``churn`` command line: the single entry point of every service and tool.

Settings are read here, once, from the environment; clients are built here and
passed down. Heavy imports happen inside each command so ``churn --help`` is quick.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
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


# --------------------------------------------------------------------- stack
@main.group()
def stack() -> None:
    """Run the local stack: SeaweedFS (S3), Tansu (Kafka), MLflow."""


@stack.command("up")
@click.option("--ephemeral", is_flag=True, help="Keep topics in memory (nothing survives a restart).")
@click.pass_obj
def stack_up(settings: Settings, ephemeral: bool) -> None:
    """Start every service (idempotent) and wait until each answers."""
    from churn_stream.stack import LocalStack, StackError

    local = LocalStack.from_settings(settings)
    try:
        local.up(ephemeral=ephemeral)
    except StackError as err:
        raise click.ClickException(str(err)) from None
    click.echo(local.status_table())


@stack.command("down")
@click.pass_obj
def stack_down(settings: Settings) -> None:
    """Stop exactly the processes `up` started."""
    from churn_stream.stack import LocalStack

    LocalStack.from_settings(settings).down()
    click.echo("stack stopped")


@stack.command("status")
@click.pass_obj
def stack_status(settings: Settings) -> None:
    """Show each service's health; exit 1 if any is down."""
    from churn_stream.stack import LocalStack

    local = LocalStack.from_settings(settings)
    click.echo(local.status_table())
    if not all(s.healthy for s in local.status()):
        sys.exit(1)


# ------------------------------------------------------------------- schemas
@main.group()
def schemas() -> None:
    """Event contracts."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def schemas_export(directory: Path) -> None:
    """Write one JSON Schema per topic into DIRECTORY."""
    from schemas.jsonschema import export_json_schemas

    for path in export_json_schemas(directory):
        click.echo(str(path))


# --------------------------------------------------------------------- batch
@main.group()
def batch() -> None:
    """ELT, training, evaluation and promotion."""


@batch.command("run")
@click.option("--dataset", default="telco", show_default=True, type=click.Choice(["telco", "retail"]))
@click.option(
    "--source",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="CSV to ingest (default: the shipped Telco file; required for retail).",
)
@click.pass_obj
def batch_run(settings: Settings, dataset: str, source: Path | None) -> None:
    """Run one cycle: ingest, featurise, train, evaluate, register, announce."""
    from batch.cycle import run_cycle
    from plumbing.clients import make_storage, make_tracker

    if dataset == "retail" and source is None:
        raise click.UsageError("--source is required for --dataset retail (see `churn data generate retail`)")
    result = run_cycle(settings, make_storage(settings), make_tracker(settings), dataset=dataset, source=source)
    click.echo(json.dumps(result.summary(), sort_keys=True))


@batch.command("serve")
@click.option("--dataset", default="telco", show_default=True, type=click.Choice(["telco", "retail"]))
@click.option(
    "--source",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="CSV of the scheduled cycle (default: the shipped Telco file; required for retail).",
)
@click.option("--cron", default=None, help="Crontab in UTC (default: CHURN_BATCH_CRON, '0 2 * * *').")
@click.option(
    "--watch-interval",
    type=int,
    default=None,
    help="Seconds between looks for new CSVs under s3://raw-data/incoming/ (default: CHURN_BATCH_WATCH_S).",
)
@click.option("--run-now", is_flag=True, help="Also run one cycle at start-up.")
@click.pass_obj
def batch_serve(
    settings: Settings, dataset: str, source: Path | None, cron: str | None, watch_interval: int | None, run_now: bool
) -> None:
    """Run cycles on a cron schedule and when new CSVs land in S3, one at a time across processes."""
    from batch.service import BatchService
    from plumbing.clients import ensure_buckets, make_storage, make_tracker

    if dataset == "retail" and source is None:
        raise click.UsageError("--source is required for --dataset retail (see `churn data generate retail`)")

    if cron is not None:
        settings = settings.with_overrides(batch_cron=cron)
    if watch_interval is not None:
        settings = settings.with_overrides(batch_watch_interval_s=watch_interval)
    storage = make_storage(settings)
    ensure_buckets(storage)
    service = BatchService(settings, storage, make_tracker(settings), dataset=dataset, source=source)
    if run_now:
        service.trigger("startup")
    service.serve()


# ---------------------------------------------------------------------- data
@main.group()
def data() -> None:
    """Data sets: generate synthetic source files."""


@data.command("generate")
@click.argument("dataset", type=click.Choice(["retail"]))
@click.option("--rows", type=click.IntRange(min=1), default=100_000, show_default=True, help="Customers to generate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same bytes).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="CSV to write.")
def data_generate(dataset: str, rows: int, seed: int, out: Path) -> None:
    """Write DATASET's synthetic source CSV (retail: see batch/retail.py for the generative process)."""
    import time

    from batch.retail import write_retail_csv

    start = time.perf_counter()
    write_retail_csv(out, rows=rows, seed=seed)
    click.echo(
        json.dumps(
            {
                "dataset": dataset,
                "rows": rows,
                "seed": seed,
                "path": str(out),
                "bytes": out.stat().st_size,
                "seconds": round(time.perf_counter() - start, 3),
            }
        )
    )


# ------------------------------------------------------------------- stream
@main.command()
@click.option("--web-port", type=PORT, default=None, help="Faust web port (health, metrics).")
@click.pass_obj
def worker(settings: Settings, web_port: int | None) -> None:
    """Run the Faust scoring worker."""
    from stream_app.worker import run_worker

    if web_port is not None:
        settings = settings.with_overrides(worker_web_port=web_port)
    run_worker(settings)


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rate", type=RATE, default=None, help="Events per second (default: as fast as possible).")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Produce at most N events.")
@click.option("--topic", default=None, help="Target topic (default: customers).")
@click.pass_obj
def produce(settings: Settings, path: Path, rate: float | None, limit: int | None, topic: str | None) -> None:
    """Turn CSV rows at PATH into customer events on Kafka."""
    from churn_stream.produce import produce_csv
    from schemas.topics import Topics

    n = produce_csv(settings, path, topic or Topics.CUSTOMERS, rate=rate, limit=limit)
    click.echo(json.dumps({"produced": n}))


@main.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Stop after N records.")
@click.option("--timeout", type=float, default=None, help="Stop after this many idle seconds.")
@click.pass_obj
def consume(settings: Settings, topic: str, from_beginning: bool, limit: int | None, timeout: float | None) -> None:
    """Print records of TOPIC, one JSON object per line."""
    from plumbing.clients import consume_topic

    for record in consume_topic(settings, topic, from_beginning=from_beginning, limit=limit, idle_timeout_s=timeout):
        click.echo(json.dumps(record, sort_keys=True))


# ----------------------------------------------------------------------- dlq
@main.group()
def dlq() -> None:
    """Dead letters on customers.dlq."""


@dlq.command("replay")
@click.option(
    "--since",
    default=None,
    help="Only dead letters that failed at or after this time: ISO 8601 (UTC if no offset) or relative (30m, 2h, 1d).",
)
@click.option("--dry-run", is_flag=True, help="Re-validate and report; send nothing.")
@click.pass_obj
def dlq_replay(settings: Settings, since: str | None, dry_run: bool) -> None:
    """Re-validate each dead letter's original bytes; send the now-valid ones back to their topic.

    Prints one JSON report: counts, and each invalid record's coordinates and first error.
    """
    from stream_app.dlq import parse_since, replay_dead_letters

    try:
        since_t = parse_since(since) if since else None
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--since") from None
    click.echo(json.dumps(replay_dead_letters(settings, since=since_t, dry_run=dry_run), sort_keys=True))


# ----------------------------------------------------------------------- api
@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=PORT, default=8000, show_default=True)
@click.pass_obj
def api(settings: Settings, host: str, port: int) -> None:
    """Serve the prediction API (Starlette) with the hot-reloaded champion."""
    from plumbing.logs import limit_repeated_logs
    from stream_app.api import run_api

    limit_repeated_logs(["aiokafka"])  # it follows model-updated; a broker outage must not flood the log
    run_api(settings, host=host, port=port)


# ----------------------------------------------------------------- dashboard
@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=PORT, default=8050, show_default=True)
@click.option(
    "--api-url",
    default="http://127.0.0.1:8000/api/predict",
    show_default=True,
    help="Prediction endpoint the score-a-customer form posts to (a bare http://host:port gets /api/predict).",
)
@click.pass_obj
def dashboard(settings: Settings, host: str, port: int, api_url: str) -> None:
    """Serve the read-only Dash dashboard: live scores and alerts, models, data quality, scoring form."""
    from dashboard.app import run_dashboard
    from plumbing.clients import kafka_kwargs
    from plumbing.logs import limit_repeated_logs

    limit_repeated_logs(["aiokafka"])  # the live feed consumes scores; a broker outage must not flood the log
    api_url = predict_url(api_url)
    run_dashboard(settings, host=host, port=port, api_url=api_url, kafka_options=kafka_kwargs(settings))


# --------------------------------------------------------------------- bench
@main.group()
def bench() -> None:
    """Benchmarks: ours and the reference, measured side by side in one run."""


@bench.command("models")
@click.option("--dataset", default="telco", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_models(dataset: str, json_path: Path | None) -> None:
    """Scratch models vs scikit-learn/xgboost: quality, fit and predict time."""
    from churn_stream.bench.models import run_bench_models

    run_bench_models(dataset=dataset, json_path=json_path)


@bench.command("fit")
@click.option("--rows", type=click.IntRange(min=100), default=1_000_000, show_default=True)
@click.option("--features", type=click.IntRange(min=8), default=80, show_default=True)
@click.option(
    "--model",
    "models",
    multiple=True,
    type=click.Choice(["gradient_boosting", "random_forest", "random_forest_pca"]),
    help="Repeatable; default all three.",
)
@click.option(
    "--reference-rows",
    type=click.IntRange(min=100),
    default=100_000,
    show_default=True,
    help="Rows the scikit-learn forest references are fitted on (xgboost gets --rows).",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_fit(rows: int, features: int, models: tuple[str, ...], reference_rows: int, json_path: Path | None) -> None:
    """Boosting and forests at scale: fit s, CPU s, peak RSS beside the target and a reference."""
    from churn_stream.bench.fit_scale import SCALE_MODELS, run_bench_fit

    run_bench_fit(rows, features, models or SCALE_MODELS, reference_rows, json_path)


@bench.command("gbm-cv")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_gbm_cv(json_path: Path | None) -> None:
    """Cross-validate the zoo's gradient-boosting hyperparameters on Telco's training part only."""
    from churn_stream.bench.model_selection import select_gbm_params

    rows = select_gbm_params()
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=1) + "\n")


@bench.command("models-cv")
@click.option(
    "--model",
    "models",
    multiple=True,
    default=("gradient_boosting",),
    show_default=True,
    help="Zoo classifier, repeatable.",
)
@click.option(
    "--repeats", type=click.IntRange(min=1), default=2, show_default=True, help="Repetitions of the 5 outer folds."
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_models_cv(models: tuple[str, ...], repeats: int, json_path: Path | None) -> None:
    """Scratch classifiers beside their references on repeated outer folds of Telco's training part
    (thresholds tuned out of fold inside each), with the paired difference and its standard error."""
    from churn_stream.bench.model_selection import format_nested_cv, nested_cv

    load = os.getloadavg()
    try:
        rows = nested_cv(tuple(models), outer_seeds=tuple(range(7, 7 + repeats)))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None
    click.echo(f"# churn bench models-cv: cores={os.cpu_count()} load_avg={load[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    click.echo(format_nested_cv(rows))
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=1) + "\n")


@bench.command("stream")
@click.option("--events", type=int, default=200_000, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_obj
def bench_stream(settings: Settings, events: int, json_path: Path | None) -> None:
    """Naive Faust agent vs aiokafka relay vs our worker, end to end on the configured broker."""
    from churn_stream.bench.stream import run_bench_stream

    run_bench_stream(settings, events=events, json_path=json_path)


@bench.command("api")
@click.option("--rate", type=click.FloatRange(min=1), default=500.0, show_default=True, help="Requests per second.")
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=1),
    default=10.0,
    show_default=True,
    help="Seconds of the measured run.",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_obj
def bench_api(settings: Settings, rate: float, duration_s: float, json_path: Path | None) -> None:
    """Single-customer prediction latency at a fixed request rate, beside a scikit-learn Pipeline call."""
    from churn_stream.bench.api import run_bench_api

    run_bench_api(settings, json_path=json_path, rate=rate, duration_s=duration_s)


@bench.command("dashboard")
@click.option("--duration", "duration_s", type=float, default=3600.0, show_default=True, help="Seconds.")
@click.option("--rate", type=RATE, default=2000.0, show_default=True, help="Score records per second.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_obj
def bench_dashboard(settings: Settings, duration_s: float, rate: float, json_path: Path | None) -> None:
    """Soak the dashboard: scores produced at --rate; its memory, callback durations vs refresh
    intervals and live counts; exit 1 if memory grew, a callback overran its interval or the page stalled."""
    from churn_stream.bench.dashboard import run_bench_dashboard

    try:
        result = run_bench_dashboard(settings, duration_s=duration_s, rate=rate, json_path=json_path)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    if not result["passed"]:
        sys.exit(1)


@bench.command("batch")
@click.option("--dataset", default="retail", show_default=True, type=click.Choice(["retail", "telco"]))
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Retail customers to generate (deterministic seed) when no --source is given.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated retail file.")
@click.option(
    "--source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV to ingest instead (default: generated retail rows, or the shipped Telco file).",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--only",
    "only",
    multiple=True,
    help="Train only this zoo model (repeatable; quick checks, not a full-cycle figure).",
)
@click.pass_obj
def bench_batch(
    settings: Settings,
    dataset: str,
    rows: int,
    seed: int,
    source: Path | None,
    json_path: Path | None,
    only: tuple[str, ...],
) -> None:
    """One full batch cycle on the configured stack: seconds per stage and model, peak memory, beside the
    targets (retail 1M rows < 15 min and < 6 GB; Telco < 90 s)."""
    from churn_stream.bench.batch import run_bench_batch

    run_bench_batch(
        settings,
        dataset=dataset,
        rows=rows,
        seed=seed,
        source=source,
        json_path=json_path,
        only=set(only) or None,
        echo=click.echo,
    )


@bench.command("batch-curve")
@click.option(
    "--rows",
    type=click.IntRange(min=1000),
    default=600_000,
    show_default=True,
    help="Retail customers to generate (80 % train, 20 % hold-out).",
)
@click.option(
    "--sizes",
    default="50000,100000,200000,400000",
    show_default=True,
    help="Comma-separated training-row caps to fit each ensemble on.",
)
@click.option("--model", "models", multiple=True, help="Only this ensemble (repeatable; default all four).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.pass_obj
def bench_batch_curve(
    settings: Settings, rows: int, sizes: str, models: tuple[str, ...], seed: int, json_path: Path | None
) -> None:
    """Learning curve of the tree ensembles on retail: hold-out AUC / R^2 and fit seconds per training-row
    cap (the evidence for CHURN_BATCH_ENSEMBLE_MAX_ROWS). Needs no stack."""
    from churn_stream.bench.batch import run_ensemble_curve

    try:
        caps = tuple(int(s) for s in sizes.split(",") if s.strip())
        run_ensemble_curve(
            settings, rows=rows, sizes=caps, seed=seed, models=models or None, json_path=json_path, echo=click.echo
        )
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


@bench.command("faults")
@click.option("--events", type=int, default=10_000, show_default=True, help="Records per scenario.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--only", "only", multiple=True, help="Run only this scenario (repeatable).")
@click.pass_obj
def bench_faults(settings: Settings, events: int, json_path: Path | None, only: tuple[str, ...]) -> None:
    """Inject faults (broker restart, worker kill/join/leave, bad input, corrupt model, S3/MLflow outages)
    on stacks of its own and count lost, duplicated and dead-lettered events; exit 1 if any scenario fails."""
    from churn_stream.bench.faults import run_bench_faults

    results = run_bench_faults(settings, events=events, json_path=json_path, only=only or None)
    if not all(r.passed for r in results):
        sys.exit(1)


# ---------------------------------------------------------------------- demo
@main.command()
@click.option("--events", type=click.IntRange(min=1), default=None, help="Produce N events (default: every Telco row).")
@click.option("--exit", "exit_", is_flag=True, help="Stop the worker and exit after the summary.")
@click.option("--rate", type=RATE, default=None, help="Events per second (default: as fast as possible).")
@click.pass_obj
def demo(settings: Settings, events: int | None, exit_: bool, rate: float | None) -> None:
    """The main job: stack, champion, worker, every Telco customer scored, summary."""
    from churn_stream.demo import run_demo

    run_demo(
        settings,
        events=events,
        keep_running=not exit_,
        rate=rate,
        on_summary=lambda s: click.echo(json.dumps(s, sort_keys=True)),
    )


if __name__ == "__main__":  # pragma: no cover
    main()
