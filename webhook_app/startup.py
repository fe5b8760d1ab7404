"""What a start says and how it stops: the check before gunicorn binds (``preflight``), the one way a
bad configuration ends a start or a command (``refuse``), and the start-up log (``announce``)."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn
from urllib.parse import unquote, urlsplit

import flask.cli

from webhook_app.config import Config, ConfigError
from webhook_app.journal.postgres.budget import COMMAND_CONNECTIONS
from webhook_app.logs import scrub_secrets, scrubber
from webhook_app.wiring import open_configured_journal

OKX_LIMIT, OKX_WINDOW = 20, 2.0  # OKX's documented limit for the signal bots' margin-balance endpoint


def read_dotenv() -> None:
    """The one rule for a ``.env`` file, for every entry point (gunicorn here and in wsgi.py, the
    ``flask`` commands through Flask itself): Flask's own reading. ``.env`` (and ``.flaskenv``)
    in the folder the command starts in or the nearest one above it; a variable already set in the
    environment wins; ``FLASK_SKIP_DOTENV=1`` reads none. Without it gunicorn ran on what the
    environment said while ``flask check`` judged the ``.env``'s settings."""
    if flask.cli.get_load_dotenv():
        flask.cli.load_dotenv()


def preflight(environ=None) -> Config:
    """Check the whole configuration before gunicorn binds its port (gunicorn.conf.py), and bring
    the journal's schema up to date. On a problem: every one on its own line on stderr, no
    traceback, exit status 2. Without ``environ``, the environment with the ``.env`` file's."""
    if environ is None:
        read_dotenv()
    try:
        config = Config.from_env(environ, generate_secret=False)  # the worker generates it, and says so
        scrub_secrets(config.secret_values)  # before the journal opens: psycopg's pool logs its own errors
        # A flask command's budget: this process only migrates, and closes before the worker opens its own.
        open_configured_journal(config, COMMAND_CONNECTIONS).close()
    except ConfigError as exc:
        refuse(exc, "the service did not start")
    return config


def refuse(exc: ConfigError, outcome: str, status: int = 2) -> NoReturn:
    """Every problem on its own line on stderr, a summary, exit status 2: never a traceback.
    (gunicorn's worker exits with 3, "failed to boot", so that the master stops too.)"""
    for variable, problem in exc.problems:
        print(f"configuration error: {variable}: {scrubber.scrub(problem)}", file=sys.stderr, flush=True)
    print(f"{outcome}: fix the {len(exc.problems)} setting(s) above", file=sys.stderr, flush=True)
    raise SystemExit(status) from None


def journal_description(url: str) -> str:
    """Which journal, for the start-up log: the SQLite file, or PostgreSQL's host and database;
    never a password (nor the user, nor the URL's options)."""
    if url.startswith("sqlite:///"):
        return f"SQLite at {os.path.abspath(url[len('sqlite:///') :])}"
    try:
        parts = urlsplit(url)
        where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    except ValueError:
        return "PostgreSQL (unparseable URL)"
    database = unquote(parts.path.lstrip("/")) or "(the user's default)"
    return f"PostgreSQL, database {database} on {where}"


def announce(config: Config, log: logging.Logger, protection: str = "", warnings: tuple[str, ...] = ()) -> None:
    """The start-up lines: the mode and each account, the journal and ``warnings`` about it (a
    connection budget that cannot fit), the operator page, the protection in force
    (``protection``, its description), the dry-run secret."""
    if config.okx.dry_run:
        reason = "DRY_RUN=1" if config.okx.has_credentials else "no OKX credentials are set"
        log.warning("DRY RUN (%s): alerts are checked, journaled and answered, but NOTHING is sent to OKX", reason)
        if len(config.okx.accounts) > 1:
            log.info("accounts (OKX_ACCOUNTS): %s, each in dry-run", ", ".join(a.name for a in config.okx.accounts))
    else:
        several = len(config.okx.accounts) > 1
        for account in config.okx.accounts:
            log.info(
                "live: %sforwarding to %s%s, at most %d requests per %g s",
                f"account {account.name}: " if several else "",
                account.base_url,
                " (demo trading)" if account.demo else "",
                account.rate_limit,
                config.okx.rate_window,
            )
    for account in config.okx.accounts:
        if account.rate_limit / config.okx.rate_window > OKX_LIMIT / OKX_WINDOW:
            log.warning(
                "%s=%d (per %g s) is above OKX's documented limit of %d requests per %g s per account: "
                "OKX refuses the excess with 50011 and those alerts wait and are sent again, later",
                account.variable("rate_limit"),
                account.rate_limit,
                config.okx.rate_window,
                OKX_LIMIT,
                OKX_WINDOW,
            )
    log.info("journal: %s", journal_description(config.database_url))
    log.info("tls: %s", config.tls.describe())
    for warning in warnings:
        log.warning("%s", warning)
    if config.admin_token:
        log.info("operator page: on at /admin (ADMIN_TOKEN is set)")
    else:
        log.info("operator page: off (ADMIN_TOKEN is not set; set it to turn the page on)")
    if config.webhook.source == "generated":
        # Printed, not logged: the log scrubber would (rightly) hide it. Dry-run only.
        print(
            f"Generated a webhook secret for this dry run (kept in {config.webhook.file}): "
            f'{config.webhook.secret}\nPut it in your alert message as "secret".',
            flush=True,
        )
    elif config.webhook.source == "stored":
        log.info("using the dry-run webhook secret generated earlier (%s)", config.webhook.file)
    if protection:
        log.info("%s", protection)
