"""``churn stack`` (the local servers) and ``churn demo`` (the main job on them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from churn_stream.cli.app import RATE, dataset_option, main
from plumbing.settings import Settings


# --------------------------------------------------------------------- stack
@main.group()
def stack() -> None:
    """Run the local stack: SeaweedFS (S3), Tansu (Kafka), MLflow."""


@stack.command("up")
@click.option("--ephemeral", is_flag=True, help="Keep topics in memory (nothing survives a restart).")
@click.option(
    "--secure/--plain",
    default=None,
    help="Require credentials everywhere: Kafka SASL_SSL (SCRAM-SHA-512), MLflow basic-auth, random S3 keys "
    "(default: as this data dir was last set up; plain if never secure).",
)
@click.pass_obj
def stack_up(settings: Settings, ephemeral: bool, secure: bool | None) -> None:
    """Start every service (idempotent) and wait until each answers."""
    from churn_stream.stack import LocalStack, StackError

    try:
        local = LocalStack.from_settings(settings, secure=secure)
        local.up(ephemeral=ephemeral)
    except StackError as err:
        raise click.ClickException(str(err)) from None
    click.echo(local.status_table())
    if local.secure:
        # The path only: the values stay in the mode-600 file.
        env_file = local.layout.client_env()
        click.echo(f"\nClients need the credentials in {env_file} (mode 600). Load them with:")
        click.echo(f"  set -a; . {env_file}; set +a")


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


# ---------------------------------------------------------------------- demo
@main.command()
@click.option("--events", type=click.IntRange(min=1), default=None, help="Produce N events (default: every row).")
@click.option("--exit", "exit_", is_flag=True, help="Stop the worker and exit after the summary.")
@click.option("--rate", type=RATE, default=None, help="Events per second (default: as fast as possible).")
@dataset_option()
@click.option(
    "--source",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV to train on and score (default: the shipped Telco file, or 5,000 generated retail customers).",
)
@click.pass_obj
def demo(
    settings: Settings,
    events: int | None,
    exit_: bool,
    rate: float | None,
    dataset: str | None,
    source: Path | None,
) -> None:
    """The main job: stack, champion, worker, every customer of the dataset scored live, summary.

    `churn demo --dataset my_profile.yaml --source my.csv --exit` takes a table of one's own
    live: trains on it, then scores every row through Kafka; the summary says how long the
    first live score took (first_score_s).
    """
    from churn_stream.cli.app import chosen_dataset, tool_output
    from churn_stream.demo import DemoError, demo_source, run_demo

    tool_output()
    profile = chosen_dataset(settings, dataset)
    if source is None and profile.name != "retail":  # retail's is generated, at the start of the demo
        try:
            demo_source(profile, None, settings.data_dir)
        except DemoError as err:
            raise click.UsageError(f"--source is required for --dataset {profile.name}: {err}") from None
    run_demo(
        settings,
        events=events,
        keep_running=not exit_,
        rate=rate,
        on_summary=lambda s: click.echo(json.dumps(s, sort_keys=True)),
        dataset=dataset,
        source=source,
    )
