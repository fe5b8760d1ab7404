"""What a leaked or replayed alert can do: who may send, how old an alert may be, which
bots and how much, and lockout of addresses that guess the secret."""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from webhook_app.config import DEFAULT_ACCOUNT, TRADINGVIEW_ADDRESSES, Config
from webhook_app.errors import Refused, not_sent
from webhook_app.intake.alerts import Alert, InvalidAlert
from webhook_app.okx.actions import ACTIONS
from webhook_app.okx.records import plain_decimal

FUTURE_TOLERANCE = 5.0  # seconds an alert may be dated ahead of our clock
log = logging.getLogger("webhook_app")
_TRADINGVIEW = frozenset(ipaddress.ip_address(a) for a in TRADINGVIEW_ADDRESSES)


class Forbidden(Refused):
    """The sender or the bot is not allowed (403); ``kind`` says which."""

    status = 403

    def __init__(self, field: str, problem: str, kind: str):
        super().__init__(problem, field)
        self.kind = kind


class StaleAlert(Refused):
    """The alert is older than its lag, or dated in the future (422)."""

    status, kind = 422, "stale"

    def __init__(self, problem: str):
        super().__init__(problem, "timestamp", message=not_sent(problem))


class LockedOut(Refused):
    """Too many wrong secrets from this address (429), for ``retry_after`` seconds more."""

    status, kind = 429, "locked_out"

    def __init__(self, retry_after: float):
        super().__init__(
            f"too many wrong secrets from this address; try again in {retry_after:.0f} s ({LIFT_HINT})",
            headers={"Retry-After": str(int(retry_after) + 1)},
        )
        self.retry_after = retry_after


# How an operator lifts a lockout sooner: said wherever a lockout refuses a request.
LIFT_HINT = (
    "a lockout holds even for the right token; an operator can lift it on /admin from another address, "
    "or with: flask --app webhook_app lockouts clear ADDRESS"
)


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted_hops: int) -> str | None:
    """The client's address: the TCP peer, or behind ``trusted_hops`` proxies the entry the
    outermost trusted proxy appended to X-Forwarded-For, counted from the right. Entries a
    client wrote itself stand further left and are never read. None when it cannot be told."""
    if trusted_hops == 0:
        candidate = peer
    else:
        entries = [e.strip() for header in forwarded_for for e in header.split(",") if e.strip()]
        if len(entries) < trusted_hops:
            return None
        candidate = entries[-trusted_hops]
    ip = _ip(candidate)
    return str(ip) if ip is not None else None


@dataclasses.dataclass(frozen=True)
class Sender:
    """Who sent a request, as far as can be told. ``lockout_key`` is None when the address
    is not the client's own but a proxy's that every client shares: locking that out
    would lock everyone out."""

    address: str | None
    lockout_key: str | None


def _ip(address: str | None):
    """The address as an ip_address, or None when there is none or it is not one. An
    IPv4-mapped IPv6 address (``::ffff:52.89.214.238``, as a dual-stack socket or a proxy may
    write it) is the IPv4 address it maps: one address, one form, wherever addresses are compared."""
    try:
        ip = ipaddress.ip_address(address) if address else None
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def is_tradingview(address: str | None) -> bool:
    return _ip(address) in _TRADINGVIEW


# Where a platform's router or a local proxy connects from: RFC 1918, shared (RFC 6598) and
# unique-local IPv6 ranges. (ipaddress's is_private also counts documentation ranges.)
_INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def is_internal(address: str | None) -> bool:
    ip = _ip(address)
    return ip is not None and (ip.is_loopback or ip.is_link_local or any(ip in n for n in _INTERNAL_NETWORKS))


class MemoryLockoutStore:
    """Wrong-secret counts and lockouts in this process's memory (one process, forgotten at
    restart), for a ``Lockout`` without a journal; both journals keep theirs (``journal.lockout_store()``)."""

    def __init__(self, max_tracked: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.max_tracked = max_tracked
        self._clock = clock
        self._failures: collections.OrderedDict[str, collections.deque] = collections.OrderedDict()
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def remaining(self, address: str) -> float:
        with self._lock:
            until = self._locked_until.get(address)
            if until is None:
                return 0.0
            remaining = until - self._clock()
            if remaining <= 0:
                del self._locked_until[address]
            return max(remaining, 0.0)

    def failure(self, address: str, threshold: int, window: float, duration: float) -> bool:
        with self._lock:
            now = self._clock()
            failures = self._failures.pop(address, None) or collections.deque()
            failures.append(now)
            while failures and now - failures[0] > window:
                failures.popleft()
            self._failures[address] = failures  # most recent last
            while len(self._failures) > self.max_tracked:  # bounded memory under a spray of addresses
                self._failures.popitem(last=False)
            if len(failures) >= threshold:
                self._locked_until[address] = now + duration
                del self._failures[address]
                return True
            return False

    def active(self) -> list[tuple[str, float]]:
        """(address, locked until as wall-clock epoch seconds) for each address locked out now."""
        with self._lock:
            now, wall = self._clock(), time.time()
            return [(address, wall + until - now) for address, until in self._locked_until.items() if until > now]

    def clear(self, address: str) -> bool:
        """Lift the address's lockout and forget its wrong secrets; True when it was locked out."""
        with self._lock:
            self._failures.pop(address, None)
            until = self._locked_until.pop(address, None)
            return until is not None and until > self._clock()


class Lockout:
    """Locks out an address after ``threshold`` wrong secrets within ``window`` seconds.

    TradingView's own addresses are never locked out: every TradingView user sends from
    them, so anyone could otherwise lock out your alerts by aiming wrong secrets at this
    URL through TradingView. Guessing through them is bounded by TradingView's own alert
    limits and the secret's length (at least 16 characters)."""

    def __init__(self, threshold: int, window: float, duration: float, store=None):
        self.threshold, self.window, self.duration = threshold, window, duration
        self.store = store or MemoryLockoutStore()

    def check(self, address: str | None) -> None:
        if address is None or is_tradingview(address):
            return
        remaining = self.store.remaining(address)
        if remaining > 0:
            raise LockedOut(remaining)

    def failure(self, address: str | None) -> bool:
        """Count a wrong secret; True when it locked the address out."""
        if address is None or is_tradingview(address):
            return False
        return self.store.failure(address, self.threshold, self.window, self.duration)

    def active(self) -> list[dict]:
        """The addresses locked out now, soonest lifted first: address, since, until (epoch
        seconds), failures and why. A lockout begins at the ``threshold``-th wrong secret and
        lasts ``duration``, so "since" is its end less the duration (the stores keep the end)."""
        return [
            {
                "address": address,
                "since": until - self.duration,
                "until": until,
                "failures": self.threshold,
                "why": f"{self.threshold} wrong secrets or tokens",
            }
            for address, until in sorted(self.store.active(), key=lambda entry: entry[1])
        ]

    def clear(self, address: str) -> bool:
        """Lift an address's lockout (written in any form of the address); True when it was locked out."""
        ip = _ip(address.strip())
        return self.store.clear(str(ip) if ip is not None else address.strip())


class Protection:
    def __init__(self, config: Config, lockout_store=None):
        self.config = config
        self.lockout = Lockout(
            config.protection.lockout_threshold,
            config.protection.lockout_window,
            config.protection.lockout_seconds,
            lockout_store,
        )
        self._untrusted_forwarding_warned = False

    def sender(self, peer: str | None, forwarded_for: Iterable[str]) -> Sender:
        forwarded = [header for header in forwarded_for if header.strip()]
        hops = self.config.web.trusted_proxy_hops
        address = client_address(peer, forwarded, hops)
        if hops == 0 and forwarded and is_internal(peer):
            # A proxy in front of us (Heroku's router, say) that we were not told to trust: every
            # request comes from it. Never lock it out; say once how to see the real clients.
            if not self._untrusted_forwarding_warned:
                self._untrusted_forwarding_warned = True
                log.warning(
                    "requests arrive through a proxy (%s adds X-Forwarded-For) but TRUSTED_PROXY_HOPS=0: "
                    "every request seems to come from the proxy, so the lockout is off for them and "
                    "ALLOWED_SOURCES sees the proxy; set TRUSTED_PROXY_HOPS=1 behind one router",
                    peer,
                )
            return Sender(address, None)
        return Sender(address, address)

    def check_source(self, address: str | None) -> None:
        sources = self.config.protection.allowed_sources
        if not sources:
            return
        ip = _ip(address)
        if ip is None or not any(ip in network for network in sources):
            raise Forbidden("source", "this address may not send alerts (ALLOWED_SOURCES)", "forbidden_source")

    def check_alert(self, alert: Alert, now: float) -> None:
        """Every check of a TradingView alert that needs no journal. ``now``: the clock that also
        judges duplicates (``duplicate_since``), so that an alert fresh enough to pass is always
        found by a later copy's duplicate check."""
        config = self.config
        if alert.timestamp is None:
            if config.protection.require_timestamp:
                raise InvalidAlert(
                    [
                        {
                            "field": "timestamp",
                            "message": 'is required (REQUIRE_TIMESTAMP=1); add "timestamp": "{{timenow}}"',
                        }
                    ]
                )
        else:
            self._check_age(alert.timestamp, alert.max_lag or config.delivery.max_lag, now)
        self.check_request(alert)

    def check_request(self, alert: Alert) -> None:
        """What the alert may do: its bot, its action and how much. An operator's resend meets these
        (with the settings in force now), not the checks of when TradingView sent it."""
        protection = self.config.protection
        if protection.allowed_algo_ids and alert.algo_id not in protection.allowed_algo_ids:
            raise Forbidden("algoId", self._unlisted_bot(alert.account), "forbidden_bot")
        if alert.action not in protection.allowed_actions:
            allowed = ", ".join(action for action in ACTIONS if action in protection.allowed_actions)
            raise Forbidden(
                "action",
                f'"{alert.action}" is not in ALLOWED_ACTIONS (allowed: {allowed}); nothing was sent',
                "forbidden_action",
            )
        margin = alert.margin
        if protection.max_amount is not None and margin is not None and margin > protection.max_amount:
            raise InvalidAlert([{"field": "amount", "message": f"is over MAX_AMOUNT ({protection.max_amount})"}])
        self.check_size(alert)

    def check_size(self, alert: Alert) -> None:
        """A buy's or sell's contracts against MAX_SIZE (once they are known: after ``sizing``)."""
        cap, size = self.config.protection.max_size, alert.size
        if cap is not None and size is not None and size > cap:
            message = f"is {plain_decimal(size)} contracts, over MAX_SIZE ({plain_decimal(cap)} contracts)"
            raise InvalidAlert([{"field": "size", "message": message}])

    def _unlisted_bot(self, account_name: str | None) -> str:
        """Which setting lists the bot: ALLOWED_ALGO_IDS for the one account; with several, the
        OKX_<NAME>_ALGO_IDS of the account named, else of each (a listing there also routes it)."""
        okx = self.config.okx
        if okx.accounts == (okx.account(DEFAULT_ACCOUNT),):
            return "this bot is not in ALLOWED_ALGO_IDS"
        named = okx.account(account_name) if account_name else None
        settings = [account.variable("algo_ids") for account in ([named] if named else okx.accounts)]
        return f"this bot is listed under no account: add it to {' or '.join(settings)}"

    def duplicate_since(self, alert: Alert, now: float) -> float:
        """Since when an earlier alert with the same key makes this one a duplicate: the trader's
        id stays taken for ID_WINDOW, a fingerprint for DEDUP_WINDOW; and a timestamped alert
        for as long as it would still pass as fresh, so a captured one cannot be replayed."""
        since = now - self.duplicate_window(alert.dedup_key)
        if alert.timestamp is not None:
            # A first copy can only have been accepted from FUTURE_TOLERANCE before its timestamp on.
            since = min(since, alert.timestamp.timestamp() - FUTURE_TOLERANCE)
        return since

    def duplicate_window(self, dedup_key: str) -> float:
        """How long an alert's key makes a later alert with the same key a duplicate: ID_WINDOW
        for a trader's id, DEDUP_WINDOW for a fingerprint."""
        return self.config.protection.id_window if dedup_key.startswith("id:") else self.config.protection.dedup_window

    def _check_age(self, fired: datetime, lag: int, now: float) -> None:
        age = now - fired.timestamp()
        if age > lag:
            raise StaleAlert(f"the alert fired {age:.0f} s ago, more than its lag of {lag} s")
        if age < -FUTURE_TOLERANCE:
            raise StaleAlert(f"the alert is dated {-age:.0f} s in the future; check the timestamp")

    def describe(self) -> str:
        """The settings in force, for the startup log (no secret among them)."""
        c, p = self.config, self.config.protection
        sources = ", ".join(str(n) for n in p.allowed_sources) or "any"
        platform = f" ({c.web.platform} recognised)" if c.web.platform else ""
        return (
            f"protection: sources={sources}; trusted proxy hops={c.web.trusted_proxy_hops}{platform}; "
            f"bots={'any' if not p.allowed_algo_ids else len(p.allowed_algo_ids)}; "
            f"max amount={p.max_amount or 'none'}; per bot and direction per 24 h="
            f"{p.max_amount_per_day or 'none'}; actions={','.join(a for a in ACTIONS if a in p.allowed_actions)}; "
            f"max size={f'{p.max_size} contracts' if p.max_size else 'none'}; max lag={c.delivery.max_lag} s; "
            f"timestamp {'required' if p.require_timestamp else 'optional'}; lockout after "
            f"{p.lockout_threshold} wrong secrets in {p.lockout_window:g} s for {p.lockout_seconds:g} s; "
            f"secrets accepted: {', '.join(name for name, _ in c.webhook.accepted)}"
        )
