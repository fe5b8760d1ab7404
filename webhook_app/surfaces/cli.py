"""Operator commands: ``flask --app webhook_app alerts``. Tables go to stdout, logs to stderr.
Quiet by default (warnings only); ``-v`` adds the service's start-up lines and INFO logs."""

from __future__ import annotations

import functools
import logging

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from webhook_app.intake.alerts import UNSTORABLE_FILTER, unstorable
from webhook_app.journal import STATES, iso_time

COLUMNS = (
    "id",
    "received (UTC)",
    "state",
    "algoId",
    "action",
    "amount",
    "tries",
    "okx",
    "trader id",
    "order",
    "detail",
)


def register(app: Flask) -> None:
    app.cli.add_command(alerts_command)
    app.cli.add_command(db_group)
    app.cli.add_command(check_command)
    app.cli.add_command(__import__("webhook_app.surfaces.cli_lockouts", fromlist=["lockouts_group"]).lockouts_group)


def verbose(command):
    """A command's -v/--verbose: the start-up lines (INFO) first, and INFO logs while it runs;
    without it, warnings only. Under ``with_appcontext``: it needs the app."""

    @click.option("-v", "--verbose", "verbose_", is_flag=True, help="Also print the start-up lines and INFO logs.")
    @functools.wraps(command)
    def run(*args, verbose_: bool, **kwargs):
        if verbose_:
            logging.getLogger("webhook_app").setLevel(logging.INFO)
        announce = current_app.extensions.pop("webhook.announce", None)  # once, even for a group and its command
        if announce is not None:
            announce()  # at the level just set: the warnings (dry run...) always, the rest with -v
        return command(*args, **kwargs)

    return run


@click.command("check")
@with_appcontext
@verbose
def check_command() -> None:
    """Is the service ready? OKX reachable and the clock, the API key (region, demo, IP, Trade
    permission), each bot in ALLOWED_ALGO_IDS, the journal. One line each; exit 0 only if all pass."""
    results = current_app.extensions["webhook"].readiness.refresh()
    for check in results:
        click.echo(check.line())
    if not all(check.ok for check in results):
        raise SystemExit(1)


@click.group("db")
def db_group() -> None:
    """The journal's schema."""


@db_group.command("upgrade")
@with_appcontext
@verbose
def db_upgrade_command() -> None:
    """Bring the journal's schema up to date (the Procfile's release phase runs this).

    Opening the journal migrates it, under a lock that instances starting at the same time
    respect; this command does only that, and says what it did: "migrated 7 → 8", or
    "already at 8" when the schema was up to date when it looked."""
    journal = current_app.extensions["webhook"].journal
    found, now = journal.found_version, journal.schema_version()
    click.echo(f"migrated {found} → {now}" if found < now else f"already at {now}")


@click.command("alerts")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--state", type=click.Choice(STATES), help="only alerts in this state")
@click.option("--trader-id", help='only alerts with this "id" (the one in the alert message)')
@click.option("--account", metavar="NAME", help="only alerts for this OKX account (a name in OKX_ACCOUNTS)")
@with_appcontext
@verbose
def alerts_command(limit: int, state: str | None, trader_id: str | None, account: str | None) -> None:
    """Recent alerts, newest first: state, bot, action, amount (margin, or a sub-order's contracts),
    what the order asks in words, OKX's code and message, in full (and each alert's account, when
    the service has several)."""
    services = current_app.extensions["webhook"]
    names = [known.name for known in services.config.okx.accounts]
    account = account.lower() if account is not None else None  # names are case-insensitive
    if account is not None and account not in names:  # a misspelt name must not read as "no alerts"
        raise click.BadParameter(f"must be one of {', '.join(names)}", param_hint="--account")
    if trader_id is not None and unstorable(trader_id):  # the journal could not even compare it
        raise click.BadParameter(UNSTORABLE_FILTER, param_hint="--trader-id")
    records = services.journal.recent(limit, state, trader_id=trader_id, account=account)
    if not records:
        click.echo(
            "no alerts journaled"
            + (f" in state {state}" if state else "")
            + (f" with id {trader_id!r}" if trader_id else "")
            + (f" for account {account}" if account else "")
        )
        return
    several = len(names) > 1  # one account: the table stays as it was, without the column
    columns = (*COLUMNS[:2], "account", *COLUMNS[2:]) if several else COLUMNS
    rows = [
        (
            str(r.id),
            iso_time(r.received_at),
            *((r.account,) if several else ()),
            r.state,
            r.algo_id,
            r.action,
            r.amount,
            str(r.attempts),
            r.okx_code or "-",
            r.trader_id or "-",
            r.summary,
            " ".join(part for part in (r.okx_msg, r.detail) if part) or "-",
        )
        for r in records
    ]
    # Every column as wide as its widest cell; the last one (detail) is never cut.
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns) - 1)]
    for row in [columns, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
