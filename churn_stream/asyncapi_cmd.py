"""``churn schemas asyncapi``: the AsyncAPI 3.0 document of the topics, from the event contracts.

The document itself is :func:`schemas.asyncapi.asyncapi_document` (pure); this command
adds what only the running configuration knows: partitions per topic
(:func:`plumbing.clients.topic_partitions`), the brokers and the workers' consumer group.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from plumbing.settings import Settings


def render(doc: dict, path: Path | None) -> str:
    """``doc`` as YAML for a ``.yaml``/``.yml`` path, else as JSON (2-space indent, trailing newline).

    Parameters
    ----------
    doc : dict
        A JSON-able document.
    path : pathlib.Path or None
        Where it goes; None for standard output (JSON).

    Returns
    -------
    str
    """
    if path is not None and path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


@click.command("asyncapi")
@click.option(
    "--dataset",
    default=None,
    help="Whose customer contract and topic names the document describes: a shipped profile's name or a "
    "profile file; default: CHURN_DATASET, else telco.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the document here (.json, or .yaml/.yml for YAML); default: standard output, JSON.",
)
@click.pass_obj
def asyncapi_cmd(settings: Settings, dataset: str | None, out: Path | None) -> None:
    """Write an AsyncAPI 3.0 document of every topic: messages, keys, partitions, operations."""
    from plumbing.clients import DatasetError, load_dataset, topic_partitions
    from schemas.asyncapi import asyncapi_document

    try:
        profile = load_dataset(dataset or settings.dataset)
    except DatasetError as exc:  # an unknown dataset or a bad profile file: one line, no traceback
        raise click.ClickException(str(exc)) from None
    try:
        doc = asyncapi_document(
            profile,
            partitions=topic_partitions(settings),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            consumer_group=settings.consumer_group,
        )
    except ValueError as exc:  # an unknown dataset: one line, no traceback
        raise click.ClickException(str(exc)) from None
    text = render(doc, out)
    if out is None:
        click.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    click.echo(str(out))
