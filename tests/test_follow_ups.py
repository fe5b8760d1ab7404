"""What one process holds in memory after an ambiguous or failed outcome (the second read of a
"not executed" proposal, a notification) dies with it: the sweep of another instance, or of the
next start, finds it undone in the journal and does it. On both engines.

The alerts here finished long ago (the journal's own clock, which no test moves), so every grace
is past; the investigators' elapsed time is a ``ManualClock``."""

import json
import time
from decimal import Decimal

import pytest

from tests.test_notify import Receiver
from webhook_app.clock import ManualClock
from webhook_app.journal import Claim, open_journal
from webhook_app.okx.client import OkxClient
from webhook_app.workers.bots import BotWatch
from webhook_app.workers.investigation import Investigator
from webhook_app.workers.notify import Notifier

BOT = "581628185981813760"
LONG_AGO = 600.0  # seconds since the outcome: past every sweep's grace (93 s by default)


@pytest.fixture
def journal(database_url):
    opened = open_journal(database_url)
    yield opened
    opened.close()


@pytest.fixture
def bots(okx):
    client = OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase)
    return {"default": BotWatch(client, instance="t", known_ids=lambda: [BOT])}


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def sent_alert(journal, amount: str, evidence: str | None = None):
    """An alert claimed and cleared to go on the wire by an instance that is gone now."""
    now = journal.now()
    journal.add(
        dedup_key=f"fp:{amount}",
        dedup_since=0.0,
        algo_id=BOT,
        action="add",
        amount=amount,
        request_body=json.dumps({"algoId": BOT, "type": "add", "amt": amount}),
        expires_at=now + 600,
    )
    (claimed,) = journal.claim_due("gone", 1, now)
    assert journal.confirm_send(Claim.of(claimed), evidence=evidence)
    return claimed


def unknown_alert(journal, bots, amount: str, finished_ago: float = LONG_AGO):
    """Sent with the bot's snapshot from just before, its outcome unknown."""
    before = json.dumps({"before": bots["default"].snapshot_now(BOT).to_json()})
    claimed = sent_alert(journal, amount, before)
    now = journal.now()
    return journal.finish(claimed.id, "unknown", detail="timed out", now=now - finished_ago, claim=Claim.of(claimed))


def failed_alert(journal, amount: str, finished_ago: float = LONG_AGO):
    claimed = sent_alert(journal, amount)
    return journal.finish(
        claimed.id,
        "failed",
        okx_code="50013",
        okx_msg="Systems are busy",
        detail="not executed after 3 attempts",
        now=journal.now() - finished_ago,
        claim=Claim.of(claimed),
    )


def eventually(condition, timeout: float = 10.0):
    """``condition()``'s first truthy answer within ``timeout`` real seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answer := condition():
            return answer
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


def test_a_second_read_lost_with_its_process_is_done_by_the_sweep_and_withdraws_the_proposal(journal, bots, okx):
    record = unknown_alert(journal, bots, amount="10")
    first = Investigator(journal, bots, clock=ManualClock())  # never started: its second read stays in its memory
    assert first.investigate(record).proposal == "not_executed"
    okx.move_pnl(BOT, Decimal("-3.5"))  # the bot moves after the first look, as a late execution would
    withdrawn = []
    survivor = Investigator(journal, bots, on_withdrawn=lambda r, found: withdrawn.append(r.id), clock=ManualClock())
    survivor.start()
    try:
        stored = eventually(lambda: (r := journal.get(record.id)) and "recheck" in r.evidence_data and r)
    finally:
        survivor.stop()
    assert stored.proposal == "cant_tell" and stored.evidence_data["withdrawn"]["proposal"] == "not_executed"
    assert {"availBal", "totalEq"} <= set(stored.evidence_data["recheck"]["moved"])
    assert withdrawn == [record.id]
    (note,) = [e.detail for e in journal.events(record.id) if e.detail.startswith("read again")]
    assert note.startswith("read again late") and "withdrawn" in note
    # Done once: a later sweep finds nothing left to read again.
    assert journal.awaiting_second_read(0.0, journal.now()) == []


class Unreadable:
    """A bot watch whose reads find no room in the budget (or no answer from OKX)."""

    def snapshot_now(self, algo_id):
        return None


def test_a_second_read_that_could_not_read_the_bot_is_tried_again_by_a_later_sweep(journal, bots, caplog):
    record = unknown_alert(journal, bots, amount="10")
    assert Investigator(journal, bots, clock=ManualClock()).investigate(record).proposal == "not_executed"
    blind = Investigator(journal, {"default": Unreadable()}, clock=ManualClock())
    blind.start()
    try:
        eventually(lambda: "the bot could not be read" in caplog.text)
    finally:
        blind.stop()
    assert [r.id for r in journal.awaiting_second_read(0.0, journal.now())] == [record.id]  # left for the next
    seeing = Investigator(journal, bots, clock=ManualClock())
    seeing.start()
    try:
        stored = eventually(lambda: (r := journal.get(record.id)) and "recheck" in r.evidence_data and r)
    finally:
        seeing.stop()
    assert stored.proposal == "not_executed" and stored.evidence_data["recheck"]["moved"] == []


def test_a_second_read_whose_account_is_gone_is_kept_unread_and_not_tried_again(journal, bots):
    record = unknown_alert(journal, bots, amount="10")
    assert Investigator(journal, bots, clock=ManualClock()).investigate(record).proposal == "not_executed"
    gone = Investigator(journal, {}, clock=ManualClock())  # its account is no longer configured: nothing to read with
    gone.start()
    try:
        stored = eventually(lambda: (r := journal.get(record.id)) and "recheck" in r.evidence_data and r)
    finally:
        gone.stop()
    assert stored.proposal == "not_executed" and stored.evidence_data["recheck"] == {"snapshot": None, "moved": None}
    assert journal.awaiting_second_read(0.0, journal.now()) == []


def test_notifications_lost_with_their_process_are_sent_by_the_sweep_and_a_told_alert_never_again(
    journal, bots, receiver
):
    unknown = unknown_alert(journal, bots, amount="10")
    Investigator(journal, bots, clock=ManualClock()).investigate(unknown)  # proposed; its notification died
    failed = failed_alert(journal, amount="20")
    just_failed = failed_alert(journal, amount="30", finished_ago=0.0)  # its own notification may be on its way
    assert Notifier((), journal=journal).tell_untold(0.0, journal.now()) == []  # no notifications configured

    notifier = Notifier((receiver.url,), coalesce=0.0, journal=journal)
    survivor = Investigator(journal, bots, tell_untold=notifier.tell_untold, clock=ManualClock())
    survivor.sweep()
    titles = sorted(m["title"] for m in receiver.wait_for(2))
    assert titles == [
        f"Alert {unknown.id} unknown: bot {BOT}, add 10",
        f"Alert {failed.id} failed: bot {BOT}, add 20",
    ]
    assert all("Told again" in m["message"] for m in receiver.messages)
    assert "proposes: not executed" in next(m["message"] for m in receiver.messages if "unknown" in m["title"])
    # Recorded once Apprise delivered them: no instance tells them again.
    eventually(lambda: journal.untold(("unknown", "failed"), 0.0, journal.now() - 60) == [])
    assert [r.id for r in journal.untold(("unknown", "failed"), 0.0, journal.now())] == [just_failed.id]

    told_again = []
    fresh = Notifier((receiver.url,), coalesce=0.0, journal=journal)
    another = Investigator(
        journal, bots, tell_untold=lambda *window: told_again.extend(fresh.tell_untold(*window)), clock=ManualClock()
    )
    another.sweep()
    assert told_again == [] and len(receiver.messages) == 2


def test_a_delivered_notification_records_every_alert_it_names_and_a_summary_all_of_its_own(journal, receiver):
    first, second, third = (failed_alert(journal, amount=str(n)) for n in (1, 2, 3))
    notifier = Notifier((receiver.url,), coalesce=60.0, journal=journal)
    for record in (first, second, third):
        notifier.alert_finished(record)
    (message,) = receiver.wait_for(1)
    assert message["title"].startswith(f"Alert {first.id} failed")
    assert eventually(lambda: [r.id for r in journal.untold(("failed",), 0.0, journal.now())] == [second.id, third.id])
    # The other two are held for the summary, in this process only: a sweep here does not tell them twice.
    assert notifier.tell_untold(0.0, journal.now()) == [] and notifier.waiting(second.id)
