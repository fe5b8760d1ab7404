"""A signal bot's positions (net mode) and sub-orders, with the fields OKX's reads list."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from tests.okx_stand_in.instruments import Instrument, plain, rounded

ZERO = Decimal(0)
OPEN_STATES = ("live", "partially_filled")  # what cancel-sub-order may cancel and a fill may fill
MAINTENANCE_RATE = Decimal("0.004")


@dataclasses.dataclass
class Position:
    """One instrument's net position: ``pos`` > 0 long, < 0 short, in contracts."""

    inst_id: str
    pos: Decimal = ZERO
    avg_px: Decimal = ZERO
    margin: Decimal = ZERO  # the part of the bot's frozenBal this position holds
    c_time_ms: int = 0
    u_time_ms: int = 0

    def opening(self, signed: Decimal) -> Decimal:
        """How many contracts of a fill of ``signed`` (buy > 0) would open or grow a position."""
        if self.pos and (self.pos > 0) != (signed > 0):
            return max(ZERO, abs(signed) - abs(self.pos))
        return abs(signed)

    def apply(self, signed: Decimal, px: Decimal, ct_val: Decimal, lever: Decimal) -> tuple[Decimal, ...]:
        """A fill of ``signed`` contracts at ``px``: it first reduces an opposite position, and
        what is left opens the other way. Returns (realized PnL, margin released, margin added)."""
        pnl = released = added = ZERO
        if self.pos and (self.pos > 0) != (signed > 0):
            closed, direction = min(abs(signed), abs(self.pos)), (1 if self.pos > 0 else -1)
            pnl = (px - self.avg_px) * closed * ct_val * direction
            released = self.margin * closed / abs(self.pos)
            self.margin -= released
            self.pos -= direction * closed
            signed += direction * closed
            if not self.pos:
                self.avg_px = self.margin = ZERO
        if signed:
            self.avg_px = (abs(self.pos) * self.avg_px + abs(signed) * px) / (abs(self.pos) + abs(signed))
            self.pos += signed
            added = abs(signed) * ct_val * px / lever
            self.margin += added
        return pnl, released, added

    def okx_json(self, algo_id: str, inst: Instrument, lever: Decimal) -> dict:
        """The position as GET positions gives it (cross margin, USDT, mark price = ``inst.last``)."""
        notional = abs(self.pos) * inst.ct_val * inst.last
        upl = (inst.last - self.avg_px) * self.pos * inst.ct_val
        imr = notional / lever
        return {
            "algoId": algo_id,
            "algoClOrdId": "",
            "instType": "SWAP",
            "instId": self.inst_id,
            "cTime": str(self.c_time_ms),
            "uTime": str(self.u_time_ms),
            "avgPx": rounded(self.avg_px),
            "ccy": "USDT",
            "lever": plain(lever),
            "liqPx": "",
            "posSide": "net",
            "pos": plain(self.pos),
            "mgnMode": "cross",
            "mgnRatio": "",
            "imr": rounded(imr),
            "mmr": rounded(notional * MAINTENANCE_RATE),
            "upl": rounded(upl),
            "uplRatio": rounded(upl / imr) if imr else "0",
            "last": plain(inst.last),
            "notionalUsd": rounded(notional),
            "adl": "1",
            "markPx": plain(inst.last),
        }


@dataclasses.dataclass
class SubOrder:
    """One sub-order; ``cl_ord_id`` is its signalOrdId ("O…"), ``ord_id`` OKX's order id."""

    ord_id: str
    cl_ord_id: str
    inst_id: str
    side: str  # buy | sell
    ord_type: str  # market | limit
    sz: Decimal
    px: Decimal | None  # None for market
    reduce_only: bool = False
    state: str = "live"  # live | partially_filled | filled | canceled | cancelling
    acc_fill_sz: Decimal = ZERO
    avg_px: Decimal = ZERO
    pnl: Decimal = ZERO
    c_time_ms: int = 0
    u_time_ms: int = 0

    @property
    def signed_remaining(self) -> Decimal:
        remaining = self.sz - self.acc_fill_sz
        return remaining if self.side == "buy" else -remaining

    def record_fill(self, sz: Decimal, px: Decimal, pnl: Decimal, now_ms: int) -> None:
        if sz:
            self.avg_px = (self.acc_fill_sz * self.avg_px + sz * px) / (self.acc_fill_sz + sz)
            self.acc_fill_sz += sz
            self.pnl += pnl
        if self.acc_fill_sz >= self.sz:
            self.state = "filled"
        elif not sz:  # a reduce-only order with nothing left to reduce
            self.state = "canceled"
        else:
            self.state = "partially_filled"
        self.u_time_ms = now_ms

    def okx_json(self, algo_id: str, inst: Instrument, lever: Decimal) -> dict:
        """The sub-order as GET sub-orders gives it."""
        return {
            "algoId": algo_id,
            "algoClOrdId": "",
            "instType": "SWAP",
            "instId": self.inst_id,
            "algoOrdType": "contract",
            "ordId": self.ord_id,
            "clOrdId": self.cl_ord_id,
            "cTime": str(self.c_time_ms),
            "uTime": str(self.u_time_ms),
            "tdMode": "cross",
            "ccy": "USDT",
            "ordType": self.ord_type,
            "sz": plain(self.sz),
            "state": self.state,
            "side": self.side,
            "px": "" if self.px is None else plain(self.px),
            "fee": "0",
            "feeCcy": "USDT",
            "avgPx": rounded(self.avg_px) if self.acc_fill_sz else "",
            "accFillSz": plain(self.acc_fill_sz),
            "posSide": "net",
            "pnl": rounded(self.pnl),
            "ctVal": plain(inst.ct_val),
            "lever": plain(lever),
            "tag": "",
        }
