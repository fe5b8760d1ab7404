"""stop: POST stop-order-algo, its body a JSON array of one ``{"algoId"}`` as OKX's docs give it
(the SDKs' object forms are not what the docs say). Each item of the answer carries its own sCode:
51288 (already stopping) and 51291 (does not exist or already stopped) say the target is reached.
What OKX does with the bot's positions on a stop is undocumented ⚠."""

from __future__ import annotations

from webhook_app.okx.actions import BotOrder
from webhook_app.okx.actions.common import Finding, Pace, Reader, Sender, SentWindow, failed_read, finding, single_post
from webhook_app.okx.errors import OkxError, OkxTargetReached
from webhook_app.okx.records import OkxAck

OUTCOMES = {  # an item's sCode (or the answer's code) -> (error, seconds to wait first)
    "51288": (OkxTargetReached, 0.0),  # the bot is stopping already (the common table's refusal, read as done)
    "51291": (OkxTargetReached, 0.0),  # the bot does not exist or has been stopped
}
STOPPED_STATES = ("stopping", "stopped", "missing")  # "missing": OKX no longer runs it (51291)


def send(sender: Sender, order: BotOrder, send_by: float | None, exp_time_ms: int | None, pace: Pace | None) -> OkxAck:
    return single_post(sender, order, OUTCOMES, send_by, pace)


def settle_after_ms(order: BotOrder, window: SentWindow) -> int:
    return window.ended_ms


def settle(reader: Reader, order: BotOrder, window: SentWindow) -> Finding:
    """Executed when the bot is stopping or stopped (or OKX no longer runs it); not executed (not
    reached) when it is still starting or running; can't tell when its details could not be read."""
    asked = f"the request asked to stop bot {order.algo_id}"
    try:
        details = reader.bot_details(order.algo_id)
    except OkxError as exc:
        return finding("cant_tell", failed_read("the bot's details", exc) + f"; {asked}", order, window)
    state = details.snapshot.state
    reads = {"bot": details.row, "state": state}
    if state in STOPPED_STATES:
        words = "OKX knows no running bot by that id" if state == "missing" else f"the bot is {state}"
        return finding("executed", f"{words}: the target is reached; {asked}", order, window, **reads)
    return finding(
        "not_executed",
        f"the bot is {state or 'in no state OKX named'}: the target is not reached; {asked}",
        order,
        window,
        **reads,
    )
