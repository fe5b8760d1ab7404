"""One ``Attempt``, run on the test's own thread (no dispatcher, no senders) against a fake journal
holding one claimed alert, with the OKX stand-in as OKX: what it sends, writes and gives back
when the journal refuses, fences it out or is down."""

import dataclasses
import json
import time
import types

import pytest

from tests.okx_stand_in import DEFAULT_BOT, Meanwhile
from webhook_app.clock import ManualClock
from webhook_app.journal import INTERRUPTED_DETAIL, Claim, JournalUnavailable, Record
from webhook_app.okx.client import OkxClient
from webhook_app.workers.delivery.attempt import Attempt, Desk
from webhook_app.workers.delivery.board import Board
from webhook_app.workers.delivery.lanes import Lane
from webhook_app.workers.delivery.slots import SlotLedger
from webhook_app.workers.delivery.terms import Terms
from webhook_app.workers.outcomes import OutcomePolicy
from webhook_app.workers.pacing import MemoryPacer

ME = "this-instance"


class FakeJournal:
    """Only what an attempt asks of the journal (``AlertQueue``'s confirm_send, unclaim, requeue,
    finish and get; ``Activity``'s note; the clock), on one alert. A write passes only while the
    alert is sending on the writer's claim, as the real fence does; ``down`` lists the methods
    that raise ``JournalUnavailable``."""

    def __init__(self, record: Record):
        self.record = record
        self.down: set[str] = set()
        self.notes: list[tuple[str, str]] = []
        self.confirmed: list[Claim] = []
        self.confirmed_evidence: list[str | None] = []

    def _ask(self, method: str) -> None:
        if method in self.down:
            raise JournalUnavailable(f"injected: {method} failed")

    def _ours(self, claim: Claim) -> bool:
        return self.record.state == "sending" and Claim.of(self.record) == claim

    def take_over(self) -> None:
        """The claim lapsed and another instance's recovery made the alert unknown."""
        self.record = dataclasses.replace(self.record, state="unknown", detail=INTERRUPTED_DETAIL, claimed_by="other")

    def now(self) -> float:
        return time.time()

    def get(self, alert_id: int) -> Record | None:
        self._ask("get")
        return self.record

    def note(self, alert_id: int, kind: str, detail: str) -> None:
        self._ask("note")
        self.notes.append((kind, detail))

    def confirm_send(self, claim: Claim, evidence=None, read_slot=None) -> bool:
        self._ask("confirm_send")
        self.confirmed.append(claim)
        self.confirmed_evidence.append(evidence)
        return self._ours(claim)

    def unclaim(self, claims: list[Claim]) -> None:
        self._ask("unclaim")
        if any(self._ours(claim) for claim in claims):
            record = self.record
            self.record = dataclasses.replace(record, state="queued", claimed_by=None, attempts=record.attempts - 1)

    def requeue(self, alert_id, okx_code, okx_msg, detail, not_before, claim=None, slot=None) -> bool:
        self._ask("requeue")
        if not self._ours(claim):
            return False
        self.record = dataclasses.replace(self.record, state="queued", detail=detail, not_before=not_before)
        return True

    def finish(
        self,
        alert_id,
        state,
        *,
        okx_code=None,
        okx_msg=None,
        detail=None,
        latency_ms=None,
        claim=None,
        slot=None,
        evidence=None,
    ):
        self._ask("finish")
        if not self._ours(claim):
            return None
        self.record = dataclasses.replace(self.record, state=state, okx_code=okx_code, okx_msg=okx_msg, detail=detail)
        return self.record


class LedgerPacer(MemoryPacer):
    """A budget kept in the journal's database, as PostgreSQL's: the outcome's write closes the
    slot; what the attempt ends itself is counted here."""

    shares_journal = True

    def __init__(self):
        super().__init__(5, clock=ManualClock())
        self.released, self.cancelled = [], []

    def release(self, slot) -> None:
        self.released.append(slot)
        super().release(slot)

    def cancel(self, slots: list) -> None:
        self.cancelled.extend(slots)
        super().cancel(slots)


class SteppingClock(ManualClock):
    """Time moves only when the attempt sleeps (between write retries), by exactly that much."""

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)


@pytest.fixture
def world(okx):
    """The claimed alert, the fake journal, the lane to the stand-in and what was told of late answers."""
    now = time.time()
    record = Record(
        id=7,
        received_at=now,
        dedup_key="fp:7",
        algo_id=DEFAULT_BOT,
        action="add",
        amount="10",
        request_body=json.dumps({"algoId": DEFAULT_BOT, "type": "add", "amt": "10"}, separators=(",", ":")),
        expires_at=now + 600,
        state="sending",
        attempts=1,
        claimed_by=ME,
    )
    journal = FakeJournal(record)
    pacer = LedgerPacer()
    lane = Lane(OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase), pacer)
    late: list[tuple[Record, str]] = []
    clock = SteppingClock()
    board = Board(["default"])
    terms = Terms(clock, send_by=3.0, lease=19.0)
    desk = Desk(
        journal, journal, journal, OutcomePolicy(), board, SlotLedger(board), terms, lambda r, t: late.append(t)
    )

    def attempt(send_by: float = 3.0, at_receipt: bool = False) -> Attempt:
        (slot,) = pacer.acquire(ME, 1)
        attempt = Attempt(desk, record, lane, clock() + send_by, slot)
        return attempt.confirmed_at_receipt(None) if at_receipt else attempt

    return types.SimpleNamespace(journal=journal, pacer=pacer, attempt=attempt, late=late)


def test_an_answer_is_written_on_the_claim_and_the_write_closes_the_slot(world, okx):
    world.attempt().run()
    assert world.journal.record.state == "ok" and len(okx.executed) == 1
    assert (world.pacer.released, world.pacer.cancelled) == ([], [])  # closed by the outcome's write


def test_a_refused_confirmation_sends_nothing_and_gives_the_slot_back(world, okx, caplog):
    attempt = world.attempt()
    world.journal.take_over()  # the claim lapsed before the send: the journal refuses to confirm it
    attempt.run()
    assert okx.margin_requests() == []
    assert len(world.pacer.cancelled) == 1 and world.pacer.released == []
    assert world.journal.notes == [("not sent", f"attempt 1 by {ME} not sent: its claim had lapsed")]
    assert world.journal.record.state == "unknown"  # the survivor's state stands
    assert "had lapsed or been taken over" in caplog.text


def test_a_confirmation_the_journal_cannot_give_queues_the_alert_again_and_sends_nothing(world, okx, caplog):
    world.journal.down.add("confirm_send")
    world.attempt().run()
    assert okx.margin_requests() == []
    assert (world.journal.record.state, world.journal.record.attempts) == ("queued", 0)  # as if never claimed
    assert len(world.pacer.cancelled) == 1 and world.pacer.released == []
    assert "its claim could not be confirmed" in caplog.text


def test_a_claim_past_its_deadline_is_queued_again_without_asking_the_journal(world, okx, caplog):
    world.attempt(send_by=-0.1).run()
    assert okx.margin_requests() == [] and world.journal.confirmed == []
    assert world.journal.record.state == "queued" and len(world.pacer.cancelled) == 1
    assert "past its claim's deadline" in caplog.text


def test_a_claim_confirmed_at_receipt_is_sent_without_a_second_confirmation(world, okx):
    world.attempt(at_receipt=True).run()
    assert world.journal.confirmed == [] and len(okx.executed) == 1
    assert world.journal.record.state == "ok"


def test_a_claim_confirmed_at_receipt_and_resumed_past_its_deadline_is_never_sent(world, okx, caplog):
    # The process paused between the journal's write and the send (SIGSTOP, a host suspend): by the
    # time it resumes the claim may have been taken over; it must not send, only put it back if still its own.
    world.attempt(send_by=-0.1, at_receipt=True).run()
    assert okx.margin_requests() == [] and world.journal.confirmed == []
    assert world.journal.record.state == "queued" and len(world.pacer.cancelled) == 1
    assert "held up past its claim's deadline" in caplog.text


def test_an_answer_after_a_take_over_is_noted_and_told_and_changes_nothing(world, okx, caplog):
    # OKX acts; while its answer is on the way the claim lapses and another instance takes it over.
    okx.play(Meanwhile(None, lambda stand_in, bot: world.journal.take_over()))
    world.attempt().run()
    assert len(okx.executed) == 1
    assert world.journal.record.state == "unknown"  # the survivor's state stands
    text = "late answer from OKX after take-over: ok: OKX 0"
    assert world.journal.notes == [("late answer", text)]
    assert world.late == [text]
    assert "late answer from OKX after take-over" in caplog.text
    assert world.pacer.released == []  # the fenced-out write closed the slot all the same


def test_a_journal_down_at_the_outcome_write_releases_the_slot(world, okx, caplog):
    world.journal.down.add("finish")
    attempt = world.attempt()
    attempt.run()
    assert len(okx.executed) == 1
    assert world.journal.record.state == "sending"  # recovery takes it when its claim lapses
    assert len(world.pacer.released) == 1 and world.pacer.cancelled == []  # the write that was to close it never ran
    assert "journal write failed" in caplog.text and "could not journal the outcome of alert 7" in caplog.text
    attempt.release_slot()
    assert len(world.pacer.released) == 1  # ended once only
