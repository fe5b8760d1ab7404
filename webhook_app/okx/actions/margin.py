"""add / reduce: POST margin-balance. The request (``MarginRequest``, ``okx/margin/request.py``), its
own codes and its evidence: two snapshots of the bot and its event history (``okx/margin/evidence.py``,
whose rule this applies). Kept where they were, so that every import of them keeps working."""

from __future__ import annotations

import json
from decimal import Decimal

from webhook_app.okx.actions import BotOrder
from webhook_app.okx.actions.common import Finding, Pace, Reader, Sender, SentWindow, single_post
from webhook_app.okx.errors import OkxError
from webhook_app.okx.margin.evidence import gather
from webhook_app.okx.margin.outcomes import MARGIN_OUTCOMES
from webhook_app.okx.margin.request import MARGIN_BALANCE_PATH, MarginRequest
from webhook_app.okx.records import OkxAck

__all__ = ["MARGIN_BALANCE_PATH", "OUTCOMES", "MarginRequest", "send", "settle", "settle_after_ms"]

OUTCOMES = MARGIN_OUTCOMES


def send(sender: Sender, order: BotOrder, send_by: float | None, exp_time_ms: int | None, pace: Pace | None) -> OkxAck:
    return single_post(sender, order, OUTCOMES, send_by, pace)


def settle(reader: Reader, order: BotOrder, window: SentWindow) -> Finding:
    """The bot now (and its events) against ``window.before``, judged by ``evidence.propose``:
    as the investigator has judged an unknown margin alert since before issue 23."""
    algo_id = order.algo_id
    try:
        after = reader.bot_details(algo_id).snapshot
    except OkxError:
        after = None
    try:
        events = reader.bot_events(algo_id) if after is not None else None
    except OkxError:
        events = None
    amount = Decimal(order.body["amt"])
    evidence = gather(order.action, amount, order.body.get("allowReinvest") is True, window.before, after, events)
    return Finding(evidence["proposal"], evidence["reason"], json.dumps(evidence))


def settle_after_ms(order: BotOrder, window: SentWindow) -> int:
    return window.ended_ms
