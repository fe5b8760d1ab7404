"""Sending at once (issue 26): an alert that can go as it arrives is accepted, claimed and confirmed
in one durable write (``add_claimed``, PostgreSQL migration 13) and handed straight to a sender;
any other is queued for the dispatcher exactly as before. The journal's rules per case,
then the whole path through gunicorn on PostgreSQL, judged by what the stand-in OKX executed."""

import concurrent.futures
import json

import psycopg
import pytest
import requests

from tests.conftest import eventually, live_env, make_action_alert, make_alert, wait_final
from tests.okx_stand_in import BOT_DETAILS_PATH, MARGIN_PATH, SUB_ORDER_PATH
from tests.test_postgres_app import counting, open_slots
from webhook_app.journal import JournalUnavailable, SendNow, open_journal
from webhook_app.journal.postgres.sql import LOCK_PACING
from webhook_app.journal.records import CLAIMED_AT_ONCE_FORMAT

MARGIN_ACTIONS = ("add", "reduce")
ORDER_ACTIONS = ("buy", "sell")
AT_RECEIPT = CLAIMED_AT_ONCE_FORMAT.split("%s")[-1]  # " at receipt and sent at once"


@pytest.fixture
def journal(pg_url):
    journal = open_journal(pg_url)
    yield journal
    journal.close()


def fields(n: int, algo_id: str = "bot-1", action: str = "add", endpoint: str = "margin-balance", **changes):
    return {
        "dedup_key": f"id:{algo_id}:{n}",
        "dedup_since": 0.0,
        "algo_id": algo_id,
        "action": action,
        "amount": "5",
        "request_body": json.dumps({"algoId": algo_id, "amt": "5"}),
        "expires_at": 4e9,
        "endpoint": endpoint,
        **changes,
    }


def send_now(journal, limit=20, actions=MARGIN_ACTIONS, instance="web-1", ledger="margin-balance", reads=True):
    return SendNow(
        instance,
        30.0,
        journal.pacer(ledger, limit, 2.0),
        journal.pacer("reads", 20, 2.0) if reads else None,
        actions,
        None,
    )


def test_an_alert_that_can_go_is_journaled_claimed_and_confirmed_in_one_write(journal):
    record, created, claimed = journal.add_claimed(send_now(journal), **fields(1))
    assert created and claimed is not None and claimed.read_slot is not None
    assert (record.state, record.claimed_by, record.attempts) == ("sending", "web-1", 1)
    assert record.sent_at is not None and record.lease_until > record.sent_at  # confirmed: may leave now
    (event,) = [e for e in journal.events(record.id) if e.kind == "claimed"]
    assert event.detail.endswith(AT_RECEIPT)
    # The slots carry the claim, as the dispatcher's do: the orphan sweep and recovery know whose they are.
    slots = journal.database.all("SELECT alert_id, attempt FROM okx_pacing WHERE ended_at IS NULL")
    assert sorted(slots) == [(record.id, 1), (record.id, 1)]


def _earlier_queued(journal):
    journal.add(**fields(0))


def _earlier_sending(journal):
    journal.add_claimed(send_now(journal), **fields(0))


def _other_bot_due_ahead(journal):
    # Another bot's alert of the same endpoint, due and in its turn, is ahead in the queue: it goes first.
    journal.add(**fields(0, algo_id="bot-2"))


def _budget_spent(journal):
    pacer = journal.pacer("margin-balance", 20, 2.0)
    assert len(pacer.acquire("web-2", 20)) == 20


def _earlier_retry_waiting(journal):
    record, _ = journal.add(**fields(0))
    (claim,) = journal.claim_due("web-2", 1, journal.now(), 30.0)
    journal.requeue(record.id, "50001", "busy", "retry", journal.now() + 60, claim=_claim_of(claim))


def _claim_of(record):
    from webhook_app.journal import Claim

    return Claim.of(record)


@pytest.mark.parametrize(
    "before",
    [_earlier_queued, _earlier_sending, _earlier_retry_waiting, _other_bot_due_ahead, _budget_spent],
    ids=["earlier-queued", "earlier-sending", "earlier-retry-inside-its-lag", "other-bot-due-ahead", "budget-spent"],
)
def test_an_alert_that_cannot_go_now_is_queued_for_the_dispatcher_exactly_as_before(journal, before):
    before(journal)
    record, created, claimed = journal.add_claimed(send_now(journal), **fields(1))
    assert created and claimed is None
    assert (record.state, record.claimed_by, record.attempts, record.sent_at) == ("queued", None, 0, None)
    assert not [e for e in journal.events(record.id) if e.kind == "claimed"]


def test_a_backlog_of_another_endpoint_or_a_waiting_bot_does_not_hold_it(journal):
    journal.add(**fields(0, algo_id="bot-2", action="buy", endpoint="sub-order"))  # another endpoint's queue
    journal.add_claimed(send_now(journal), **fields(0, algo_id="bot-3"))  # bot-3 sending...
    journal.add(**fields(1, algo_id="bot-3"))  # ...so its next waits for its turn, not in the way
    record, _, claimed = journal.add_claimed(send_now(journal), **fields(1))
    assert claimed is not None and record.state == "sending"


@pytest.mark.parametrize(
    ("change", "why"),
    [({"state": "dry_run"}, "dry-run"), ({"expires_at": 1.0}, "expired on arrival")],
)
def test_an_alert_that_must_not_be_sent_is_never_claimed_at_receipt(journal, change, why):
    record, created, claimed = journal.add_claimed(send_now(journal), **fields(1, **change))
    assert created and claimed is None and record.state == change.get("state", "queued"), why


def test_a_duplicate_is_refused_and_claims_nothing(journal):
    first, _, _ = journal.add_claimed(send_now(journal), **fields(1))
    again, created, claimed = journal.add_claimed(send_now(journal), **fields(1))
    assert (again.id, created, claimed) == (first.id, False, None)
    assert journal.database.one("SELECT count(*) FROM okx_pacing")[0] == 2  # the first's two slots only


def _racer(n: int):
    def add(pair):
        journal, instance = pair
        return journal.add_claimed(
            send_now(journal, instance=instance), **fields(n, f"r{n}", dedup_key=f"k{n}-{instance}")
        )

    return add


def test_two_alerts_of_one_bot_arriving_together_never_both_go_at_once(journal, pg_url):
    # Two journals (two instances) on one database, 20 rounds of a race between two different alerts
    # for one bot: exactly one goes at once, the other waits for its turn (the bot's lock in
    # journal_add_row orders them, and the later one sees the earlier one sending).
    other = open_journal(pg_url)
    try:
        outcomes = []
        for n in range(20):
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                results = list(pool.map(_racer(n), [(journal, "web-1"), (other, "web-2")]))
            outcomes.append(sum(claimed is not None for _, _, claimed in results))
        print(f"rounds with one claimed at once: {outcomes.count(1)}, with both: {outcomes.count(2)}")
        assert outcomes == [1] * 20
    finally:
        other.close()


def test_the_bot_read_and_the_request_ride_on_the_two_writes_of_an_alert_sent_at_once(make_app, okx, pg_url):
    okx.add_bot("581628185981813760")  # make_alert's bot
    app = make_app(database_url=pg_url)
    services = app.extensions["webhook"]
    (lane,) = services.delivery.lanes.values()
    pacers = {"read": lane.read_pacer, "margin": lane.pacer}
    calls = {f"{which} {name}": counting(pacers[which], name) for which in pacers for name in ("acquire", "release")}
    confirmations = counting(services.journal, "confirm_send")
    response = app.test_client().post("/webhook", json=make_alert())
    assert response.json["status"] == "ok" and services.delivery.sent_at_once == 1
    record = wait_final(app, response.json["id"])
    assert len(okx.reads(BOT_DETAILS_PATH)) == 1 and len(okx.margin_requests()) == 1
    assert '"before"' in (record.evidence or "")  # the read before the send, kept with the outcome
    # Both slots were taken by the write that accepted the alert and ended by its outcome's: no call of
    # their own, and no confirmation of its own either.
    assert ({name: len(c) for name, c in calls.items()}, len(confirmations), open_slots(app)) == (
        dict.fromkeys(calls, 0),
        0,
        0,
    )


def test_a_claim_whose_writes_reply_was_lost_is_put_back_and_sent_once(make_app, okx, pg_url):
    # journal_add_claimed commits (claimed and confirmed), and the request gets an error instead of its
    # reply: it finds its claim by its receipt, puts it back in the queue, and the dispatcher sends it
    # once; the reply says it is on its way, not that it was not recorded.
    app = make_app(database_url=pg_url)
    services = app.extensions["webhook"]
    services.start()
    real, lost = services.journal.add_claimed, []

    def reply_lost(send_now, **fields):
        record, created, claimed = real(send_now, **fields)
        lost.append(claimed is not None)
        raise JournalUnavailable("injected: the connection was cut after the write committed")

    services.journal.add_claimed = reply_lost
    services.intake.alerts = services.journal
    response = app.test_client().post("/webhook", json=make_alert())
    assert lost == [True] and response.status_code in (200, 202), response.json
    record = wait_final(app, response.json["id"])
    assert record.state == "ok" and len(okx.margin_requests()) == 1
    kinds = [e.kind for e in services.journal.events(record.id)]
    assert kinds == ["claimed", "unclaimed", "claimed", "ok"], kinds


def test_a_write_that_never_committed_is_503_and_nothing_is_journaled(make_app, okx, pg_url):
    app = make_app(database_url=pg_url)
    services = app.extensions["webhook"]
    services.start()

    def refused(send_now, **fields):
        raise JournalUnavailable("injected: the database is gone")

    services.journal.add_claimed = refused
    response = app.test_client().post("/webhook", json=make_alert())
    assert response.status_code == 503 and okx.margin_requests() == []
    assert services.journal.recent(limit=10) == []


def test_the_intake_waits_for_a_budgets_lock_only_briefly_then_the_alert_queues(make_app, okx, pg_url):
    # Another claim holds the margin budget's lock (here: a session of the test's, for as long as it
    # likes, as a paused process would): the alert is journaled and queued after a short wait (100 ms),
    # not held behind it, and sent once the lock is free.
    app = make_app(database_url=pg_url)
    services = app.extensions["webhook"]
    services.start()
    ledger = services.delivery.lanes["default"].pacer.account
    with psycopg.connect(pg_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (LOCK_PACING, ledger))
        pool = concurrent.futures.ThreadPoolExecutor(1)
        posted = pool.submit(app.test_client().post, "/webhook", json=make_alert())
        try:
            response = posted.result(timeout=15)  # a wait on the lock would last as long as the lock
        finally:
            other.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_PACING, ledger))
            pool.shutdown(wait=False)
        assert response.status_code == 202 and response.json["status"] == "queued"
    record = wait_final(app, response.json["id"])
    assert record.state == "ok" and len(okx.margin_requests()) == 1
    assert not [e for e in services.journal.events(record.id) if e.detail.endswith(AT_RECEIPT)]


# -- through gunicorn, judged by the stand-in's executions -------------------------------------


def _journal_rows(pg_url, sql):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def _post(url, alert):
    reply = requests.post(url + "/webhook", json=alert, timeout=15)
    assert reply.status_code in (200, 202), reply.text
    return reply.json()


def test_a_lone_alert_is_sent_from_its_request_and_answered_with_okxs_word(okx, pg_url, tmp_path, service_factory):
    service = service_factory({**live_env(okx, tmp_path), "DATABASE_URL": pg_url})
    replies = [_post(service.url, make_alert(amount=f"{n + 1}")) for n in range(5)]
    assert [reply["status"] for reply in replies] == ["ok"] * 5  # the reply carries the outcome
    at_once = _journal_rows(pg_url, f"SELECT alert_id FROM alert_events WHERE detail LIKE '%{AT_RECEIPT}'")
    print(f"sent at once: {len(at_once)} of 5")
    assert sorted(r[0] for r in at_once) == sorted(reply["id"] for reply in replies)
    executed = [body["amt"] for _, body in okx.executions_of(MARGIN_PATH)]
    assert executed == ["1", "2", "3", "4", "5"]


def test_a_burst_over_two_instances_goes_partly_at_once_partly_queued_each_once_in_order(
    okx, pg_url, tmp_path, service_factory
):
    env = {**live_env(okx, tmp_path, ALLOWED_ACTIONS="add,reduce,buy,sell"), "DATABASE_URL": pg_url}
    first, second = service_factory(env), service_factory(env)
    bots = [f"80000000000000000{n}" for n in range(4)]
    alerts = [make_alert(algoId=bots[n % 4], amount=f"{n + 1}") for n in range(40)]
    alerts += [make_action_alert("buy", algoId=bots[n % 4], size=f"0.{n + 1:02d}") for n in range(20)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda i: _post((first, second)[i % 2].url, alerts[i]), range(len(alerts))))

    def all_final():
        states = _journal_rows(pg_url, "SELECT state FROM alerts")
        return len(states) == 60 and all(s not in ("queued", "sending") for (s,) in states)

    eventually(all_final, 60)
    assert {state for (state,) in _journal_rows(pg_url, "SELECT state FROM alerts")} == {"ok"}
    margin, orders = okx.executions_of(MARGIN_PATH), okx.executions_of(SUB_ORDER_PATH)
    assert sorted(b["amt"] for _, b in margin) == sorted(str(n + 1) for n in range(40))  # each once
    assert len(orders) == 20 and len({b["sz"] for _, b in orders}) == 20
    assert okx.max_in_any_window(MARGIN_PATH) <= 20 and okx.rate_limited == 0
    # One bot's alerts reached OKX in the order the journal took them in, whichever road each took.
    ids = {r["id"]: r for r in replies}
    for bot in bots:
        journaled = _journal_rows(pg_url, f"SELECT id, action, amount FROM alerts WHERE algo_id = '{bot}' ORDER BY id")
        sent = sorted(
            [(t, "add", b["amt"]) for t, b in margin if b["algoId"] == bot]
            + [(t, "buy", b["sz"]) for t, b in orders if b["algoId"] == bot]
        )
        assert [(a, amt) for _, a, amt in sent] == [(a, amt) for _, a, amt in journaled]
    at_once = len(_journal_rows(pg_url, f"SELECT 1 FROM alert_events WHERE detail LIKE '%{AT_RECEIPT}'"))
    print(f"sent at once: {at_once} of 60; through the queue: {60 - at_once}")
    assert 0 < at_once < 60 and len(ids) == 60
