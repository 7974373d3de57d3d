"""``churn stack`` (the local servers) and ``churn demo`` (the main job on them)."""

from __future__ import annotations

import json
import sys

import click

from churn_stream.cli.app import RATE, main
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
