"""``churn api keys create|list|revoke``: the prediction API's keys, kept in the key file.

``churn api`` is a command of :mod:`churn_stream.cli.stream`; :func:`api_with_keys`
turns it into a group with the same options that still serves the API when called
without a subcommand (``churn api --port 8001``), and adds the ``keys`` group.
"""

from __future__ import annotations

import json
from typing import Any

import click

from plumbing.api_keys import SCOPES, ApiKeyError, ApiKeyStore
from plumbing.settings import Settings


@click.group()
def keys() -> None:
    """API keys of the prediction API (salted scrypt hashes in $CHURN_API_KEYS_FILE,
    default $CHURN_DATA_DIR/api_keys.json)."""


def _store(settings: Settings) -> ApiKeyStore:
    return ApiKeyStore(settings.api_keys_path)


@keys.command("create")
@click.option("--name", required=True, help="Who the key is for (unique among active keys).")
@click.option(
    "--scope",
    "scopes",
    type=click.Choice(SCOPES),
    multiple=True,
    required=True,
    help="predict (POST /api/predict), models:read (GET /api/models, /api/metrics), admin (all). Repeatable.",
)
@click.pass_obj
def keys_create(settings: Settings, name: str, scopes: tuple[str, ...]) -> None:
    """Create a key and print it once on stdout (only its hash is stored: it cannot be shown again)."""
    store = _store(settings)
    try:
        record, key = store.create(name, scopes)
    except ApiKeyError as err:
        raise click.ClickException(str(err)) from None
    click.echo(key)
    click.echo(
        f"created API key {record.name!r} (id {record.key_id}, scopes {' '.join(record.scopes)}) in {store.path}; "
        "it is shown only now. Clients send it as 'Authorization: Bearer <key>' "
        "(the dashboard reads CHURN_API_KEY).",
        err=True,
    )


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key.")
@click.pass_obj
def keys_list(settings: Settings, as_json: bool) -> None:
    """Names, ids, scopes and dates of every key (never a key or a hash)."""
    try:
        records = _store(settings).records()
    except ApiKeyError as err:
        raise click.ClickException(str(err)) from None
    if as_json:
        for r in records:
            click.echo(json.dumps(r.public(), sort_keys=True))
        return
    click.echo(f"{'name':24} {'id':12} {'scopes':28} {'created':25} revoked")
    for r in records:
        click.echo(f"{r.name:24} {r.key_id:12} {' '.join(r.scopes):28} {r.created_at:25} {r.revoked_at or '-'}")


@keys.command("revoke")
@click.argument("name")
@click.pass_obj
def keys_revoke(settings: Settings, name: str) -> None:
    """Revoke the active key NAME (a running API refuses it within a second)."""
    try:
        record = _store(settings).revoke(name)
    except ApiKeyError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"revoked API key {record.name!r} (id {record.key_id}) at {record.revoked_at}", err=True)


def api_with_keys(serve: click.Command) -> click.Group:
    """``churn api`` as a group: its own options and behaviour, plus the ``keys`` subcommands.

    Parameters
    ----------
    serve : click.Command
        The ``api`` command (serves the API).

    Returns
    -------
    click.Group
        Named like ``serve``; without a subcommand it runs ``serve``'s callback.
    """

    @click.pass_context
    def callback(ctx: click.Context, **params: Any) -> None:
        if ctx.invoked_subcommand is None and serve.callback is not None:
            ctx.invoke(serve.callback, **params)

    group = click.Group(
        name=serve.name,
        params=list(serve.params),
        callback=callback,
        help=(serve.help or "") + "\n\nWith `keys create|list|revoke`: manage its API keys.",
        short_help=serve.short_help,
        invoke_without_command=True,
    )
    group.add_command(keys)
    return group
