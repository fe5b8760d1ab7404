"""cancel: pull the bot's pending sub-orders of one instrument. GET sub-orders (live, then partially
filled), then one POST cancel-sub-order for each, by its signalOrdId (the sub-order's clOrdId, kept
as OKX's opaque string). None pending: done, nothing to cancel. OKX's "0" to a cancel is acceptance
only (the order is cancelling); each answer's item carries its own sCode, which decides.

Its target is "no pending sub-order of that instrument", so sending it again is always safe: it
reads what is still pending and cancels only that. A failure after some cancels were accepted is
raised as the error it was, its message saying which were."""

from __future__ import annotations

import json

from webhook_app.okx.actions import CANCEL_SUB_ORDER, BotOrder
from webhook_app.okx.actions.common import Finding, Pace, Reader, Sender, SentWindow, failed_read, finding
from webhook_app.okx.errors import OkxError, OkxNotExecuted, OkxRefused, OkxTargetReached, restated
from webhook_app.okx.orders import OPEN_STATES, SubOrder
from webhook_app.okx.reads import SUB_ORDERS_PATH
from webhook_app.okx.records import OkxAck

OUTCOMES = {  # an item's sCode -> (error, seconds to wait first) [infer: OKX documents none here]
    "51400": (OkxTargetReached, 0.0),  # already filled, canceled or gone: no longer pending
    "51410": (OkxTargetReached, 0.0),  # already being cancelled
    "51603": (OkxTargetReached, 0.0),  # no such order (any more)
}


def send(sender: Sender, order: BotOrder, send_by: float | None, exp_time_ms: int | None, pace: Pace | None) -> OkxAck:
    algo_id, inst_id = order.algo_id, order.body["instId"]
    pending = _pending(sender, algo_id, inst_id, pace)
    if not pending:
        return OkxAck(algo_id, already=f"no pending sub-order of {inst_id}: nothing to cancel")
    accepted: list[str] = []
    gone: list[str] = []
    for sub_order in pending:
        body = {"algoId": algo_id, "instId": inst_id, "signalOrdId": sub_order.cl_ord_id}
        if pace is not None:
            pace(CANCEL_SUB_ORDER)
        try:
            sender.post_signed(CANCEL_SUB_ORDER, _bytes(body), OUTCOMES, send_by)
        except OkxTargetReached as exc:
            gone.append(f"{sub_order.cl_ord_id} ({exc.code})")
            continue
        except OkxError as exc:
            if accepted or gone:
                told = f"{_so_far(accepted, gone, len(pending))}; then {sub_order.cl_ord_id}: {exc.message}"
                raise restated(exc, told) from None
            raise
        accepted.append(sub_order.cl_ord_id)
    already = f"no longer pending: {', '.join(gone)}" if gone else ""
    return OkxAck(algo_id, already=already, cancelled=tuple(accepted))


def _pending(sender: Sender, algo_id: str, inst_id: str, pace: Pace | None) -> list[SubOrder]:
    """The sub-orders to cancel. A read that fails sent nothing: not executed (refused when OKX
    refused the read, e.g. no such bot)."""
    pending: list[SubOrder] = []
    for state in OPEN_STATES:
        if pace is not None:
            pace(SUB_ORDERS_PATH)
        try:
            pending.extend(sender.sub_orders(algo_id, state, inst_id))
        except (OkxNotExecuted, OkxRefused):
            raise
        except OkxError as exc:
            raise OkxNotExecuted(
                f"{failed_read('the pending sub-orders', exc)}; nothing was cancelled", exc.code
            ) from None
    unique = {sub_order.cl_ord_id: sub_order for sub_order in pending}  # one may fill between the two reads
    return list(unique.values())


def _so_far(accepted: list[str], gone: list[str], total: int) -> str:
    done = f"OKX accepted {len(accepted)} of {total} cancels ({', '.join(accepted) or 'none'})"
    return done + (f", {len(gone)} no longer pending ({', '.join(gone)})" if gone else "")


def _bytes(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def settle_after_ms(order: BotOrder, window: SentWindow) -> int:
    return window.ended_ms


def settle(reader: Reader, order: BotOrder, window: SentWindow) -> Finding:
    """Executed when no sub-order of the instrument is pending (a cancelling one is not); not
    executed (not reached) when some still are; can't tell when they could not be read."""
    inst_id = order.body["instId"]
    asked = f"the request asked to cancel the pending sub-orders of {inst_id}"
    pending: list[SubOrder] = []
    try:
        for state in OPEN_STATES:
            pending.extend(reader.sub_orders(order.algo_id, state, inst_id))
    except OkxError as exc:
        return finding("cant_tell", failed_read("the pending sub-orders", exc) + f"; {asked}", order, window)
    reads = {"pending": [sub_order.row for sub_order in pending]}
    if not pending:
        return finding(
            "executed", f"no sub-order of {inst_id} is pending: the target is reached", order, window, **reads
        )
    ids = ", ".join(sorted({sub_order.cl_ord_id for sub_order in pending}))
    reason = f"{len(pending)} sub-order(s) of {inst_id} still pending ({ids}): the target is not reached; {asked}"
    return finding("not_executed", reason, order, window, **reads)
