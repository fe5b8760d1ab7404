"""OKX's records read for an ``unknown`` alert of an action other than add/reduce (each action's
own evidence, ``okx.actions``): a sub-order once its expTime has passed (OKX never executes it
later, so the finding is final), an action that states a target by whether the bot is there."""

from __future__ import annotations

import json
import threading

from webhook_app.clock import Clock
from webhook_app.journal import Record
from webhook_app.okx.actions import EXPIRING, BotOrder
from webhook_app.okx.actions.common import SentWindow
from webhook_app.okx.actions.registry import settle, settle_after_ms
from webhook_app.okx.errors import OkxError

MARGIN_ACTIONS = ("add", "reduce")
# Seconds either side of the journal's times for the window on OKX's clock: the two clocks are
# both the hosts' wall clocks, kept by NTP within far less than this.
CLOCK_SLACK = 2.0
MAX_WAIT = 30.0  # at most this long for an expTime to pass (it is a send deadline: seconds away)


def is_margin(record: Record) -> bool:
    return record.action in MARGIN_ACTIONS


def sent_window(record: Record) -> SentWindow:
    """When the request may have reached OKX, from the journal's times, and its expTime if it carried one."""
    kept = record.evidence_data if record.evidence else {}
    exp = kept.get("expTime") if isinstance(kept, dict) else None
    started = record.sent_at or record.first_sent_at or record.received_at
    ended = record.finished_at or started
    return SentWindow(
        int((started - CLOCK_SLACK) * 1000),
        int((ended + CLOCK_SLACK) * 1000),
        int(exp) if isinstance(exp, str) and exp.isdigit() else None,
    )


def judge_order(record: Record, reader, clock: Clock, stop: threading.Event) -> dict:
    """The evidence (JSON-ready, with "proposal" and "reason") of OKX's records on ``record``'s
    request: read with ``reader`` (its account's client) no earlier than the action allows. No
    second read follows ("recheck" is kept as done): past expTime a sub-order's finding is final,
    and an action that states a target is safe to send again whatever the finding."""
    order = BotOrder(record.action, record.request)
    window = sent_window(record)
    if order.action in EXPIRING and window.exp_time_ms is None:
        return _cant_tell(order, "no expTime was kept with the send, so a late execution cannot be ruled out")
    try:
        wait = settle_after_ms(order, window) / 1000 - reader.okx_now()
        if wait > 0:
            clock.wait(stop, min(wait, MAX_WAIT))
        found = settle(reader, order, window)
    except OkxError as exc:
        return _cant_tell(order, f"OKX's records could not be read ({exc})")
    evidence = json.loads(found.evidence)
    evidence["recheck"] = {"needed": False}
    return evidence


def _cant_tell(order: BotOrder, reason: str) -> dict:
    return {
        "action": order.action,
        "request": order.body,
        "proposal": "cant_tell",
        "reason": reason,
        "recheck": {"needed": False},
    }
