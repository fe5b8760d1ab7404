"""Sending never stops, never sticks and never reorders one bot's alerts, whatever the journal
does in the sender's path: the app against the loopback OKX stand-in, with journal faults
injected into the running app's own journal (one method made to fail, the rest real)."""

import json
import threading
import time

import pytest
import requests

from tests.conftest import REINVESTED, live_env, make_alert, wait_final
from tests.okx_stand_in import OkxReply, Slow
from tests.service_process import ServiceProcess
from tests.test_notify import Receiver
from webhook_app.clock import ManualClock
from webhook_app.journal import JournalUnavailable


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def fail(journal, method: str, times: int | None = None) -> dict:
    """Make ``journal.<method>`` raise JournalUnavailable (``times`` times, or until undone); counts the faults."""
    real = getattr(journal, method)
    state = {"faults": 0}

    def failing(*args, **kwargs):
        if times is None or state["faults"] < times:
            state["faults"] += 1
            raise JournalUnavailable(f"injected: {method} failed")
        return real(*args, **kwargs)

    setattr(journal, method, failing)
    return state


def test_one_journal_error_at_the_claim_never_stops_sending(make_app, okx):
    # One slot: the leak the review found kept it for good, so nothing was ever sent again.
    app = make_app(okx_rate_limit=1, reply_deadline=0.1)
    journal = app.extensions["webhook"].journal
    faults = fail(journal.claims, "claim_due", times=1)  # after the slot was taken: it must come back
    client = app.test_client()
    ids = [client.post("/webhook", json=make_alert(amount=str(n), algoId=f"70000{n}")).json["id"] for n in (1, 2, 3)]
    assert [wait_final(app, i, timeout=10).state for i in ids] == ["ok"] * 3
    assert faults["faults"] == 1


def test_a_failed_release_of_a_rate_slot_is_given_back_later(make_app, okx):
    app = make_app(okx_rate_limit=1, reply_deadline=0.1)
    pacer = app.extensions["webhook"].delivery.pacer
    faults = fail(pacer, "release", times=1)
    client = app.test_client()
    ids = [client.post("/webhook", json=make_alert(amount=str(n), algoId=f"70001{n}")).json["id"] for n in (1, 2)]
    assert [wait_final(app, i, timeout=10).state for i in ids] == ["ok", "ok"]
    assert faults["faults"] == 1


def test_an_alert_whose_requeue_cannot_be_written_is_recovered_not_left_sending(make_app, okx, receiver):
    # OKX said 50013 (not executed), and the journal refuses the requeue for good: the review saw the
    # alert stay "sending", attempt 1, for the instance's whole life. Now its lease lapses (3 s to send
    # + 0.5 + 1 s time-outs + 5 s margin = 9.5 s) and recovery, on this live instance, takes it.
    app = make_app(notify_urls=(receiver.url,), reply_deadline=0.1)
    journal = app.extensions["webhook"].journal
    faults = fail(journal, "requeue")
    okx.play(OkxReply("50013", "Systems busy"))
    alert_id = app.test_client().post("/webhook", json=make_alert()).json["id"]
    record = wait_final(app, alert_id, timeout=20)
    assert record.state == "unknown"  # it was cleared to go on the wire: it may have left
    assert faults["faults"] >= 2  # the write was tried again before it was given up
    (message,) = receiver.wait_for(1)
    assert f"Alert {alert_id} unknown" in message["title"]
    assert "proposes: not executed" in message["message"]  # OKX answered 50013: the bot did not move
    assert len(okx.margin_requests()) == 1  # never sent again on its own


def test_a_crash_recovered_unknown_alert_is_logged_and_notified(okx, tmp_path, receiver):
    # gunicorn as the Procfile starts it, SIGKILLed while OKX is slow to answer; the next start finds
    # the alert "sending", and since the request may have left, makes it unknown: logged and notified.
    env = live_env(okx, tmp_path, NOTIFY_URLS=receiver.url, REPLY_DEADLINE="0.2", OKX_READ_TIMEOUT="10")
    okx.play(Slow(5))
    first = ServiceProcess(env).start()
    try:
        alert_id = requests.post(first.url + "/webhook", json=make_alert(**REINVESTED), timeout=5).json()["id"]
        deadline = time.monotonic() + 5
        while not okx.margin_requests() and time.monotonic() < deadline:
            time.sleep(0.01)
        first.kill()
    finally:
        first.discard()
    second = ServiceProcess(env).start()
    try:
        (message,) = receiver.wait_for(1)
        assert f"Alert {alert_id} unknown" in message["title"] and "may have acted" in message["message"]
        # The snapshot the dead instance took before sending was kept with the send's confirmation,
        # so the survivor can compare: OKX executed it.
        assert "proposes: executed" in message["message"], message
        assert f"alert {alert_id} final state=unknown" in second.log()
        assert len(okx.margin_requests()) == 1
    finally:
        second.discard()


def test_a_later_alert_never_passes_an_earlier_one_waiting_for_a_retry(make_app, okx):
    app = make_app(reply_deadline=0.1)
    okx.play(OkxReply("50013", "Systems busy"))  # the first attempt of the first alert: not executed
    client = app.test_client()
    first = client.post("/webhook", json=make_alert(action="add", amount="5")).json["id"]
    second = client.post("/webhook", json=make_alert(action="reduce", amount="5")).json["id"]
    assert [wait_final(app, i).state for i in (first, second)] == ["ok", "ok"]
    assert [(b["type"], b["amt"]) for b in okx.executed] == [("add", "5"), ("reduce", "5")]
    assert [r.code for r in okx.margin_requests()] == ["50013", "0", "0"]  # the retry really happened


def test_one_bots_alerts_are_never_in_flight_together_but_other_bots_go_alongside(make_app, okx):
    app = make_app(reply_deadline=0.05, okx_read_timeout=3.0)
    in_flight = 1.0  # long enough that the other bot's send surely starts meanwhile, whatever the load
    okx.play(*[Slow(in_flight)] * 6)
    client = app.test_client()
    bodies = [make_alert(amount=str(n), algoId=bot) for n in (1, 2, 3) for bot in ("800001", "800002")]
    ids = [client.post("/webhook", json=body).json["id"] for body in bodies]
    for alert_id in ids:
        wait_final(app, alert_id)
    requests_by_bot: dict[str, list] = {}
    for received in okx.margin_requests():
        requests_by_bot.setdefault(json.loads(received.body)["algoId"], []).append(received)
    for bot, received in requests_by_bot.items():
        assert [json.loads(r.body)["amt"] for r in received] == ["1", "2", "3"], bot
        # Each starts only after the one before it was answered (in_flight later).
        gaps = [b.at - a.at for a, b in zip(received, received[1:], strict=False)]
        assert min(gaps) >= in_flight, (bot, gaps)
    starts = sorted((r.at, json.loads(r.body)["algoId"]) for rs in requests_by_bot.values() for r in rs)
    overlapping_bots = sum(
        1 for a, b in zip(starts, starts[1:], strict=False) if b[0] - a[0] < in_flight and a[1] != b[1]
    )
    assert overlapping_bots >= 1  # the two bots did go side by side


@pytest.mark.parametrize("held_in", ["claim_paced", "confirm_send"])
def test_a_sender_held_up_past_its_deadline_never_sends_and_the_alert_goes_later(make_app, okx, held_in):
    # The process is held up around the claim (a pause, a slow journal): past the local deadline
    # the request is not sent on that claim, whether the hold-up came before the journal confirmed
    # the claim or after; the alert goes later, once.
    app = make_app(reply_deadline=0.1)
    delivery = app.extensions["webhook"].delivery
    delivery.terms.send_by = 1.0
    # Moves with the host's (the journal's due times do too), and jumps when the process is held up.
    delivery.terms.clock = clock = ManualClock(runs=True)
    journal = app.extensions["webhook"].journal
    real = getattr(journal, held_in)
    held = threading.Event()

    def slow(*args, **kwargs):
        result = real(*args, **kwargs)
        if not held.is_set() and (result.claims if held_in == "claim_paced" else result):
            held.set()
            clock.advance(1.5)  # past the 1 s deadline, with the claim itself still current
        return result

    setattr(journal, held_in, slow)
    alert_id = app.test_client().post("/webhook", json=make_alert()).json["id"]
    record = wait_final(app, alert_id)
    assert held.is_set()
    assert record.state == "ok"
    assert len(okx.margin_requests()) == 1
    events = journal.events(alert_id)
    if held_in == "claim_paced":  # caught before asking the journal: back in the queue as if never claimed
        assert [e.kind for e in events] == ["claimed", "unclaimed", "claimed", "ok"]
    else:  # caught by the client, right before the connection is used
        assert [e.kind for e in events] == ["claimed", "retry", "claimed", "ok"]
        assert "not sent" in events[1].detail


@pytest.mark.skipif(not hasattr(time, "CLOCK_BOOTTIME"), reason="a suspension shows in Linux's boot time only")
def test_a_host_suspended_between_the_confirmation_and_the_send_never_sends_on_that_claim(make_app, okx, monkeypatch):
    # A suspension stops time.monotonic but not CLOCK_BOOTTIME: the host sleeps for 10 s right after
    # the journal confirmed the claim, past the 3 s send deadline. That request must not leave: the
    # alert goes later, on a claim of its own, once.
    app = make_app(reply_deadline=0.1)
    journal = app.extensions["webhook"].journal
    real_gettime, real_confirm = time.clock_gettime, journal.confirm_send
    suspended = {"for": 0.0, "requests_then": None}

    def boot_time(clock_id):
        return real_gettime(clock_id) + (suspended["for"] if clock_id == time.CLOCK_BOOTTIME else 0.0)

    def confirm_then_suspend(*args, **kwargs):
        confirmed = real_confirm(*args, **kwargs)
        if confirmed and not suspended["for"]:
            suspended["requests_then"] = len(okx.margin_requests())
            suspended["for"] = 10.0
        return confirmed

    monkeypatch.setattr(time, "clock_gettime", boot_time)
    journal.confirm_send = confirm_then_suspend
    alert_id = app.test_client().post("/webhook", json=make_alert()).json["id"]
    record = wait_final(app, alert_id)
    assert suspended["requests_then"] == 0
    events = journal.events(alert_id)
    assert [e.kind for e in events] == ["claimed", "retry", "claimed", "ok"], events
    assert "not sent" in events[1].detail
    assert record.state == "ok" and record.attempts == 2
    assert len(okx.margin_requests()) == 1  # the stand-in saw only the second claim's request


def test_a_claim_whose_reply_is_lost_gives_its_rate_slots_back_within_seconds(make_app, okx, pg_url):
    # journal_claim_paced commits (two alerts claimed, both rate slots taken) and the dispatcher gets
    # an error instead of its reply. The slots carry their claim and the claimant asks for them: they
    # come back, the two alerts are queued again, and all four alerts reach OKX within seconds, once
    # each. Before, the slots counted for 90 s and the claims until their lease lapsed.
    app = make_app(database_url=pg_url, okx_rate_limit=2, reply_deadline=0.1)
    journal = app.extensions["webhook"].journal
    app.extensions["webhook"].delivery.at_once = lambda *args: None  # every alert through the dispatcher's claim
    real, posted, lost = journal.claim_paced, threading.Event(), []

    def claim_with_its_reply_lost(*args, **kwargs):
        if lost:
            return real(*args, **kwargs)
        posted.wait(5)  # every alert is in the queue: this claim takes the whole budget
        taken = real(*args, **kwargs)
        if taken.claims:
            lost.extend(record.id for record, _ in taken.claims)
            raise JournalUnavailable("injected: the connection was cut after the claim committed")
        return taken

    journal.claim_paced = claim_with_its_reply_lost
    client = app.test_client()
    ids = [client.post("/webhook", json=make_alert(amount=str(n), algoId=f"71000{n}")).json["id"] for n in (1, 2, 3, 4)]
    posted.set()
    started = time.monotonic()
    while len(okx.executed) < 4 and time.monotonic() - started < 15:
        time.sleep(0.05)
    assert len(lost) == 2
    assert sorted(b["amt"] for b in okx.executed) == ["1", "2", "3", "4"], time.monotonic() - started
    assert time.monotonic() - started < 8  # seconds, where the leaked slots held everything for 90
    assert [wait_final(app, i).state for i in ids] == ["ok"] * 4
    for alert_id in lost:
        kinds = [e.kind for e in journal.events(alert_id)]
        assert kinds == ["claimed", "requeued", "claimed", "ok"], kinds
        assert journal.get(alert_id).attempts == 2  # the lost claim's attempt stays counted: it can never confirm
    assert len(okx.margin_requests()) == 4


def test_a_dry_run_prunes_the_journal_too(make_app, tmp_path):
    # The review found nothing pruned in dry-run: the dispatcher, which prunes, was never started.
    app = make_app(dry_run=True, retention_days=1)
    journal = app.extensions["webhook"].journal
    old, _ = journal.add(
        dedup_key="fp:old",
        dedup_since=0,
        algo_id="1",
        action="add",
        amount="1",
        request_body="{}",
        expires_at=0,
        state="dry_run",
        now=time.time() - 3 * 86400,
    )
    app.extensions["webhook"].delivery.terms.clock = clock = ManualClock()
    app.extensions["webhook"].delivery.start()
    clock.until_waiting(1)  # the dispatcher has made its first round (it prunes there) and waits
    assert journal.get(old.id) is None


def test_an_answer_after_a_take_over_is_kept_and_notified_but_changes_nothing(make_app, okx, receiver):
    # A lease far shorter than OKX's answer: the claim lapses while the request is under way, recovery
    # makes the alert unknown (it may have left), and OKX's "0" arriving after that is a late answer.
    app = make_app(notify_urls=(receiver.url,), reply_deadline=0.1, okx_read_timeout=3.0)
    delivery = app.extensions["webhook"].delivery
    delivery.terms.lease = 0.3
    okx.play(Slow(1.8))
    alert_id = app.test_client().post("/webhook", json=make_alert()).json["id"]
    journal = app.extensions["webhook"].journal
    deadline = time.monotonic() + 10
    while "late answer" not in [e.kind for e in journal.events(alert_id)] and time.monotonic() < deadline:
        time.sleep(0.05)
    record = journal.get(alert_id)
    assert record.state == "unknown"  # the survivor's state stands
    late = [e for e in journal.events(alert_id) if e.kind == "late answer"]
    assert len(late) == 1 and "late answer from OKX after take-over: ok: OKX 0" in late[0].detail
    receiver.wait_for(2, timeout=15)  # the unknown, then the late answer (held up to 10 s: one per kind)
    assert f"Alert {alert_id}: late answer from OKX after take-over" in receiver.text()
    assert len(okx.executed) == 1
