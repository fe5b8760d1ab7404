"""Delivery guarantees: journaled first, sent at most once, paced, retried only when safe."""
import sqlite3
import time

import pytest

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, make_alert, post_concurrently, wait_final
from tests.okx_stand_in import OkxReply, RawReply, Slow
from webhook_app.delivery import RateLimiter
from webhook_app.journal import Journal


# -- pacing ---------------------------------------------------------------------------------

class FakeClock:
    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now


def test_rate_limiter_holds_a_slot_until_window_after_the_reply():
    clock = FakeClock()
    limiter = RateLimiter(limit=3, window=2.0, margin=0.0, clock=clock)
    slots = [limiter.take() for _ in range(3)]
    assert limiter.free() == 0
    assert limiter.opens_in() is None  # nothing frees until a reply comes back
    clock.now = 100.3
    limiter.release(slots[0])  # its reply arrived at 100.3
    assert limiter.free() == 0 and limiter.opens_in() == pytest.approx(2.0)
    clock.now = 102.29
    assert limiter.free() == 0
    clock.now = 102.3
    assert limiter.free() == 1  # window after the reply, never earlier
    limiter.release(slots[1])
    limiter.release(slots[2])
    assert limiter.free() == 1
    clock.now = 104.3
    assert limiter.free() == 3


def test_rate_limiter_hold_off_starts_nothing_until_it_ends():
    clock = FakeClock(0.0)
    limiter = RateLimiter(limit=5, window=2.0, margin=0.0, clock=clock)
    limiter.hold_off(2.0)
    assert limiter.free() == 0 and limiter.opens_in() == pytest.approx(2.0)
    clock.now = 2.0
    assert limiter.free() == 5


def test_rate_limiter_projects_a_burst_tail_beyond_the_reply_deadline():
    limiter = RateLimiter(limit=20, window=2.0, margin=0.0, clock=FakeClock())
    assert limiter.projected(0) == 0.0 and limiter.projected(19) == 0.0
    assert limiter.projected(20) == pytest.approx(2.0) and limiter.projected(45) == pytest.approx(4.0)


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

@pytest.mark.parametrize("first", [OkxReply("50011", "Too Many Requests", 429), OkxReply("50011", "Too Many", 200),
                                   OkxReply("50013", "Systems are busy"), OkxReply("50001", "unavailable", 503),
                                   OkxReply("50040", "Too frequent")],
                         ids=["50011-429", "50011-200", "50013", "50001", "50040"])
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


@pytest.mark.parametrize("behaviour, state", [
    (RawReply(502), "unknown"), (OkxReply("50004", "timeout"), "unknown"), (Slow(1.5), "unknown"),
    (OkxReply("51000", "Parameter error"), "rejected"), (OkxReply("50113", "Invalid Sign", 401), "rejected"),
    (OkxReply("51291", "bot stopped"), "rejected"),
])
def test_refusals_and_unknown_outcomes_are_never_retried(client, okx, behaviour, state):
    okx.play(behaviour, *[OkxReply("0")] * 3)
    response = client.post("/webhook", json=make_alert())
    record = wait_final(client.application, response.json["id"])
    time.sleep(0.3)  # a retry, if any were scheduled, would show up here
    assert record.state == state
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


def test_tradingview_resend_5_seconds_later_is_409_with_the_original(client, okx):
    first = client.post("/webhook", json=make_alert())
    time.sleep(5)
    again = client.post("/webhook", json=make_alert())
    assert again.status_code == 409
    assert again.json["id"] == first.json["id"] and again.json["state"] == "ok"
    assert len(okx.executed) == 1


def test_same_fields_after_the_window_are_a_new_alert(make_app, okx):
    client = make_app(dedup_window=0.2).test_client()
    assert client.post("/webhook", json=make_alert()).status_code == 200
    time.sleep(0.3)
    assert client.post("/webhook", json=make_alert()).status_code == 200
    assert len(okx.executed) == 2


def test_alert_id_deduplicates_beyond_the_window(make_app, okx):
    client = make_app(dedup_window=0.1).test_client()
    assert client.post("/webhook", json=make_alert(id="BTC-2026-11-24T10:00:00Z")).status_code == 200
    time.sleep(0.2)
    repeat = client.post("/webhook", json=make_alert(id="BTC-2026-11-24T10:00:00Z", close="1"))
    assert repeat.status_code == 409
    assert client.post("/webhook", json=make_alert(id="BTC-2026-11-24T10:01:00Z")).status_code == 200
    assert len(okx.executed) == 2


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
    record = app.extensions["webhook"].journal.get(alert_id)
    assert record.state == "rejected" and record.attempts == 1
    assert record.okx_code == "51000" and record.okx_msg == "Parameter amt error"
    assert record.request == {"algoId": "581628185981813760", "type": "add", "amt": "10"}
    assert record.latency_ms is not None and record.first_sent_at >= record.received_at
    with open(app.extensions["webhook"].journal.path, "rb") as raw:
        assert WEBHOOK_SECRET.encode() not in raw.read()


def test_restart_recovery_sends_queued_expires_old_and_never_resends_sending(make_app, okx, tmp_path):
    path = tmp_path / "shared.db"
    journal = Journal(str(path))
    now = time.time()

    def add(amount, expires_at, received_at=now):
        record, _ = journal.add(dedup_key=f"fp:{amount}", dedup_since=0, algo_id="1", action="add",
                                amount=amount, request_body=f'{{"algoId":"1","type":"add","amt":"{amount}"}}',
                                expires_at=expires_at, now=received_at)
        return record.id

    queued = add("1", now + 60)
    stale = add("2", now - 1, received_at=now - 120)
    in_flight = add("3", now + 60)
    assert [r.id for r in journal.claim([in_flight])] == [in_flight]
    journal.close()

    app = make_app(database_url=f"sqlite:///{path}")
    app.extensions["webhook"].delivery.start()
    assert wait_final(app, queued).state == "ok"
    assert wait_final(app, stale).state == "expired"
    assert wait_final(app, in_flight).state == "unknown"
    assert okx.executed == [{"algoId": "1", "type": "add", "amt": "1"}]


def test_alert_that_waits_past_its_lag_is_expired_not_sent_late(make_app, okx):
    client = make_app(okx_rate_limit=1, reply_deadline=0.2).test_client()
    first = client.post("/webhook", json=make_alert(amount="1"))
    late = client.post("/webhook", json=make_alert(amount="2", maxLag=1))  # its slot opens at ~2 s
    assert wait_final(client.application, first.json["id"]).state == "ok"
    assert wait_final(client.application, late.json["id"]).state == "expired"
    assert [b["amt"] for b in okx.executed] == ["1"]


def test_retention_prunes_finished_alerts_only(tmp_path):
    journal = Journal(str(tmp_path / "j.db"))
    for amount, state in (("1", "ok"), ("2", "queued")):
        record, _ = journal.add(dedup_key=amount, dedup_since=0, algo_id="1", action="add", amount=amount,
                                request_body="{}", expires_at=0, now=1000.0)
        if state == "ok":
            journal.claim([record.id])
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


@pytest.mark.parametrize("headers", [{}, auth("wrong-token-0123456789"), {"Authorization": ADMIN_TOKEN},
                                     auth(ADMIN_TOKEN + "x"), auth("ключ")])
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


def test_stop_leaves_queued_alerts_in_the_journal_for_the_next_start(make_app, okx):
    app = make_app(okx_rate_limit=1, reply_deadline=0.1)
    client = app.test_client()
    ids = [client.post("/webhook", json=make_alert(amount=str(n))).json["id"] for n in (1, 2, 3)]
    app.extensions["webhook"].delivery.stop(timeout=2)
    journal = app.extensions["webhook"].journal
    assert [journal.get(i).state for i in ids] == ["ok", "queued", "queued"]
    assert len(okx.executed) == 1
