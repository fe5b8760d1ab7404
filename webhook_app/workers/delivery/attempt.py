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
    INTERRUPTED_DETAIL,
    Activity,
    Claim,
    JournalUnavailable,
    Record,
    SendingQueue,
    answer_detail,
)
from webhook_app.okx.errors import OkxError, OkxNotExecuted, OkxOutcomeUnknown
from webhook_app.workers.delivery.board import Board
from webhook_app.workers.delivery.lanes import Lane
from webhook_app.workers.delivery.sending import FurtherPosts, deliver, exp_time_ms
from webhook_app.workers.delivery.slots import HeldSlot, SlotLedger
from webhook_app.workers.delivery.terms import JournalClock, Terms
from webhook_app.workers.outcomes import Outcome, OutcomePolicy

log = logging.getLogger("webhook_app")

WRITE_RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0, 4.0)  # a journal write after a send, tried again
# The bot's read before a send: at most MAX_BEFORE_READ seconds, skipped with less than MIN_BEFORE_READ
# left, and always leaving BEFORE_READ_SPARE of SEND_BY for the confirmation and the send itself.
MAX_BEFORE_READ, MIN_BEFORE_READ, BEFORE_READ_SPARE = 1.0, 0.2, 1.0


class Unwritten(Exception):
    """A journal write after a send failed every retry: the lease's lapse hands the alert to recovery."""


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


class Attempt:
    """One claimed alert's send, ``run`` once on a sender thread; it holds the claim until its outcome is written."""

    def __init__(
        self,
        desk: Desk,
        record: Record,
        lane: Lane,
        send_by: float,
        slot,
        read_slot=None,
        pacer=None,
        confirmed_exp_time: int | None | bool = False,
    ):
        """``send_by``: the local deadline for the request to leave (``terms.clock``); ``slot``: its
        rate slot in ``pacer`` (its endpoint's budget; None: the lane's margin-balance one);
        ``read_slot``: the bot read's, taken with the claim (None: the read takes its own).
        ``confirmed_exp_time``: False for a dispatcher's claim, confirmed here before the send; for a
        claim confirmed as the alert was journaled (sent at once), the expTime that write kept (or None)."""
        self.desk = desk
        self.record = record
        self.claim = Claim.of(record)
        self.lane = lane
        self.pacer = pacer or lane.pacer
        self.send_by = send_by
        self.slot = HeldSlot(desk.ledger, self.pacer, slot)
        self.read_slot = HeldSlot(desk.ledger, lane.read_pacer, read_slot)
        self._started = 0.0
        self.at_once = confirmed_exp_time is not False
        # A sub-order's expTime, kept with the evidence the confirmation writes: after an ambiguous
        # answer, OKX's records are read once it has passed.
        if self.at_once:
            self.exp_time_ms = confirmed_exp_time
        else:
            self.exp_time_ms = exp_time_ms(lane.client, record, desk.terms.clock.host_deadline(send_by))
        self._evidence: str | None = None  # the snapshot taken after a confirmation at receipt
        self.final: Record | None = None  # its final record, once its outcome's write returned it

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

    # -- after the send: the fenced writes --------------------------------------------

    def _record_outcome(self, failure: OkxError | None, latency_ms: float) -> None:
        """Writes OKX's answer, fenced by the claim; the rate slot, while still held, is closed by the same write."""
        record, desk = self.record, self.desk
        # The journal's clock, read only when a retry needs a time.
        now = self._write(desk.journal_clock.now) if isinstance(failure, OkxNotExecuted) else 0.0
        outcome = desk.policy.judge(failure, record.attempts, record.expires_at, now)
        answer = answer_detail(outcome.state or "not executed", outcome.okx_code, outcome.okx_msg, outcome.detail)
        if outcome.state is None:
            if self._requeue(outcome) or self._fenced_out("queued", answer):
                self._hold_off(outcome.hold_off)
            desk.board.wake()
            return
        done = self.final = self._finish(outcome, latency_ms) or self._fenced_out(outcome.state, answer)
        if done is not None:
            desk.board.finished(done)
            self._hold_off(outcome.hold_off)

    def _requeue(self, outcome: Outcome) -> bool:
        current = self._write(
            lambda: self.desk.queue.requeue(
                self.record.id,
                outcome.okx_code,
                outcome.okx_msg,
                outcome.detail,
                outcome.retry_at,
                claim=self.claim,
                slot=self._carried_slots(),
            )
        )
        self._slots_closed()
        return current

    def _finish(self, outcome: Outcome, latency_ms: float) -> Record | None:
        done = self._write(
            lambda: self.desk.queue.finish(
                self.record.id,
                outcome.state,
                okx_code=outcome.okx_code,
                okx_msg=outcome.okx_msg,
                detail=outcome.detail,
                latency_ms=latency_ms,
                claim=self.claim,
                slot=self._carried_slots(),
                evidence=self._evidence,
            )
        )
        self._slots_closed()
        return done

    def _carried_slots(self):
        """What the outcome's write ends: the request's slot, and a claim at receipt's bot read's too."""
        if self.at_once and self.read_slot.slot is not None:
            return (self.slot.slot, self.read_slot.slot)
        return self.slot.slot

    def _slots_closed(self) -> None:
        self.slot.closed()
        if self.at_once:
            self.read_slot.closed()

    def _fenced_out(self, state: str, answer: str) -> Record | None:
        """A write after a send was fenced out. If it was only a retry of our own write that had
        committed (its reply lost), the journal shows our claim in the state we wrote: return it.
        Otherwise the claim was taken over: OKX's answer is late, kept and told, never overwriting
        the survivor's state; None."""
        claim, record = self.claim, self.record
        try:
            latest = self.desk.queue.get(claim.alert_id)
        except JournalUnavailable:
            latest = None
        if latest and latest.state == state and Claim.of(latest) == claim and latest.detail != INTERRUPTED_DETAIL:
            return latest
        text = f"late answer from OKX after take-over: {answer}"
        log.warning("alert %s: %s; its state stays %s", record.id, text, latest.state if latest else "?")
        self._note("late answer", text)
        if self.desk.on_late is not None:
            try:
                self.desk.on_late(latest or record, text)
            except Exception:
                log.exception("telling of alert %s's late answer failed", record.id)
        return None

    def _hold_off(self, seconds: float) -> None:
        if not seconds:
            return
        try:
            self.pacer.hold_off(seconds)
        except JournalUnavailable as exc:
            log.error("could not record OKX's %.1f s hold-off in the pacing ledger: %s", seconds, exc)

    def _write(self, step: Callable):
        """A journal write after a send, tried again while the claim may still be current."""
        clock = self.desk.terms.clock
        give_up = self._started + self.desk.terms.lease
        for delay in (*WRITE_RETRY_DELAYS, None):
            try:
                return step()
            except JournalUnavailable as exc:
                if delay is None or clock() + delay >= give_up:
                    raise Unwritten(str(exc)) from None
                log.warning("journal write failed (%s); trying again in %.2f s", exc, delay)
                clock.sleep(delay)

    def _note(self, kind: str, detail: str) -> None:
        try:
            self.desk.timeline.note(self.record.id, kind, detail)
        except JournalUnavailable as exc:
            log.error("could not add to alert %s's timeline (%s): %s", self.record.id, exc, detail)
