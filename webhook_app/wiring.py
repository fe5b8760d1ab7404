"""The service's parts, built from a ``Config``: one small function per part, called by
``build_services`` in the order they depend on each other. Nothing starts here: ``Services.start``."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping

from webhook_app.clock import SYSTEM_CLOCK, Clock
from webhook_app.config import Config, ConfigError, OkxAccount
from webhook_app.intake.pipeline import Intake
from webhook_app.intake.protection import Protection
from webhook_app.intake.refusals import RefusalLog
from webhook_app.journal import Journal, JournalUnavailable, NoConnectionRoom, open_journal
from webhook_app.logs import scrubber
from webhook_app.okx.actions import ENDPOINTS, MARGIN_BALANCE, endpoint_name
from webhook_app.okx.client import OkxClient
from webhook_app.okx.instruments import InstrumentReader
from webhook_app.surfaces.context import Services
from webhook_app.workers.bots import READ_WINDOW, READS_PER_WINDOW, BotWatch, BotWatches
from webhook_app.workers.delivery import Delivery, Lane
from webhook_app.workers.investigation import Investigator
from webhook_app.workers.membership import Membership
from webhook_app.workers.notify import Notifier
from webhook_app.workers.outcomes import OutcomePolicy
from webhook_app.workers.pacing import MemoryPacer, Pacer
from webhook_app.workers.readiness import BotReads, Readiness


def build_services(
    config: Config,
    clock: Callable[[], float] | None = None,
    local_clock: Clock = SYSTEM_CLOCK,
    max_connections: int | None = None,
) -> Services:
    """Every part of the service, wired, none started. ``clock``: when alerts are received (None:
    the journal's); ``local_clock``: this host's elapsed time (see ``create_app``);
    ``max_connections``: the process's database connections (None: a web instance's budget)."""
    journal = open_configured_journal(config, max_connections)
    if config.webhook.source == "database":
        config = _secret_from_journal(config, journal)
        scrubber.add(config.secret_values)
    notifier = _notifier(config, journal)
    membership = Membership(journal, clock=local_clock)
    clients = {account.name: _client(config, account) for account in config.okx.accounts}
    bots = _bot_watches(config, clients, journal, membership, local_clock)
    investigator = _investigator(config, journal, bots, notifier, local_clock) if bots else None
    delivery = _delivery(config, journal, clients, bots, membership, investigator, notifier, local_clock)
    protection = Protection(config, lockout_store=journal.lockout_store())
    return Services(
        config=config,
        journal=journal,
        delivery=delivery,
        protection=protection,
        readiness=_readiness(config, clients, journal, bots, membership, notifier, local_clock),
        notifier=notifier,
        refusals=RefusalLog(journal, config.refusals.per_minute, config.refusals.retention_days),
        intake=Intake(
            config,
            protection,
            journal,
            delivery,
            clock=clock,
            bots=bots or None,
            notifier=notifier,
            instruments=_instruments(config, local_clock),
        ),
        bots=bots or None,
        investigator=investigator,
    )


def open_configured_journal(config: Config, max_connections: int | None = None) -> Journal:
    """The journal at DATABASE_URL, holding at most ``max_connections`` (None: a web instance's
    DATABASE_MAX_CONNECTIONS). Unreachable, it is a problem with that setting; refused for want of
    room, with the connection budget's."""
    try:
        return open_journal(
            config.database_url,
            max_connections or config.database_max_connections,
            instance_budget=config.database_max_connections,
        )
    except NoConnectionRoom as exc:
        raise ConfigError("DATABASE_MAX_CONNECTIONS", str(exc)) from None
    except JournalUnavailable as exc:
        raise ConfigError("DATABASE_URL", str(exc)) from None


def _secret_from_journal(config: Config, journal: Journal) -> Config:
    """Dry-run on PostgreSQL: the generated secret lives in the database, so it survives a
    wiped disk and every instance accepts the same one."""
    made = secrets.token_urlsafe(24)
    value = journal.stored_secret("webhook_secret", lambda: made)
    return config.replace(
        "webhook",
        secret=value,
        source="generated" if value == made else "stored",
        file="the database (table settings)",
    )


def _notifier(config: Config, journal: Journal) -> Notifier:
    return Notifier(
        config.notify.urls,
        config.notify.events,
        scrub=scrubber.scrub,
        show_account=len(config.okx.accounts) > 1,
        journal=journal,  # records the alerts each delivered message told
        alert_page=config.web.alert_page if config.admin_token else None,  # no token: no page to link to
    )


def _client(config: Config, account: OkxAccount) -> OkxClient:
    return OkxClient(
        account.base_url,
        account.api_key,
        account.api_secret,
        account.passphrase,
        demo=account.demo,
        dry_run=config.okx.dry_run,
        connect_timeout=config.okx.connect_timeout,
        read_timeout=config.okx.read_timeout,
        pool_size=min(max(account.rate_limit, 4), 32),
        settings_prefix=account.variable("api_key").removesuffix("API_KEY"),
    )


def _instruments(config: Config, clock: Clock) -> dict[str, InstrumentReader]:
    """Each account's reader of OKX's public list of swaps, one per OKX site (accounts on one site
    share its figures). Read in dry-run too: a public read, which moves nothing."""
    readers: dict[str, InstrumentReader] = {}
    timeout = (config.okx.connect_timeout, min(config.okx.read_timeout, 1.5))  # inside the reply's 2.5 s
    for account in config.okx.accounts:
        if account.base_url not in readers:
            readers[account.base_url] = InstrumentReader(account.base_url, timeout=timeout, clock=clock)
    return {account.name: readers[account.base_url] for account in config.okx.accounts}


def _bot_watches(
    config: Config, clients: Mapping[str, OkxClient], journal: Journal, membership: Membership, clock: Clock
) -> BotWatches:
    """Each account's bots as OKX reports them; none in dry-run."""
    bots = BotWatches()
    if config.okx.dry_run:
        return bots
    for account in config.okx.accounts:
        bots[account.name] = BotWatch(
            clients[account.name],
            instance=membership.instance,
            known_ids=lambda account=account: _known_bots(account, journal),
            refresh_every=config.unknowns.bot_refresh,
            max_age=config.unknowns.bot_max_age,
            read_timeout=min(2.0, config.okx.read_timeout),
            # Each read endpoint's budget, shared by the instances like the margin calls' (a separate ledger).
            pacer_for=lambda path, key=account.api_key: journal.pacer(key + path, READS_PER_WINDOW, READ_WINDOW),
            clock=clock,
        )
    return bots


def _known_bots(account: OkxAccount, journal: Journal) -> list[str]:
    """An account's bots to show and watch: its allowlist's, then those of its latest alerts."""
    try:
        recent = [record.algo_id for record in journal.recent(limit=200, account=account.name)]
    except JournalUnavailable:
        recent = []
    return list(dict.fromkeys([*sorted(account.algo_ids), *recent]))


def _lane(config: Config, account: OkxAccount, client: OkxClient, watch: BotWatch | None, journal, clock) -> Lane:
    """An account's way to OKX: its client, its rate budgets (None in dry-run) and its bots' reads."""
    if watch is None:
        return Lane(client, None, None, None)
    # One budget per endpoint and account (OKX counts per endpoint and User ID): shared through the
    # journal where instances share it. margin-balance's ledger keeps its name of old (the key alone),
    # so a release running beside this one during a deploy counts the same slots.
    limit, window = account.rate_limit, config.okx.rate_window

    def budget(key: str) -> Pacer:
        return journal.pacer(key, limit, window) or MemoryPacer(limit, window, clock=clock)

    endpoints = {ENDPOINTS[action] for action in allowed_actions(config)} - {MARGIN_BALANCE}
    budgets = {endpoint_name(path): budget(account.api_key + path) for path in sorted(endpoints)}
    return Lane(client, budget(account.api_key), watch.snapshot_now, watch.details_pacer, budgets)


def allowed_actions(config: Config) -> tuple[str, ...]:
    """The actions alerts may ask for (``ALLOWED_ACTIONS``), in the catalogue's order."""
    return tuple(action for action in ENDPOINTS if action in config.protection.allowed_actions)


def _investigator(config: Config, journal: Journal, bots: BotWatches, notifier: Notifier, clock: Clock):
    return Investigator(
        journal,
        bots,
        settle=config.unknowns.settle,
        recheck_after=config.unknowns.recheck,
        auto=config.unknowns.resolve == "auto",
        on_done=notifier.alert_finished,
        on_withdrawn=notifier.proposal_withdrawn,
        tell_untold=notifier.tell_untold,
        sweep_every=config.unknowns.sweep,
        clock=clock,
    )


def _delivery(config, journal, clients, bots, membership, investigator, notifier, clock) -> Delivery:
    def finished(record):  # an unknown one is told once OKX's records have been read, with the proposal
        if investigator is not None and record.state == "unknown":
            investigator.submit(record)
        else:
            notifier.alert_finished(record)

    def sync_clocks() -> float:  # OKX said 50102: every account's client reads OKX's time again
        return [client.sync_clock() for client in clients.values()][0]

    lanes = {
        account.name: _lane(config, account, clients[account.name], bots.get(account.name), journal, clock)
        for account in config.okx.accounts
    }
    return Delivery(
        journal,
        lanes,
        OutcomePolicy(config.delivery.max_attempts, sync_clock=sync_clocks),
        membership,
        # Never fewer senders than rate slots: a claimed alert must start at once,
        # or a stop could find it claimed ("sending") but not sent.
        senders=max(sum(account.rate_limit for account in config.okx.accounts), 4),
        retention=config.delivery.retention_days * 86400,
        on_final=finished,
        on_late=notifier.late_answer,
        clock=clock,
    )


def _readiness(config, clients, journal, bots: BotWatches, membership, notifier, clock) -> Readiness:
    # Readiness reads the bots on the ledger the reads before sends use (its share, never beside it).
    reads = BotReads({name: watch.details_pacer for name, watch in bots.items()}, membership.instance, clock=clock)
    return Readiness(config, clients, journal, on_change=notifier.readiness_changed, reads=reads)
