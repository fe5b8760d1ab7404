"""Settings, read from the environment once at startup.

Every value is parsed explicitly (never through ``json.loads``, unlike Flask's
``from_prefixed_env``), and a bad value stops the start with a ``ConfigError``
naming the variable. Secret values never appear in an error message.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Mapping, Optional
from urllib.parse import urlsplit

MIN_SECRET_LENGTH = 16
# TradingView's published webhook senders (TradingView's support pages).
TRADINGVIEW_ADDRESSES = ("52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


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
    database_url: str = "sqlite:///instance/alerts.db"
    admin_token: str = dataclasses.field(default="", repr=False)
    # Delivery.
    okx_rate_limit: int = 20  # requests per okx_rate_window seconds (OKX: 20 / 2 s)
    okx_rate_window: float = 2.0
    reply_deadline: float = 2.5  # TradingView cancels at 3 s
    okx_connect_timeout: float = 1.0
    okx_read_timeout: float = 10.0
    okx_max_attempts: int = 4
    dedup_window: float = 60.0
    max_lag: int = 60  # seconds an alert may wait before it is too old to send
    retention_days: float = 30.0
    max_body_bytes: int = 64 * 1024
    # Protection (all optional; off or permissive by default).
    webhook_secret_previous: str = dataclasses.field(default="", repr=False)
    require_timestamp: bool = False
    allowed_sources: tuple = ()  # ip_network objects; "tradingview" expands to its four senders
    trusted_proxy_hops: int = 0
    allowed_algo_ids: frozenset = frozenset()  # empty: any bot
    max_amount: Optional[Decimal] = None
    max_amount_per_day: Optional[Decimal] = None
    lockout_threshold: int = 10  # wrong secrets from one address within lockout_window...
    lockout_window: float = 300.0
    lockout_seconds: float = 900.0  # ...lock it out for this long (never TradingView's addresses)

    def __repr__(self) -> str:  # never show secrets, whatever the field
        return (f"Config(dry_run={self.dry_run}, okx_base_url={self.okx_base_url!r}, "
                f"okx_demo={self.okx_demo}, database_url={self.database_url!r})")

    @property
    def has_okx_credentials(self) -> bool:
        return bool(self.okx_api_key and self.okx_api_secret and self.okx_api_passphrase)

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every secret this config holds, for log scrubbing."""
        return tuple(s for s in (self.webhook_secret, self.webhook_secret_previous, self.okx_api_secret,
                                 self.okx_api_passphrase, self.admin_token) if s)

    @property
    def accepted_secrets(self) -> tuple[tuple[str, str], ...]:
        """(variable name, value) of each webhook secret accepted now."""
        pairs = (("WEBHOOK_SECRET", self.webhook_secret), ("WEBHOOK_SECRET_PREVIOUS", self.webhook_secret_previous))
        return tuple((name, value) for name, value in pairs if value)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None,
                 instance_path: Optional[Path] = None) -> "Config":
        env = os.environ if environ is None else environ
        reader = _Reader(env)

        key = reader.text("OKX_API_KEY")
        api_secret = reader.text("OKX_API_SECRET")
        passphrase = reader.text("OKX_API_PASSPHRASE")
        given = {"OKX_API_KEY": key, "OKX_API_SECRET": api_secret, "OKX_API_PASSPHRASE": passphrase}
        if any(given.values()) and not all(given.values()):
            missing = next(name for name, value in given.items() if not value)
            raise ConfigError(missing, "is required when any OKX credential is set "
                                       "(set all three of OKX_API_KEY, OKX_API_SECRET, OKX_API_PASSPHRASE, or none)")
        dry_run = reader.flag("DRY_RUN", False) or not all(given.values())

        database_url = reader.text("DATABASE_URL") or "sqlite:///instance/alerts.db"
        if not database_url.startswith("sqlite:///"):
            raise ConfigError("DATABASE_URL", "only sqlite:///PATH is supported")

        secret = reader.text("WEBHOOK_SECRET")
        source = "environment"
        if not secret:
            if not dry_run:
                raise ConfigError("WEBHOOK_SECRET", "is required when OKX credentials are set")
            folder = instance_path or Path(database_url[len("sqlite:///"):]).parent
            try:
                secret, source = generated_secret(Path(folder) / "webhook_secret")
            except OSError as exc:
                raise ConfigError("WEBHOOK_SECRET", f"is not set and no secret could be generated "
                                                    f"in {folder}: {exc.strerror}") from None
        elif len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError("WEBHOOK_SECRET", f"is too weak: use at least {MIN_SECRET_LENGTH} characters")

        previous = reader.text("WEBHOOK_SECRET_PREVIOUS")
        if previous and len(previous) < MIN_SECRET_LENGTH:
            raise ConfigError("WEBHOOK_SECRET_PREVIOUS", f"is too weak: use at least {MIN_SECRET_LENGTH} characters")
        if previous and source != "environment":
            raise ConfigError("WEBHOOK_SECRET_PREVIOUS", "needs WEBHOOK_SECRET to be set too")

        admin_token = reader.text("ADMIN_TOKEN")
        if admin_token and len(admin_token) < MIN_SECRET_LENGTH:
            raise ConfigError("ADMIN_TOKEN", f"is too weak: use at least {MIN_SECRET_LENGTH} characters")

        config = cls(
            webhook_secret=secret,
            webhook_secret_source=source,
            okx_api_key=key,
            okx_api_secret=api_secret,
            okx_api_passphrase=passphrase,
            okx_base_url=reader.base_url("OKX_BASE_URL", "https://www.okx.com"),
            okx_demo=reader.flag("OKX_DEMO", False),
            dry_run=dry_run,
            database_url=database_url,
            admin_token=admin_token,
            okx_rate_limit=reader.integer("OKX_RATE_LIMIT", 20, 1, 10_000),
            reply_deadline=reader.number("REPLY_DEADLINE", 2.5, 0.1, 2.9),
            okx_connect_timeout=reader.number("OKX_CONNECT_TIMEOUT", 1.0, 0.05, 10),
            okx_read_timeout=reader.number("OKX_READ_TIMEOUT", 10.0, 0.05, 60),
            okx_max_attempts=reader.integer("OKX_MAX_ATTEMPTS", 4, 1, 10),
            dedup_window=reader.number("DEDUP_WINDOW", 60.0, 0, 86_400),
            max_lag=reader.integer("MAX_LAG", 60, 1, 3600),
            retention_days=reader.number("RETENTION_DAYS", 30.0, 0.01, 3650),
            webhook_secret_previous=previous,
            require_timestamp=reader.flag("REQUIRE_TIMESTAMP", False),
            allowed_sources=reader.sources("ALLOWED_SOURCES"),
            trusted_proxy_hops=reader.integer("TRUSTED_PROXY_HOPS", 0, 0, 10),
            allowed_algo_ids=reader.algo_ids("ALLOWED_ALGO_IDS"),
            max_amount=reader.amount("MAX_AMOUNT"),
            max_amount_per_day=reader.amount("MAX_AMOUNT_PER_DAY"),
            lockout_threshold=reader.integer("LOCKOUT_THRESHOLD", 10, 1, 10_000),
            lockout_window=reader.number("LOCKOUT_WINDOW", 300.0, 1, 86_400),
            lockout_seconds=reader.number("LOCKOUT_SECONDS", 900.0, 1, 86_400),
        )
        return config


def generated_secret(path: Path) -> tuple[str, str]:
    """A random webhook secret for dry-run, kept in ``path`` so restarts and workers agree.
    Returns (secret, "generated" | "stored")."""
    try:
        return path.read_text().strip(), "stored"
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its secret
        return path.read_text().strip(), "stored"
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value, "generated"


class _Reader:
    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def text(self, name: str) -> str:
        return self.env.get(name, "").strip()

    def flag(self, name: str, default: bool) -> bool:
        raw = self.env.get(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ConfigError(name, "must be 1 or 0 (also true/false, yes/no, on/off)")

    def _decimal(self, name: str) -> Optional[Decimal]:
        """The value as a Decimal (NaN when it is not a number), None when unset."""
        raw = self.env.get(name, "").strip()
        if not raw:
            return None
        try:
            return Decimal(raw)
        except InvalidOperation:
            return Decimal("NaN")

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self._decimal(name)
        if value is None:
            return default
        if not value.is_finite() or not (Decimal(str(low)) <= value <= Decimal(str(high))):
            raise ConfigError(name, f"must be a number from {low} to {high}")
        return float(value)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        if not raw.isdigit() or not (low <= int(raw) <= high):
            raise ConfigError(name, f"must be a whole number from {low} to {high}")
        return int(raw)

    def _items(self, name: str) -> list[str]:
        return [item for item in self.env.get(name, "").replace(",", " ").split() if item]

    def sources(self, name: str) -> tuple:
        networks = []
        for item in self._items(name):
            if item.lower() == "tradingview":
                networks.extend(ipaddress.ip_network(a) for a in TRADINGVIEW_ADDRESSES)
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigError(name, f"{item!r} is not an IP address, a CIDR range or the word tradingview") \
                    from None
        return tuple(networks)

    def algo_ids(self, name: str) -> frozenset:
        items = self._items(name)
        for item in items:
            if not (item.isdigit() and len(item) <= 32):
                raise ConfigError(name, f"{item!r} is not an algo ID (digits only)")
        return frozenset(items)

    def amount(self, name: str) -> Optional[Decimal]:
        value = self._decimal(name)
        if value is None:
            return None
        if not value.is_finite() or value <= 0 or value >= Decimal(10) ** 12:
            raise ConfigError(name, "must be a positive decimal number such as 250 or 12.5")
        return value

    def base_url(self, name: str, default: str) -> str:
        raw = self.env.get(name, "").strip() or default
        parts = urlsplit(raw)
        plain_http_ok = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
        if parts.scheme != "https" and not plain_http_ok:
            raise ConfigError(name, "must be an https:// URL such as https://www.okx.com "
                                    "(plain http only for a loopback test server)")
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(name, "must be a bare origin such as https://eea.okx.com, without a path")
        return raw.rstrip("/")
