"""``churn batch``, ``churn data`` and ``churn schemas``: cycles, source files, contracts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from churn_stream.cli.app import main
from churn_stream.cli.stream import dataset_option, with_dataset
from plumbing.settings import Settings


# ------------------------------------------------------------------- schemas
@main.group()
def schemas() -> None:
    """Event contracts."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@dataset_option
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
