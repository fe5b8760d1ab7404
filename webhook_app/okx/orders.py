"""What OKX reports of a signal bot's trading, as we keep it: its sub-orders, its net positions and
its TP/SL setting. Numbers stay exact (``Decimal`` from OKX's strings), times OKX's epoch ms; each
record keeps the row as OKX gave it (``row``), which is what evidence shows."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from webhook_app.okx.records import BotSnapshot, bot_from_okx, okx_decimal, okx_ms, okx_text

# The states a sub-order may be read by (GET sub-orders' ``state``). OKX's English docs spell the
# last one "cancelled", its Chinese docs and its answers "canceled" ⚠: the reads try both.
SUB_ORDER_STATES = ("live", "partially_filled", "filled", "canceled")
CANCELED_SPELLINGS = ("canceled", "cancelled")
OPEN_STATES = ("live", "partially_filled")  # what cancel-sub-order may still cancel


@dataclasses.dataclass(frozen=True)
class SubOrder:
    """One row of GET sub-orders. ``cl_ord_id`` is the signalOrdId that cancel-sub-order takes."""

    inst_id: str
    side: str  # buy | sell
    sz: Decimal | None  # contracts; None when OKX's value is not a number
    state: str  # live | partially_filled | filled | canceled | cancelling
    c_time_ms: int | None
    cl_ord_id: str
    ord_id: str
    ord_type: str
    acc_fill_sz: Decimal | None
    row: dict = dataclasses.field(compare=False, repr=False)

    @classmethod
    def from_okx(cls, row: dict) -> SubOrder:
        return cls(
            inst_id=okx_text(row.get("instId")),
            side=okx_text(row.get("side")),
            sz=okx_decimal(row.get("sz")),
            state=okx_text(row.get("state")),
            c_time_ms=okx_ms(row.get("cTime")),
            cl_ord_id=okx_text(row.get("clOrdId")),
            ord_id=okx_text(row.get("ordId")),
            ord_type=okx_text(row.get("ordType")),
            acc_fill_sz=okx_decimal(row.get("accFillSz")),
            row=row,
        )


@dataclasses.dataclass(frozen=True)
class Position:
    """One row of GET positions: the bot's net position in one instrument."""

    inst_id: str
    pos: Decimal | None  # contracts, net mode: > 0 long, < 0 short; None when not a number
    avg_px: Decimal | None
    u_time_ms: int | None
    row: dict = dataclasses.field(compare=False, repr=False)

    @property
    def side(self) -> str:
        """long | short | "" (flat, or unknown)."""
        if not self.pos:
            return ""
        return "long" if self.pos > 0 else "short"

    @classmethod
    def from_okx(cls, row: dict) -> Position:
        return cls(
            inst_id=okx_text(row.get("instId")),
            pos=okx_decimal(row.get("pos")),
            avg_px=okx_decimal(row.get("avgPx")),
            u_time_ms=okx_ms(row.get("uTime")),
            row=row,
        )

    def to_json(self) -> dict:
        """OKX's names; ``pos`` (signed, as net mode has it) and ``avgPx`` as OKX wrote them, never
        rounded; ``side`` long or short from the sign ("" when OKX's pos is not a number)."""
        return {
            "instId": self.inst_id,
            "side": self.side,
            "pos": _as_written(self.row.get("pos")),
            "avgPx": _as_written(self.row.get("avgPx")),
            "uTime": None if self.u_time_ms is None else str(self.u_time_ms),
        }


@dataclasses.dataclass(frozen=True)
class BotPositions:
    """GET positions of one bot: its open positions (a row with pos 0 holds nothing, and is left
    out), read at ``read_at`` (epoch seconds on OKX's clock, the read's midpoint)."""

    algo_id: str
    positions: tuple[Position, ...]
    read_at: float

    @property
    def open(self) -> tuple[Position, ...]:
        return tuple(position for position in self.positions if position.pos != 0)


@dataclasses.dataclass(frozen=True)
class ExitSetting:
    """The bot's TP/SL (orders-algo-details' exitSettingParam), as OKX wrote it: "" when unset."""

    tp_sl_type: str  # pnl | price | ""
    tp_pct: str
    sl_pct: str

    def to_json(self) -> dict:
        return {"tpSlType": self.tp_sl_type, "tpPct": self.tp_pct, "slPct": self.sl_pct}

    @classmethod
    def from_okx(cls, value: object) -> ExitSetting | None:
        """None when OKX gave no exitSettingParam object."""
        if not isinstance(value, dict):
            return None
        return cls(okx_text(value.get("tpSlType")), okx_text(value.get("tpPct")), okx_text(value.get("slPct")))


@dataclasses.dataclass(frozen=True)
class BotDetails:
    """orders-algo-details of one bot: its snapshot (state "missing" when OKX knows no such bot),
    its TP/SL, and OKX's row (None when missing)."""

    snapshot: BotSnapshot
    exit_setting: ExitSetting | None
    row: dict | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def from_okx(cls, row: dict, algo_id: str, read_at: float) -> BotDetails:
        return cls(bot_from_okx(row, algo_id, read_at), ExitSetting.from_okx(row.get("exitSettingParam")), row)

    @classmethod
    def missing(cls, algo_id: str, read_at: float) -> BotDetails:
        return cls(BotSnapshot.missing(algo_id, read_at), None, None)


def _as_written(value: object) -> str:
    """OKX's string for a number, unchanged (an integer as its digits; anything else "")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return okx_text(value)
