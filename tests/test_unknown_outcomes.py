"""Issue 14: an ``unknown`` outcome answered from OKX's own records (bot snapshots around the send,
its event history), a proposal, RESOLVE_UNKNOWN=auto, and alerts refused for a stopped bot.

In-process apps for the table of scenarios; one service started as the Procfile does for the
whole road through gunicorn."""

import time
from decimal import Decimal

import pytest
import requests

from tests.conftest import ADMIN_TOKEN, REINVESTED, live_env, make_alert, wait_proposal
from tests.okx_stand_in import BOT_DETAILS_PATH, Drop, DropUnexecuted, Meanwhile, OkxReply, OkxStandIn
from tests.test_notify import Receiver
from webhook_app.clock import ManualClock
from webhook_app.okx.client import OkxClient
from webhook_app.workers.bots import READ_WINDOW, READS_PER_WINDOW, BotWatch

BOT = "581628185981813760"
STOPPED = "581628185981813763"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def pnl(stand_in, bot):
    stand_in.move_pnl(bot, Decimal("-3.5"))


def second_change(stand_in, bot):  # the trader adds margin in OKX's app at the same moment
    stand_in.change_margin(bot, "add", Decimal("10"))


def trade(stand_in, bot):
    stand_in.trade(bot)


# (what OKX does with the request, whether it executed it, the proposal, words of its reason); each
# alert asks allowReinvest, so that an executed one moves investAmt too, which PnL never does.
SCENARIOS = [
    pytest.param(Drop(), True, "executed", "rose by 10", id="dropped-after-executing"),
    pytest.param(DropUnexecuted(), False, "not_executed", "did not change", id="dropped-before-executing"),
    pytest.param(Meanwhile(Drop(), pnl), True, "cant_tell", "availBal", id="executed-while-pnl-moved"),
    pytest.param(Meanwhile(DropUnexecuted(), pnl), False, "cant_tell", "availBal", id="not-executed-while-pnl-moved"),
    pytest.param(Meanwhile(Drop(), second_change), True, "cant_tell", "event", id="a-second-change-in-the-window"),
    pytest.param(Meanwhile(DropUnexecuted(), trade), False, "cant_tell", "", id="a-trade-in-the-window"),
]


def wait_event(journal, alert_id, text, timeout=10.0):
    """The alert once its timeline has an entry starting with ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e.detail.startswith(text) for e in journal.events(alert_id)):
            return journal.get(alert_id)
        time.sleep(0.05)
    raise AssertionError(f"alert {alert_id}: no timeline entry {text!r}: {journal.events(alert_id)}")


@pytest.mark.parametrize("behaviour, executed, proposal, words", SCENARIOS)
def test_an_unknown_outcome_is_proposed_from_okx_records(make_app, okx, behaviour, executed, proposal, words):
    app = make_app(unknown_settle=0.0)
    journal = app.extensions["webhook"].journal
    okx.play(behaviour)
    reply = app.test_client().post("/webhook", json=make_alert(**REINVESTED))
    assert reply.status_code == 202, reply.json
    record = wait_proposal(app, reply.json["id"])
    assert record.state == "unknown" and record.resolution is None  # manual: proposed, not marked
    assert len(okx.executed) == int(executed)
    assert record.proposal == proposal, record.to_json()["evidence"]
    evidence = record.to_json()["evidence"]
    assert evidence["before"]["availBal"] == "40"  # the snapshot taken just before the send
    assert evidence["after"] is not None and words in evidence["reason"]
    rows = {row["field"]: row for row in evidence["changes"]}
    if proposal == "executed":
        assert (rows["availBal"]["before"], rows["availBal"]["after"], rows["availBal"]["delta"]) == ("40", "50", "+10")
    timeline = [e.detail for e in journal.events(record.id)]
    assert any(d.startswith("OKX's records:") for d in timeline), timeline


@pytest.mark.parametrize(
    "behaviour, marked",
    [(Drop(), "executed"), (DropUnexecuted(), "not_executed"), (Meanwhile(Drop(), pnl), None)],
    ids=["executed", "not-executed", "cant-tell"],
)
def test_resolve_unknown_auto_marks_only_what_leaves_no_doubt(make_app, okx, behaviour, marked):
    app = make_app(unknown_settle=0.0, unknown_recheck=1.0, resolve_unknown="auto")
    journal = app.extensions["webhook"].journal
    okx.play(behaviour)
    alert_id = app.test_client().post("/webhook", json=make_alert(**REINVESTED)).json["id"]
    record = wait_proposal(app, alert_id)
    if record.proposal == "not_executed":  # marked only after the second read, a second later
        assert record.resolution is None
        record = wait_event(journal, alert_id, "read again after 1 s")
    assert journal.get(alert_id).resolution == marked
    marks = [e.detail for e in journal.events(alert_id) if e.kind == "marked"]
    assert marks == ([f"marked {marked.replace('_', ' ')} by the service, from OKX's records"] if marked else [])


def test_pnl_of_exactly_the_amount_is_never_marked_executed(make_app, okx):
    # Nothing executed, but the market moved availBal and totalEq by exactly the amount asked: without
    # allowReinvest a margin change moves nothing else, so OKX's records cannot tell the two apart.
    app = make_app(unknown_settle=0.0, resolve_unknown="auto")
    okx.play(Meanwhile(DropUnexecuted(), lambda stand_in, bot: stand_in.move_pnl(bot, Decimal("10"))))
    alert_id = app.test_client().post("/webhook", json=make_alert(amount="10")).json["id"]
    record = wait_proposal(app, alert_id)
    assert okx.executed == [] and okx.bot(BOT).avail_bal == Decimal("50")
    assert record.proposal == "cant_tell" and "cannot be told from PnL" in record.evidence_data["reason"]
    assert app.extensions["webhook"].journal.get(alert_id).resolution is None  # auto left it to an operator


def test_a_not_executed_finding_is_not_marked_when_the_bot_moves_before_the_second_read(make_app, okx):
    # OKX may still act on a request whose connection dropped: the resend a wrong "not executed" invites
    # would be a double. Here the bot moves after the first read: the finding stands, unmarked, in doubt.
    app = make_app(unknown_settle=0.0, unknown_recheck=1.0, resolve_unknown="auto")
    journal = app.extensions["webhook"].journal
    okx.play(DropUnexecuted())
    alert_id = app.test_client().post("/webhook", json=make_alert()).json["id"]
    assert wait_proposal(app, alert_id).proposal == "not_executed"
    # Not exactly the request (an exact one with its user_action event would read as executed, and be marked).
    okx.change_margin(BOT, "add", Decimal("7"))
    wait_event(journal, alert_id, "read again after 1 s")
    assert journal.get(alert_id).resolution is None
    (note,) = [e.detail for e in journal.events(alert_id) if e.detail.startswith("read again")]
    assert "availBal" in note and "in doubt" in note


def late_exact(stand_in):  # OKX executes the dropped request late: exactly its change, no event
    with stand_in._lock:
        stand_in._apply_margin(stand_in.bot(BOT), "add", Decimal("10"), allow_reinvest=True)


def late_in_app(stand_in):  # the bot moves by a margin change OKX lists as a user_action event
    stand_in.change_margin(BOT, "add", Decimal("10"), allow_reinvest=True)


def late_with_a_signal(stand_in):  # ... and OKX lists a signal it processed too
    late_in_app(stand_in)
    stand_in.add_event(BOT, "signal_processing", "Signal received, no order placed")


@pytest.mark.parametrize(
    "late, proposal, words",
    [
        (late_exact, "executed", "rose by 10"),
        (late_in_app, "executed", "each a successful user_action"),  # as OKX may list an API margin change
        (late_with_a_signal, "cant_tell", "never read as ours"),
    ],
    ids=["moved-exactly-as-asked", "moved-with-a-user-action-event", "moved-with-another-event"],
)
def test_a_not_executed_proposal_the_second_read_contradicts_is_withdrawn(make_app, okx, late, proposal, words):
    receiver = Receiver()
    try:
        clock = ManualClock(runs=True)
        app = make_app(local_clock=clock, unknown_settle=0.0, unknown_recheck=30.0, notify_urls=(receiver.url,))
        services = app.extensions["webhook"]
        services.notifier.coalesce = 0.0  # the withdrawal is told at once, not summed up with the first message
        client = app.test_client()
        okx.play(DropUnexecuted())
        alert_id = client.post("/webhook", json=make_alert(**REINVESTED)).json["id"]
        assert wait_proposal(app, alert_id).proposal == "not_executed"
        late(okx)
        clock.advance(30.0)  # the second read is due
        wait_event(services.journal, alert_id, "read again after 30 s")
        assert okx.executed == [] and okx.bot(BOT).avail_bal == Decimal("50")  # moved, though not by our send
        shown = client.get(f"/alerts/{alert_id}", headers=BEARER).json["alert"]
        assert shown["proposal"] == shown["evidence"]["proposal"] == proposal, shown["evidence"]
        assert words in shown["evidence"]["reason"] and shown["evidence"]["withdrawn"]["proposal"] == "not_executed"
        assert "availBal" in shown["evidence"]["recheck"]["moved"]
        assert shown["resolution"] is None  # manual: proposed, not marked
        browser = app.test_client()
        login = browser.get("/admin").text.split('name="csrf_token" value="')[1].split('"')[0]
        browser.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": login})
        page = browser.get(f"/admin/alerts/{alert_id}").text
        assert "Confirm: not executed" not in page and 'id="withdrawn"' in page
        assert f'class="verdict v-{proposal}"' in page
        messages = receiver.wait_for(2)
        assert any("proposal 'not executed' is withdrawn" in m["title"] for m in messages), messages
    finally:
        receiver.server.shutdown()


def test_the_notification_of_an_unknown_alert_carries_the_proposal(make_app, okx):
    receiver = Receiver()
    try:
        app = make_app(unknown_settle=0.0, notify_urls=(receiver.url,))
        app.extensions["webhook"].notifier.start()
        okx.play(Drop())
        alert_id = app.test_client().post("/webhook", json=make_alert(**REINVESTED)).json["id"]
        (message,) = receiver.wait_for(1)
        assert f"Alert {alert_id} unknown" in message["title"]
        assert "proposes: executed" in message["message"] and "rose by 10" in message["message"]
    finally:
        receiver.server.shutdown()


def test_the_proposal_links_to_the_alerts_page_where_it_is_confirmed(make_app, okx):
    """ "Confirm it on the alert's page" with the page's address (PUBLIC_URL): one tap on a phone;
    the unknown reply names the same page."""
    receiver = Receiver()
    try:
        app = make_app(unknown_settle=0.0, notify_urls=(receiver.url,), public_url="https://my-relay.example.com")
        app.extensions["webhook"].notifier.start()
        okx.play(Drop())
        reply = app.test_client().post("/webhook", json=make_alert(**REINVESTED)).json
        page = f"https://my-relay.example.com/admin/alerts/{reply['id']}"
        assert page in reply["message"], reply
        (message,) = receiver.wait_for(1)
        assert f"Confirm it on the alert's page: {page} (one click)" in message["message"], message
    finally:
        receiver.server.shutdown()


def test_every_live_send_keeps_the_bot_as_it_was_just_before(make_app, okx):
    app = make_app()
    journal = app.extensions["webhook"].journal
    reply = app.test_client().post("/webhook", json=make_alert(amount="5"))
    assert reply.status_code == 200 and reply.json["status"] == "ok"
    record = journal.get(reply.json["id"])
    assert record.to_json()["evidence"]["before"]["availBal"] == "40"
    assert record.proposal is None  # only unknown outcomes get a proposal
    assert okx.bot(BOT).avail_bal == Decimal("45")


def test_an_alert_for_a_bot_okx_reports_stopped_is_refused_before_sending(make_app, okx):
    app = make_app()
    services = app.extensions["webhook"]
    services.bots.refresh()  # running: in OKX's list of active bots
    okx.stop_bot(BOT)
    services.bots.refresh()  # gone from the list: read on its own, stopped
    reply = app.test_client().post("/webhook", json=make_alert())
    assert reply.status_code == 422 and reply.json["status"] == "bot_not_running", reply.json
    assert reply.json["errors"][0]["field"] == "algoId" and "stopped" in reply.json["errors"][0]["message"]
    assert okx.margin_requests() == [] and services.journal.recent() == []


def test_an_alert_for_a_bot_okx_does_not_know_is_refused(make_app, okx):
    app = make_app()
    okx.add_bot("581628185981813799")
    app.extensions["webhook"].bots.refresh()  # reads the known bots outside OKX's active list
    okx.bots.pop("581628185981813799")
    app.extensions["webhook"].bots["default"].snapshot_now("581628185981813799")
    reply = app.test_client().post("/webhook", json=make_alert(algoId="581628185981813799"))
    assert reply.status_code == 422 and "does not know this bot" in reply.json["errors"][0]["message"]
    assert okx.margin_requests() == []


def test_a_failed_read_of_the_bots_never_refuses_an_alert(make_app, okx):
    app = make_app()
    okx.stop_bot(BOT)
    okx.right_region = False  # every read is refused (50119)
    app.extensions["webhook"].bots.refresh()
    reply = app.test_client().post("/webhook", json=make_alert())
    assert reply.status_code == 424 and reply.json["okx"]["code"] == "51291", reply.json  # OKX itself refuses it


def test_a_stopped_state_read_too_long_ago_no_longer_refuses(okx):
    now = [1000.0]
    client = OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase)
    watch = BotWatch(client, instance="t", known_ids=lambda: [BOT], max_age=90.0, clock=lambda: now[0])
    okx.stop_bot(BOT)
    watch.refresh()
    assert "stopped" in watch.refusal(BOT)
    now[0] += 90.5
    assert watch.refusal(BOT) is None
    assert watch.table()[0]["state"] == "stopped" and watch.table()[0]["fresh"] is False


def test_reads_keep_to_their_own_budget_and_never_wait(okx):
    client = OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase)
    watch = BotWatch(client, instance="t", known_ids=lambda: [BOT])
    got = [watch.snapshot_now(BOT) for _ in range(READS_PER_WINDOW + 5)]
    assert sum(s is not None for s in got) == READS_PER_WINDOW  # the rest skipped, not waited for
    assert len(okx.reads(BOT_DETAILS_PATH)) == READS_PER_WINDOW
    assert okx.margin_requests() == [] and READ_WINDOW == 2.0


def test_a_burst_with_reads_stays_within_the_margin_limit(make_app, okx):
    """40 alerts over 4 bots, each send read before it: the margin calls stay within 20 per 2 s, the
    reads within their own 20 per 2 s, and no read takes a margin call's slot."""
    bots = [BOT, *(f"58162818598181377{n}" for n in range(3))]
    for algo_id in bots[1:]:
        okx.add_bot(algo_id)
    app = make_app()
    client = app.test_client()
    replies, slowest = [], 0.0
    for n in range(40):
        started = time.monotonic()
        replies.append(client.post("/webhook", json=make_alert(algoId=bots[n % 4], amount=str(n + 1))))
        slowest = max(slowest, time.monotonic() - started)
    assert all(r.status_code in (200, 202) for r in replies)
    assert slowest < 3.0  # TradingView gives up at 3 s: a read before the send never holds a reply past it
    journal = app.extensions["webhook"].journal
    deadline = time.monotonic() + 30
    while any(not journal.get(r.json["id"]).final for r in replies) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [journal.get(r.json["id"]).state for r in replies] == ["ok"] * 40
    assert okx.max_in_any_window() <= 20 and okx.rate_limited == 0
    reads = sorted(okx.reads(BOT_DETAILS_PATH))
    busiest = max(sum(1 for t in reads if start <= t < start + READ_WINDOW) for start in reads)
    with_snapshot = sum(1 for r in replies if journal.get(r.json["id"]).evidence)
    print(f"margin calls: most in 2 s {okx.max_in_any_window()}; detail reads {len(reads)}, most in 2 s {busiest}")
    print(f"sends with the bot read just before: {with_snapshot} of 40; slowest reply {slowest:.2f} s")
    assert busiest <= READS_PER_WINDOW


def test_through_gunicorn_unknowns_are_proposed_and_marked_and_a_stopped_bot_refused(service_factory, tmp_path):
    """The whole road as deployed: RESOLVE_UNKNOWN=auto, three ambiguous sends, a stopped bot."""
    okx = OkxStandIn().start()
    try:
        bots = {"executed": BOT, "not_executed": "581628185981813761", "cant_tell": "581628185981813762"}
        for algo_id in list(bots.values())[1:]:
            okx.add_bot(algo_id)
        okx.add_bot(STOPPED, state="stopped")
        env = live_env(
            okx,
            tmp_path,
            ADMIN_TOKEN=ADMIN_TOKEN,
            RESOLVE_UNKNOWN="auto",
            UNKNOWN_SETTLE_SECONDS="1",
            UNKNOWN_RECHECK_SECONDS="1",
            BOT_REFRESH_SECONDS="1",
            ALLOWED_ALGO_IDS=",".join([*bots.values(), STOPPED]),
        )
        service = service_factory(env)
        okx.play(Drop(), DropUnexecuted(), Meanwhile(Drop(), pnl))
        started = time.monotonic()
        ids = {}
        for proposal, algo_id in bots.items():
            reply = requests.post(service.url + "/webhook", json=make_alert(algoId=algo_id, **REINVESTED), timeout=5)
            assert reply.status_code == 202, reply.text
            ids[proposal] = reply.json()["id"]
        found = {}  # each alert once proposed, and marked where auto marks it (not executed: after the second read)
        while len(found) < 3 and time.monotonic() - started < 30:
            for proposal, alert_id in ids.items():
                alert = requests.get(f"{service.url}/alerts/{alert_id}", headers=BEARER, timeout=5).json()["alert"]
                if alert["proposal"] is not None and (alert["resolution"] is not None or proposal == "cant_tell"):
                    found[proposal] = alert
            time.sleep(0.2)
        print(f"proposals after {time.monotonic() - started:.1f} s: { {k: v['proposal'] for k, v in found.items()} }")
        assert {k: v["proposal"] for k, v in found.items()} == {k: k for k in bots}
        assert {k: v["resolution"] for k, v in found.items()} == {
            "executed": "executed",
            "not_executed": "not_executed",
            "cant_tell": None,
        }
        # The stopped bot: once the background read has seen it stopped, its alert is refused, nothing sent.
        deadline, states = time.monotonic() + 10, {}
        while states.get(STOPPED) != "stopped" and time.monotonic() < deadline:
            status = requests.get(service.url + "/status", headers=BEARER, timeout=5).json()
            states = {b["algoId"]: b["state"] for b in status["service"]["bots"]}
            time.sleep(0.2)
        assert states[STOPPED] == "stopped" and states[BOT] == "running", states
        refused = requests.post(service.url + "/webhook", json=make_alert(algoId=STOPPED), timeout=5)
        assert refused.status_code == 422 and refused.json()["status"] == "bot_not_running", refused.text
        assert [r for r in okx.margin_requests() if STOPPED.encode() in r.body] == []
        assert len(okx.margin_requests()) == 3
    finally:
        okx.stop()


def test_okx_refusing_a_stopped_bot_is_rejected_not_unknown(make_app, okx):
    app = make_app()
    okx.play(OkxReply("51291", "Bot does not exist or stopped"))
    reply = app.test_client().post("/webhook", json=make_alert())
    assert reply.status_code == 424 and reply.json["status"] == "rejected"
