"""close: POST close-position, the whole position of one instrument at market. Its target is "no
position in that instrument": after an ambiguous answer the bot's positions say whether it is
reached, and a close sent again when it is not closes no more than what is still open."""

from __future__ import annotations

from webhook_app.okx.actions import BotOrder
from webhook_app.okx.actions.common import Finding, Pace, Reader, Sender, SentWindow, failed_read, finding, single_post
from webhook_app.okx.errors import OkxError, OkxNotExecuted, OkxRefused, OkxTargetReached
from webhook_app.okx.records import OkxAck, plain_decimal

OUTCOMES = {  # code -> (error, seconds to wait first); OKX documents none for this endpoint [infer]
    # No position to close: what OKX answers then is undocumented ⚠; each of these says so.
    "51058": (OkxTargetReached, 0.0),  # no available position for this algo order
    "51023": (OkxTargetReached, 0.0),  # position does not exist
    "51169": (OkxTargetReached, 0.0),  # no position in this direction to reduce or close
    "51032": (OkxNotExecuted, 1.0),  # a market close of all positions is already under way
    "51001": (OkxRefused, 0.0),  # no such instrument
}


def send(sender: Sender, order: BotOrder, send_by: float | None, exp_time_ms: int | None, pace: Pace | None) -> OkxAck:
    return single_post(sender, order, OUTCOMES, send_by, pace)


def settle_after_ms(order: BotOrder, window: SentWindow) -> int:
    return window.ended_ms


def settle(reader: Reader, order: BotOrder, window: SentWindow) -> Finding:
    """Executed when the bot holds no position in the instrument; not executed (not reached)
    when it still does; can't tell when the positions could not be read."""
    inst_id = order.body["instId"]
    asked = f"the request asked to close the position in {inst_id}"
    try:
        positions = reader.positions(order.algo_id)
    except OkxError as exc:
        return finding("cant_tell", failed_read("the bot's positions", exc) + f"; {asked}", order, window)
    rows = [position for position in positions if position.inst_id == inst_id]
    reads = {"positions": [position.row for position in positions]}
    if any(position.pos is None for position in rows):
        return finding("cant_tell", f"OKX gave no readable pos for {inst_id}; {asked}", order, window, **reads)
    held = [position for position in rows if position.pos]
    if not held:
        return finding(
            "executed", f"the bot holds no position in {inst_id}: the target is reached", order, window, **reads
        )
    position = held[0]
    size = plain_decimal(abs(position.pos))
    reason = f"the bot still holds {size} contracts {position.side} in {inst_id}: the target is not reached; {asked}"
    return finding("not_executed", reason, order, window, **reads)
