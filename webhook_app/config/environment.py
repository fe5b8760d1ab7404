"""Reading the environment into a ``Config``: one reader per section, in a fixed order (problems
are named in the order read), each value parsed by ``values`` and every problem collected by the
``Reader``; the rules between variables (all credentials or none, the secret a live service
needs...) sit with the section they concern. Reading writes nothing: ``with_dry_run_secret``
keeps the generated dry-run secret."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from webhook_app.config import values
from webhook_app.config.accounts import default_credentials, listed_accounts, unlisted_account_variables
from webhook_app.config.reader import ConfigError, Reader
from webhook_app.config.sections import (
    DEFAULT_ACCOUNT,
    Config,
    DeliverySettings,
    NotifySettings,
    OkxAccount,
    OkxSettings,
    ProtectionSettings,
    RefusalSettings,
    UnknownSettings,
    WebhookSecrets,
    WebSettings,
)
from webhook_app.config.tls import read_tls
from webhook_app.journal.postgres.budget import DEFAULT_CONNECTIONS, MIN_CONNECTIONS
from webhook_app.okx.actions import DEFAULT_ALLOWED_ACTIONS
from webhook_app.workers.notify import DEFAULT_EVENTS

MIN_SECRET_LENGTH = 16
MIN_DEDUP_WINDOW = 20  # TradingView resends a 5xx after 5 s, up to 3 times
_TOO_WEAK = f"is too weak: use at least {MIN_SECRET_LENGTH} characters"


def read_env(environ: Mapping[str, str] | None = None, instance_path: Path | None = None) -> Config:
    """Parse every variable, writing nothing; raise one ``ConfigError`` naming every bad one, in
    the order read."""
    reader = Reader(os.environ if environ is None else environ)
    names = [name.lower() for name in reader.parsed("OKX_ACCOUNTS", values.items, []) or []]  # case-insensitive
    accounts = listed_accounts(reader, "OKX_ACCOUNTS", names) if names else None
    credentials = None if names else default_credentials(reader)
    unlisted_account_variables(reader, names)
    live = any(a.has_credentials for a in accounts) if names else all(credentials)
    dry_run = bool(reader.flag("DRY_RUN")) or not live
    database_url = reader.parsed("DATABASE_URL", values.database_url, "sqlite:///instance/alerts.db") or ""
    max_connections = reader.whole("DATABASE_MAX_CONNECTIONS", DEFAULT_CONNECTIONS, low=MIN_CONNECTIONS, high=1000)
    webhook = _webhook_secrets(reader, dry_run, database_url, instance_path)
    admin_token = _admin_token(reader)
    allowed_ids = reader.parsed("ALLOWED_ALGO_IDS", values.algo_ids, frozenset())
    okx = _okx(reader, accounts if names else (_default_account(reader, credentials, allowed_ids),), dry_run)
    delivery = _delivery(reader)
    web = _web(reader)
    config = Config(
        webhook=webhook,
        okx=okx,
        database_url=database_url,
        database_max_connections=max_connections,
        admin_token=admin_token,
        delivery=delivery,
        web=web,
        protection=_protection(reader, delivery, allowed_ids, okx.accounts),
        refusals=_refusals(reader),
        unknowns=_unknowns(reader),
        notify=_notify(reader),
        tls=read_tls(reader, web),
    )
    reader.finish()  # raises ConfigError listing every problem; past it no value is None by mistake
    return config


def _webhook_secrets(reader: Reader, dry_run: bool, database_url: str, instance_path: Path | None):
    secret, source, secret_file = reader.text("WEBHOOK_SECRET"), "environment", ""
    if not secret:
        if not dry_run:
            reader.bad("WEBHOOK_SECRET", "is required when OKX credentials are set")
        elif not database_url.startswith("sqlite:///"):
            source = "database"  # generated into the journal at start: a PaaS disk does not keep it
        else:  # generated into this file by with_dry_run_secret, not here
            folder = Path(instance_path or Path(database_url[len("sqlite:///") :]).parent)
            source, secret_file = "generated", str(folder / "webhook_secret")
    elif len(secret) < MIN_SECRET_LENGTH:
        reader.bad("WEBHOOK_SECRET", _TOO_WEAK)
    previous = reader.text("WEBHOOK_SECRET_PREVIOUS")
    if previous and len(previous) < MIN_SECRET_LENGTH:
        reader.bad("WEBHOOK_SECRET_PREVIOUS", _TOO_WEAK)
    elif previous and source != "environment":
        reader.bad("WEBHOOK_SECRET_PREVIOUS", "needs WEBHOOK_SECRET to be set too")
    return WebhookSecrets(secret, previous, source, secret_file)


def _admin_token(reader: Reader) -> str:
    token = reader.text("ADMIN_TOKEN")
    if token and len(token) < MIN_SECRET_LENGTH:
        reader.bad("ADMIN_TOKEN", _TOO_WEAK)
    return token


def _default_account(reader: Reader, credentials: tuple[str, str, str], algo_ids) -> OkxAccount:
    """The one account of OKX_API_KEY & co. (without OKX_ACCOUNTS); its bots are ALLOWED_ALGO_IDS."""
    return OkxAccount(
        DEFAULT_ACCOUNT,
        *credentials,
        base_url=reader.parsed("OKX_BASE_URL", values.base_url, "https://www.okx.com"),
        demo=reader.flag("OKX_DEMO"),
        rate_limit=reader.whole("OKX_RATE_LIMIT", 20, low=1, high=10_000),
        algo_ids=algo_ids,
    )


def _okx(reader: Reader, accounts: tuple[OkxAccount, ...], dry_run: bool) -> OkxSettings:
    return OkxSettings(
        accounts=accounts,
        dry_run=dry_run,
        connect_timeout=reader.number("OKX_CONNECT_TIMEOUT", 1.0, 0.05, 10),
        read_timeout=reader.number("OKX_READ_TIMEOUT", 10.0, 0.05, 60),
    )


def _delivery(reader: Reader) -> DeliverySettings:
    return DeliverySettings(
        reply_deadline=reader.number("REPLY_DEADLINE", 2.5, 0.1, 2.9),
        max_attempts=reader.whole("OKX_MAX_ATTEMPTS", 4, low=1, high=10),
        max_lag=reader.whole("MAX_LAG", 60, low=1, high=3600),
        retention_days=reader.number("RETENTION_DAYS", 30.0, 1, 3650),
    )


def _web(reader: Reader) -> WebSettings:
    # Behind Heroku's router every request comes from the router; it appends the client's
    # address to X-Forwarded-For. Trusting that one hop is the only safe default there.
    platform = "Heroku" if reader.text("DYNO") else ""
    return WebSettings(
        port=reader.whole("PORT", 8000, low=1, high=65535),
        trusted_proxy_hops=reader.whole("TRUSTED_PROXY_HOPS", 1 if platform else 0, low=0, high=10),
        platform=platform,
        public_url=reader.parsed("PUBLIC_URL", values.public_url, _render_url(reader)),
    )


def _render_url(reader: Reader) -> str:
    """Render sets RENDER_EXTERNAL_URL to the service's address: PUBLIC_URL's default there."""
    try:
        return values.public_url(reader.text("RENDER_EXTERNAL_URL")) if reader.text("RENDER_EXTERNAL_URL") else ""
    except values.Invalid:
        return ""


def _protection(reader: Reader, delivery: DeliverySettings, allowed_ids, accounts) -> ProtectionSettings:
    dedup_window = reader.number("DEDUP_WINDOW", 60.0, MIN_DEDUP_WINDOW, 86_400)
    id_window = reader.number("ID_WINDOW", 86_400.0, 60, 30 * 86_400)
    retention = delivery.retention_days
    if id_window is not None and retention is not None and id_window > retention * 86_400:
        reader.bad(
            "ID_WINDOW",
            "must not be longer than RETENTION_DAYS: an id must stay in the journal for as long as it is taken",
        )
    return ProtectionSettings(
        dedup_window=dedup_window,
        id_window=id_window,
        require_timestamp=reader.flag("REQUIRE_TIMESTAMP"),
        allowed_sources=reader.parsed("ALLOWED_SOURCES", values.sources, ()),
        # With several accounts, every account's bots are allowed too: the allowlist check stays one.
        allowed_algo_ids=(allowed_ids or frozenset()).union(*(account.algo_ids or () for account in accounts)),
        max_amount=reader.parsed("MAX_AMOUNT", values.amount, None),
        max_amount_per_day=reader.parsed("MAX_AMOUNT_PER_DAY", values.amount, None),
        allowed_actions=reader.parsed("ALLOWED_ACTIONS", values.actions, frozenset(DEFAULT_ALLOWED_ACTIONS)),
        max_size=reader.parsed("MAX_SIZE", values.amount, None),
        lockout_threshold=reader.whole("LOCKOUT_THRESHOLD", 10, low=1, high=10_000),
        lockout_window=reader.number("LOCKOUT_WINDOW", 300.0, 1, 86_400),
        lockout_seconds=reader.number("LOCKOUT_SECONDS", 900.0, 1, 86_400),
    )


def _refusals(reader: Reader) -> RefusalSettings:
    return RefusalSettings(
        per_minute=reader.whole("REFUSED_PER_MINUTE", 60, low=1, high=10_000),
        retention_days=reader.number("REFUSED_RETENTION_DAYS", 7.0, 1, 365),
    )


def _unknowns(reader: Reader) -> UnknownSettings:
    return UnknownSettings(
        resolve=reader.parsed("RESOLVE_UNKNOWN", values.choice, "manual", options=("manual", "auto")),
        settle=reader.number("UNKNOWN_SETTLE_SECONDS", 3.0, 0, 60),
        recheck=reader.number("UNKNOWN_RECHECK_SECONDS", 30.0, 1, 600),
        sweep=reader.number("UNKNOWN_SWEEP_SECONDS", 30.0, 1, 600),
        bot_refresh=reader.number("BOT_REFRESH_SECONDS", 30.0, 1, 3600),
        bot_max_age=reader.number("BOT_STATE_MAX_AGE", 90.0, 1, 3600),
    )


def _notify(reader: Reader) -> NotifySettings:
    return NotifySettings(
        urls=reader.parsed("NOTIFY_URLS", values.notify_urls, ()),
        events=reader.parsed("NOTIFY_ON", values.notify_on, DEFAULT_EVENTS),
    )


def with_dry_run_secret(config: Config, create: bool = True) -> Config:
    """``config`` with the dry-run webhook secret kept in its file (``Config.with_dry_run_secret``)."""
    if config.webhook.secret or not config.webhook.file:
        return config
    path = Path(config.webhook.file)
    try:
        secret, source = generated_secret(path, create=create)
    except OSError as exc:
        raise ConfigError(
            "WEBHOOK_SECRET", f"is not set and no secret could be generated in {path.parent}: {exc.strerror}"
        ) from None
    return config.replace("webhook", secret=secret, source=source)


def generated_secret(path: Path, create: bool = True) -> tuple[str, str]:
    """A random webhook secret for dry-run, kept in ``path`` so restarts and workers agree.
    Returns (secret, "generated" | "stored"), or ("", "generated") when absent and not ``create``."""
    try:
        return path.read_text().strip(), "stored"
    except FileNotFoundError:
        if not create:
            return "", "generated"
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its secret
        return path.read_text().strip(), "stored"
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value, "generated"
