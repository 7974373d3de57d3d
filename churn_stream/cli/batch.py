"""``churn batch``, ``churn data`` and ``churn schemas``: cycles, source files, contracts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from churn_stream.cli.app import OUTPUT_FILE, chosen_dataset, dataset_option, main, tool_output, with_dataset
from plumbing.settings import Settings


# ------------------------------------------------------------------- schemas
@main.group()
def schemas() -> None:
    """Event contracts."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@dataset_option()
@click.pass_obj
def schemas_export(settings: Settings, directory: Path, dataset: str | None) -> None:
    """Write one JSON Schema per topic of the data set's namespace into DIRECTORY."""
    from schemas.jsonschema import export_json_schemas

    _, profile, _ = with_dataset(settings, dataset)
    try:
        written = export_json_schemas(directory, profile)
    except OSError as exc:
        raise click.ClickException(f"cannot write schemas to {directory}: {exc.strerror or exc}") from None
    for path in written:
        click.echo(str(path))


from churn_stream.asyncapi_cmd import asyncapi_cmd  # noqa: E402 - `churn schemas asyncapi` (issue 15)

schemas.add_command(asyncapi_cmd)


# --------------------------------------------------------------------- batch
@main.group()
def batch() -> None:
    """ELT, training, evaluation and promotion."""


@batch.command("run")
@dataset_option()
@click.option(
    "--source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV to ingest (default: the dataset's shipped file; only telco ships one).",
)
@click.option("--force", is_flag=True, help="Train and register even when the input equals the last accepted one.")
@click.option("--only", "only", multiple=True, help="Train only this zoo model (repeatable; quick checks).")
@click.pass_obj
def batch_run(settings: Settings, dataset: str | None, source: Path | None, force: bool, only: tuple[str, ...]) -> None:
    """Run one cycle: ingest, featurise, train, evaluate, register, announce.

    An input identical to the last accepted one (same content, same models) trains and
    registers nothing and says "unchanged input", unless --force. Prints the leaderboard,
    each promotion decision in words and the MLflow link on stderr, then the cycle's
    summary as one JSON line on stdout (the only line there: `| jq` works).
    """
    from batch import zoo
    from batch.cycle import run_cycle
    from plumbing.clients import make_storage, make_tracker

    tool_output()
    profile = chosen_dataset(settings, dataset)
    _require_source(profile.name, source)
    unknown = sorted(set(only) - set(zoo.classifiers()) - set(zoo.regressors()))
    if unknown:
        raise click.BadParameter(f"not zoo models: {unknown}", param_hint="--only")
    tracker = make_tracker(settings)
    result = run_cycle(
        settings,
        make_storage(settings),
        tracker,
        dataset=profile,
        source=source,
        only=set(only) or None,
        skip_unchanged=not force,
    )
    for line in cycle_lines(result, settings.mlflow_tracking_uri, tracker):
        click.echo(line, err=True)
    click.echo(json.dumps(result.summary(), sort_keys=True))


def cycle_lines(result, tracking_uri: str, tracker=None) -> list[str]:
    """What ``churn batch run`` tells a person (on stderr; stdout keeps the one JSON line).

    Parameters
    ----------
    result : batch.cycle_report.CycleResult
    tracking_uri : str
    tracker : mlflow.MlflowClient, optional
        To link the dataset's experiment (opening on MLflow's model-training view).

    Returns
    -------
    list of str
        The leaderboard, a blank line, each promotion decision in words, the MLflow link.
    """
    from batch.cycle_report import leaderboard, promotion_decisions
    from batch.run_log import experiment_name, experiment_url

    lines = []
    if result.models:
        lines += [leaderboard(result.models, result.promoted), ""]
    lines += promotion_decisions(result)
    exp = (
        tracker.get_experiment_by_name(experiment_name(result.dataset))
        if tracker is not None and result.models
        else None
    )
    if exp is not None:
        lines.append(f"MLflow: {experiment_url(tracking_uri, exp.experiment_id)}")
    return lines


def _require_source(dataset: str, source: Path | None) -> None:
    """A one-line usage error when ``dataset`` ships no file and no ``--source`` was given."""
    from batch.cycle_input import MissingSourceError, default_source

    try:
        default_source(dataset, source)
    except MissingSourceError as err:
        hint = " (see `churn data generate retail`)" if dataset == "retail" else ""
        raise click.UsageError(f"--source is required for --dataset {dataset}: {err}{hint}") from None


@batch.command("serve")
@dataset_option()
@click.option(
    "--source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV of the scheduled cycle (default: the dataset's shipped file; only telco ships one).",
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
    settings: Settings,
    dataset: str | None,
    source: Path | None,
    cron: str | None,
    watch_interval: int | None,
    run_now: bool,
) -> None:
    """Run cycles on a cron schedule and when new CSVs land in S3, one at a time across processes."""
    from batch.service import BatchService
    from plumbing.clients import ensure_buckets, make_storage, make_tracker

    profile = chosen_dataset(settings, dataset)
    _require_source(profile.name, source)
    name_or_path = dataset if dataset is not None else settings.dataset  # the child process loads it again
    if cron is not None:
        settings = settings.with_overrides(batch_cron=cron)
    if watch_interval is not None:
        settings = settings.with_overrides(batch_watch_interval_s=watch_interval)
    storage = make_storage(settings)
    ensure_buckets(storage)
    service = BatchService(settings, storage, make_tracker(settings), dataset=name_or_path, source=source)
    if run_now:
        service.trigger("startup")
    service.serve()


# ---------------------------------------------------------------------- data
@main.group()
def data() -> None:
    """Data sets: generate synthetic source files."""


@data.command("generate")
@click.argument("dataset")
@click.option("--rows", type=click.IntRange(min=1), default=100_000, show_default=True, help="Customers to generate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same bytes).")
@click.option("--out", "out", type=OUTPUT_FILE, required=True, help="CSV to write.")
def data_generate(dataset: str, rows: int, seed: int, out: Path) -> None:
    """Write DATASET's synthetic source CSV (retail: see batch/retail.py for the generative process).

    Only retail has a generator; other datasets bring their own CSV.
    """
    import time

    from batch.retail import write_retail_csv
    from plumbing.clients import load_dataset

    try:
        name = load_dataset(dataset).name
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="DATASET") from None
    if name != "retail":
        raise click.BadParameter(
            f"{dataset!r}: only retail has a generator; other datasets bring their own CSV", param_hint="DATASET"
        )
    start = time.perf_counter()
    write_retail_csv(out, rows=rows, seed=seed)
    click.echo(
        json.dumps(
            {
                "dataset": name,
                "rows": rows,
                "seed": seed,
                "path": str(out),
                "bytes": out.stat().st_size,
                "seconds": round(time.perf_counter() - start, 3),
            }
        )
    )
