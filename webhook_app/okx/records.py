"""What OKX reports, as we keep it: a bot's snapshot and events, OKX's timestamps, and its numbers
(strings of decimals) read and written exactly."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation


@dataclasses.dataclass(frozen=True)
class BotSnapshot:
    """One bot as OKX reported it at ``read_at``."""

    algo_id: str
    state: str  # OKX's state: starting | running | stopping | stopped; "missing" when OKX knows no such bot
    inst_ids: tuple[str, ...]  # the bot's instrument(s), e.g. ("BTC-USDT-SWAP",); () when unknown
    invest_amt: Decimal | None
    avail_bal: Decimal | None
    frozen_bal: Decimal | None
    total_eq: Decimal | None
    u_time_ms: int | None  # OKX's uTime (epoch ms, OKX's clock)
    read_at: float  # epoch seconds on OKX's clock (our clock + the client's offset), midpoint of the read

    def to_json(self) -> dict:
        """OKX's field names; decimals as plain strings (no exponent), unknown as null."""
        return {
            "algoId": self.algo_id,
            "state": self.state,
            "instIds": list(self.inst_ids),
            "investAmt": decimal_text(self.invest_amt),
            "availBal": decimal_text(self.avail_bal),
            "frozenBal": decimal_text(self.frozen_bal),
            "totalEq": decimal_text(self.total_eq),
            "uTime": None if self.u_time_ms is None else str(self.u_time_ms),
            "readAt": okx_timestamp(self.read_at),
        }

    @classmethod
    def from_json(cls, data: dict) -> BotSnapshot:
        """The inverse of ``to_json`` (``readAt`` comes back to the millisecond)."""
        return cls(
            algo_id=data["algoId"],
            state=data["state"],
            inst_ids=tuple(data["instIds"]),
            invest_amt=okx_decimal(data["investAmt"]),
            avail_bal=okx_decimal(data["availBal"]),
            frozen_bal=okx_decimal(data["frozenBal"]),
            total_eq=okx_decimal(data["totalEq"]),
            u_time_ms=okx_ms(data["uTime"]),
            read_at=_iso_to_ms(data["readAt"]) / 1000,
        )

    @classmethod
    def missing(cls, algo_id: str, read_at: float) -> BotSnapshot:
        """OKX's answer that it knows no such bot (or no longer runs it)."""
        return cls(algo_id, "missing", (), None, None, None, None, None, read_at)


@dataclasses.dataclass(frozen=True)
class OkxAck:
    """OKX's "done" to an action's request (or the dry run's stand-in for it).

    ``already``: OKX did not act because what was asked was already so, in OKX's words (e.g.
    "51291: This Bot does not exist or has been stopped" to a stop, or, for a cancel, that no
    sub-order was live): the alert's target is reached all the same. ``cancelled``: for a cancel,
    the signalOrdIds whose cancel OKX accepted (acceptance only: OKX cancels them shortly)."""

    algo_id: str
    dry_run: bool = False
    already: str = ""
    cancelled: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class BotEvent:
    """One entry of a bot's event history, as OKX listed it."""

    event_type: str  # system_action | user_action | signal_processing (as OKX says)
    event_status: str  # success | failure
    ctime_ms: int  # eventCtime, epoch ms on OKX's clock
    message: str  # eventProcessMsg

    def to_json(self) -> dict:
        return {
            "eventType": self.event_type,
            "eventStatus": self.event_status,
            "eventCtime": _ms_to_iso(self.ctime_ms),
            "eventProcessMsg": self.message,
        }

    @classmethod
    def from_json(cls, data: dict) -> BotEvent:
        return cls(data["eventType"], data["eventStatus"], _iso_to_ms(data["eventCtime"]), data["eventProcessMsg"])


def okx_timestamp(epoch_seconds: float) -> str:
    """ISO 8601 UTC with exactly three millisecond digits, e.g. 2020-12-08T09:08:57.715Z."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bot_from_okx(row: dict, algo_id: str, read_at: float) -> BotSnapshot:
    """A row of orders-algo-details or orders-algo-pending. ``algo_id``: the one asked for,
    used only when OKX's row does not name its bot."""
    return BotSnapshot(
        algo_id=okx_text(row.get("algoId")) or algo_id,
        state=okx_text(row.get("state")),
        inst_ids=_inst_ids(row.get("instIds")),
        invest_amt=okx_decimal(row.get("investAmt")),
        avail_bal=okx_decimal(row.get("availBal")),
        frozen_bal=okx_decimal(row.get("frozenBal")),
        total_eq=okx_decimal(row.get("totalEq")),
        u_time_ms=okx_ms(row.get("uTime")),
        read_at=read_at,
    )


def okx_text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _inst_ids(value: object) -> tuple[str, ...]:
    """OKX's instIds: a list, or one comma-separated string."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return ()
    return tuple(item.strip() for item in value if isinstance(item, str) and item.strip())


def okx_decimal(value: object) -> Decimal | None:
    """A decimal from OKX's string (or an integer), exactly; None when absent, blank or not a finite number.
    A JSON float is refused (None): it may already have been rounded."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def okx_ms(value: object) -> int | None:
    """Epoch milliseconds from OKX's digit string (or an integer); None otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def decimal_text(value: Decimal | None) -> str | None:
    """A Decimal as OKX-style text with no exponent, all its digits kept (1E+2 -> "100", 1.50 -> "1.50")."""
    return None if value is None else format(value, "f")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms_to_iso(epoch_ms: int) -> str:
    """Exact, with no float: 1607418537715 -> 2020-12-08T09:08:57.715Z."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_to_ms(text: str) -> int:
    """The inverse of ``_ms_to_iso`` (and of ``okx_timestamp``), to the millisecond."""
    return (datetime.fromisoformat(text.replace("Z", "+00:00")) - _EPOCH) // timedelta(milliseconds=1)


def plain_decimal(value: Decimal) -> str:
    """A Decimal as a plain string with no exponent and no trailing zeros, exactly:
    1E+2 -> "100", 10.50 -> "10.5". Unlike ``normalize()``, it never rounds."""
    return format(significant(value), "f")


def significant(value: Decimal) -> Decimal:
    """``value`` with trailing zeros dropped, exactly (``normalize()`` rounds at 28 digits)."""
    sign, digits, exponent = value.as_tuple()
    digits = list(digits)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exponent += 1
    if digits == [0]:
        exponent = 0
    return Decimal((sign, tuple(digits), exponent))
