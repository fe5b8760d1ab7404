"""One lane per OKX account: its signed client, its rate budgets and how to read its bots."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from webhook_app.journal import Record
from webhook_app.okx.client import OkxClient
from webhook_app.okx.margin.request import MarginRequest
from webhook_app.workers.pacing import Pacer


@dataclasses.dataclass(frozen=True)
class Lane:
    """One OKX account's road to OKX: its signed client, its rate budget (OKX counts per User ID,
    so each account has its own; None in dry-run: nothing is sent) and how to read its bots."""

    client: OkxClient
    pacer: Pacer | None
    # The bot read just before each send, ``read_bot(algo_id, timeout, slot)`` (a ``BotSnapshot`` or
    # None; ``slot`` None: it takes its own): the "before" of the evidence if the outcome turns out
    # unknown, kept with the send's confirmation at no extra round trip.
    read_bot: Callable[..., object | None] | None = None
    # That read's budget: where the journal holds it, the claim takes the read's slot and the
    # confirmation ends it (``read_bot(..., slot=)``), no round trip of their own.
    read_pacer: Pacer | None = None


def lane_of(lanes: Mapping[str, Lane], record: Record) -> Lane:
    """The lane of the alert's account (the first one's for an account no longer configured:
    such an alert is never claimed but failed (``Upkeep``); only a dry-run one is signed)."""
    return lanes.get(record.account) or next(iter(lanes.values()))


def margin_request(record: Record) -> MarginRequest:
    body = record.request
    return MarginRequest(
        algo_id=body["algoId"], type=body["type"], amt=body["amt"], allow_reinvest=body.get("allowReinvest")
    )
