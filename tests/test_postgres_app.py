"""The app on the PostgreSQL journal, through HTTP, against the loopback OKX stand-in."""

import threading
import time

import pytest

from tests.conftest import make_alert, post_concurrently, wait_final
from tests.okx_stand_in import BOT_DETAILS_PATH, OkxReply
from webhook_app import Config, create_app
from webhook_app.clock import ManualClock
from webhook_app.journal import JournalUnavailable


def test_an_alert_is_relayed_and_journaled_in_postgres(make_app, okx, pg_url):
    app = make_app(database_url=pg_url)
    response = app.test_client().post("/webhook", json=make_alert(id="BTC-1"))
    assert response.status_code == 200, response.json
    record = app.extensions["webhook"].journal.get(response.json["id"])
    assert (record.state, record.okx_code, record.trader_id) == ("ok", "0", "BTC-1")
    assert record.claimed_by == app.extensions["webhook"].delivery.instance
    assert len(okx.executed) == 1


def test_ten_identical_alerts_at_once_are_sent_once(make_app, okx, pg_url):
    app = make_app(database_url=pg_url)
    replies = post_concurrently(app.test_client, [make_alert()] * 10)
    assert sorted(r.status_code for r in replies) == [200] + [409] * 9
    assert len(okx.executed) == 1


def test_a_burst_of_50_stays_within_okxs_limit(make_app, okx, pg_url):
    app = make_app(database_url=pg_url)
    replies = post_concurrently(app.test_client, [make_alert(amount=str(n)) for n in range(1, 51)])
    for reply in replies:
        wait_final(app, reply.json["id"], timeout=15)
    assert okx.rate_limited == 0 and okx.max_in_any_window() <= 20
    assert sorted(int(b["amt"]) for b in okx.executed) == list(range(1, 51))


def test_not_executed_is_retried_through_the_journals_queue(make_app, okx, pg_url):
    okx.play(OkxReply("50013", "busy"))
    app = make_app(database_url=pg_url)
    response = app.test_client().post("/webhook", json=make_alert())
    assert response.status_code == 200, response.json
    assert [r.code for r in okx.margin_requests()] == ["50013", "0"]


def test_lockout_and_dry_run_secret_live_in_the_database(make_app, okx, pg_url, capsys):
    first = create_app(Config.from_env({"DATABASE_URL": pg_url, "LOCKOUT_THRESHOLD": "2"}))
    printed = capsys.readouterr().out
    secret = first.extensions["webhook"].config.webhook.secret
    assert secret in printed and "the database" in printed
    client = first.test_client()
    for _ in range(2):
        client.post(
            "/webhook", json=make_alert(secret="guess-0123456789abcdef"), environ_base={"REMOTE_ADDR": "203.0.113.5"}
        )
    # A new instance, on a fresh disk: the same secret, and the address still locked out.
    second = create_app(Config.from_env({"DATABASE_URL": pg_url, "LOCKOUT_THRESHOLD": "2"}))
    assert second.extensions["webhook"].config.webhook.secret == secret
    assert secret not in capsys.readouterr().out  # printed once, by the instance that made it
    other = second.test_client()
    locked = other.post("/webhook", json=make_alert(secret=secret), environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert locked.status_code == 429
    ok = other.post("/webhook", json=make_alert(secret=secret), environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert ok.status_code == 200 and ok.json["status"] == "dry_run"
    for app in (first, second):
        app.extensions["webhook"].delivery.stop(timeout=1)
        app.extensions["webhook"].journal.close()


def test_an_alert_retried_later_is_sent_by_whichever_instance_is_free(make_app, okx, pg_url):
    a, b = make_app(database_url=pg_url, reply_deadline=0.3), make_app(database_url=pg_url)
    b.extensions["webhook"].delivery.start()
    okx.play(OkxReply("50011", "Too Many Requests", 429))
    response = a.test_client().post("/webhook", json=make_alert())
    a.extensions["webhook"].delivery.stop(timeout=1)  # a stops; the retry is b's to send
    record = wait_final(b, response.json["id"], timeout=10)
    assert record.state == "ok" and record.claimed_by == b.extensions["webhook"].delivery.instance
    assert len(okx.executed) == 1


def open_slots(app) -> int:
    """Rate slots of the shared ledger that no write has ended."""
    database = app.extensions["webhook"].journal.database
    return database.one("SELECT count(*) FROM okx_pacing WHERE ended_at IS NULL")[0]


def counting(obj, name: str) -> list:
    calls, real = [], getattr(obj, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    setattr(obj, name, counted)
    return calls


def test_each_outcome_ends_its_rate_slot_in_the_same_write(make_app, okx, pg_url):
    okx.play(OkxReply("50013", "busy"))  # the first attempt is retried: the requeue ends its slot too
    app = make_app(database_url=pg_url)
    releases = counting(app.extensions["webhook"].delivery.pacer, "release")
    ids = [app.test_client().post("/webhook", json=make_alert(amount=str(n))).json["id"] for n in (1, 2)]
    assert [wait_final(app, alert_id).state for alert_id in ids] == ["ok", "ok"]
    assert len(okx.margin_requests()) == 3
    assert (len(releases), open_slots(app)) == (0, 0)  # three slots, each ended by its outcome's write


def test_a_slot_whose_outcome_cannot_be_written_is_ended_all_the_same(make_app, okx, pg_url):
    app = make_app(database_url=pg_url)
    services = app.extensions["webhook"]
    services.delivery.terms.lease = 1.0  # the outcome's write is given up within a second
    releases = counting(services.delivery.pacer, "release")

    def unwritable(*args, **kwargs):
        raise JournalUnavailable("injected: the outcome cannot be written")

    services.journal.finish = unwritable
    app.test_client().post("/webhook", json=make_alert())
    deadline = time.monotonic() + 10  # the release is counted as it starts: wait for its write too
    while not (releases and open_slots(app) == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(okx.margin_requests()) == 1
    assert (len(releases), open_slots(app)) == (1, 0)  # the write that was to end it never ran: released directly


def test_the_bot_read_before_a_send_rides_on_the_claim_and_the_confirmation(make_app, okx, pg_url):
    okx.add_bot("581628185981813760")  # make_alert's bot
    app = make_app(database_url=pg_url)
    services = app.extensions["webhook"]
    services.delivery.at_once = lambda *args: None  # the dispatcher's claim (test_at_once.py: the other road)
    (lane,) = services.delivery.lanes.values()
    reads_released = counting(lane.read_pacer, "release")
    reads_taken = counting(lane.read_pacer, "acquire")
    response = app.test_client().post("/webhook", json=make_alert())
    record = wait_final(app, response.json["id"])
    assert record.state == "ok" and len(okx.reads(BOT_DETAILS_PATH)) == 1
    assert '"before"' in (record.evidence or "")  # the read before the send was kept
    # Its slot was taken by the claim's statement and ended by the confirmation's: no call of its own.
    assert (len(reads_taken), len(reads_released), open_slots(app)) == (0, 0, 0)


@pytest.mark.parametrize("road", ["at once", "dispatcher"])
def test_a_claim_the_reads_budget_had_no_room_for_sends_without_asking_it_again(make_app, okx, pg_url, road):
    okx.add_bot("581628185981813760")
    app = make_app(database_url=pg_url)
    services = app.extensions["webhook"]
    if road == "dispatcher":
        services.delivery.at_once = lambda *args: None
    (lane,) = services.delivery.lanes.values()
    for slot in lane.read_pacer.acquire("elsewhere", 20):  # another instance's reads spent the budget
        lane.read_pacer.release(slot)
    reads_taken = counting(lane.read_pacer, "acquire")
    record = wait_final(app, app.test_client().post("/webhook", json=make_alert()).json["id"])
    assert record.state == "ok" and len(okx.margin_requests()) == 1
    # The claim's statement found no room: the send goes without the read, and without a second ask.
    assert (len(okx.reads(BOT_DETAILS_PATH)), len(reads_taken), open_slots(app)) == (0, 0, 0)


def test_a_send_held_past_its_deadline_ends_its_bot_reads_slot_all_the_same(make_app, okx, pg_url):
    okx.add_bot("581628185981813760")
    app = make_app(database_url=pg_url, reply_deadline=0.1)
    services = app.extensions["webhook"]
    services.delivery.at_once = lambda *args: None  # the dispatcher's claim, held up
    services.delivery.terms.send_by = 2.5  # leaves time for the read before the send
    services.delivery.terms.clock = clock = ManualClock(runs=True)
    (lane,) = services.delivery.lanes.values()
    reads_released = counting(lane.read_pacer, "release")
    claim_paced, held = services.journal.claim_paced, threading.Event()

    def held_up(*args, **kwargs):
        taken = claim_paced(*args, **kwargs)
        if taken.claims and not held.is_set():
            held.set()
            clock.advance(3.0)  # past the deadline: no read, no confirmation, not sent
        return taken

    services.journal.claim_paced = held_up
    alert_id = app.test_client().post("/webhook", json=make_alert()).json["id"]
    assert wait_final(app, alert_id).state == "ok"
    assert [e.kind for e in services.journal.events(alert_id)] == ["claimed", "unclaimed", "claimed", "ok"]
    assert len(okx.margin_requests()) == 1 and len(okx.reads(BOT_DETAILS_PATH)) == 1
    # The first claim's read slot, never used nor confirmed, was released directly; the second's, confirmed.
    assert (len(reads_released), open_slots(app)) == (1, 0)
