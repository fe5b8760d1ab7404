"""``flask --app webhook_app lockouts``: the addresses locked out after wrong secrets or tokens,
and ``lockouts clear ADDRESS`` to lift one. Tables go to stdout, logs and refusals to stderr."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import with_appcontext

from webhook_app.journal import iso_time
from webhook_app.surfaces.cli import verbose

log = logging.getLogger("webhook_app")
COLUMNS = ("address", "since (UTC)", "until (UTC)", "why")


def _lockout():
    """The lockouts as the running service keeps them: in the journal, on either engine."""
    return current_app.extensions["webhook"].protection.lockout


@click.group("lockouts", invoke_without_command=True)
@click.pass_context
@with_appcontext
@verbose
def lockouts_group(ctx: click.Context) -> None:
    """The addresses locked out now (wrong secrets or admin tokens), soonest lifted first."""
    if ctx.invoked_subcommand is not None:
        return
    entries = _lockout().active()
    if not entries:
        click.echo("no address is locked out")
        return
    rows = [
        (e["address"], (iso_time(e["since"]) or "")[:19], (iso_time(e["until"]) or "")[:19], e["why"]) for e in entries
    ]
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS) - 1)]
    for row in [COLUMNS, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1])


@lockouts_group.command("clear")
@click.argument("address")
@with_appcontext
@verbose
def clear_command(address: str) -> None:
    """Lift ADDRESS's lockout (and forget its wrong secrets so far)."""
    if not _lockout().clear(address):
        click.echo(f"{address} is not locked out", err=True)
        raise SystemExit(1)
    log.warning("lockout of %s lifted by cli", address)
    click.echo(f"lifted the lockout of {address}")
