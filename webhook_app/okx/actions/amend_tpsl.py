"""tpsl: POST amendTPSL, the bot's take-profit and stop-loss (exitSettingParam: tpSlType, tpPct,
slPct, OKX's names and units). Its target is "TP/SL as asked": after an ambiguous answer the bot's
details say whether it is reached, and sending it again sets the same thing."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from webhook_app.okx.actions import BotOrder
from webhook_app.okx.actions.common import Finding, Pace, Reader, Sender, SentWindow, failed_read, finding, single_post
from webhook_app.okx.errors import OkxError, OkxRefused
from webhook_app.okx.records import OkxAck

OUTCOMES = {  # code -> (error, seconds to wait first): the trading bots' TP/SL codes [doc E; mapping inferred]
    "55100": (OkxRefused, 0.0),  # take-profit % out of range
    "55101": (OkxRefused, 0.0),  # stop-loss % out of range
    "55102": (OkxRefused, 0.0),  # take-profit % must exceed the bot's current PnL %
    "55103": (OkxRefused, 0.0),  # stop-loss % must be below the bot's current PnL %
    "55104": (OkxRefused, 0.0),  # PnL-based TP/SL not supported (grid wording ⚠)
    "51380": (OkxRefused, 0.0),  # market conditions do not suit this TP/SL
}
_FIELDS = ("tpSlType", "tpPct", "slPct")


def send(sender: Sender, order: BotOrder, send_by: float | None, exp_time_ms: int | None, pace: Pace | None) -> OkxAck:
    return single_post(sender, order, OUTCOMES, send_by, pace)


def settle_after_ms(order: BotOrder, window: SentWindow) -> int:
    return window.ended_ms


def settle(reader: Reader, order: BotOrder, window: SentWindow) -> Finding:
    """Executed when the bot's exitSettingParam equals what was asked, field by field for the
    fields sent (percentages as numbers: "0.050" is "0.05"; OKX's docs do not say whether a field
    left out is kept or cleared ⚠, so it is not compared); not executed (not reached) when one
    differs; can't tell when the details could not be read or gave no exitSettingParam."""
    asked_setting = order.body["exitSettingParam"]
    asked = "the request asked for " + ", ".join(
        f"{key} {asked_setting[key]!r}" for key in _FIELDS if key in asked_setting
    )
    try:
        details = reader.bot_details(order.algo_id)
    except OkxError as exc:
        return finding("cant_tell", failed_read("the bot's details", exc) + f"; {asked}", order, window)
    if details.snapshot.state == "missing":
        return finding("cant_tell", f"OKX knows no bot {order.algo_id}; {asked}", order, window, exitSettingParam=None)
    if details.exit_setting is None:
        return finding("cant_tell", f"OKX's details of the bot gave no exitSettingParam; {asked}", order, window)
    reported = details.exit_setting.to_json()
    reads = {"exitSettingParam": reported}
    differing = [key for key in _FIELDS if key in asked_setting and not _same(key, asked_setting[key], reported[key])]
    if not differing:
        return finding(
            "executed", f"OKX reports the TP/SL as asked: the target is reached; {asked}", order, window, **reads
        )
    now = ", ".join(f"{key} {reported[key]!r}" for key in differing)
    return finding("not_executed", f"OKX reports {now}: the target is not reached; {asked}", order, window, **reads)


def _same(key: str, asked: str, reported: str) -> bool:
    if key == "tpSlType" or not asked or not reported:
        return asked == reported
    try:
        return Decimal(asked) == Decimal(reported)
    except InvalidOperation:
        return asked == reported
