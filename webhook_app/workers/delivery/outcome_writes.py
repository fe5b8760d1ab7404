"""The writes after a send, fenced by the claim: OKX's answer judged into an outcome (a final
state, or due again), its write (which also ends the rate slots it carries), a write fenced out
told apart from our own retried one, and the journal's writes tried again while the claim may
still be current. Part of ``Attempt``, whose claim, slots and record these use."""

from __future__ import annotations

import logging
from collections.abc import Callable

from webhook_app.journal import INTERRUPTED_DETAIL, Claim, JournalUnavailable, Record, answer_detail
from webhook_app.okx.errors import OkxError, OkxNotExecuted
from webhook_app.workers.outcomes import Outcome

log = logging.getLogger("webhook_app")

WRITE_RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0, 4.0)  # a journal write after a send, tried again


class Unwritten(Exception):
    """A journal write after a send failed every retry: the lease's lapse hands the alert to recovery."""


class OutcomeWrites:
    """``Attempt``'s writes after the send (``desk``, ``record``, ``claim``, ``slot``, ``read_slot``,
    ``pacer``, ``at_once``, ``_evidence`` and ``_started`` are the attempt's)."""

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
