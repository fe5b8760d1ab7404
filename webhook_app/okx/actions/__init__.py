"""Every signal-bot action an alert may ask for: which OKX endpoint carries it, and the shape
every part of the service shares (``BotOrder``). Each action's module beside this one holds its
request, its outcome table and its evidence together."""

from __future__ import annotations

import dataclasses
import json

SIGNAL = "/api/v5/tradingBot/signal"
MARGIN_BALANCE = f"{SIGNAL}/margin-balance"
SUB_ORDER = f"{SIGNAL}/sub-order"
CANCEL_SUB_ORDER = f"{SIGNAL}/cancel-sub-order"
CLOSE_POSITION = f"{SIGNAL}/close-position"
AMEND_TPSL = f"{SIGNAL}/amendTPSL"
STOP_ORDER_ALGO = f"{SIGNAL}/stop-order-algo"

# action -> the POST endpoint whose rate budget (20 per 2 s per User ID) its request spends.
# ``cancel`` first reads the bot's live sub-orders, then posts one cancel-sub-order for each.
ENDPOINTS = {
    "add": MARGIN_BALANCE,
    "reduce": MARGIN_BALANCE,
    "buy": SUB_ORDER,
    "sell": SUB_ORDER,
    "close": CLOSE_POSITION,
    "cancel": CANCEL_SUB_ORDER,
    "tpsl": AMEND_TPSL,
    "stop": STOP_ORDER_ALGO,
}
ACTIONS = tuple(ENDPOINTS)
DEFAULT_ALLOWED_ACTIONS = ("add", "reduce")
# Actions whose POST carries OKX's ``expTime`` header: OKX never executes them after it.
EXPIRING = ("buy", "sell")


def endpoint_name(path: str) -> str:
    """The short name of an endpoint ("sub-order"), as the journal and the pacing ledger key it."""
    return path.rsplit("/", 1)[-1]


def actions_of(endpoint: str) -> tuple[str, ...]:
    """The actions whose requests go to ``endpoint`` (a short name)."""
    return tuple(action for action, path in ENDPOINTS.items() if endpoint_name(path) == endpoint)


@dataclasses.dataclass(frozen=True)
class BotOrder:
    """What one alert asks of one bot at OKX: the action and the JSON body of its POST (OKX's
    names, numbers as strings). For ``cancel`` the body is ``{"algoId", "instId"}``: the
    sub-orders to cancel are read at send time."""

    action: str
    body: dict | list

    @property
    def path(self) -> str:
        return ENDPOINTS[self.action]

    @property
    def endpoint(self) -> str:
        return endpoint_name(self.path)

    @property
    def algo_id(self) -> str:
        """The bot it is for (stop-order-algo's body is a list of one)."""
        body = self.body[0] if isinstance(self.body, list) else self.body
        return body["algoId"]

    def body_bytes(self) -> bytes:
        """The exact bytes that are signed and sent."""
        return json.dumps(self.body, separators=(",", ":")).encode()
