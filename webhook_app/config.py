"""Settings, read from the environment once at startup.

Every value is parsed explicitly (never through ``json.loads``, unlike Flask's
``from_prefixed_env``), and a bad value stops the start with a ``ConfigError``
naming the variable. Secret values never appear in an error message.

environs parses each variable (``Env(eager=False)`` collects every problem, ``seal()``
reports them) with our parsers and our messages; the rules between variables (all
credentials or none, the secret a live service needs...) are ours, in ``Config.read_env``.
Reading writes nothing: ``Config.with_dry_run_secret`` keeps the generated dry-run secret.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import marshmallow as ma
from environs import Env, EnvValidationError, ValidationError

MIN_SECRET_LENGTH = 16
# OKX's API keys are UUIDs (36 characters), its secret keys 32 hex digits, passphrases at least 8
# characters: anything shorter is a paste gone wrong (and a one-letter value would make the log
# scrubber redact that letter everywhere).
MIN_CREDENTIAL_LENGTH = {"OKX_API_KEY": 16, "OKX_API_SECRET": 16, "OKX_API_PASSPHRASE": 8}
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
MAX_ACCOUNTS = 10
_ACCOUNT_NAME = re.compile(r"[a-z0-9_]{1,32}\Z")
# Any OKX_<NAME>_<suffix> variable: one set for an account not in OKX_ACCOUNTS is a mistake to name.
_ACCOUNT_VARIABLE = re.compile(r"OKX_([A-Z0-9_]+)_(" + "|".join(ACCOUNT_VARIABLE_SUFFIXES.values()) + r")\Z")
# Variables whose values are secrets, by how their names end (OKX_HEDGE_API_SECRET, WEBHOOK_SECRET...).
_SECRET_SUFFIXES = (
    "API_KEY",
    "API_SECRET",
    "API_PASSPHRASE",
    "WEBHOOK_SECRET",
    "WEBHOOK_SECRET_PREVIOUS",
    "ADMIN_TOKEN",
)
# The single-account variables: with OKX_ACCOUNTS set, each account has its own instead.
SINGLE_ACCOUNT_VARIABLES = (
    "OKX_API_KEY",
    "OKX_API_SECRET",
    "OKX_API_PASSPHRASE",
    "OKX_BASE_URL",
    "OKX_DEMO",
    "OKX_RATE_LIMIT",
)
MIN_DEDUP_WINDOW = 20  # TradingView resends a 5xx after 5 s, up to 3 times
# TradingView's published webhook senders (TradingView's support pages).
TRADINGVIEW_ADDRESSES = ("52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_ASCII_DIGITS = re.compile(r"[0-9]+\Z")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """One or more settings are missing or malformed. ``problems`` holds (variable, problem)
    pairs, every one found, in the order read; the message is one line per problem."""

    def __init__(self, variable: str, problem: str, *more: tuple[str, str]):
        self.problems = [(variable, problem), *more]
        self.variable = variable
        super().__init__("\n".join(f"{name}: {text}" for name, text in self.problems))

    @property
    def variables(self) -> list[str]:
        return [name for name, _ in self.problems]


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
class Config:
    webhook_secret: str
    okx_api_key: str = ""
    okx_api_secret: str = dataclasses.field(default="", repr=False)
    okx_api_passphrase: str = dataclasses.field(default="", repr=False)
    okx_base_url: str = "https://www.okx.com"
    okx_demo: bool = False
    dry_run: bool = True
    # Where the webhook secret came from: "environment", "generated" (now) or "stored" (earlier).
    webhook_secret_source: str = "environment"
    webhook_secret_file: str = ""  # where a generated dry-run secret is kept
    database_url: str = "sqlite:///instance/alerts.db"
    admin_token: str = dataclasses.field(default="", repr=False)
    # Delivery.
    okx_rate_limit: int = 20  # requests per okx_rate_window seconds (OKX: 20 / 2 s)
    okx_rate_window: float = 2.0
    reply_deadline: float = 2.5  # TradingView cancels at 3 s
    okx_connect_timeout: float = 1.0
    okx_read_timeout: float = 10.0
    okx_max_attempts: int = 4
    dedup_window: float = 60.0  # at least MIN_DEDUP_WINDOW: TradingView resends for 15 s
    id_window: float = 86_400.0  # seconds a trader's own id stays taken, per bot
    max_lag: int = 60  # seconds an alert may wait before it is too old to send
    retention_days: float = 30.0
    refused_per_minute: int = 60  # refused requests stored one by one per minute; the rest counted
    refused_retention_days: float = 7.0
    max_body_bytes: int = 64 * 1024
    port: int = 8000
    # Protection (all optional; off or permissive by default).
    webhook_secret_previous: str = dataclasses.field(default="", repr=False)
    require_timestamp: bool = False
    allowed_sources: tuple = ()  # ip_network objects; "tradingview" expands to its four senders
    trusted_proxy_hops: int = 0
    platform: str = ""  # the PaaS recognised from its environment ("Heroku"), for the startup log
    allowed_algo_ids: frozenset = frozenset()  # empty: any bot
    max_amount: Decimal | None = None
    max_amount_per_day: Decimal | None = None
    lockout_threshold: int = 10  # wrong secrets from one address within lockout_window...
    lockout_window: float = 300.0
    lockout_seconds: float = 900.0  # ...lock it out for this long (never TradingView's addresses)
    # OKX's own records of the bots (issue 14): their states, and the evidence for unknown outcomes.
    resolve_unknown: str = "manual"  # "auto": the service marks the unambiguous unknown alerts itself
    unknown_settle: float = 3.0  # seconds after an ambiguous attempt before the bot is read again
    unknown_recheck: float = 30.0  # seconds before a "not executed" finding is read once more (and marked)
    bot_refresh: float = 30.0  # seconds between background reads of the bots' states
    bot_state_max_age: float = 90.0  # an older read of a bot never refuses an alert
    # Notifications (Apprise URLs hold tokens: secrets).
    notify_urls: tuple = dataclasses.field(default=(), repr=False)
    notify_on: frozenset = frozenset({"failed", "unknown", "rejected", "expired", "lockout", "readiness"})
    # Several accounts (OKX_ACCOUNTS); () means one account "default" from the okx_* fields above,
    # which otherwise hold the first account's values (so "the" base URL still has one answer).
    okx_accounts: tuple = ()

    def __repr__(self) -> str:  # never show secrets, whatever the field
        return (
            f"Config(dry_run={self.dry_run}, accounts={[account.name for account in self.accounts]!r}, "
            f"okx_base_url={self.okx_base_url!r}, okx_demo={self.okx_demo}, "
            f"database_url={redacted_url(self.database_url)!r})"
        )

    @property
    def accounts(self) -> tuple[OkxAccount, ...]:
        """Every OKX account, in OKX_ACCOUNTS' order; without it the one account "default"."""
        if self.okx_accounts:
            return self.okx_accounts
        return (
            OkxAccount(
                DEFAULT_ACCOUNT,
                self.okx_api_key,
                self.okx_api_secret,
                self.okx_api_passphrase,
                self.okx_base_url,
                self.okx_demo,
                self.okx_rate_limit,
                self.allowed_algo_ids,
            ),
        )

    def account(self, name: str) -> OkxAccount | None:
        """The account called ``name``, or None."""
        return next((account for account in self.accounts if account.name == name), None)

    @property
    def has_okx_credentials(self) -> bool:
        """Whether any account has a key (then the service is live unless DRY_RUN=1)."""
        return any(account.has_credentials for account in self.accounts)

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every secret this config holds, for log scrubbing."""
        return tuple(
            s
            for s in (
                *database_passwords(self.database_url),
                self.webhook_secret,
                self.webhook_secret_previous,
                self.okx_api_secret,
                self.okx_api_passphrase,
                *(value for account in self.accounts for value in (account.api_secret, account.passphrase)),
                self.admin_token,
                *self.notify_urls,
            )
            if s
        )

    @property
    def accepted_secrets(self) -> tuple[tuple[str, str], ...]:
        """(variable name, value) of each webhook secret accepted now."""
        pairs = (("WEBHOOK_SECRET", self.webhook_secret), ("WEBHOOK_SECRET_PREVIOUS", self.webhook_secret_previous))
        return tuple((name, value) for name, value in pairs if value)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, instance_path: Path | None = None, generate_secret: bool = True
    ) -> Config:
        """Read every variable (``read_env``), then fill in the dry-run webhook secret kept in a
        file (``with_dry_run_secret``). With ``generate_secret=False`` a missing one is not
        created (a pre-start check)."""
        return cls.read_env(environ, instance_path).with_dry_run_secret(create=generate_secret)

    @classmethod
    def read_env(cls, environ: Mapping[str, str] | None = None, instance_path: Path | None = None) -> Config:
        """Parse every variable, writing nothing; raise one ``ConfigError`` naming every bad one, in
        the order read. environs parses each value; the rules between variables are below."""
        from webhook_app.workers.notify import DEFAULT_EVENTS

        env = os.environ if environ is None else environ
        reader = _Reader(env)

        account_names = reader.items("OKX_ACCOUNTS", ())
        if account_names:
            accounts = _accounts(reader, "OKX_ACCOUNTS", account_names)
            # The single-account fields hold the first account's values.
            first = accounts[0] if accounts else OkxAccount(DEFAULT_ACCOUNT)
            key, api_secret, passphrase = first.api_key, first.api_secret, first.passphrase
            has_credentials = any(account.has_credentials for account in accounts)
        else:
            accounts, first = (), None
            key = reader.str("OKX_API_KEY", "")
            api_secret = reader.str("OKX_API_SECRET", "")
            passphrase = reader.str("OKX_API_PASSPHRASE", "")
            given = {"OKX_API_KEY": key, "OKX_API_SECRET": api_secret, "OKX_API_PASSPHRASE": passphrase}
            if any(given.values()) and not all(given.values()):
                for name in (name for name, value in given.items() if not value):
                    reader.bad(
                        name,
                        "is required when any OKX credential is set "
                        "(set all three of OKX_API_KEY, OKX_API_SECRET, OKX_API_PASSPHRASE, or none)",
                    )
            for name, value in given.items():
                if value and len(value) < MIN_CREDENTIAL_LENGTH[name]:
                    reader.bad(name, _too_short(MIN_CREDENTIAL_LENGTH[name]))
            has_credentials = all(given.values())
        _unlisted_account_variables(reader, account_names)
        dry_run = bool(reader.flag("DRY_RUN", False)) or not has_credentials

        database_url = reader.database_url("DATABASE_URL", "sqlite:///instance/alerts.db") or ""

        secret = reader.str("WEBHOOK_SECRET", "")
        source, secret_file = "environment", ""
        if not secret:
            if not dry_run:
                reader.bad("WEBHOOK_SECRET", "is required when OKX credentials are set")
            elif not database_url.startswith("sqlite:///"):
                source = "database"  # generated into the journal at start: a PaaS disk does not keep it
            else:  # generated into this file by with_dry_run_secret, not here
                folder = Path(instance_path or Path(database_url[len("sqlite:///") :]).parent)
                source, secret_file = "generated", str(folder / "webhook_secret")
        elif len(secret) < MIN_SECRET_LENGTH:
            reader.bad("WEBHOOK_SECRET", f"is too weak: use at least {MIN_SECRET_LENGTH} characters")

        previous = reader.str("WEBHOOK_SECRET_PREVIOUS", "")
        if previous and len(previous) < MIN_SECRET_LENGTH:
            reader.bad("WEBHOOK_SECRET_PREVIOUS", f"is too weak: use at least {MIN_SECRET_LENGTH} characters")
        elif previous and source != "environment":
            reader.bad("WEBHOOK_SECRET_PREVIOUS", "needs WEBHOOK_SECRET to be set too")

        admin_token = reader.str("ADMIN_TOKEN", "")
        if admin_token and len(admin_token) < MIN_SECRET_LENGTH:
            reader.bad("ADMIN_TOKEN", f"is too weak: use at least {MIN_SECRET_LENGTH} characters")

        # Behind Heroku's router every request comes from the router; it appends the client's
        # address to X-Forwarded-For. Trusting that one hop is the only safe default there.
        platform = "Heroku" if env.get("DYNO") else ""
        retention_days = reader.number("RETENTION_DAYS", 30.0, 1, 3650)
        id_window = reader.number("ID_WINDOW", 86_400.0, 60, 30 * 86_400)
        if id_window is not None and retention_days is not None and id_window > retention_days * 86_400:
            reader.bad(
                "ID_WINDOW",
                "must not be longer than RETENTION_DAYS: an id must stay in the journal for as long as it is taken",
            )

        # Read in this order (problems are listed in the order read); checked all at once below.
        fields = dict(
            webhook_secret=secret,
            webhook_secret_source=source,
            webhook_secret_file=secret_file,
            okx_api_key=key,
            okx_api_secret=api_secret,
            okx_api_passphrase=passphrase,
            okx_base_url=first.base_url if first else reader.base_url("OKX_BASE_URL", "https://www.okx.com"),
            okx_demo=first.demo if first else reader.flag("OKX_DEMO", False),
            dry_run=dry_run,
            database_url=database_url,
            admin_token=admin_token,
            okx_rate_limit=first.rate_limit if first else reader.whole("OKX_RATE_LIMIT", 20, low=1, high=10_000),
            reply_deadline=reader.number("REPLY_DEADLINE", 2.5, 0.1, 2.9),
            okx_connect_timeout=reader.number("OKX_CONNECT_TIMEOUT", 1.0, 0.05, 10),
            okx_read_timeout=reader.number("OKX_READ_TIMEOUT", 10.0, 0.05, 60),
            okx_max_attempts=reader.whole("OKX_MAX_ATTEMPTS", 4, low=1, high=10),
            dedup_window=reader.number("DEDUP_WINDOW", 60.0, MIN_DEDUP_WINDOW, 86_400),
            id_window=id_window,
            max_lag=reader.whole("MAX_LAG", 60, low=1, high=3600),
            retention_days=retention_days,
            refused_per_minute=reader.whole("REFUSED_PER_MINUTE", 60, low=1, high=10_000),
            refused_retention_days=reader.number("REFUSED_RETENTION_DAYS", 7.0, 1, 365),
            port=reader.whole("PORT", 8000, low=1, high=65535),
            webhook_secret_previous=previous,
            require_timestamp=reader.flag("REQUIRE_TIMESTAMP", False),
            allowed_sources=reader.sources("ALLOWED_SOURCES", ()),
            trusted_proxy_hops=reader.whole("TRUSTED_PROXY_HOPS", 1 if platform else 0, low=0, high=10),
            platform=platform,
            allowed_algo_ids=reader.algo_ids("ALLOWED_ALGO_IDS", frozenset()),
            max_amount=reader.amount("MAX_AMOUNT"),
            max_amount_per_day=reader.amount("MAX_AMOUNT_PER_DAY"),
            lockout_threshold=reader.whole("LOCKOUT_THRESHOLD", 10, low=1, high=10_000),
            lockout_window=reader.number("LOCKOUT_WINDOW", 300.0, 1, 86_400),
            lockout_seconds=reader.number("LOCKOUT_SECONDS", 900.0, 1, 86_400),
            resolve_unknown=reader.choice("RESOLVE_UNKNOWN", "manual", options=("manual", "auto")),
            unknown_settle=reader.number("UNKNOWN_SETTLE_SECONDS", 3.0, 0, 60),
            unknown_recheck=reader.number("UNKNOWN_RECHECK_SECONDS", 30.0, 1, 600),
            bot_refresh=reader.number("BOT_REFRESH_SECONDS", 30.0, 1, 3600),
            bot_state_max_age=reader.number("BOT_STATE_MAX_AGE", 90.0, 1, 3600),
            notify_urls=reader.notify_urls("NOTIFY_URLS", ()),
            notify_on=reader.notify_on("NOTIFY_ON", DEFAULT_EVENTS),
            okx_accounts=accounts,
        )
        reader.finish()  # raises ConfigError listing every problem; past it no value is None by mistake
        # With several accounts, every account's bots are allowed too: the allowlist check stays one.
        fields["allowed_algo_ids"] = fields["allowed_algo_ids"].union(*(a.algo_ids for a in accounts))
        return cls(**fields)

    def with_dry_run_secret(self, create: bool = True) -> Config:
        """This config with the dry-run webhook secret kept in ``webhook_secret_file``, generated
        there first when absent and ``create`` (else left empty); unchanged when it has a secret
        or no file to keep one. The only part of reading the configuration that writes."""
        if self.webhook_secret or not self.webhook_secret_file:
            return self
        path = Path(self.webhook_secret_file)
        try:
            secret, source = generated_secret(path, create=create)
        except OSError as exc:
            raise ConfigError(
                "WEBHOOK_SECRET", f"is not set and no secret could be generated in {path.parent}: {exc.strerror}"
            ) from None
        return dataclasses.replace(self, webhook_secret=secret, webhook_secret_source=source)


def redacted_url(url: str) -> str:
    """A database URL without its password (in the user part or a ``password=`` query
    parameter), for messages and the startup log."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(unparseable URL)"
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1) if password else parts.netloc
    query = "&".join(
        "password=***" if unquote(item.partition("=")[0]) == "password" else item for item in parts.query.split("&")
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _ambiguous_credentials(url: str) -> bool:
    """More than one @ before the path, or an @ after a /, ? or # that would end the host part:
    the password holds an unencoded character, and no parser agrees where it ends."""
    rest = url.partition("://")[2]
    at = rest.rfind("@")
    if at < 0:
        return False
    ends = [i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0]
    return rest.count("@", 0, min(ends) if ends else len(rest)) > 1 or (bool(ends) and at > min(ends))


def database_passwords(url: str) -> tuple[str, ...]:
    """Every form of a database URL's password that a log line might show, for the scrubber:
    as written in the user part or a ``password=`` query parameter, percent-decoded and
    percent-encoded; and, for an unencoded @ in it, what libpq then takes for the host's start
    (the rest of the password after its first @, with the @ that follows it)."""
    try:
        parts = urlsplit(url)
        written = [parts.password] if "://" in url and parts.password else []
    except ValueError:
        return ()
    if _ambiguous_credentials(url):  # as a person meant it: from the user's colon to the last @
        meant = url.partition("://")[2].rpartition("@")[0].partition(":")[2]
        if meant:
            written.append(meant)
    for item in parts.query.split("&"):
        name, _, value = item.partition("=")
        if unquote(name) == "password" and value:
            written.append(value)
    forms = set()
    for value in written:
        decoded = unquote(value)
        forms.update((value, decoded, quote(decoded, safe="")))
        rest = value.partition("@")[2]
        if rest:
            forms.add(rest + "@")
    return tuple(sorted(form for form in forms if form))


_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def _unmapped(network):
    """An IPv4-mapped IPv6 range (``::ffff:198.51.100.0/120``) as the IPv4 range it maps:
    addresses are compared in their IPv4 form (``protection._ip``)."""
    if network.version == 6 and network.subnet_of(_IPV4_MAPPED):
        return ipaddress.ip_network((network.network_address.ipv4_mapped, network.prefixlen - 96))
    return network


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


class _Flag(ma.fields.Boolean):
    """A 0/1 setting, any case; any other value is refused with our message (never the value)."""

    truthy = _TRUE
    falsy = _FALSE
    default_error_messages = {"invalid": "must be 1 or 0 (also true/false, yes/no, on/off)"}

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value.lower() if isinstance(value, str) else value, attr, data, **kwargs)


def _text_only(parse: Callable) -> Callable:
    """environs hands a custom parser the default too when the variable is unset: that is kept as is."""

    @functools.wraps(parse)
    def parser(raw, **options):
        return parse(raw, **options) if isinstance(raw, str) else raw

    return parser


def _split(raw: str) -> list[str]:
    """Items separated by commas, spaces or both."""
    return [item for item in raw.replace(",", " ").split() if item]


def _whole_number(raw: str, low: int, high: int) -> int:
    # ASCII digits only: int() also takes "٣" and "1_000", str.isdigit() "²".
    if not _ASCII_DIGITS.match(raw) or not low <= int(raw) <= high:
        raise ValidationError(f"must be a whole number from {low} to {high}")
    return int(raw)


def _choice(raw: str, options: tuple[str, ...]) -> str:
    if raw.lower() not in options:
        raise ValidationError(f"must be one of {', '.join(options)}")
    return raw.lower()


def _sources(raw: str) -> tuple:
    networks, problems = [], []
    for item in _split(raw):
        if item.lower() == "tradingview":
            networks.extend(ipaddress.ip_network(a) for a in TRADINGVIEW_ADDRESSES)
            continue
        try:
            networks.append(_unmapped(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            problems.append(f"{item!r} is not an IP address, a CIDR range or the word tradingview")
    if problems:
        raise ValidationError(problems)
    return tuple(networks)


def _algo_ids(raw: str) -> frozenset:
    items = _split(raw)
    problems = [f"{item!r} is not an algo ID (digits only)" for item in items if not _is_algo_id(item)]
    if problems:
        raise ValidationError(problems)
    return frozenset(items)


def _is_algo_id(item: str) -> bool:
    return bool(_ASCII_DIGITS.match(item)) and len(item) <= 32


def _notify_urls(raw: str) -> tuple:
    # Apprise URLs, separated by spaces, or by commas before the next scheme.
    urls = tuple(u for u in re.split(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)", raw) if u)
    from webhook_app.workers.notify import invalid_urls

    # Never echo a URL: it holds the service's token.
    problems = [
        f"URL number {n} is not one Apprise understands (see its wiki for the format)" for n in invalid_urls(urls)
    ]
    if problems:
        raise ValidationError(problems)
    return urls


def _notify_on(raw: str) -> frozenset:
    from webhook_app.workers.notify import DEFAULT_EVENTS, EVENTS

    items = [item.lower() for item in _split(raw)]
    unknown = [item for item in items if item not in EVENTS]
    if unknown:
        raise ValidationError(f"{', '.join(unknown)}: not an event; choose from {', '.join(EVENTS)}")
    return frozenset(items) or DEFAULT_EVENTS


def _database_url(raw: str) -> str:
    if raw.startswith("sqlite:///"):
        if len(raw) == len("sqlite:///"):
            raise ValidationError("sqlite:///PATH needs a path, e.g. sqlite:///instance/alerts.db")
        return raw
    if not raw.startswith(("postgres://", "postgresql://")):
        raise ValidationError("must be sqlite:///PATH, postgres://… or postgresql://… (the form PaaS add-ons set)")
    # Where the password ends is unclear: the URL cannot be shown, even redacted.
    if _ambiguous_credentials(raw):
        host = re.split(r"[/?#]", raw.rpartition("@")[2], maxsplit=1)[0]
        raise ValidationError(
            f"for host {host}: the user or password holds a character that must be percent-encoded "
            "(@ / ? # as %40 %2F %3F %23); the URL is not shown, it would show the password"
        )
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValidationError(f"is not a valid PostgreSQL URL ({redacted_url(raw)})") from None
    if not parts.hostname or parts.path in ("", "/"):
        raise ValidationError("a PostgreSQL URL needs a host and a database: postgres://USER:PASSWORD@HOST:5432/DB")
    return raw


def _base_url(raw: str) -> str:
    parts = urlsplit(raw)
    plain_http_ok = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
    if parts.scheme != "https" and not plain_http_ok:
        raise ValidationError(
            "must be an https:// URL such as https://www.okx.com (plain http only for a loopback test server)"
        )
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValidationError("must be a bare origin such as https://eea.okx.com, without a path")
    return raw.rstrip("/")


class _Reader(Env):
    """environs' ``Env`` over a given mapping instead of ``os.environ``, with our parsers. It
    collects every problem (``eager=False``) instead of stopping at the first: a bad value reads
    as None. ``bad`` adds a problem found by a rule between variables; ``finish`` raises one
    ``ConfigError`` with all of them, in the order the variables were read."""

    def __init__(self, environ: Mapping[str, str]):
        super().__init__(eager=False)
        self.environ = environ
        self.read: list[str] = []  # variable names, in the order first read
        self.notes: dict[str, str] = {}  # added to a variable's parse problems: " (account main)"
        self.rules: list[tuple[int, str, str]] = []  # (index in read of the last variable read, name, problem)
        self.add_parser_from_field("flag", _Flag)
        for name, parse in (
            ("whole", _whole_number),
            ("choice", _choice),
            ("items", _split),
            ("sources", _sources),
            ("algo_ids", _algo_ids),
            ("notify_urls", _notify_urls),
            ("notify_on", _notify_on),
            ("database_url", _database_url),
            ("base_url", _base_url),
        ):
            self.add_parser(name, _text_only(parse))

    def _get_value(self, env_key: str, default):
        """The value, stripped; a blank one is unset (the default). Overrides environs' read of os.environ."""
        if env_key not in self.read:
            self.read.append(env_key)
        return self.environ.get(env_key, "").strip() or default

    def text(self, name: str) -> str:
        """A variable's value as set, not parsed: for checks of which variables are set."""
        return self.environ.get(name, "").strip()

    def bad(self, name: str, problem: str) -> None:
        self.rules.append((len(self.read) - 1, name, problem))

    def number(self, name: str, default: float, low: float, high: float) -> float | None:
        problem = f"must be a number from {low:g} to {high:g}"
        return self.float(
            name,
            default,
            validate=ma.validate.Range(low, high, error=problem),
            error_messages=dict.fromkeys(("invalid", "special", "too_large"), problem),
        )

    def amount(self, name: str) -> Decimal | None:
        problem = "must be a positive decimal number such as 250 or 12.5"
        return self.decimal(
            name,
            None,
            validate=ma.validate.Range(0, 10**12, min_inclusive=False, max_inclusive=False, error=problem),
            error_messages=dict.fromkeys(("invalid", "special", "too_large"), problem),
        )

    def finish(self) -> None:
        """Raise one ``ConfigError`` for every problem: environs' parse problems (each at its
        variable's place in the order read), and ours (after the variables read before them)."""
        try:
            self.seal()
            parsed = {}
        except EnvValidationError as error:
            parsed = error.error_messages
        ordered = [
            ((self.read.index(name), 0, number), name, f"{problem}{self.notes.get(name, '')}")
            for name, problems in parsed.items()
            for number, problem in enumerate(problems)
        ]
        ordered += [((place, 1, number), name, problem) for number, (place, name, problem) in enumerate(self.rules)]
        problems = [(name, problem) for _, name, problem in sorted(ordered)]
        if problems:
            raise ConfigError(*problems[0], *problems[1:])


def _too_short(minimum: int) -> str:
    return (
        f"is too short to be a real OKX credential (at least {minimum} characters): "
        "copy it whole from OKX's API key page"
    )


def _accounts(reader: _Reader, name: str, names: list[str]) -> tuple[OkxAccount, ...]:
    """The accounts listed in ``name`` (OKX_ACCOUNTS), each from its OKX_<NAME>_* variables."""
    for single in SINGLE_ACCOUNT_VARIABLES:
        if reader.text(single):
            reader.bad(
                name,
                f"cannot be used with {single}: with several accounts each has its own "
                f"OKX_<NAME>_{single[len('OKX_') :]}; remove {single}",
            )
    if len(names) > MAX_ACCOUNTS:
        reader.bad(name, f"lists {len(names)} accounts: at most {MAX_ACCOUNTS}")
    listed: list[str] = []
    secret_values = _secret_values(reader.environ)
    for position, account_name in enumerate(names, start=1):
        # A malformed name is not echoed: it may be a value pasted into the wrong variable.
        if not _ACCOUNT_NAME.match(account_name):
            reader.bad(name, f"name number {position} is not an account name: 1 to 32 lowercase letters, digits or _")
        elif account_name.lower() in secret_values:  # a secret pasted here: every message would name it
            reader.bad(name, f"name number {position} is the value of a secret setting, not an account name")
        elif account_name == DEFAULT_ACCOUNT:
            reader.bad(name, "default names the account of OKX_API_KEY & co.: give the accounts other names")
        elif account_name in listed:
            reader.bad(name, f"lists account {account_name} twice")
        else:
            listed.append(account_name)
    accounts = tuple(_account(reader, account_name) for account_name in listed)

    # All keys or none: one account in dry-run beside live ones would drop its alerts unseen.
    credentials = ("api_key", "api_secret", "passphrase")
    if any(getattr(account, field) for account in accounts for field in credentials):
        for account in accounts:
            for field in credentials:
                if not getattr(account, field):
                    reader.bad(
                        account.variable(field),
                        f"is required for account {account.name}: once any account has an API key, "
                        "every account in OKX_ACCOUNTS needs its key, secret and passphrase "
                        "(set none at all for dry-run)",
                    )

    # An OKX bot belongs to one account: listed under two, which key sends its alerts is unclear.
    for index, account in enumerate(accounts):
        for other in accounts[index + 1 :]:
            for algo_id in sorted(account.algo_ids & other.algo_ids):
                reader.bad(
                    account.variable("algo_ids"),
                    f"bot {algo_id} is also listed in {other.variable('algo_ids')}: "
                    "a bot belongs to one account, list it under that one only",
                )
    return accounts


def _secret_values(environ: Mapping[str, str]) -> set[str]:
    """Every secret-holding variable's value, lower-cased (account names are compared without case)."""
    return {
        value.strip().lower()
        for variable, value in environ.items()
        if value.strip() and variable.endswith(_SECRET_SUFFIXES)
    }


def _account(reader: _Reader, name: str) -> OkxAccount:
    """One account's variables; its problems each name the variable and the account."""
    variable = OkxAccount(name).variable
    note = f" (account {name})"
    reader.notes.update({variable(field): note for field in ACCOUNT_VARIABLE_SUFFIXES})
    values = {field: reader.str(variable(field), "") for field in ("api_key", "api_secret", "passphrase")}
    for field, value in values.items():
        minimum = MIN_CREDENTIAL_LENGTH[f"OKX_{ACCOUNT_VARIABLE_SUFFIXES[field]}"]
        if value and len(value) < minimum:
            reader.bad(variable(field), _too_short(minimum) + note)
    return OkxAccount(
        name,
        **values,
        base_url=reader.base_url(variable("base_url"), "https://www.okx.com"),
        demo=reader.flag(variable("demo"), False),
        rate_limit=reader.whole(variable("rate_limit"), 20, low=1, high=10_000),
        algo_ids=reader.algo_ids(variable("algo_ids"), frozenset()) or frozenset(),  # None: refused already
    )


def _unlisted_account_variables(reader: _Reader, names: list[str]) -> None:
    """An OKX_<NAME>_* variable for an account not in OKX_ACCOUNTS: a typo, or a forgotten
    OKX_ACCOUNTS that would leave the account silently unused. ``names`` as listed, even
    malformed ones (already named as such)."""
    listed = {name.upper() for name in names}
    for variable in sorted(reader.environ):
        match = _ACCOUNT_VARIABLE.match(variable)
        if match and match.group(1) not in listed and reader.text(variable):
            reader.bad(variable, f"account {match.group(1).lower()} is not in OKX_ACCOUNTS")
