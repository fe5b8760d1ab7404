"""Delivery guarantees: journaled first, sent at most once, paced, retried only when safe."""

import os
import re
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, MovableClock, make_alert, post_concurrently, wait_final
from tests.okx_stand_in import OkxReply, RawReply, Slow
from webhook_app.clock import ManualClock
from webhook_app.journal import Claim, JournalUnavailable
from webhook_app.journal.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from webhook_app.journal.sqlite import SqliteJournal
from webhook_app.okx.client import OkxClient
from webhook_app.workers.delivery import Delivery, Lane
from webhook_app.workers.membership import Membership
from webhook_app.workers.outcomes import OutcomePolicy
from webhook_app.workers.pacing import MemoryPacer

# -- pacing ---------------------------------------------------------------------------------


def test_pacer_holds_a_slot_until_window_after_the_reply():
    clock = ManualClock(100.0)
    pacer = MemoryPacer(limit=3, window=2.0, margin=0.0, clock=clock)
    slots = pacer.acquire("me", 5)
    assert len(slots) == 3 and pacer.acquire("me", 1) == []
    assert pacer.opens_in() is None  # nothing frees until a reply comes back
    clock.advance(0.3)
    pacer.release(slots[0])  # its reply arrived at 100.3
    assert pacer.busy() == 3 and pacer.opens_in() == pytest.approx(2.0)
    clock.advance(1.99)
    assert pacer.acquire("me", 1) == []
    clock.advance(0.01)
    assert len(pacer.acquire("me", 2)) == 1  # window after the reply, never earlier


def test_pacer_cancel_gives_back_slots_never_used():
    pacer = MemoryPacer(limit=3, window=2.0, margin=0.0, clock=ManualClock())
    slots = pacer.acquire("me", 3)
    pacer.cancel(slots[1:])
    assert pacer.busy() == 1 and len(pacer.acquire("me", 3)) == 2


def test_pacer_hold_off_starts_nothing_until_it_ends():
    clock = ManualClock(0.0)
    pacer = MemoryPacer(limit=5, window=2.0, margin=0.0, clock=clock)
    pacer.hold_off(2.0)
    assert pacer.acquire("me", 1) == [] and pacer.opens_in() == pytest.approx(2.0)
    clock.advance(2.0)
    assert len(pacer.acquire("me", 9)) == 5


def test_pacer_projects_a_burst_tail_beyond_the_reply_deadline():
    pacer = MemoryPacer(limit=20, window=2.0, margin=0.0, clock=ManualClock())
    assert pacer.projected(0) == 0.0 and pacer.projected(19) == 0.0
    assert pacer.projected(20) == pytest.approx(2.0) and pacer.projected(45) == pytest.approx(4.0)


def test_burst_of_50_alerts_is_sent_once_each_within_the_limit(make_app, okx):
    app = make_app()
    alerts = [make_alert(amount=str(n)) for n in range(1, 51)]
    replies = post_concurrently(app.test_client, alerts)
    assert {r.status_code for r in replies} <= {200, 202}
    ids = [r.json["id"] for r in replies]
    assert len(set(ids)) == 50
    for alert_id in ids:
        assert wait_final(app, alert_id).state == "ok"
    assert sorted(float(b["amt"]) for b in okx.executed) == list(range(1, 51))
    assert okx.rate_limited == 0
    assert okx.max_in_any_window() <= 20


def test_alerts_are_sent_in_order_of_arrival(make_app, okx):
    client = make_app(okx_rate_limit=1, reply_deadline=0.2).test_client()
    ids = [client.post("/webhook", json=make_alert(amount=str(n))).json["id"] for n in range(1, 4)]
    for alert_id in ids:
        wait_final(client.application, alert_id)
    assert [b["amt"] for b in okx.executed] == ["1", "2", "3"]


# -- retries --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        OkxReply("50011", "Too Many Requests", 429),
        OkxReply("50011", "Too Many", 200),
        OkxReply("50013", "Systems are busy"),
        OkxReply("50001", "unavailable", 503),
        OkxReply("50040", "Too frequent"),
    ],
    ids=["50011-429", "50011-200", "50013", "50001", "50040"],
)
def test_not_executed_then_success_is_retried_once_and_signed_afresh(client, okx, first):
    okx.play(first)
    response = client.post("/webhook", json=make_alert())
    record = wait_final(client.application, response.json["id"])
    assert record.state == "ok" and record.attempts == 2
    requests_ = okx.margin_requests()
    assert len(requests_) == 2 and len(okx.executed) == 1
    assert requests_[0].headers["OK-ACCESS-SIGN"] != requests_[1].headers["OK-ACCESS-SIGN"]
    if first.code == "50011":
        assert requests_[1].at - requests_[0].at >= 2.0  # waited for OKX's window


def test_clock_skew_is_corrected_from_okx_server_time_then_retried(client, okx):
    okx.clock_offset = 45.0  # OKX's clock is 45 s ahead of ours: our timestamps look stale
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 200, response.json
    margin = okx.margin_requests()
    assert [r.code for r in margin] == ["50102", "0"]
    assert [r.path for r in okx.received].count("/api/v5/public/time") == 1
    assert len(okx.executed) == 1


@pytest.mark.parametrize(
    "behaviour, state",
    [
        (RawReply(502), "unknown"),
        (OkxReply("50004", "timeout"), "unknown"),
        (Slow(1.5), "unknown"),
        (OkxReply("51000", "Parameter error"), "rejected"),
        (OkxReply("50113", "Invalid Sign", 401), "rejected"),
        (OkxReply("51291", "bot stopped"), "rejected"),
    ],
)
def test_refusals_and_unknown_outcomes_are_never_retried(client, okx, behaviour, state):
    okx.play(behaviour, *[OkxReply("0")] * 3)
    response = client.post("/webhook", json=make_alert())
    record = wait_final(client.application, response.json["id"])
    # Final after its first attempt: a retry is scheduled before an outcome is final, never after.
    assert (record.state, record.attempts) == (state, 1)
    assert len(okx.margin_requests()) == 1


def test_retries_stop_at_the_attempt_limit(make_app, okx):
    client = make_app(okx_max_attempts=3).test_client()
    okx.play(*[OkxReply("50013", "busy")] * 10)
    response = client.post("/webhook", json=make_alert())
    record = wait_final(client.application, response.json["id"])
    assert record.state == "failed" and record.attempts == 3
    assert len(okx.margin_requests()) == 3


def test_retries_stop_when_the_alert_lag_runs_out(make_app, okx):
    client = make_app(okx_max_attempts=10).test_client()
    okx.play(*[OkxReply("50011", "Too Many Requests", 429)] * 10)
    response = client.post("/webhook", json=make_alert(maxLag=3))
    record = wait_final(client.application, response.json["id"])
    assert record.state == "failed"
    assert len(okx.margin_requests()) == 2  # at 0 s and 2 s; a third at 4 s would be past the lag


# -- at most once ---------------------------------------------------------------------------


def test_ten_identical_alerts_at_once_are_sent_exactly_once(make_app, okx):
    app = make_app()
    replies = post_concurrently(app.test_client, [make_alert()] * 10)
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] + [409] * 9, statuses
    original = next(r for r in replies if r.status_code == 200).json["id"]
    assert {r.json["id"] for r in replies if r.status_code == 409} == {original}
    assert len(okx.executed) == 1


@pytest.mark.parametrize("later", [5, 10, 15, 19.9])
def test_tradingviews_resends_are_409_with_the_original(make_app, okx, later):
    clock = MovableClock()
    client = make_app(clock=clock, dedup_window=20).test_client()  # the smallest DEDUP_WINDOW allowed
    first = client.post("/webhook", json=make_alert())
    clock.advance(later)  # TradingView resends 5 s apart, up to 3 times
    again = client.post("/webhook", json=make_alert())
    assert again.status_code == 409
    assert again.json["id"] == first.json["id"] and again.json["state"] == "ok"
    assert len(okx.executed) == 1


def test_same_fields_after_the_window_are_a_new_alert(make_app, okx):
    clock = MovableClock()
    client = make_app(clock=clock, dedup_window=20).test_client()
    assert client.post("/webhook", json=make_alert()).status_code == 200
    clock.advance(20.1)
    assert client.post("/webhook", json=make_alert()).status_code == 200
    assert len(okx.executed) == 2


def test_alert_id_deduplicates_beyond_the_window(make_app, okx):
    clock = MovableClock()
    client = make_app(clock=clock, dedup_window=20).test_client()
    assert client.post("/webhook", json=make_alert(id="BTC-2026-11-24T10:00:00Z")).status_code == 200
    clock.advance(3600)
    repeat = client.post("/webhook", json=make_alert(id="BTC-2026-11-24T10:00:00Z", close="1"))
    assert repeat.status_code == 409
    assert client.post("/webhook", json=make_alert(id="BTC-2026-11-24T10:01:00Z")).status_code == 200
    assert len(okx.executed) == 2


def test_an_id_is_taken_per_bot_and_for_id_window_only(make_app, okx):
    clock = MovableClock()
    client = make_app(clock=clock, id_window=86_400).test_client()
    first = client.post("/webhook", json=make_alert(id="Long"))
    assert first.status_code == 200
    assert client.post("/webhook", json=make_alert(id="Long", algoId="7")).status_code == 200  # another bot
    clock.advance(86_399)
    repeat = client.post("/webhook", json=make_alert(id="Long", amount="3"))
    assert repeat.status_code == 409
    assert repeat.json["matched"] == "id" and repeat.json["id"] == first.json["id"]
    assert "'Long'" in repeat.json["message"]
    clock.advance(2)  # ID_WINDOW later, Pine's reused "Long" is a new alert
    assert client.post("/webhook", json=make_alert(id="Long", amount="4")).status_code == 200
    assert [(b["algoId"], b["amt"]) for b in okx.executed] == [
        ("581628185981813760", "10"),
        ("7", "10"),
        ("581628185981813760", "4"),
    ]


def test_a_duplicate_by_fields_says_it_matched_the_fingerprint(client, okx):
    first = client.post("/webhook", json=make_alert())
    repeat = client.post("/webhook", json=make_alert())
    assert repeat.status_code == 409
    assert (repeat.json["matched"], repeat.json["id"], repeat.json["state"]) == ("fingerprint", first.json["id"], "ok")


def test_a_different_secret_does_not_make_a_different_alert(client, okx):
    assert client.post("/webhook", json=make_alert()).status_code == 200
    assert client.post("/webhook", json=make_alert(ticker="ETHUSDT")).status_code == 200
    assert len(okx.executed) == 2


def test_failed_alert_may_be_resent_because_it_was_never_executed(make_app, okx):
    client = make_app(okx_max_attempts=1).test_client()
    okx.play(OkxReply("50013", "busy"))
    assert client.post("/webhook", json=make_alert()).status_code == 503
    retry = client.post("/webhook", json=make_alert())  # TradingView's resend
    assert retry.status_code == 200
    assert len(okx.executed) == 1


# -- journal --------------------------------------------------------------------------------


def test_journal_unavailable_is_503_and_nothing_is_sent(app, okx, tmp_path):
    client = app.test_client()
    path = app.extensions["webhook"].journal.path
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # e.g. an operator's long write, or a locked disk
    try:
        response = client.post("/webhook", json=make_alert())
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert okx.received == []


def test_journal_keeps_the_request_and_outcome_but_no_secret(app, okx):
    client = app.test_client()
    okx.play(OkxReply("51000", "Parameter amt error"))
    alert_id = client.post("/webhook", json=make_alert()).json["id"]
    record = wait_final(app, alert_id)
    assert record.state == "rejected" and record.attempts == 1
    assert record.okx_code == "51000" and record.okx_msg == "Parameter amt error"
    assert record.request == {"algoId": "581628185981813760", "type": "add", "amt": "10"}
    assert record.latency_ms is not None and record.first_sent_at >= record.received_at
    with open(app.extensions["webhook"].journal.path, "rb") as raw:
        assert WEBHOOK_SECRET.encode() not in raw.read()


def test_restart_recovery_sends_queued_expires_old_and_never_resends_what_may_have_left(make_app, okx, tmp_path):
    path = tmp_path / "shared.db"
    journal = SqliteJournal(str(path))
    now = time.time()

    def add(amount, expires_at, received_at=now, algo_id="1"):
        return queue_alert(journal, amount, expires_at, received_at, algo_id).id

    in_flight = add("3", now + 60, algo_id="2")
    claimed_only = add("4", now + 60, algo_id="3")
    claims = journal.claim_due("a-process-since-killed", 2, now)
    assert [r.id for r in claims] == [in_flight, claimed_only]
    assert journal.confirm_send(Claim.of(claims[0]))  # cleared to go on the wire: it may have left
    queued = add("1", now + 60)
    stale = add("2", now - 1, received_at=now - 120)
    journal.close()

    app = make_app(database_url=f"sqlite:///{path}")
    app.extensions["webhook"].delivery.start()
    assert wait_final(app, queued).state == "ok"
    assert wait_final(app, stale).state == "expired"
    assert wait_final(app, in_flight).state == "unknown"
    assert wait_final(app, claimed_only).state == "ok"  # it never left: sent now, once
    assert sorted(okx.executed, key=lambda b: b["amt"]) == [
        {"algoId": "1", "type": "add", "amt": "1"},
        {"algoId": "3", "type": "add", "amt": "4"},
    ]


def test_alert_that_waits_past_its_lag_is_expired_not_sent_late(make_app, okx):
    client = make_app(okx_rate_limit=1, reply_deadline=0.2).test_client()
    first = client.post("/webhook", json=make_alert(amount="1"))
    late = client.post("/webhook", json=make_alert(amount="2", maxLag=1))  # its slot opens at ~2 s
    assert wait_final(client.application, first.json["id"]).state == "ok"
    assert wait_final(client.application, late.json["id"]).state == "expired"
    assert [b["amt"] for b in okx.executed] == ["1"]


def test_retention_prunes_finished_alerts_only(tmp_path):
    journal = SqliteJournal(str(tmp_path / "j.db"))
    for amount, state in (("1", "ok"), ("2", "queued")):
        record, _ = journal.add(
            dedup_key=amount,
            dedup_since=0,
            algo_id="1",
            action="add",
            amount=amount,
            request_body="{}",
            expires_at=0,
            now=1000.0,
        )
        if state == "ok":
            journal.finish(record.id, "ok")
    assert journal.prune(before=2000.0) == 1
    assert [r.state for r in journal.recent()] == ["queued"]


# -- seeing what happened -------------------------------------------------------------------


def auth(token=ADMIN_TOKEN):
    return {"Authorization": f"Bearer {token}"}


def test_alerts_endpoints_are_off_without_admin_token(make_app):
    client = make_app(admin_token="").test_client()
    assert client.get("/alerts", headers=auth()).status_code == 404
    assert client.get("/alerts/1", headers=auth()).status_code == 404


@pytest.mark.parametrize(
    "headers",
    [{}, auth("wrong-token-0123456789"), {"Authorization": ADMIN_TOKEN}, auth(ADMIN_TOKEN + "x"), auth("ключ")],
)
def test_alerts_endpoints_refuse_a_wrong_token(client, headers):
    response = client.get("/alerts", headers=headers)
    assert response.status_code == 401
    assert ADMIN_TOKEN not in response.get_data(as_text=True)


def test_alerts_endpoints_list_filter_and_show(client, okx):
    okx.play(OkxReply("0"), OkxReply("51000", "Parameter error"))
    ok_id = client.post("/webhook", json=make_alert(amount="1")).json["id"]
    rejected_id = client.post("/webhook", json=make_alert(amount="2")).json["id"]
    listing = client.get("/alerts?limit=10", headers=auth()).json["alerts"]
    assert [a["id"] for a in listing] == [rejected_id, ok_id]
    only_rejected = client.get("/alerts?state=rejected", headers=auth()).json["alerts"]
    assert [(a["id"], a["okx_code"]) for a in only_rejected] == [(rejected_id, "51000")]
    one = client.get(f"/alerts/{ok_id}", headers=auth()).json["alert"]
    assert one["state"] == "ok" and one["request"]["amt"] == "1"
    assert client.get("/alerts/999", headers=auth()).status_code == 404
    assert client.get("/alerts?state=bogus", headers=auth()).status_code == 422
    assert client.get("/alerts?limit=0", headers=auth()).status_code == 422
    assert client.get("/alerts?state=", headers=auth()).status_code == 422
    typo = client.get("/alerts?stat=ok", headers=auth())  # found by schemathesis: typos were ignored
    assert typo.status_code == 422 and typo.json["errors"][0]["field"] == "stat"
    assert client.get(f"/alerts/{2**70}", headers=auth()).status_code == 404  # found by schemathesis: was 500
    text = client.get("/alerts", headers=auth()).get_data(as_text=True)
    for secret in (WEBHOOK_SECRET, ADMIN_TOKEN, okx.secret_key, okx.passphrase):
        assert secret not in text


def test_cli_lists_recent_alerts(app, okx):
    client = app.test_client()
    okx.play(OkxReply("0"), OkxReply("51291", "bot stopped"))
    client.post("/webhook", json=make_alert(amount="1"))
    client.post("/webhook", json=make_alert(amount="2"))
    result = app.test_cli_runner().invoke(args=["alerts", "--limit", "5"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "rejected" in lines[1] and "51291" in lines[1] and "ok" in lines[2]
    only = app.test_cli_runner().invoke(args=["alerts", "--state", "ok"])
    assert "rejected" not in only.output


def test_cli_shows_every_column_in_full_with_iso_times_and_filters_by_trader_id(app, okx):
    client = app.test_client()
    long_message = "Bot does not exist or has stopped; " + "x" * 120
    okx.play(OkxReply("51291", long_message))
    client.post("/webhook", json=make_alert(id="BTC-Long-2026-11-24T12:00:00Z", algoId="1" * 32))
    client.post("/webhook", json=make_alert(id="ETH-Short", amount="2"))
    result = app.test_cli_runner().invoke(args=["alerts"])
    assert result.exit_code == 0, result.output
    assert long_message in result.output and "1" * 32 in result.output
    assert "BTC-Long-2026-11-24T12:00:00Z" in result.output
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", result.output)
    header, *rows = result.output.splitlines()
    assert header.index("state") == rows[0].index("ok") == rows[1].index("rejected")  # columns line up
    only = app.test_cli_runner().invoke(args=["alerts", "--trader-id", "ETH-Short"])
    assert "ETH-Short" in only.output and "BTC-Long" not in only.output


def test_alerts_endpoint_shows_the_trader_id_iso_times_and_filters_by_it(client, okx):
    client.post("/webhook", json=make_alert(id="Long-1"))
    client.post("/webhook", json=make_alert(id="Long-2", amount="2"))
    listing = client.get("/alerts?trader_id=Long-1", headers=auth()).json["alerts"]
    assert [a["trader_id"] for a in listing] == ["Long-1"]
    for name in ("received_at", "expires_at", "first_sent_at", "finished_at"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", listing[0][name]), listing[0][name]


def test_stop_leaves_queued_alerts_in_the_journal_for_the_next_start(make_app, okx):
    app = make_app(okx_rate_limit=1, reply_deadline=0.1)
    client = app.test_client()
    ids = [client.post("/webhook", json=make_alert(amount=str(n))).json["id"] for n in (1, 2, 3)]
    app.extensions["webhook"].delivery.stop(timeout=2)
    journal = app.extensions["webhook"].journal
    assert [journal.get(i).state for i in ids] == ["ok", "queued", "queued"]
    assert len(okx.executed) == 1


def queue_alert(journal, amount, expires_at, received_at, algo_id="1"):
    """A queued alert (for bot 1 unless told), as the web layer journals it."""
    record, _ = journal.add(
        dedup_key=f"fp:{amount}",
        dedup_since=0,
        algo_id=algo_id,
        action="add",
        amount=amount,
        request_body=f'{{"algoId":"{algo_id}","type":"add","amt":"{amount}"}}',
        expires_at=expires_at,
        now=received_at,
    )
    return record


def journal_with_queued(path, amounts):
    """A journal holding one queued alert per amount, as a live service leaves it."""
    journal = SqliteJournal(str(path))
    now = time.time()
    # Each for a bot of its own: they may go side by side.
    return journal, [queue_alert(journal, amount, now + 600, now, algo_id=f"9{amount}") for amount in amounts]


def test_a_dry_run_start_leaves_queued_live_alerts_queued_and_says_so(make_app, okx, tmp_path, caplog):
    journal, records = journal_with_queued(tmp_path / "j.db", ["1", "2"])
    journal.close()
    dry = make_app(dry_run=True, database_url=f"sqlite:///{tmp_path}/j.db")
    dry.extensions["webhook"].delivery.terms.clock = clock = ManualClock()
    dry.extensions["webhook"].delivery.start()
    clock.until_waiting(1)  # the dispatcher has made its round and waits for the next one
    journal = dry.extensions["webhook"].journal
    assert [journal.get(r.id).state for r in records] == ["queued", "queued"]
    assert [journal.get(r.id).okx_code for r in records] == [None, None]
    assert "2 queued alert(s) in the journal wait for live mode" in caplog.text
    dry.extensions["webhook"].delivery.stop(timeout=1)
    journal.close()

    live = make_app(database_url=f"sqlite:///{tmp_path}/j.db")  # the operator goes live again
    live.extensions["webhook"].delivery.start()
    assert [wait_final(live, r.id).state for r in records] == ["ok", "ok"]
    assert sorted(b["amt"] for b in okx.executed) == ["1", "2"]


def test_an_alert_is_recorded_ok_only_when_okx_said_so(tmp_path):
    journal, (record,) = journal_with_queued(tmp_path / "j.db", ["5"])
    # A pacer as if live, with a client in dry-run: the guard must still keep it from reading "ok".
    lanes = {"default": Lane(OkxClient("https://www.okx.com", dry_run=True), MemoryPacer(5))}
    delivery = Delivery(journal, lanes, OutcomePolicy(), Membership(journal))
    try:
        delivery.submit(record, wait=0.5)
        assert journal.get(record.id).state == "queued"
        assert journal.get(record.id).attempts == 0
    finally:
        delivery.stop(timeout=1)
        journal.close()


def test_stop_puts_claimed_sends_that_never_started_back_in_the_queue(okx, tmp_path):
    journal, records = journal_with_queued(tmp_path / "j.db", ["1", "2", "3"])
    client = OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase)
    # One sender: the others wait for it.
    delivery = Delivery(
        journal, {"default": Lane(client, MemoryPacer(5))}, OutcomePolicy(), Membership(journal), senders=1
    )
    okx.play(Slow(0.5))
    try:
        delivery.start()
        deadline = time.monotonic() + 5
        while not okx.margin_requests() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [journal.get(r.id).state for r in records] == ["sending"] * 3  # all three claimed
        delivery.stop(timeout=3)
        states = [(journal.get(r.id).state, journal.get(r.id).attempts) for r in records]
        assert states == [("ok", 1), ("queued", 0), ("queued", 0)]
        assert len(okx.executed) == 1
    finally:
        journal.close()


def test_the_sender_pool_is_never_smaller_than_the_rate_limit(make_app):
    for limit in (1, 20, 40, 100):
        assert make_app(okx_rate_limit=limit).extensions["webhook"].delivery.senders >= limit


def test_after_the_alert_is_journaled_the_reply_is_never_503(app, okx, caplog):
    journal = app.extensions["webhook"].journal

    def unreadable(*args):
        raise JournalUnavailable("disk I/O error")

    journal.get = journal.reply_outlook = unreadable  # written, but cannot be read back for the reply
    okx.play(Slow(0.3))
    response = app.test_client().post("/webhook", json=make_alert())
    assert response.status_code == 202, response.json
    assert response.json["status"] == "queued"
    del journal.get, journal.reply_outlook
    assert wait_final(app, response.json["id"]).state == "ok"
    assert len(okx.executed) == 1


def test_every_alert_logs_one_line_with_its_final_state(make_app, okx, caplog):
    client = make_app(reply_deadline=0.2, okx_read_timeout=3.0).test_client()
    # Answered 1.5 s after it arrives: well after its 0.2 s reply and the other bot's refusal.
    okx.play(Slow(1.5), OkxReply("51000", "Parameter amt error"))
    slow = client.post("/webhook", json=make_alert(amount="1"))
    refused = client.post("/webhook", json=make_alert(amount="2", algoId="581628185981813761"))  # another bot
    assert slow.status_code == 202  # answered before the outcome was known
    wait_final(client.application, slow.json["id"])
    # The line is logged just after the outcome commits, so it may trail the journal by a moment.
    deadline = time.monotonic() + 5
    while caplog.text.count(" final state=") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    finals = [r for r in caplog.records if " final state=" in r.getMessage()]
    assert [(r.levelname, r.getMessage().split()[1]) for r in finals] == [
        ("WARNING", str(refused.json["id"])),
        ("INFO", str(slow.json["id"])),
    ]
    assert "state=ok" in finals[1].getMessage() and "okx_code=51000" in finals[0].getMessage()


def test_an_error_in_a_sender_is_logged_not_swallowed(app, okx, caplog):
    journal = app.extensions["webhook"].journal

    def broken_finish(*args, **kwargs):
        raise RuntimeError("a bug in recording the outcome")

    journal.finish = broken_finish
    response = app.test_client().post("/webhook", json=make_alert())
    assert response.status_code == 202
    deadline = time.monotonic() + 3
    while "sender failed on alert" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert f"sender failed on alert {response.json['id']}" in caplog.text
    assert "RuntimeError: a bug in recording the outcome" in caplog.text


def test_the_cli_writes_its_table_to_stdout_and_log_lines_to_stderr(tmp_path):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "FLASK_SKIP_DOTENV": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path}/alerts.db",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    journal, _ = journal_with_queued(tmp_path / "alerts.db", ["3"])
    journal.close()
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webhook_app", "alerts", "-v"],  # -v: the start-up lines too
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("id ") and "queued" in result.stdout.splitlines()[1]
    assert len(result.stdout.splitlines()) == 2
    assert "DRY RUN" in result.stderr and "protection:" in result.stderr


# The schema of the journal as the first release wrote it (main before schema versions).
FIRST_RELEASE_SCHEMA = """
CREATE TABLE alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, received_at REAL NOT NULL, dedup_key TEXT NOT NULL,
    algo_id TEXT NOT NULL, action TEXT NOT NULL, amount TEXT NOT NULL, request_body TEXT NOT NULL,
    expires_at REAL NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, okx_code TEXT,
    okx_msg TEXT, detail TEXT, secret_name TEXT, first_sent_at REAL, finished_at REAL, latency_ms REAL);
CREATE INDEX alerts_dedup ON alerts (dedup_key, received_at);
CREATE INDEX alerts_state ON alerts (state, id);
CREATE INDEX alerts_received ON alerts (received_at);
CREATE INDEX alerts_bot ON alerts (algo_id, action, received_at);
"""


def test_a_journal_from_the_first_release_keeps_all_its_data_after_the_upgrade(make_app, okx, tmp_path):
    path = tmp_path / "old.db"
    now = time.time()
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE_SCHEMA)
        db.execute(
            "INSERT INTO alerts (received_at, dedup_key, algo_id, action, amount, request_body, expires_at, "
            "state, attempts, okx_code, secret_name, first_sent_at, finished_at, latency_ms) VALUES "
            "(?, 'id:Long', '1', 'add', '5', '{\"algoId\":\"1\",\"type\":\"add\",\"amt\":\"5\"}', ?, 'ok', 1, "
            "'0', 'WEBHOOK_SECRET', ?, ?, 12.5)",
            (now - 10, now + 50, now - 9, now - 9),
        )
    app = make_app(database_url=f"sqlite:///{path}")
    journal = app.extensions["webhook"].journal
    old = journal.get(1)
    assert (old.state, old.amount, old.okx_code, old.latency_ms, old.trader_id) == ("ok", "5", "0", 12.5, None)
    response = app.test_client().post("/webhook", json=make_alert(id="Long"))
    assert response.status_code == 200 and response.json["id"] == 2  # ids go on
    assert journal.get(2).trader_id == "Long"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SQLITE_SCHEMA_VERSION
    journal.close()
    again = make_app(database_url=f"sqlite:///{path}")  # opening it again migrates nothing twice
    assert [r.id for r in again.extensions["webhook"].journal.recent()] == [2, 1]


def test_a_journal_from_a_newer_release_is_refused_not_damaged(tmp_path):
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(JournalUnavailable, match="newer than this release"):
        SqliteJournal(str(path))


def test_an_alert_sent_before_its_reply_started_waiting_is_answered_at_once(tmp_path, okx):
    # The queue is the journal's: a dispatcher may send an alert the moment it is committed,
    # before the web thread that journaled it starts waiting for its outcome.
    journal, (record,) = journal_with_queued(tmp_path / "j.db", ["5"])
    client = OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase)
    delivery = Delivery(journal, {"default": Lane(client, MemoryPacer(5))}, OutcomePolicy(), Membership(journal))
    try:
        delivery.start()
        wait_final_record = None
        deadline = time.monotonic() + 5
        while (wait_final_record is None or not wait_final_record.final) and time.monotonic() < deadline:
            wait_final_record = journal.get(record.id)
            time.sleep(0.01)
        began = time.monotonic()
        reply = delivery.submit(record, wait=5.0)
        assert reply.state == "ok"
        assert time.monotonic() - began < 2.5  # a signal that went to nobody would cost the whole 5 s
    finally:
        delivery.stop(timeout=1)
        journal.close()


class PausingPacer(MemoryPacer):
    """Takes its slots, then stalls once, as a process paused between taking slots and claiming."""

    def __init__(self, pause: float, clock: ManualClock):
        super().__init__(5, clock=clock)
        self.clock = clock
        self.pause, self.paused, self.cancelled = pause, 0, 0

    def acquire(self, instance, wanted):
        slots = super().acquire(instance, wanted)
        if slots and not self.paused:
            self.paused += 1
            self.clock.advance(self.pause)  # the pause, as this process's clock sees it
        return slots

    def cancel(self, slots):
        self.cancelled += len(slots)
        super().cancel(slots)


def test_slots_held_through_a_pause_longer_than_their_lease_allows_send_nothing(okx, tmp_path, caplog):
    # Taken for dead during such a pause, an instance has its slots closed by the others at their start
    # plus the lease: a request sent on them later would not count against OKX's limit (CI saw five 50011).
    journal, (record,) = journal_with_queued(tmp_path / "j.db", ["5"])
    client = OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase)
    clock = ManualClock()
    pacer = PausingPacer(pause=0.6, clock=clock)  # past send_by + lease_margin (0.4 s) from taking the slots
    lanes = {"default": Lane(client, pacer)}
    membership = Membership(journal, clock=clock)
    delivery = Delivery(journal, lanes, OutcomePolicy(), membership, send_by=0.2, lease_margin=0.2, clock=clock)
    try:
        delivery.start()
        deadline = time.monotonic() + 5
        while not journal.get(record.id).final and time.monotonic() < deadline:
            time.sleep(0.02)
        assert journal.get(record.id).state == "ok"
        assert pacer.paused == 1 and pacer.cancelled == 1  # the stale slot was given back, unused
        assert "held up" in caplog.text
        assert len(okx.margin_requests()) == 1  # sent once, on a slot taken afterwards
    finally:
        delivery.stop(timeout=1)
        journal.close()
