"""A valid ``BotOrder`` for each action, as the intake makes them, with one field changed per test
(``bot_order("buy", sz="0.2")``), and the client a test sends them with."""

from __future__ import annotations

from webhook_app.okx.actions import BotOrder
from webhook_app.okx.client import OkxClient

BOT = "581628185981813760"  # the stand-in's default bot
BTC = "BTC-USDT-SWAP"
ETH = "ETH-USDT-SWAP"

BODIES = {
    "add": {"algoId": BOT, "type": "add", "amt": "10"},
    "reduce": {"algoId": BOT, "type": "reduce", "amt": "2.5"},
    "buy": {"instId": BTC, "algoId": BOT, "side": "buy", "ordType": "market", "sz": "0.5"},
    "sell": {"instId": BTC, "algoId": BOT, "side": "sell", "ordType": "market", "sz": "0.5"},
    "close": {"algoId": BOT, "instId": BTC},
    "cancel": {"algoId": BOT, "instId": BTC},
    "tpsl": {"algoId": BOT, "exitSettingParam": {"tpSlType": "pnl", "tpPct": "0.05", "slPct": "0.02"}},
}


def bot_order(action: str, **changes) -> BotOrder:
    """``action``'s valid order; ``changes`` replace (None: drop) fields of its body (of
    exitSettingParam for tpsl, but its algoId). stop's body is OKX's array of one ``{"algoId"}``."""
    if action == "stop":
        return BotOrder("stop", [{"algoId": changes.get("algoId", BOT)}])
    if action == "tpsl":
        algo_id = changes.pop("algoId", BOT)
        setting = _replaced(BODIES["tpsl"]["exitSettingParam"], changes)
        return BotOrder("tpsl", {"algoId": algo_id, "exitSettingParam": setting})
    return BotOrder(action, _replaced(BODIES[action], changes))


def _replaced(body: dict, changes: dict) -> dict:
    merged = {**body, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def client_of(okx, **options) -> OkxClient:
    """A client with the stand-in's credentials; ``options`` are ``OkxClient``'s."""
    options.setdefault("connect_timeout", 0.5)
    options.setdefault("read_timeout", 2.0)
    return OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase, **options)
