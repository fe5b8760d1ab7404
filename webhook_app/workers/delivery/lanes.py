"""One lane per OKX account: its signed client, its rate budgets (one per endpoint) and how to read its bots."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from webhook_app.journal import Record
from webhook_app.okx.actions import MARGIN_BALANCE, endpoint_name
from webhook_app.okx.client import OkxClient
from webhook_app.workers.pacing import Pacer

MARGIN = endpoint_name(MARGIN_BALANCE)


@dataclasses.dataclass(frozen=True)
class Lane:
    """One OKX account's road to OKX: its signed client, its rate budgets (OKX counts 20 requests
    per 2 s per endpoint and User ID, so each account has one per endpoint: ``pacer`` for
    margin-balance, ``budgets`` for the others it sends to; None in dry-run: nothing is sent) and
    how to read its bots."""

    client: OkxClient
    pacer: Pacer | None
    # The bot read just before each send, ``read_bot(algo_id, timeout, slot)`` (a ``BotSnapshot`` or
    # None; ``slot`` None: it takes its own): the "before" of the evidence if the outcome turns out
    # unknown, kept with the send's confirmation at no extra round trip.
    read_bot: Callable[..., object | None] | None = None
    # That read's budget: where the journal holds it, the claim takes the read's slot and the
    # confirmation ends it (``read_bot(..., slot=)``), no round trip of their own.
    read_pacer: Pacer | None = None
    budgets: Mapping[str, Pacer] = dataclasses.field(default_factory=dict)  # endpoint name -> its budget

    def endpoints(self) -> list[str]:
        """The endpoints this account sends to, margin-balance first."""
        return [MARGIN, *(name for name in self.budgets if name != MARGIN)]

    def budget(self, endpoint: str) -> Pacer | None:
        """One endpoint's rate budget (margin-balance's, ``pacer``, for an endpoint it has none of)."""
        return self.budgets.get(endpoint, self.pacer) if endpoint != MARGIN else self.pacer


def lane_of(lanes: Mapping[str, Lane], record: Record) -> Lane:
    """The lane of the alert's account (the first one's for an account no longer configured:
    such an alert is never claimed but failed (``Upkeep``); only a dry-run one is signed)."""
    return lanes.get(record.account) or next(iter(lanes.values()))
