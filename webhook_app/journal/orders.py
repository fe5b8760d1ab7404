"""What a journaled alert asked of its bot, read back from the request it journaled: its fields in
the alert's own words (``alert_fields``: what an operator's resend sends again, what /alerts shows)
and one readable line (``summary``: notifications, the CLI, the operator page)."""

from __future__ import annotations

import json

_MARGIN, _SUB_ORDER = ("add", "reduce"), ("buy", "sell")


def alert_fields(action: str, body: dict | list) -> dict:
    """The alert fields that make ``body`` (OKX's request for ``action``), by the alert's names:
    {"amount": "50"}, {"instId": ..., "size": ..., "orderType": ..., "reduceOnly": ...}, ..."""
    if action in _MARGIN:
        fields = {"amount": body["amt"]}
        if "allowReinvest" in body:  # only ever sent to percentage_investment bots
            fields.update(investmentType="percentage_investment", allowReinvest=body["allowReinvest"])
        return fields
    if action in _SUB_ORDER:
        fields = {"instId": body["instId"], "size": body["sz"], "orderType": body["ordType"]}
        fields.update({"price": body["px"]} if "px" in body else {})
        return fields | {"reduceOnly": body.get("reduceOnly", False)}
    if action in ("close", "cancel"):
        return {"instId": body["instId"]}
    if action == "tpsl":
        return dict(body["exitSettingParam"])
    return {}  # stop: the bot alone


def summary(action: str, amount: str, request_body: str) -> str:
    """One line saying what the alert asks: "add 10" (the margin, as it always read), "buy 2
    contracts of BTC-USDT-SWAP at market, reduce-only", "stop the bot"..."""
    if action in _MARGIN:
        return f"{action} {amount}"
    try:
        fields = alert_fields(action, json.loads(request_body))
    except (ValueError, KeyError, TypeError, IndexError):  # a body this release does not know: shown as it is
        return f"{action} {request_body}"
    if action in _SUB_ORDER:
        price = f"limit {fields['price']}" if fields["orderType"] == "limit" else "at market"
        reduce = ", reduce-only" if fields["reduceOnly"] is True else ""
        return f"{action} {fields['size']} contracts of {fields['instId']} {price}{reduce}"
    if action == "close":
        return f"close the {fields['instId']} position at market"
    if action == "cancel":
        return f"cancel the live sub-orders of {fields['instId']}"
    if action == "tpsl":
        parts = [
            f"{name} {fields[key]}" for name, key in (("take-profit", "tpPct"), ("stop-loss", "slPct")) if key in fields
        ]
        return f"tpsl by {fields['tpSlType']}: {', '.join(parts)}"
    return "stop the bot"
