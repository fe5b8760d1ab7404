"""The account's signal bots: their balances, positions, sub-orders, TP/SL and event history."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal

from tests.okx_stand_in.instruments import Instrument, plain
from tests.okx_stand_in.orders import ZERO, Position, SubOrder


@dataclasses.dataclass
class Event:
    """One entry of a bot's event history, as event-history lists it."""

    event_type: str  # system_action | user_action | signal_processing
    event_status: str  # success | failure
    ctime_ms: int  # eventCtime: epoch ms on the stand-in's (OKX's) clock
    message: str  # eventProcessMsg
    alert_msg: str = ""  # the alert text OKX received, for signal_processing
    triggered: list[str] = dataclasses.field(default_factory=list)  # clOrdIds of the sub-orders placed

    def okx_json(self, algo_id: str) -> dict:
        return {
            "algoId": algo_id,
            "eventType": self.event_type,
            "eventStatus": self.event_status,
            "eventCtime": str(self.ctime_ms),
            "eventUtime": str(self.ctime_ms),
            "eventProcessMsg": self.message,
            "alertMsg": self.alert_msg,
            "triggeredOrdData": [{"clOrdId": cl_ord_id} for cl_ord_id in self.triggered],
        }


def no_exit_setting() -> dict:
    """exitSettingParam as orders-algo-details gives it when no TP/SL is set."""
    return {"tpSlType": "", "tpPct": "", "slPct": ""}


@dataclasses.dataclass
class Bot:
    """One signal bot: its state and the balance fields orders-algo-details reports, its net
    positions by instId, its sub-orders (oldest first) and its TP/SL (``exit_setting``)."""

    state: str = "running"  # starting | running | stopping | stopped
    inst_ids: list[str] = dataclasses.field(default_factory=lambda: ["BTC-USDT-SWAP"])
    invest_amt: Decimal = Decimal("100")
    avail_bal: Decimal = Decimal("40")
    frozen_bal: Decimal = Decimal("0")
    total_eq: Decimal = Decimal("140")
    u_time_ms: int = 0
    c_time_ms: int = 0
    events: list[Event] = dataclasses.field(default_factory=list)
    lever: Decimal = Decimal("10")
    positions: dict[str, Position] = dataclasses.field(default_factory=dict)
    orders: list[SubOrder] = dataclasses.field(default_factory=list)
    exit_setting: dict = dataclasses.field(default_factory=no_exit_setting)

    def okx_json(self, algo_id: str) -> dict:
        """The bot as orders-algo-details and orders-algo-pending give it; decimals as plain strings."""
        return {
            "algoId": algo_id,
            "algoOrdType": "contract",
            "state": self.state,
            "instType": "SWAP",
            "instIds": list(self.inst_ids),
            "investAmt": plain(self.invest_amt),
            "availBal": plain(self.avail_bal),
            "frozenBal": plain(self.frozen_bal),
            "totalEq": plain(self.total_eq),
            "lever": plain(self.lever),
            "exitSettingParam": dict(self.exit_setting),
            "uTime": str(self.u_time_ms),
            "cTime": str(self.c_time_ms),
        }

    def position(self, inst_id: str) -> Position:
        """The position in ``inst_id`` (``pos`` 0 when there is none)."""
        return self.positions.get(inst_id) or Position(inst_id)

    def order(self, cl_ord_id: str) -> SubOrder | None:
        return next((order for order in self.orders if order.cl_ord_id == cl_ord_id), None)

    def margin_needed(self, inst: Instrument, signed: Decimal, px: Decimal) -> Decimal:
        """The margin a fill of ``signed`` contracts at ``px`` would freeze, less what the part
        reducing an opposite position would release."""
        position = self.position(inst.inst_id)
        opening = position.opening(signed)
        closing = abs(signed) - opening
        released = position.margin * closing / abs(position.pos) if closing else ZERO
        return opening * inst.ct_val * px / self.lever - released

    def reducible(self, inst_id: str, side: str) -> Decimal:
        """How many contracts a reduce-only ``side`` order may fill: the opposite position."""
        pos = self.position(inst_id).pos
        return abs(pos) if pos and (pos > 0) != (side == "buy") else ZERO

    def fill(self, order: SubOrder, sz: Decimal, px: Decimal, inst: Instrument, now_ms: int) -> None:
        """``sz`` more contracts of ``order`` fill at ``px``: the position, the balances (margin
        frozen or released, realized PnL) and the order move. Reduce-only never grows a position."""
        if order.reduce_only:
            sz = min(sz, self.reducible(order.inst_id, order.side))
        position = self.positions.setdefault(order.inst_id, Position(order.inst_id, c_time_ms=now_ms))
        pnl, released, added = position.apply(sz if order.side == "buy" else -sz, px, inst.ct_val, self.lever)
        # normalize(): no trailing zeros from the products (OKX writes "150", not "150.000")
        self.avail_bal = (self.avail_bal + released + pnl - added).normalize()
        self.frozen_bal = (self.frozen_bal + added - released).normalize()
        self.total_eq = (self.total_eq + pnl).normalize()
        position.u_time_ms = self.u_time_ms = now_ms
        if not position.pos:
            del self.positions[order.inst_id]
        order.record_fill(sz, px, pnl, now_ms)


class Bots(dict):
    """The account's signal bots by algoId (``dict[str, Bot]``).

    So that tests about other things may name any algoId, an algoId (digits) never mentioned is a
    running bot with ``Bot``'s default fields, made on its first use. One removed (``pop``, ``del``) is
    unknown to OKX from then on, and after ``clear()`` every algoId not added again is unknown;
    ``unlisted_run = False`` makes OKX know only the listed bots from the start.
    """

    def __init__(self, make_bot: Callable[[], Bot]):
        super().__init__()
        self._make_bot = make_bot
        self.unlisted_run = True
        self.removed: set[str] = set()

    def find(self, algo_id: str) -> Bot | None:
        """The bot OKX knows by ``algo_id``, or None when OKX knows no such bot."""
        unlisted = algo_id not in self and algo_id.isdigit() and algo_id not in self.removed
        if unlisted and self.unlisted_run:
            super().__setitem__(algo_id, self._make_bot())
        return self.get(algo_id)

    def __setitem__(self, algo_id, bot):
        self.removed.discard(algo_id)
        super().__setitem__(algo_id, bot)

    def __delitem__(self, algo_id):
        self.removed.add(algo_id)
        super().__delitem__(algo_id)

    def pop(self, algo_id, *default):
        self.removed.add(algo_id)
        return super().pop(algo_id, *default)

    def popitem(self):
        algo_id, bot = super().popitem()
        self.removed.add(algo_id)
        return algo_id, bot

    def clear(self):
        self.unlisted_run = False
        super().clear()
