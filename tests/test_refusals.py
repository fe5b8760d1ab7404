"""Every request to /webhook leaves a record: refused ones in the journal's refusal log,
bounded under a flood, never with a secret or the raw body."""

import concurrent.futures
import json
import time

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET, live_env, make_alert
from tests.service_process import ServiceProcess
from webhook_app.intake.refusals import RefusalLog
from webhook_app.journal import Refusal, open_journal


def refusals_of(app):
    svc = app.extensions["webhook"]
    svc.refusals.flush()
    return svc.journal.refusals(100)


@pytest.mark.parametrize(
    "request_kwargs, status, kind, readable",
    [
        ({"json": make_alert(secret="wrong-" + WEBHOOK_SECRET)}, 401, "unauthorized", ("581628185981813760", None)),
        ({"json": make_alert(amount="-1", id="Long")}, 422, "invalid", ("581628185981813760", "Long")),
        ({"data": "not json " + WEBHOOK_SECRET}, 400, "invalid_body", (None, None)),
        ({"json": make_alert(algoId="{{plot}}", id=WEBHOOK_SECRET)}, 422, "invalid", ("{{plot}}", "[redacted]")),
        ({"data": "x" * 70_000}, 413, "too_large", (None, None)),
    ],
)
def test_a_refused_request_is_recorded_without_secret_or_body(
    database_url, make_app, okx, request_kwargs, status, kind, readable
):
    # database_url first: its schema is dropped after the app (and its dispatcher's first round) stopped.
    app = make_app(database_url=database_url)
    response = app.test_client().post("/webhook", **request_kwargs, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == status
    (refusal,) = refusals_of(app)
    assert (refusal.status, refusal.kind, refusal.client, refusal.count) == (status, kind, "203.0.113.9", 1)
    assert (refusal.algo_id, refusal.trader_id) == readable
    assert refusal.message and refusal.at <= time.time()
    if status in (400, 422):  # the reply's field errors, as the sender saw them
        assert [e["field"] for e in refusal.errors] == [e["field"] for e in response.json["errors"]]
    stored = json.dumps(refusal.to_json())
    assert WEBHOOK_SECRET not in stored and "not json" not in stored and "xxxx" not in stored
    assert okx.margin_requests() == []


def test_a_duplicate_names_the_alert_it_repeats(make_app):
    app = make_app()
    client = app.test_client()
    first = client.post("/webhook", json=make_alert(id="Long")).json["id"]
    assert client.post("/webhook", json=make_alert(id="Long")).status_code == 409
    (refusal,) = refusals_of(app)
    assert refusal.status == 409 and refusal.kind == "duplicate" and f"(alert {first})" in refusal.message
    assert refusal.trader_id == "Long"


def test_a_locked_out_sender_and_a_forbidden_bot_are_recorded(make_app):
    app = make_app(lockout_threshold=2, allowed_algo_ids=frozenset({"1"}))
    client = app.test_client()
    for _ in range(3):
        client.post("/webhook", json=make_alert(secret="wrong-" + WEBHOOK_SECRET))
    other = {"REMOTE_ADDR": "192.0.2.44"}  # another sender, not locked out, for a bot not allowed
    assert client.post("/webhook", json=make_alert(), environ_base=other).status_code == 403
    forbidden, locked, *wrong = refusals_of(app)
    assert (forbidden.status, forbidden.kind, forbidden.client) == (403, "forbidden_bot", "192.0.2.44")
    assert forbidden.errors == ({"field": "algoId", "message": "this bot is not in ALLOWED_ALGO_IDS"},)
    assert (locked.status, locked.kind) == (429, "locked_out") and [r.status for r in wrong] == [401, 401]


def test_an_accepted_alert_leaves_no_refusal(make_app):
    app = make_app()
    assert app.test_client().post("/webhook", json=make_alert()).status_code == 200
    assert refusals_of(app) == []


class StoppedClock:
    def __init__(self, at):
        self.at = at

    def __call__(self):
        return self.at


def test_beyond_the_budget_refusals_are_counted_per_status_not_stored(tmp_path):
    journal = open_journal(f"sqlite:///{tmp_path}/j.db")
    clock = StoppedClock(6_000_000.0)
    log = RefusalLog(journal, per_minute=5, clock=clock)
    for n in range(40):
        log.record(Refusal(at=clock(), status=401 if n % 2 else 422, kind="k", message=f"m{n}", client="1.2.3.4"))
    log.flush()
    assert journal.refusal_rows() == 5  # the minute is not over: the rest are only counted so far
    clock.at += 60
    log.flush()
    rows = journal.refusals(100)
    assert journal.refusal_rows() == 7 and sum(r.count for r in rows) == 40
    assert sorted((r.status, r.count) for r in rows if r.count > 1) == [(401, 18), (422, 17)]
    assert log.counted == 35
    journal.close()


def test_refusals_past_their_retention_are_pruned(tmp_path):
    journal = open_journal(f"sqlite:///{tmp_path}/j.db")
    clock = StoppedClock(6_000_000.0)
    journal.add_refusals([Refusal(at=clock() - 2 * 86400, status=401, kind="k", message="old")])
    log = RefusalLog(journal, retention_days=1, clock=clock)
    log.record(Refusal(at=clock(), status=401, kind="k", message="new"))
    log.flush()
    assert [r.message for r in journal.refusals()] == ["new"]
    journal.close()


def test_a_flood_of_refused_requests_stays_bounded_and_valid_alerts_are_answered_in_time(okx, tmp_path):
    service = ServiceProcess(
        live_env(okx, tmp_path, REFUSED_PER_MINUTE="100", LOCKOUT_THRESHOLD="10000")  # every junk request is checked
    ).start()
    try:
        session_local = requests.Session

        def junk(n):
            with session_local() as session:
                for i in range(n):
                    body = make_alert(secret=f"wrong-{i}-" + WEBHOOK_SECRET) if i % 2 else make_alert(amount="-1")
                    session.post(service.url + "/webhook", json=body, timeout=10)

        reply_times = []
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            flood = [pool.submit(junk, 250) for _ in range(8)]
            while not all(f.done() for f in flood) or len(reply_times) < 10:
                started = time.monotonic()
                valid = requests.post(
                    service.url + "/webhook", json=make_alert(amount=str(len(reply_times) + 1)), timeout=10
                )
                reply_times.append(time.monotonic() - started)
                assert valid.status_code == 200, valid.text
            for f in flood:
                f.result()
        assert max(reply_times) < 3.0, reply_times  # TradingView gives up after 3 s
        assert len(okx.executed) == len(reply_times)
        service.terminate()  # its worker stores what it counted
    finally:
        service.discard()
    journal = open_journal(f"sqlite:///{tmp_path}/alerts.db")
    rows = journal.refusals(10_000)
    journal.close()
    assert sum(r.count for r in rows) == 2000  # every request accounted for...
    minutes = {int(r.at // 60) for r in rows}
    assert len(rows) <= len(minutes) * (100 + 2)  # ...within the budget: 100 one by one + one row per status
    assert any(r.count > 1 for r in rows), "the flood never went over the budget: the bound was not exercised"
