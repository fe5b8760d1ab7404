"""One request of any action on the wire, and what an ambiguous answer to an action that states
a target means once OKX's records have been read at once."""

from __future__ import annotations

import logging
import time

from webhook_app.clock import elapsed
from webhook_app.journal import Record
from webhook_app.okx.actions import CANCEL_SUB_ORDER, EXPIRING, BotOrder
from webhook_app.okx.actions.common import SentWindow
from webhook_app.okx.actions.registry import settle
from webhook_app.okx.client import OkxClient
from webhook_app.okx.errors import OkxError, OkxNotExecuted, OkxOutcomeUnknown, OkxSendTooLate, OkxTargetReached
from webhook_app.okx.records import OkxAck
from webhook_app.workers.delivery.terms import SEND_BY
from webhook_app.workers.pacing import Pacer

log = logging.getLogger("webhook_app")

# Actions whose request states where the bot must end up (no position, no live sub-order, these
# TP/SL, stopped): sending one again changes nothing once it is so, so an ambiguous answer is
# settled at once by reading OKX, and sent again (inside the alert's lag) when nothing moved.
STATED_TARGETS = ("close", "cancel", "tpsl", "stop")


def bot_order(record: Record) -> BotOrder:
    """The request the alert was journaled with."""
    return BotOrder(record.action, record.request)


def exp_time_ms(client: OkxClient, record: Record, host_deadline: float | None) -> int | None:
    """OKX's expTime for a sub-order: the send deadline on OKX's clock, so OKX never executes it
    later (None for the other actions; a dry run signs with one a send deadline away)."""
    if record.action not in EXPIRING:
        return None
    return client.okx_deadline_ms(elapsed() + SEND_BY if host_deadline is None else host_deadline)


class FurtherPosts:
    """A cancel posts once per pending sub-order: the claim's slot carries the first POST, and
    each further one waits here for a slot of the same endpoint's budget (given back once the send
    is over), so a cancel of many never takes OKX past 20 per 2 s. Past the send deadline the rest
    is not sent (``OkxSendTooLate``: the alert goes again and cancels what is still pending)."""

    def __init__(self, pacer: Pacer | None, instance: str, host_deadline: float | None):
        self.pacer, self.instance, self.host_deadline = pacer, instance, host_deadline
        self._posts = 0
        self._held: list = []

    def __call__(self, path: str) -> None:
        if path != CANCEL_SUB_ORDER:
            return
        self._posts += 1
        if self._posts == 1 or self.pacer is None:
            return
        while not (slots := self.pacer.acquire(self.instance, 1)):
            wait = min(max(self.pacer.opens_in() or 0.05, 0.01), 0.5)
            if self.host_deadline is not None and elapsed() + wait >= self.host_deadline:
                raise OkxSendTooLate("the rest of the cancel waited past its send deadline for the rate budget")
            time.sleep(wait)
        self._held.extend(slots)

    def release(self) -> None:
        for slot in self._held:
            try:
                self.pacer.release(slot)
            except Exception:  # only over-counts the budget until the ledger's own rule ends it
                log.exception("could not give back a cancel's further rate slot")
        self._held.clear()


def deliver(
    client: OkxClient,
    record: Record,
    host_deadline: float | None,
    expires_ms: int | None,
    pace: FurtherPosts | None = None,
) -> OkxAck:
    """Send the alert's request, never after ``host_deadline`` (an ``elapsed()`` reading). Raises
    the ``OkxError`` its answer means; for an action that states a target, an ambiguous answer
    becomes what OKX's records show (``_settled``), and a target OKX found already reached is
    ``OkxTargetReached`` (an ``ok`` outcome that says so)."""
    order = bot_order(record)
    started_ms = int(client.okx_now() * 1000)
    try:
        ack = client.send(order, send_by=host_deadline, exp_time_ms=expires_ms, pace=pace)
    except OkxOutcomeUnknown as unknown:
        if order.action not in STATED_TARGETS:
            raise
        raise _settled(client, record, order, SentWindow(started_ms, int(client.okx_now() * 1000)), unknown) from None
    finally:
        if pace is not None:
            pace.release()
    if ack.already and not ack.cancelled:
        raise OkxTargetReached(f"OKX did nothing, it was already so: {ack.already}")
    return ack


def _settled(client: OkxClient, record: Record, order: BotOrder, window: SentWindow, unknown: OkxError) -> OkxError:
    """The error an ambiguous answer becomes once OKX's records are read: the target reached
    (``OkxTargetReached``, ok), not reached (``OkxNotExecuted``: sent again inside the lag), or,
    when the reads cannot tell, the ambiguous answer as it was (``unknown``)."""
    try:
        found = settle(client, order, window)
    except Exception:  # a bug in a reading must never turn an unknown into anything surer
        log.exception("reading OKX's records for alert %s after an ambiguous answer failed", record.id)
        return unknown
    log.warning(
        "alert %s: ambiguous answer (%s); OKX's records: %s: %s", record.id, unknown, found.verdict, found.reason
    )
    if found.verdict == "executed":
        return OkxTargetReached(f"OKX's answer was lost; its records show it done: {found.reason}")
    if found.verdict == "not_executed":
        return OkxNotExecuted(
            f"OKX's answer was lost and its records show nothing done ({found.reason}); sending again"
        )
    return unknown
