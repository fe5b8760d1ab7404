"""TradingView alerts -> OKX signal-bot margin changes. ``create_app`` wires the parts."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import sys
from collections.abc import Callable
from typing import NoReturn
from urllib.parse import unquote, urlsplit

from flask import Flask

from webhook_app.clock import SYSTEM_CLOCK, Clock
from webhook_app.config import Config, ConfigError, OkxAccount
from webhook_app.intake.pipeline import Intake
from webhook_app.intake.protection import Protection
from webhook_app.intake.refusals import RefusalLog
from webhook_app.journal import Journal, JournalUnavailable, open_journal
from webhook_app.logs import configure_logging, scrub_secrets, scrubber
from webhook_app.okx.client import OkxClient
from webhook_app.workers.bots import READ_WINDOW, READS_PER_WINDOW, BotWatch, BotWatches
from webhook_app.workers.delivery import Delivery, Lane
from webhook_app.workers.investigation import Investigator
from webhook_app.workers.membership import Membership
from webhook_app.workers.notify import Notifier
from webhook_app.workers.outcomes import OutcomePolicy
from webhook_app.workers.pacing import MemoryPacer
from webhook_app.workers.readiness import BotReads, Readiness

OKX_LIMIT, OKX_WINDOW = 20, 2.0  # OKX's documented limit for the signal bots' margin-balance endpoint

__all__ = ["create_app", "start_delivery", "preflight", "Config", "ConfigError"]


def create_app(
    config: Config | None = None, *, clock: Callable[[], float] | None = None, local_clock: Clock = SYSTEM_CLOCK
) -> Flask:
    """Build the app from ``config``, or from the environment when none is given. ``clock``
    says when alerts are received (their age and duplicate windows, on one clock); tests move
    it forward. By default the journal's clock (the database's, with PostgreSQL): never this host's.
    ``local_clock``: this host's elapsed time (send deadlines, heartbeats, rate ledgers in memory,
    bot reads' ages, the investigator's waits); tests pass a ``clock.ManualClock``.

    The delivery thread starts on the first alert, or at once through ``start_delivery``
    (wsgi.py does that, so queued alerts left by a previous process are sent at start).

    Without ``config`` this is a ``flask --app webhook_app`` command (the release phase, ``check``,
    ``alerts``...): a bad setting or an unreachable journal stops it the way it stops gunicorn's
    start (one line per problem, exit status 2), and no dry-run webhook secret is made or
    printed: that is the web process's (wsgi.py passes its config)."""
    if config is not None:
        return _build_app(config, clock, local_clock)
    try:
        config = Config.from_env(generate_secret=False)
        scrub_secrets(config.secret_values)  # before the journal opens
        if not config.webhook_secret:  # dry run, none made yet; no command needs one: never make it here
            config = dataclasses.replace(config, webhook_secret_source="none")
        return _build_app(config, clock, local_clock)
    except ConfigError as exc:
        _refuse(exc, "the command did not run")


def _build_app(config: Config, clock: Callable[[], float] | None, local_clock: Clock = SYSTEM_CLOCK) -> Flask:
    log = configure_logging(config.secret_values)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False

    journal = _open_journal(config)
    if config.webhook_secret_source == "database":
        config = _secret_from_journal(config, journal)
        scrubber.add(config.secret_values)
    notifier = Notifier(
        config.notify_urls, config.notify_on, scrub=scrubber.scrub, show_account=len(config.accounts) > 1
    )
    membership = Membership(journal, clock=local_clock)
    clients = {account.name: _client(config, account) for account in config.accounts}
    lanes, bots = {}, BotWatches()
    for account in config.accounts:
        client, pacer, watch = clients[account.name], None, None
        if not config.dry_run:
            # One budget per account (OKX counts per User ID): shared through the journal where instances share it.
            limit, window = account.rate_limit, config.okx_rate_window
            pacer = journal.pacer(account.api_key, limit, window) or MemoryPacer(limit, window, clock=local_clock)
            watch = bots[account.name] = BotWatch(
                client,
                instance=membership.instance,
                known_ids=lambda account=account: _known_bots(account, journal),
                refresh_every=config.bot_refresh,
                max_age=config.bot_state_max_age,
                read_timeout=min(2.0, config.okx_read_timeout),
                # Each read endpoint's budget, shared by the instances like the margin calls' (a separate ledger).
                pacer_for=lambda path, key=account.api_key: journal.pacer(key + path, READS_PER_WINDOW, READ_WINDOW),
                clock=local_clock,
            )
        lanes[account.name] = Lane(
            client,
            pacer,
            watch.snapshot_now if watch is not None else None,
            watch.details_pacer if watch is not None else None,
        )
    investigator = None
    if bots:
        investigator = Investigator(
            journal,
            bots,
            settle=config.unknown_settle,
            recheck_after=config.unknown_recheck,
            auto=config.resolve_unknown == "auto",
            on_done=notifier.alert_finished,
            on_withdrawn=notifier.proposal_withdrawn,
            clock=local_clock,
        )

    def finished(record):  # an unknown one is told once OKX's records have been read, with the proposal
        if investigator is not None and record.state == "unknown":
            investigator.submit(record)
        else:
            notifier.alert_finished(record)

    def sync_clocks() -> float:  # OKX said 50102: every account's client reads OKX's time again
        return [client.sync_clock() for client in clients.values()][0]

    delivery = Delivery(
        journal,
        lanes,
        OutcomePolicy(config.okx_max_attempts, sync_clock=sync_clocks),
        membership,
        # Never fewer senders than rate slots: a claimed alert must start at once,
        # or a stop could find it claimed ("sending") but not sent.
        senders=max(sum(account.rate_limit for account in config.accounts), 4),
        retention=config.retention_days * 86400,
        on_final=finished,
        on_late=notifier.late_answer,
        clock=local_clock,
    )

    from webhook_app.surfaces import admin, cli, web  # imported here: they are the top of the one-way flow
    from webhook_app.surfaces.context import Services

    # Readiness reads the bots on the ledger the reads before sends use (its share, never beside it).
    reads = BotReads(
        {name: watch.details_pacer for name, watch in bots.items()}, membership.instance, clock=local_clock
    )
    readiness = Readiness(config, clients, journal, on_change=notifier.readiness_changed, reads=reads)
    protection = Protection(config, lockout_store=journal.lockout_store())
    app.extensions["webhook"] = Services(
        config=config,
        journal=journal,
        delivery=delivery,
        protection=protection,
        readiness=readiness,
        notifier=notifier,
        refusals=RefusalLog(journal, config.refused_per_minute, config.refused_retention_days),
        intake=Intake(config, protection, journal, delivery, clock=clock, bots=bots or None, notifier=notifier),
        bots=bots or None,
        investigator=investigator,
    )
    app.register_blueprint(web.bp)
    admin.install(app)
    cli.register(app)
    _announce(config, log)
    log.info("%s", protection.describe())
    return app


def _client(config: Config, account: OkxAccount) -> OkxClient:
    return OkxClient(
        account.base_url,
        account.api_key,
        account.api_secret,
        account.passphrase,
        demo=account.demo,
        dry_run=config.dry_run,
        connect_timeout=config.okx_connect_timeout,
        read_timeout=config.okx_read_timeout,
        pool_size=min(max(account.rate_limit, 4), 32),
        settings_prefix=account.variable("api_key").removesuffix("API_KEY"),
    )


def _known_bots(account: OkxAccount, journal: Journal) -> list[str]:
    """An account's bots to show and watch: its allowlist's, then those of its latest alerts."""
    try:
        recent = [record.algo_id for record in journal.recent(limit=200, account=account.name)]
    except JournalUnavailable:
        recent = []
    return list(dict.fromkeys([*sorted(account.algo_ids), *recent]))


def _open_journal(config: Config) -> Journal:
    try:
        return open_journal(config.database_url)
    except JournalUnavailable as exc:
        raise ConfigError("DATABASE_URL", str(exc)) from None


def _secret_from_journal(config: Config, journal: Journal) -> Config:
    """Dry-run on PostgreSQL: the generated secret lives in the database, so it survives a
    wiped disk and every instance accepts the same one."""
    made = secrets.token_urlsafe(24)
    value = journal.stored_secret("webhook_secret", lambda: made)
    return dataclasses.replace(
        config,
        webhook_secret=value,
        webhook_secret_source="generated" if value == made else "stored",
        webhook_secret_file="the database (table settings)",
    )


def preflight(environ=None) -> Config:
    """Check the whole configuration before gunicorn binds its port (gunicorn.conf.py), and bring
    the journal's schema up to date. On a problem: every one on its own line on stderr, no
    traceback, exit status 2."""
    try:
        config = Config.from_env(environ, generate_secret=False)  # the worker generates it, and says so
        scrub_secrets(config.secret_values)  # before the journal opens: psycopg's pool logs its own errors
        _open_journal(config).close()
    except ConfigError as exc:
        _refuse(exc, "the service did not start")
    return config


def _refuse(exc: ConfigError, outcome: str, status: int = 2) -> NoReturn:
    """Every problem on its own line on stderr, a summary, exit status 2: never a traceback.
    (gunicorn's worker exits with 3, "failed to boot", so that the master stops too.)"""
    for variable, problem in exc.problems:
        print(f"configuration error: {variable}: {scrubber.scrub(problem)}", file=sys.stderr, flush=True)
    print(f"{outcome}: fix the {len(exc.problems)} setting(s) above", file=sys.stderr, flush=True)
    raise SystemExit(status) from None


def start_delivery(app: Flask) -> Flask:
    """Start sending (queued alerts left by a previous process go now) and the readiness checks
    (in the background: they never hold up the start)."""
    services = app.extensions["webhook"]
    services.delivery.start()
    services.readiness.start()
    services.refusals.start()  # also prunes refused requests past their retention, hourly
    if services.bots is not None:
        services.bots.start()
        services.investigator.start()  # also picks up unknown alerts a dead instance left without a proposal
    return app


def _journal_description(url: str) -> str:
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


def _announce(config: Config, log: logging.Logger) -> None:
    if config.dry_run:
        reason = "DRY_RUN=1" if config.has_okx_credentials else "no OKX credentials are set"
        log.warning("DRY RUN (%s): alerts are checked, journaled and answered, but NOTHING is sent to OKX", reason)
        if len(config.accounts) > 1:
            log.info("accounts (OKX_ACCOUNTS): %s, each in dry-run", ", ".join(a.name for a in config.accounts))
    else:
        several = len(config.accounts) > 1
        for account in config.accounts:
            log.info(
                "live: %sforwarding to %s%s, at most %d requests per %g s",
                f"account {account.name}: " if several else "",
                account.base_url,
                " (demo trading)" if account.demo else "",
                account.rate_limit,
                config.okx_rate_window,
            )
    for account in config.accounts:
        if account.rate_limit / config.okx_rate_window > OKX_LIMIT / OKX_WINDOW:
            log.warning(
                "%s=%d (per %g s) is above OKX's documented limit of %d requests per %g s per account: "
                "OKX refuses the excess with 50011 and those alerts wait and are sent again, later",
                account.variable("rate_limit"),
                account.rate_limit,
                config.okx_rate_window,
                OKX_LIMIT,
                OKX_WINDOW,
            )
    log.info("journal: %s", _journal_description(config.database_url))
    if config.admin_token:
        log.info("operator page: on at /admin (ADMIN_TOKEN is set)")
    else:
        log.info("operator page: off (ADMIN_TOKEN is not set; set it to turn the page on)")
    if config.webhook_secret_source == "generated":
        # Printed, not logged: the log scrubber would (rightly) hide it. Dry-run only.
        print(
            f"Generated a webhook secret for this dry run (kept in {config.webhook_secret_file}): "
            f'{config.webhook_secret}\nPut it in your alert message as "secret".',
            flush=True,
        )
    elif config.webhook_secret_source == "stored":
        log.info("using the dry-run webhook secret generated earlier (%s)", config.webhook_secret_file)
