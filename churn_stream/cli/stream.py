"""The stream side: ``churn worker``, ``produce``, ``consume``, ``dlq``, ``api`` and ``dashboard``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from churn_stream.cli.app import (
    PORT,
    RATE,
    check_port_free,
    dataset_option,
    main,
    predict_url,
    require_topic,
    tool_output,
    with_dataset,
)
from plumbing.settings import Settings
from schemas.topics import Topics


# ------------------------------------------------------------------- stream
@main.command()
@click.option("--web-port", type=PORT, default=None, help="Faust web port (health, metrics).")
@dataset_option()
@click.pass_obj
def worker(settings: Settings, web_port: int | None, dataset: str | None) -> None:
    """Run the Faust scoring worker for one data set (its topics, champion and consumer group)."""
    settings, _, _ = with_dataset(settings, dataset)
    if web_port is not None:
        settings = settings.with_overrides(worker_web_port=web_port)
    check_port_free("127.0.0.1", settings.worker_web_port, "the worker's health page (--web-port)")
    from plumbing.allocator import keep_heap_room
    from stream_app.worker import run_worker

    keep_heap_room()  # each micro-batch's numpy temporaries reuse mapped pages (churn bench score)
    run_worker(settings)


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rate", type=RATE, default=None, help="Events per second (default: as fast as possible).")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Produce at most N events.")
@click.option("--topic", default=None, help="Target topic (default: the data set's customers topic).")
@click.option(
    "--event-time-column",
    default=None,
    metavar="COLUMN",
    help="Take event_time from this CSV column (ISO 8601; UTC without an offset). Default: the time each "
    "record is sent.",
)
@dataset_option()
@click.pass_obj
def produce(
    settings: Settings,
    path: Path,
    rate: float | None,
    limit: int | None,
    topic: str | None,
    event_time_column: str | None,
    dataset: str | None,
) -> None:
    """Turn CSV rows at PATH into customer events on Kafka."""
    settings, _, _ = with_dataset(settings, dataset)
    import time

    from churn_stream.demo import produced_line
    from churn_stream.produce import produce_csv
    from plumbing.progress import Progress

    tool_output()
    start = time.perf_counter()
    with Progress("produce", limit, unit="event") as bar:
        n = produce_csv(
            settings,
            path,
            topic,
            rate=rate,
            limit=limit,
            event_time_column=event_time_column,
            on_acked=bar.update,
        )
    click.echo(produced_line(n, time.perf_counter() - start), err=True)
    click.echo(json.dumps({"produced": n}))


@main.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Stop after N records.")
@click.option("--timeout", type=float, default=None, help="Stop after this many idle seconds.")
@dataset_option()
@click.pass_obj
def consume(
    settings: Settings,
    topic: str,
    from_beginning: bool,
    limit: int | None,
    timeout: float | None,
    dataset: str | None,
) -> None:
    """Print records of TOPIC, one JSON object per line (a topic that does not exist is an error).

    A logical name (customers, churn-scores, churn-alerts, model-updated, customers.dlq,
    churn-drift) is the data set's topic of that role; any other name is used as given.
    """
    settings, _, namespace = with_dataset(settings, dataset)
    from plumbing.clients import consume_topic

    if topic in Topics.all():
        topic = namespace.topics()[Topics.all().index(topic)]
    require_topic(settings, topic)
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
@dataset_option()
@click.pass_obj
def dlq_replay(settings: Settings, since: str | None, dry_run: bool, dataset: str | None) -> None:
    """Re-validate each dead letter's original bytes; send the now-valid ones back to their topic.

    Prints one JSON report: counts, and each invalid record's coordinates and first error.
    """
    settings, _, _ = with_dataset(settings, dataset)
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
@dataset_option()
@click.pass_obj
def api(settings: Settings, host: str, port: int, dataset: str | None) -> None:
    """Serve the prediction API (Starlette) with the hot-reloaded champion of one data set."""
    check_port_free(host, port, "the API (--port)")  # before any model is loaded
    settings, _, _ = with_dataset(settings, dataset)
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
@dataset_option()
@click.pass_obj
def dashboard(settings: Settings, host: str, port: int, api_url: str, dataset: str | None) -> None:
    """Serve the read-only Dash dashboard of one data set: live scores and alerts, models, data quality, scoring form.

    The data set's namespace names the topics read, the scoring group whose lag is shown and the
    registered models; its contract is the scoring form (run `churn api` with the same --dataset).
    """
    settings, _, _ = with_dataset(settings, dataset)
    check_port_free(host, port, "the dashboard (--port)")
    from dashboard.app import run_dashboard
    from plumbing.clients import kafka_kwargs
    from plumbing.logs import limit_repeated_logs

    limit_repeated_logs(["aiokafka"])  # the live feed consumes scores; a broker outage must not flood the log
    api_url = predict_url(api_url)
    run_dashboard(settings, host=host, port=port, api_url=api_url, kafka_options=kafka_kwargs(settings))
