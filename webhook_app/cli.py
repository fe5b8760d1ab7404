"""Operator commands: ``flask --app webhook_app alerts``."""
from __future__ import annotations

from datetime import datetime, timezone

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .journal import STATES


def register(app: Flask) -> None:
    app.cli.add_command(alerts_command)


@click.command("alerts")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--state", type=click.Choice(STATES), help="only alerts in this state")
@with_appcontext
def alerts_command(limit: int, state: str | None) -> None:
    """Recent alerts, newest first: state, bot, action, amount, OKX's code."""
    records = current_app.extensions["webhook"].journal.recent(limit, state)
    if not records:
        click.echo("no alerts journaled" + (f" in state {state}" if state else ""))
        return
    click.echo(f"{'id':>6}  {'received (UTC)':19}  {'state':9}  {'algoId':20}  {'action':6}  "
               f"{'amount':>12}  {'tries':>5}  {'okx':8}  detail")
    for r in records:
        received = datetime.fromtimestamp(r.received_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        detail = r.okx_msg or r.detail or ""
        click.echo(f"{r.id:>6}  {received:19}  {r.state:9}  {r.algo_id:20}  {r.action:6}  {r.amount:>12}  "
                   f"{r.attempts:>5}  {r.okx_code or '-':8}  {detail[:60]}")
