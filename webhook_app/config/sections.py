"""The settings, as frozen sections of one ``Config``: each part of the service reads its own
(``config.okx.accounts``, ``config.protection.max_amount``...). Built by ``environment.read_env``."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from webhook_app.config.values import database_passwords, redacted_url
from webhook_app.okx.actions import DEFAULT_ALLOWED_ACTIONS
from webhook_app.workers.notify import DEFAULT_EVENTS

# Several OKX accounts (OKX_ACCOUNTS=main,hedge): each name reads OKX_<NAME>_<suffix> for these
# fields. The name matches what an alert's "account" field accepts.
ACCOUNT_VARIABLE_SUFFIXES = {
    "api_key": "API_KEY",
    "api_secret": "API_SECRET",
    "passphrase": "API_PASSPHRASE",
    "base_url": "BASE_URL",
    "demo": "DEMO",
    "rate_limit": "RATE_LIMIT",
    "algo_ids": "ALGO_IDS",
}
DEFAULT_ACCOUNT = "default"  # the one account of OKX_API_KEY & co.


@dataclasses.dataclass(frozen=True)
class OkxAccount:
    """One OKX account the service sends with: its key, site, budget and bots."""

    name: str  # "default" for the single-account variables; else from OKX_ACCOUNTS
    api_key: str = ""
    api_secret: str = dataclasses.field(default="", repr=False)
    passphrase: str = dataclasses.field(default="", repr=False)
    base_url: str = "https://www.okx.com"
    demo: bool = False
    rate_limit: int = 20  # requests per 2 s to margin-balance for this account (OKX counts per User ID)
    algo_ids: frozenset = frozenset()  # OKX_<NAME>_ALGO_IDS: the bots of this account the service may touch

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key and self.api_secret and self.passphrase)

    def variable(self, field: str) -> str:
        """The environment variable behind ``field``, for messages: ``OKX_HEDGE_API_KEY``, or
        ``OKX_API_KEY`` (``ALLOWED_ALGO_IDS`` for algo_ids) for the default account."""
        if field not in ACCOUNT_VARIABLE_SUFFIXES:
            raise ValueError(f"{field!r} is not an account field read from the environment")
        if self.name == DEFAULT_ACCOUNT:
            return "ALLOWED_ALGO_IDS" if field == "algo_ids" else f"OKX_{ACCOUNT_VARIABLE_SUFFIXES[field]}"
        return f"OKX_{self.name.upper()}_{ACCOUNT_VARIABLE_SUFFIXES[field]}"


@dataclasses.dataclass(frozen=True)
class OkxSettings:
    """OKX: the accounts (the only holders of credentials), whether anything is sent, the requests' limits."""

    accounts: tuple[OkxAccount, ...] = (OkxAccount(DEFAULT_ACCOUNT),)  # OKX_ACCOUNTS' order
    dry_run: bool = True
    rate_window: float = 2.0  # each account's rate_limit counts requests per this many seconds (OKX: 2)
    connect_timeout: float = 1.0
    read_timeout: float = 10.0

    def account(self, name: str) -> OkxAccount | None:
        """The account called ``name``, or None."""
        return next((account for account in self.accounts if account.name == name), None)

    @property
    def has_credentials(self) -> bool:
        """Whether any account has a key (then the service is live unless DRY_RUN=1)."""
        return any(account.has_credentials for account in self.accounts)


@dataclasses.dataclass(frozen=True)
class WebhookSecrets:
    """The secrets an alert may carry."""

    secret: str = dataclasses.field(default="", repr=False)
    previous: str = dataclasses.field(default="", repr=False)  # still accepted while TradingView's alerts change
    # Where the secret came from: "environment", "generated" (now), "stored" (earlier), "database", "none".
    source: str = "environment"
    file: str = ""  # where a generated dry-run secret is kept

    @property
    def accepted(self) -> tuple[tuple[str, str], ...]:
        """(variable name, value) of each webhook secret accepted now."""
        pairs = (("WEBHOOK_SECRET", self.secret), ("WEBHOOK_SECRET_PREVIOUS", self.previous))
        return tuple((name, value) for name, value in pairs if value)


@dataclasses.dataclass(frozen=True)
class DeliverySettings:
    """How long an alert's reply, its sending and its record last."""

    reply_deadline: float = 2.5  # TradingView cancels at 3 s
    max_attempts: int = 4
    max_lag: int = 60  # seconds an alert may wait before it is too old to send
    retention_days: float = 30.0


@dataclasses.dataclass(frozen=True)
class WebSettings:
    port: int = 8000
    max_body_bytes: int = 64 * 1024
    trusted_proxy_hops: int = 0
    platform: str = ""  # the PaaS recognised from its environment ("Heroku"), for the startup log
    public_url: str = ""  # PUBLIC_URL: the service's address, for links in notifications and replies

    def alert_page(self, alert_id: int) -> str:
        """The address of an alert's page on the operator page: absolute with PUBLIC_URL."""
        return f"{self.public_url}/admin/alerts/{alert_id}"


# TradingView's client certificate's subject: its organisation and common name (TradingView's support pages).
TRADINGVIEW_SUBJECT = (("O", "TradingView, Inc."), ("CN", "TradingView Webhooks"))


@dataclasses.dataclass(frozen=True)
class TlsSettings:
    """HTTPS served by gunicorn itself, and whether TradingView's client certificate is required of
    a webhook: checked here where TLS ends here, else vouched for by a trusted proxy in front."""

    cert_file: str = ""  # TLS_CERT_FILE, TLS_KEY_FILE: paths (the key's content is never read into settings)
    key_file: str = ""
    client_cert: str = "off"  # TRADINGVIEW_CLIENT_CERT: "off" or "require"
    ca_file: str = ""  # the CAs a client certificate must chain to (certifi's public ones by default)
    subject: tuple = TRADINGVIEW_SUBJECT  # (attribute, value) pairs the certificate's subject must hold

    @property
    def serves_https(self) -> bool:
        return bool(self.cert_file)

    @property
    def checks_client_cert(self) -> bool:
        return self.client_cert == "require"

    @property
    def checked_where(self) -> str:
        """Where TradingView's client certificate is checked: "off", "tls" (here) or "proxy"."""
        if not self.checks_client_cert:
            return "off"
        return "tls" if self.serves_https else "proxy"

    @property
    def subject_text(self) -> str:
        """The subject required, as TRADINGVIEW_CERT_SUBJECT writes it (commas in values escaped)."""
        return ",".join(kind + "=" + value.replace(",", "\\,") for kind, value in self.subject)

    def describe(self) -> str:
        """Whether and where client certificates are checked, for the startup log, the checks and the page."""
        if not self.checks_client_cert:
            served = "HTTPS served here; " if self.serves_https else ""
            return f"{served}client certificates are not checked (TRADINGVIEW_CLIENT_CERT=off)"
        where = (
            f"at TLS here, chaining to {self.ca_file}"
            if self.serves_https
            else "by the trusted proxy in front (its X-SSL-Client-Verify and X-SSL-Client-S-DN)"
        )
        return f"client certificates are checked on /webhook {where}; subject {self.subject_text}"


@dataclasses.dataclass(frozen=True)
class ProtectionSettings:
    """What an alert must pass besides its secret (all optional; off or permissive by default)."""

    dedup_window: float = 60.0  # at least MIN_DEDUP_WINDOW: TradingView resends for 15 s
    id_window: float = 86_400.0  # seconds a trader's own id stays taken, per bot
    require_timestamp: bool = False
    allowed_sources: tuple = ()  # ip_network objects; "tradingview" expands to its four senders
    allowed_algo_ids: frozenset = frozenset()  # empty: any bot; ALLOWED_ALGO_IDS and every account's
    max_amount: Decimal | None = None  # add and reduce only, as MAX_AMOUNT_PER_DAY
    max_amount_per_day: Decimal | None = None
    allowed_actions: frozenset = frozenset(DEFAULT_ALLOWED_ACTIONS)  # ALLOWED_ACTIONS: what an alert may ask of a bot
    max_size: Decimal | None = None  # MAX_SIZE: the most contracts one buy or sell may carry
    lockout_threshold: int = 10  # wrong secrets from one address within lockout_window...
    lockout_window: float = 300.0
    lockout_seconds: float = 900.0  # ...lock it out for this long (never TradingView's addresses)


@dataclasses.dataclass(frozen=True)
class RefusalSettings:
    per_minute: int = 60  # refused requests stored one by one per minute; the rest counted
    retention_days: float = 7.0


@dataclasses.dataclass(frozen=True)
class UnknownSettings:
    """OKX's own records of the bots (their states), and the evidence for unknown outcomes."""

    resolve: str = "manual"  # "auto": the service marks the unambiguous unknown alerts itself
    settle: float = 3.0  # seconds after an ambiguous attempt before the bot is read again
    recheck: float = 30.0  # seconds before a "not executed" finding is read once more (and marked)
    sweep: float = 30.0  # seconds between sweeps for what a dead instance left undone (reads, notifications)
    bot_refresh: float = 30.0  # seconds between background reads of the bots' states
    bot_max_age: float = 90.0  # an older read of a bot never refuses an alert


@dataclasses.dataclass(frozen=True)
class NotifySettings:
    urls: tuple = dataclasses.field(default=(), repr=False)  # Apprise URLs hold tokens: secrets
    events: frozenset = DEFAULT_EVENTS


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting, by section. ``environment.read_env`` builds it; ``from_env`` also fills in
    the dry-run secret."""

    webhook: WebhookSecrets = WebhookSecrets()
    okx: OkxSettings = OkxSettings()
    database_url: str = "sqlite:///instance/alerts.db"
    # PostgreSQL connections one web instance may hold (journal/postgres/budget.py: 2 x 7 + 3 + 3 = 20)
    database_max_connections: int = 7
    admin_token: str = dataclasses.field(default="", repr=False)
    delivery: DeliverySettings = DeliverySettings()
    web: WebSettings = WebSettings()
    protection: ProtectionSettings = ProtectionSettings()
    refusals: RefusalSettings = RefusalSettings()
    unknowns: UnknownSettings = UnknownSettings()
    notify: NotifySettings = NotifySettings()
    tls: TlsSettings = TlsSettings()

    def __repr__(self) -> str:  # never show secrets, whatever the field
        return (
            f"Config(dry_run={self.okx.dry_run}, accounts={[account.name for account in self.okx.accounts]!r}, "
            f"database_url={redacted_url(self.database_url)!r})"
        )

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every secret this config holds, for log scrubbing."""
        accounts = self.okx.accounts
        return tuple(
            s
            for s in (
                *database_passwords(self.database_url),
                self.webhook.secret,
                self.webhook.previous,
                *(value for account in accounts for value in (account.api_secret, account.passphrase)),
                self.admin_token,
                *self.notify.urls,
            )
            if s
        )

    @classmethod
    def from_env(cls, environ=None, instance_path=None, generate_secret: bool = True) -> Config:
        """Read every variable (``read_env``), then fill in the dry-run webhook secret kept in a
        file (``with_dry_run_secret``). With ``generate_secret=False`` a missing one is not
        created (a pre-start check)."""
        return cls.read_env(environ, instance_path).with_dry_run_secret(create=generate_secret)

    @classmethod
    def read_env(cls, environ=None, instance_path=None) -> Config:
        """Parse every variable, writing nothing; one ``ConfigError`` names every bad one."""
        from webhook_app.config.environment import read_env

        return read_env(environ, instance_path)

    def with_dry_run_secret(self, create: bool = True) -> Config:
        """This config with the dry-run webhook secret kept in ``webhook.file``, generated there
        first when absent and ``create`` (else left empty); unchanged when it has a secret or no
        file to keep one. The only part of reading the configuration that writes."""
        from webhook_app.config.environment import with_dry_run_secret

        return with_dry_run_secret(self, create)

    def replace(self, section: str, **changes) -> Config:
        """This config with ``changes`` to one section."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})
