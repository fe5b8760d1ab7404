"""One attempt at one claimed alert, on a sender thread: the bot read before the send, the
journal's confirmation that the claim is current, the send, OKX's answer judged by
``OutcomePolicy``, and the outcome's write, fenced by the claim.

The attempt owns its claim's rate slots (``HeldSlot``) from the dispatcher's hand-over until
each has ended: given back if the request never left, released once the exchange with OKX is
over, or closed by the journal write that carries it (a ledger in the journal's database)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable

from webhook_app.journal import (
    Activity,
    Claim,
    JournalUnavailable,
    Record,
    SendingQueue,
)
from webhook_app.okx.errors import OkxError, OkxOutcomeUnknown
from webhook_app.workers.delivery.board import Board
from webhook_app.workers.delivery.lanes import Lane
from webhook_app.workers.delivery.outcome_writes import OutcomeWrites, Unwritten
from webhook_app.workers.delivery.sending import FurtherPosts, deliver, exp_time_ms
from webhook_app.workers.delivery.slots import HeldSlot, SlotLedger
from webhook_app.workers.delivery.terms import JournalClock, Terms
from webhook_app.workers.outcomes import OutcomePolicy

log = logging.getLogger("webhook_app")

# The bot's read before a send: at most MAX_BEFORE_READ seconds, skipped with less than MIN_BEFORE_READ
# left, and always leaving BEFORE_READ_SPARE of SEND_BY for the confirmation and the send itself.
MAX_BEFORE_READ, MIN_BEFORE_READ, BEFORE_READ_SPARE = 1.0, 0.2, 1.0


@dataclasses.dataclass(frozen=True)
class Desk:
    """What every attempt works with. ``queue``, ``timeline`` and ``journal_clock`` are the
    journal's (one object in the service; a test's fake may stand for all three)."""

    queue: SendingQueue
    timeline: Activity
    journal_clock: JournalClock
    policy: OutcomePolicy
    board: Board
    ledger: SlotLedger
    terms: Terms
    on_late: Callable[[Record, str], None] | None = None  # told of an answer that came after a take-over


class Attempt(OutcomeWrites):
    """One claimed alert's send, ``run`` once on a sender thread; it holds the claim until its outcome is written."""

    def __init__(self, desk: Desk, record: Record, lane: Lane, send_by: float, slot, read_slot=None, pacer=None):
        """``send_by``: the local deadline for the request to leave (``terms.clock``); ``slot``: its
        rate slot in ``pacer`` (its endpoint's budget; None: the lane's margin-balance one);
        ``read_slot``: the bot read's, taken with the claim (None: the read takes its own)."""
        self.desk = desk
        self.record = record
        self.claim = Claim.of(record)
        self.lane = lane
        self.pacer = pacer or lane.pacer
        self.send_by = send_by
        self.slot = HeldSlot(desk.ledger, self.pacer, slot)
        self.read_slot = HeldSlot(desk.ledger, lane.read_pacer, read_slot)
        self._started = 0.0
        self.at_once = False  # a claim confirmed as it was journaled (``confirmed_at_receipt``)
        # A sub-order's expTime, kept with the evidence the confirmation writes: after an ambiguous
        # answer, OKX's records are read once it has passed.
        self.exp_time_ms = exp_time_ms(lane.client, record, desk.terms.clock.host_deadline(send_by))
        self._evidence: str | None = None  # the snapshot taken after a confirmation at receipt
        self.final: Record | None = None  # its final record, once its outcome's write returned it

    def confirmed_at_receipt(self, kept_exp_time: int | None) -> Attempt:
        """This claim was confirmed by the write that journaled the alert, with that expTime: no
        confirmation of its own before the send, and the snapshot is kept with the outcome."""
        self.at_once, self.exp_time_ms = True, kept_exp_time
        return self

    def run(self) -> None:
        """Send it if the claim is cleared to go, write what came of it, and end both slots whatever happens."""
        clock, record = self.desk.terms.clock, self.record
        self._started = clock()
        failure: OkxError | None = None
        answered = False  # OKX answered, or may have: the outcome is written next
        try:
            if not self._cleared(self._snapshot_before()):
                self.slot.give_back()
                return
            # The client checks the deadline on the host's elapsed clock (boot time), as late as it can.
            host_deadline = clock.host_deadline(self.send_by)
            further = FurtherPosts(self.pacer, self.claim.instance, host_deadline)
            ack = deliver(self.lane.client, record, host_deadline, self.exp_time_ms, further)
            if ack.dry_run:  # nothing was sent, so OKX said nothing: it must not read as "ok"
                self.slot.give_back()
                self._write(lambda: self.desk.queue.unclaim([self.claim]))
                log.warning("alert %s was not sent: the OKX client is in dry-run; it stays queued", record.id)
                return
            answered = True
        except OkxError as exc:
            failure, answered = exc, True
        except Unwritten:
            return
        except Exception:
            log.exception("unexpected error while sending alert %s", record.id)
            failure, answered = OkxOutcomeUnknown("internal error while sending; check the bot on OKX"), True
        finally:
            # Whatever happened, the exchange with OKX is over. A ledger in the journal's database
            # has the slot closed by the outcome's write below instead (one round trip fewer): it
            # closes a moment later, which only over-counts OKX's budget.
            if not (answered and self.pacer.shares_journal):
                self.release_slot()
        try:
            self._record_outcome(failure, (clock() - self._started) * 1000)
        except Unwritten as exc:
            # It stays "sending"; when its lease lapses, recovery (on any live instance) makes it unknown.
            log.error(
                "could not journal the outcome of alert %s (%s): recovery takes it when its claim lapses",
                record.id,
                exc,
            )
            self.desk.board.signal(record.id)  # the reply reads what the journal has
        finally:
            self.release_slot()  # still held only when the write that was to close it never ran
            self.read_slot.release()  # likewise (a claim at receipt's)

    def release_slot(self) -> None:
        """The exchange with OKX is over: the rate slot counts for its window more, then frees."""
        self.slot.release()

    def give_back(self) -> None:
        """Never started (the delivery is stopping): both slots as if never taken."""
        self.slot.give_back()
        self.read_slot.give_back()

    # -- before the send --------------------------------------------------------------

    def _snapshot_before(self) -> str | None:
        """The bot as OKX shows it now, as evidence text; None when it cannot be read in time
        (the read never takes the send past its deadline: it keeps BEFORE_READ_SPARE for the rest)."""
        time_left = self.send_by - self.desk.terms.clock() - BEFORE_READ_SPARE
        kept = {} if self.exp_time_ms is None else {"expTime": str(self.exp_time_ms)}
        # A claim in the journal's database asked the reads' budget in its own statement: no slot
        # means it had no room a moment ago, and asking again would cost a round trip for the same answer.
        refused = self.read_slot.slot is None and getattr(self.lane.read_pacer, "shares_journal", False)
        if self.lane.read_bot is None or time_left < MIN_BEFORE_READ or refused:
            return json.dumps(kept) if kept else None
        algo_id = self.record.algo_id
        try:
            snapshot = self.lane.read_bot(algo_id, min(time_left, MAX_BEFORE_READ), self.read_slot.slot)
            if snapshot is not None:
                kept["before"] = snapshot.to_json()
        except Exception:  # nothing has been sent yet: a bug here must not read as an unknown outcome
            log.exception("reading bot %s before a send failed; sending without its snapshot", algo_id)
        return json.dumps(kept) if kept else None

    def _cleared(self, evidence: str | None) -> bool:
        """May the request leave now? Only inside the local deadline and with the journal's word
        that the claim is current; otherwise it is not sent (and never will be on this claim).
        The read's slot ends with the journal's word, or here when the journal was not asked."""
        claim, clock = self.claim, self.desk.terms.clock
        if self.at_once:
            return self._still_in_time(evidence)
        if clock() < self.send_by:
            try:
                confirmed = self.desk.queue.confirm_send(claim, evidence, read_slot=self.read_slot.slot)
                self.read_slot.closed()  # the confirmation's write ended it, whatever its answer
                if confirmed:
                    return True
                log.warning(
                    "alert %s was not sent: attempt %s's claim by %s had lapsed or been taken over",
                    claim.alert_id,
                    claim.attempt,
                    claim.instance,
                )
                self._note("not sent", f"attempt {claim.attempt} by {claim.instance} not sent: its claim had lapsed")
                return False
            except JournalUnavailable as exc:
                log.error("alert %s not sent: its claim could not be confirmed (%s)", claim.alert_id, exc)
        else:
            log.warning(
                "alert %s not sent: held up %.1f s past its claim's deadline", claim.alert_id, clock() - self.send_by
            )
        self.read_slot.release()  # the journal was not asked
        self._put_back()
        return False

    def _still_in_time(self, evidence: str | None) -> bool:
        """A claim confirmed as it was journaled: the snapshot is kept with the outcome instead, and
        the request leaves if the deadline has not passed (else it never left: back in the queue). The
        read's slot, taken with the claim, is ended by the outcome's write, with the request's."""
        self._evidence = evidence
        if self.desk.terms.clock() < self.send_by:
            return True
        log.warning("alert %s not sent at once: held up past its claim's deadline", self.claim.alert_id)
        self.read_slot.release()
        self._put_back()
        return False

    def _put_back(self) -> None:
        """Never sent: back in the queue while the claim is still ours (else recovery does it at the lapse)."""
        try:
            self.desk.queue.unclaim([self.claim])
        except JournalUnavailable as exc:
            log.error(
                "alert %s: could not put it back in the queue (%s); recovery will when its claim lapses",
                self.claim.alert_id,
                exc,
            )
        self.desk.board.wake()
