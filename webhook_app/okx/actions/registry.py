"""Each action's module (its request, its outcome table, its evidence), by the action's name."""

from __future__ import annotations

from types import ModuleType

from webhook_app.okx.actions import ACTIONS, BotOrder, amend_tpsl, cancel, close_position, margin, stop, sub_order
from webhook_app.okx.actions.common import Finding, Reader, SentWindow

MODULES: dict[str, ModuleType] = {
    "add": margin,
    "reduce": margin,
    "buy": sub_order,
    "sell": sub_order,
    "close": close_position,
    "cancel": cancel,
    "tpsl": amend_tpsl,
    "stop": stop,
}
SUB_ORDER_ACTIONS = ("buy", "sell")  # sent with expTime


def module_for(action: str) -> ModuleType:
    """ValueError for an action the catalogue does not list."""
    try:
        return MODULES[action]
    except KeyError:
        raise ValueError(f"no such action: {action!r} (one of {', '.join(ACTIONS)})") from None


def outcomes_for(action: str) -> dict:
    """The action's own table of OKX codes, read before the common one (``errors.CODE_OUTCOMES``)."""
    return module_for(action).OUTCOMES


def settle(reader: Reader, order: BotOrder, window: SentWindow) -> Finding:
    """What OKX's records say of ``order`` sent ambiguously in ``window``: read them with ``reader``
    no earlier than ``settle_after_ms``."""
    return module_for(order.action).settle(reader, order, window)


def settle_after_ms(order: BotOrder, window: SentWindow) -> int:
    """OKX's epoch ms from which the records can tell: for buy/sell past expTime (and a grace),
    for the others at once (``window.ended_ms``)."""
    return module_for(order.action).settle_after_ms(order, window)
