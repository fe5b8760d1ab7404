"""What a leaked or replayed alert can do: who may send, how old an alert may be, which
bots and how much, and lockout of addresses that guess the secret."""
from __future__ import annotations

import collections
import ipaddress
import threading
import time
from datetime import datetime
from typing import Callable, Iterable, Optional

from .alerts import Alert, InvalidAlert
from .config import TRADINGVIEW_ADDRESSES, Config

FUTURE_TOLERANCE = 5.0  # seconds an alert may be dated ahead of our clock
_TRADINGVIEW = frozenset(ipaddress.ip_address(a) for a in TRADINGVIEW_ADDRESSES)


class Forbidden(Exception):
    """The sender or the bot is not allowed (403)."""

    def __init__(self, field: str, message: str, kind: str):
        super().__init__(message)
        self.field, self.kind = field, kind


class StaleAlert(Exception):
    """The alert is older than its lag, or dated in the future (422)."""


class LockedOut(Exception):
    """Too many wrong secrets from this address (429)."""

    def __init__(self, retry_after: float):
        super().__init__(f"too many wrong secrets from this address; try again in {retry_after:.0f} s")
        self.retry_after = retry_after


def client_address(peer: Optional[str], forwarded_for: Iterable[str], trusted_hops: int) -> Optional[str]:
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
    try:
        return str(ipaddress.ip_address(candidate)) if candidate else None
    except ValueError:
        return None


def is_tradingview(address: Optional[str]) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address) in _TRADINGVIEW
    except ValueError:
        return False


class Lockout:
    """Locks out an address after ``threshold`` wrong secrets within ``window`` seconds.

    TradingView's own addresses are never locked out: every TradingView user sends from
    them, so anyone could otherwise lock out your alerts by aiming wrong secrets at this
    URL through TradingView. Guessing through them is bounded by TradingView's own alert
    limits and the secret's length (at least 16 characters)."""

    def __init__(self, threshold: int, window: float, duration: float, max_tracked: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.threshold, self.window, self.duration = threshold, window, duration
        self.max_tracked = max_tracked
        self._clock = clock
        self._failures: collections.OrderedDict[str, collections.deque] = collections.OrderedDict()
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, address: Optional[str]) -> None:
        if address is None or is_tradingview(address):
            return
        with self._lock:
            until = self._locked_until.get(address)
            if until is None:
                return
            remaining = until - self._clock()
            if remaining <= 0:
                del self._locked_until[address]
                return
        raise LockedOut(remaining)

    def failure(self, address: Optional[str]) -> bool:
        """Count a wrong secret; True when it locked the address out."""
        if address is None or is_tradingview(address):
            return False
        with self._lock:
            now = self._clock()
            failures = self._failures.pop(address, None) or collections.deque()
            failures.append(now)
            while failures and now - failures[0] > self.window:
                failures.popleft()
            self._failures[address] = failures  # most recent last
            while len(self._failures) > self.max_tracked:  # bounded memory under a spray of addresses
                self._failures.popitem(last=False)
            if len(failures) >= self.threshold:
                self._locked_until[address] = now + self.duration
                del self._failures[address]
                return True
            return False


class Protection:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time):
        self.config = config
        self._clock = clock
        self.lockout = Lockout(config.lockout_threshold, config.lockout_window, config.lockout_seconds)

    def client(self, peer: Optional[str], forwarded_for: Iterable[str]) -> Optional[str]:
        return client_address(peer, forwarded_for, self.config.trusted_proxy_hops)

    def check_source(self, address: Optional[str]) -> None:
        sources = self.config.allowed_sources
        if not sources:
            return
        try:
            ip = ipaddress.ip_address(address) if address else None
        except ValueError:
            ip = None
        if ip is None or not any(ip in network for network in sources):
            raise Forbidden("source", "this address may not send alerts (ALLOWED_SOURCES)", "forbidden_source")

    def check_alert(self, alert: Alert) -> None:
        config = self.config
        if alert.timestamp is None:
            if config.require_timestamp:
                raise InvalidAlert([{"field": "timestamp", "message": "is required (REQUIRE_TIMESTAMP=1); "
                                                                      "add \"timestamp\": \"{{timenow}}\""}])
        else:
            self._check_age(alert.timestamp, alert.max_lag or config.max_lag)
        if config.allowed_algo_ids and alert.request.algo_id not in config.allowed_algo_ids:
            raise Forbidden("algoId", "this bot is not in ALLOWED_ALGO_IDS", "forbidden_bot")
        if config.max_amount is not None and alert.amount > config.max_amount:
            raise InvalidAlert([{"field": "amount", "message": f"is over MAX_AMOUNT ({config.max_amount})"}])

    def _check_age(self, fired: datetime, lag: int) -> None:
        age = self._clock() - fired.timestamp()
        if age > lag:
            raise StaleAlert(f"the alert fired {age:.0f} s ago, more than its lag of {lag} s")
        if age < -FUTURE_TOLERANCE:
            raise StaleAlert(f"the alert is dated {-age:.0f} s in the future; check the timestamp")

    def describe(self) -> str:
        """The settings in force, for the startup log (no secret among them)."""
        c = self.config
        sources = ", ".join(str(n) for n in c.allowed_sources) or "any"
        return (f"protection: sources={sources}; trusted proxy hops={c.trusted_proxy_hops}; "
                f"bots={'any' if not c.allowed_algo_ids else len(c.allowed_algo_ids)}; "
                f"max amount={c.max_amount or 'none'}; per bot and direction per 24 h="
                f"{c.max_amount_per_day or 'none'}; max lag={c.max_lag} s; "
                f"timestamp {'required' if c.require_timestamp else 'optional'}; lockout after "
                f"{c.lockout_threshold} wrong secrets in {c.lockout_window:g} s for {c.lockout_seconds:g} s; "
                f"secrets accepted: {', '.join(name for name, _ in c.accepted_secrets)}")
