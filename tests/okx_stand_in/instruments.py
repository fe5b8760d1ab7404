"""The perpetual swaps OKX lists (GET /api/v5/public/instruments), and how it writes numbers."""

from __future__ import annotations

import dataclasses
from decimal import Decimal


def plain(value: Decimal) -> str:
    """A decimal as OKX writes it: digits and a point, never an exponent."""
    return format(value, "f")


def rounded(value: Decimal) -> str:
    """A computed figure (a quotient) as OKX writes it: at most 10 decimals, no trailing zeros."""
    return plain(value.quantize(Decimal("1e-10")).normalize())


@dataclasses.dataclass
class Instrument:
    """One SWAP: its contract value and size steps, and the price a market order fills at
    (also the mark and last price; a test moves it with ``OkxStandIn.set_price``)."""

    inst_id: str
    ct_val: Decimal
    lot_sz: Decimal
    min_sz: Decimal
    tick_sz: Decimal
    last: Decimal

    def size_refusal(self, sz: Decimal) -> tuple[str, str] | None:
        """OKX's refusal of an order of ``sz`` contracts, or None when the size is tradable."""
        if sz % self.lot_sz:
            return "51121", "Order quantity must be a multiple of the lot size."
        if sz < self.min_sz:
            return "51020", "Your order should meet or exceed the minimum order amount."
        return None

    def okx_json(self) -> dict:
        settle = self.inst_id.split("-")[1]
        return {
            "instType": "SWAP",
            "instId": self.inst_id,
            "uly": self.inst_id.removesuffix("-SWAP"),
            "instFamily": self.inst_id.removesuffix("-SWAP"),
            "settleCcy": settle,
            "ctVal": plain(self.ct_val),
            "ctMult": "1",
            "ctValCcy": self.inst_id.split("-")[0],
            "ctType": "linear",
            "lotSz": plain(self.lot_sz),
            "minSz": plain(self.min_sz),
            "tickSz": plain(self.tick_sz),
            "lever": "100",
            "state": "live",
        }


def default_instruments() -> dict[str, Instrument]:
    """BTC and ETH with OKX's steps (contract value, lot, minimum, tick) and a round price."""
    return {
        "BTC-USDT-SWAP": Instrument(
            "BTC-USDT-SWAP", Decimal("0.01"), Decimal("0.01"), Decimal("0.01"), Decimal("0.1"), Decimal("60000")
        ),
        "ETH-USDT-SWAP": Instrument(
            "ETH-USDT-SWAP", Decimal("0.1"), Decimal("0.01"), Decimal("0.01"), Decimal("0.01"), Decimal("3000")
        ),
    }
