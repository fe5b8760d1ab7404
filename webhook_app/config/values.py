"""What each kind of setting's text may be: one parser per kind (a bad value raises ``Invalid``
with our message, never the value), and the database URL's helpers for messages and the log scrubber."""

from __future__ import annotations

import ipaddress
import math
import re
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, unquote, urlsplit, urlunsplit

# TradingView's published webhook senders (TradingView's support pages).
TRADINGVIEW_ADDRESSES = ("52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_ASCII_DIGITS = re.compile(r"[0-9]+\Z")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Invalid(ValueError):
    """A setting's text is not a value of its kind: ``problems``, one line each."""

    def __init__(self, *problems: str):
        super().__init__(*problems)
        self.problems = problems


def flag(raw: str) -> bool:
    """A 0/1 setting, any case."""
    if raw.lower() not in _TRUE | _FALSE:
        raise Invalid("must be 1 or 0 (also true/false, yes/no, on/off)")
    return raw.lower() in _TRUE


def whole(raw: str, low: int, high: int) -> int:
    # ASCII digits only: int() also takes "٣" and "1_000", str.isdigit() "²".
    if not _ASCII_DIGITS.match(raw) or not low <= int(raw) <= high:
        raise Invalid(f"must be a whole number from {low} to {high}")
    return int(raw)


def number(raw: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN and the infinities too
        raise Invalid(f"must be a number from {low:g} to {high:g}")
    return value


def amount(raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal("NaN")
    if not (value.is_finite() and 0 < value < 10**12):
        raise Invalid("must be a positive decimal number such as 250 or 12.5")
    return value


def choice(raw: str, options: tuple[str, ...]) -> str:
    if raw.lower() not in options:
        raise Invalid(f"must be one of {', '.join(options)}")
    return raw.lower()


def items(raw: str) -> list[str]:
    """Items separated by commas, spaces or both."""
    return [item for item in raw.replace(",", " ").split() if item]


def sources(raw: str) -> tuple:
    networks, problems = [], []
    for item in items(raw):
        if item.lower() == "tradingview":
            networks.extend(ipaddress.ip_network(a) for a in TRADINGVIEW_ADDRESSES)
            continue
        try:
            networks.append(_unmapped(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            problems.append(f"{item!r} is not an IP address, a CIDR range or the word tradingview")
    if problems:
        raise Invalid(*problems)
    return tuple(networks)


_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def _unmapped(network):
    """An IPv4-mapped IPv6 range (``::ffff:198.51.100.0/120``) as the IPv4 range it maps:
    addresses are compared in their IPv4 form (``protection._ip``)."""
    if network.version == 6 and network.subnet_of(_IPV4_MAPPED):
        return ipaddress.ip_network((network.network_address.ipv4_mapped, network.prefixlen - 96))
    return network


def actions(raw: str) -> frozenset:
    """Signal-bot actions (``okx.actions.ACTIONS``), any case: one problem per unknown one."""
    from webhook_app.okx.actions import ACTIONS

    listed = [item.lower() for item in items(raw)]
    choose = f"choose from {', '.join(ACTIONS)}"
    problems = [f"{item!r} is not an action; {choose}" for item in listed if item not in ACTIONS]
    if problems:
        raise Invalid(*problems)
    if not listed:
        raise Invalid(f"must list at least one action, from {', '.join(ACTIONS)}")
    return frozenset(listed)


def algo_ids(raw: str) -> frozenset:
    listed = items(raw)
    problems = [f"{item!r} is not an algo ID (digits only)" for item in listed if not _is_algo_id(item)]
    if problems:
        raise Invalid(*problems)
    return frozenset(listed)


def _is_algo_id(item: str) -> bool:
    return bool(_ASCII_DIGITS.match(item)) and len(item) <= 32


def notify_urls(raw: str) -> tuple:
    # Apprise URLs, separated by spaces, or by commas before the next scheme.
    urls = tuple(u for u in re.split(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)", raw) if u)
    from webhook_app.workers.notify import invalid_urls

    # Never echo a URL: it holds the service's token.
    problems = [
        f"URL number {n} is not one Apprise understands (see its wiki for the format)" for n in invalid_urls(urls)
    ]
    if problems:
        raise Invalid(*problems)
    return urls


def notify_on(raw: str) -> frozenset:
    from webhook_app.workers.notify import DEFAULT_EVENTS, EVENTS

    listed = [item.lower() for item in items(raw)]
    unknown = [item for item in listed if item not in EVENTS]
    if unknown:
        raise Invalid(f"{', '.join(unknown)}: not an event; choose from {', '.join(EVENTS)}")
    return frozenset(listed) or DEFAULT_EVENTS


def database_url(raw: str) -> str:
    if raw.startswith("sqlite:///"):
        if len(raw) == len("sqlite:///"):
            raise Invalid("sqlite:///PATH needs a path, e.g. sqlite:///instance/alerts.db")
        return raw
    if not raw.startswith(("postgres://", "postgresql://")):
        raise Invalid("must be sqlite:///PATH, postgres://… or postgresql://… (the form PaaS add-ons set)")
    # Where the password ends is unclear: the URL cannot be shown, even redacted.
    if _ambiguous_credentials(raw):
        host = re.split(r"[/?#]", raw.rpartition("@")[2], maxsplit=1)[0]
        raise Invalid(
            f"for host {host}: the user or password holds a character that must be percent-encoded "
            "(@ / ? # as %40 %2F %3F %23); the URL is not shown, it would show the password"
        )
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise Invalid(f"is not a valid PostgreSQL URL ({redacted_url(raw)})") from None
    if not parts.hostname or parts.path in ("", "/"):
        raise Invalid("a PostgreSQL URL needs a host and a database: postgres://USER:PASSWORD@HOST:5432/DB")
    return raw


def base_url(raw: str) -> str:
    try:
        parts = urlsplit(raw)
    except ValueError:  # "https://[::1": a bracket never closed
        raise Invalid("must be a bare origin such as https://eea.okx.com, without a path") from None
    plain_http_ok = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
    if parts.scheme != "https" and not plain_http_ok:
        raise Invalid(
            "must be an https:// URL such as https://www.okx.com (plain http only for a loopback test server)"
        )
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise Invalid("must be a bare origin such as https://eea.okx.com, without a path")
    return raw.rstrip("/")


def public_url(raw: str) -> str:
    """The service's own address as its users reach it (PUBLIC_URL): an http(s) origin, no path."""
    shape = "must be the service's address as a browser reaches it, such as https://my-relay.herokuapp.com"
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise Invalid(shape) from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Invalid(shape)
    if parts.username or parts.password:  # a password here would be in every notification
        raise Invalid(shape + ", without a user or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise Invalid(shape + ", without a path: the pages' paths are added to it")
    return raw.rstrip("/")


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
