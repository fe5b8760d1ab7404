"""A buy's or sell's size given in coin units (``"sizeIn": "base"``, as TradingView's
``{{strategy.order.contracts}}`` gives it) turned into the contracts OKX counts, exactly: a size
that is not a whole number of lots is refused naming the nearest sizes that are, never rounded.
The instruments' figures come through a narrow contract (``ContractSizes``): OKX's public list in
the service (``okx.instruments.InstrumentReader``), a fake in unit tests."""

from __future__ import annotations

import dataclasses
import decimal
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Protocol

from webhook_app.errors import Refused, not_sent
from webhook_app.intake.alerts import Alert, InvalidAlert
from webhook_app.okx.actions import BotOrder
from webhook_app.okx.instruments import ContractSpec, InstrumentsUnavailable, UnknownInstrument
from webhook_app.okx.records import plain_decimal

# Exact arithmetic: a size below 10^12 with 16 decimals over a step of 16 decimals stays far inside 60 digits.
_EXACT = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.DivisionByZero])


class ContractSizes(Protocol):
    """What the intake asks of the instruments: one swap's figures (``ContractSpec``), or
    ``UnknownInstrument``, or ``InstrumentsUnavailable``."""

    def spec(self, inst_id: str) -> ContractSpec: ...


class InstrumentsRefused(Refused):
    """The instrument's figures could not be read, so a size in coin units cannot be turned into
    contracts (503): nothing is journaled, and TradingView sends the alert again."""

    status, kind = 503, "instruments_unavailable"

    def __init__(self, inst_id: str, reason: str):
        problem = f"OKX's figures for {inst_id} (ctVal, lotSz) could not be read ({reason}), so its size in coin units "
        problem += "could not be turned into contracts"
        super().__init__(problem, "instId", message=not_sent(problem))


def in_contracts(alert: Alert, instruments: ContractSizes) -> Alert:
    """``alert`` with its sub-order's size in contracts: as it is, unless given in coin units."""
    if alert.size_in != "base":
        return alert
    body = alert.order.body
    inst_id = body["instId"]
    try:
        spec = instruments.spec(inst_id)
    except UnknownInstrument:
        raise _size_refused("instId", f"OKX lists no perpetual swap {inst_id}, so its size cannot be counted") from None
    except InstrumentsUnavailable as exc:
        raise InstrumentsRefused(inst_id, str(exc)) from None
    contracts = contracts_of(Decimal(body["sz"]), spec)
    order = BotOrder(alert.action, {**body, "sz": plain_decimal(contracts)})
    return dataclasses.replace(alert, order=order, size_in="contracts")


def contracts_of(base: Decimal, spec: ContractSpec) -> Decimal:
    """``base`` coin units of ``spec``'s swap in contracts, when that is a whole number of lots
    and at least the minimum; else ``InvalidAlert`` (field size) naming the nearest valid sizes."""
    coin = spec.inst_id.split("-")[0]
    if spec.ct_val_ccy != coin:
        raise _size_refused(
            "sizeIn",
            f'"base" counts {coin}, but a contract of {spec.inst_id} is worth {spec.ct_val} {spec.ct_val_ccy} '
            '(an inverse contract): send the size in contracts ("sizeIn": "contracts")',
        )
    per_contract = _EXACT.multiply(spec.ct_val, spec.ct_mult)  # coin units in one contract
    per_lot = _EXACT.multiply(per_contract, spec.lot_sz)
    lots = _lots(base, per_lot)
    if lots is not None and lots * spec.lot_sz >= spec.min_sz:
        return _EXACT.multiply(lots, spec.lot_sz)
    nearest = _nearest(base, per_lot, spec)
    unit = f"one contract of {spec.inst_id} is {plain_decimal(per_contract)} {coin}, sizes go in lots of "
    unit += f"{plain_decimal(spec.lot_sz)} contracts from {plain_decimal(spec.min_sz)}"
    why = "is below the smallest order" if lots is not None else "is not a whole number of lots"
    raise _size_refused(
        "size",
        f"{plain_decimal(base)} {coin} {why} ({unit}); the nearest valid sizes are "
        + " and ".join(f"{plain_decimal(c * per_contract)} {coin} ({plain_decimal(c)} contracts)" for c in nearest)
        + "; a size is never rounded",
    )


def _lots(base: Decimal, per_lot: Decimal) -> Decimal | None:
    """How many lots ``base`` is, when a whole number; else None."""
    with decimal.localcontext(_EXACT):
        try:
            lots = base / per_lot
        except decimal.Inexact:
            return None
    return lots if lots == lots.to_integral_value() else None


def _nearest(base: Decimal, per_lot: Decimal, spec: ContractSpec) -> list[Decimal]:
    """The valid sizes (in contracts) just below and just above ``base``: below only when it is at
    least the minimum; above at least the minimum."""
    with decimal.localcontext(decimal.Context(prec=60)):
        ratio = base / per_lot
    below = ratio.to_integral_value(rounding=ROUND_FLOOR) * spec.lot_sz
    above = ratio.to_integral_value(rounding=ROUND_CEILING) * spec.lot_sz
    if above == below:  # a whole number of lots, below the minimum
        above = below + spec.lot_sz
    above = max(above, spec.min_sz)
    return [size for size in (below, above) if size >= spec.min_sz and size > 0]


def _size_refused(field: str, problem: str) -> InvalidAlert:
    return InvalidAlert([{"field": field, "message": problem}])
