"""buy / sell: POST sub-order, with OKX's expTime header set to the send deadline, so that OKX never
acts on it late. OKX's answer names no order (``data`` is empty), and the request carries no id of
ours, so after an ambiguous answer the evidence is the bot's sub-orders once expTime has passed:
one of that instrument, side and size created in the window means executed, none not executed.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from webhook_app.okx.actions import BotOrder
from webhook_app.okx.actions.common import (
    Finding,
    Pace,
    Reader,
    Sender,
    SentWindow,
    failed_read,
    finding,
    single_post,
)
from webhook_app.okx.errors import OkxError, OkxNotExecuted, OkxRefused
from webhook_app.okx.margin.evidence import clock_time
from webhook_app.okx.orders import SUB_ORDER_STATES, SubOrder
from webhook_app.okx.records import OkxAck, plain_decimal

EXP_TIME_HEADER = "expTime"
# Read this long after expTime: OKX stamps an order's cTime when it acts, at the latest at expTime;
# the grace covers the clock offset's error and the order reaching OKX's read side.
SETTLE_GRACE_MS = 1000
# The window opens this much before the send as our estimate of OKX's clock has it: an error in the
# offset must never leave our own order outside (two candidates make "can't tell", never a double).
START_SLACK_MS = 1000

OUTCOMES = {  # code -> (error, seconds to wait first); OKX documents none for this endpoint [infer]
    "50036": (OkxNotExecuted, 0.0),  # expTime earlier than OKX's time: never acted on
    "50037": (OkxNotExecuted, 0.0),  # order expired: OKX reached it after its expTime, never acted on
    "51008": (OkxRefused, 0.0),  # insufficient balance / margin (sub-codes 51008_10xx alike)
    "51020": (OkxRefused, 0.0),  # below the instrument's minimum size
    "51121": (OkxRefused, 0.0),  # not a whole number of lots
    "51169": (OkxRefused, 0.0),  # reduce-only with no position in that direction
    "51170": (OkxRefused, 0.0),  # reduce-only in the position's own direction
    "51001": (OkxRefused, 0.0),  # no such instrument
    "51287": (OkxRefused, 0.0),  # the bot does not trade this instrument
}


def send(sender: Sender, order: BotOrder, send_by: float | None, exp_time_ms: int | None, pace: Pace | None) -> OkxAck:
    if exp_time_ms is None:
        raise ValueError("a sub-order is sent with its expTime: OKX must never act on it late")
    return single_post(sender, order, OUTCOMES, send_by, pace, {EXP_TIME_HEADER: str(exp_time_ms)})


def settle_after_ms(order: BotOrder, window: SentWindow) -> int:
    """When the sub-orders may be read: past expTime, when OKX can no longer act on it."""
    end = window.exp_time_ms if window.exp_time_ms is not None else window.ended_ms
    return end + SETTLE_GRACE_MS


def settle(reader: Reader, order: BotOrder, window: SentWindow) -> Finding:
    """Executed when exactly one sub-order of that instrument, side and size was created in the
    window (from the send to expTime); not executed when none was (and expTime bounded it); can't
    tell with two or more, one without a readable cTime, a read that failed, or a read too early."""
    asked = _asked(order)
    end_ms = window.exp_time_ms if window.exp_time_ms is not None else window.ended_ms
    span = window.words(end_ms)
    now_ms = int(reader.okx_now() * 1000)
    if now_ms < settle_after_ms(order, window):
        due = clock_time(settle_after_ms(order, window) / 1000)
        return finding("cant_tell", f"read too early: OKX may still act on it until {due} UTC; {asked}", order, window)
    begin_ms = window.started_ms - START_SLACK_MS
    seen: dict[str, SubOrder] = {}
    try:  # a sub-order moves live -> partially_filled -> filled | canceled: read so, none slips between reads
        for state in SUB_ORDER_STATES:
            for row in reader.sub_orders(order.algo_id, state, order.body["instId"], begin_ms):
                seen.setdefault(row.ord_id or row.cl_ord_id, row)
    except OkxError as exc:
        return finding("cant_tell", failed_read("the bot's sub-orders", exc) + f"; {asked}", order, window)
    reads = {"subOrders": [row.row for row in seen.values()], "positions": _positions(reader, order.algo_id)}
    matching = [row for row in seen.values() if _same_order(row, order.body)]
    inside = [row for row in matching if row.c_time_ms is None or begin_ms <= row.c_time_ms <= end_ms]
    reads["candidates"] = [row.cl_ord_id for row in inside]
    if len(inside) > 1:
        ids = ", ".join(row.cl_ord_id for row in inside)
        return finding("cant_tell", f"{len(inside)} sub-orders match {span} ({ids}); {asked}", order, window, **reads)
    if inside and inside[0].c_time_ms is None:
        why = f"sub-order {inside[0].cl_ord_id} matches but OKX gave no readable cTime to place it in the window"
        return finding("cant_tell", f"{why}; {asked}", order, window, **reads)
    if inside:
        row = inside[0]
        created = clock_time(row.c_time_ms / 1000)
        reason = f"OKX lists sub-order {row.cl_ord_id} ({row.state}), created at {created} UTC, {span}; {asked}"
        return finding("executed", reason, order, window, **reads)
    if window.exp_time_ms is None:
        why = f"no matching sub-order {span}, but no expTime bounded when OKX may still act on it"
        return finding("cant_tell", f"{why}; {asked}", order, window, **reads)
    reason = f"OKX lists no sub-order of that instrument, side and size {span} (the end is its expTime); {asked}"
    return finding("not_executed", reason, order, window, **reads)


def _same_order(row: SubOrder, body: dict) -> bool:
    return row.inst_id == body["instId"] and row.side == body["side"] and row.sz == _decimal(body["sz"])


def _positions(reader: Reader, algo_id: str) -> list[dict] | str:
    """Shown beside the sub-orders, as OKX gave them (or why they are not): they do not decide."""
    try:
        return [position.row for position in reader.positions(algo_id)]
    except OkxError as exc:
        return failed_read("the bot's positions", exc)


def _asked(order: BotOrder) -> str:
    body = order.body
    size = plain_decimal(_decimal(body["sz"])) if _decimal(body["sz"]) is not None else body["sz"]
    price = f" at {body['px']}" if body.get("px") else ""
    reduce_only = " reduce-only" if body.get("reduceOnly") else ""
    return f"the request asked to {body['side']} {size} {body['instId']} ({body['ordType']}{price}{reduce_only})"


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except (InvalidOperation, TypeError):
        return None
