"""The stand-in's signal bots, seen the way the service sees them: through signed HTTP requests.

Each test shows one behaviour the issue-14 tests rely on: what an executed margin change does to
the documented fields, what a bot refuses, the three signed reads, the event history, and the
scripted window (``Meanwhile``) around a request whose answer is lost.
"""

from decimal import Decimal

import pytest
import requests

from tests.okx_stand_in import (
    BOT_DETAILS_PATH,
    BOT_EVENTS_PATH,
    BOTS_PENDING_PATH,
    DEFAULT_BOT,
    Drop,
    DropUnexecuted,
    Meanwhile,
    OkxReply,
    OkxStandIn,
    Slow,
)
from webhook_app.okx.client import OkxClient, sign
from webhook_app.okx.errors import OkxError, OkxNotExecuted, OkxOutcomeUnknown, OkxRefused
from webhook_app.okx.margin.request import MarginRequest
from webhook_app.okx.records import okx_timestamp

BOT = DEFAULT_BOT
BALANCES = ("investAmt", "availBal", "frozenBal", "totalEq")
CONTRACT = {"algoOrdType": "contract"}


def client_for(stand_in: OkxStandIn) -> OkxClient:
    return OkxClient(stand_in.base_url, stand_in.api_key, stand_in.secret_key, stand_in.passphrase, read_timeout=3.0)


@pytest.fixture
def client(okx):
    okx_client = client_for(okx)
    yield okx_client
    okx_client.close()


def details(client: OkxClient, algo_id: str = BOT) -> dict:
    return client.get_signed(BOT_DETAILS_PATH, {**CONTRACT, "algoId": algo_id})["data"][0]


def balances(bot: dict) -> tuple[str, ...]:
    return tuple(bot[name] for name in BALANCES)


def events(client: OkxClient, algo_id: str = BOT, **query) -> list[dict]:
    return client.get_signed(BOT_EVENTS_PATH, {"algoId": algo_id, **query})["data"]


def okx_code(call) -> str:
    with pytest.raises(OkxError) as refused:
        call()
    return refused.value.code


# -- the bot as orders-algo-details gives it ----------------------------------------------


def test_the_default_bot_is_running_with_the_documented_fields(okx, client):
    before_ms = okx.now_ms()
    okx.add_bot("42", state="running")
    bot = details(client)
    assert {k: bot[k] for k in ("algoId", "algoOrdType", "state", "instIds")} == {
        "algoId": BOT,
        "algoOrdType": "contract",
        "state": "running",
        "instIds": ["BTC-USDT-SWAP"],
    }
    assert balances(bot) == ("100", "40", "0", "140")
    assert bot["uTime"].isdigit() and bot["cTime"].isdigit()
    assert int(details(client, "42")["cTime"]) >= before_ms


@pytest.mark.parametrize(
    "action, amt, allow_reinvest, expected",  # expected: investAmt, availBal, frozenBal, totalEq
    [
        ("add", "50", None, ("100", "90", "0", "190")),
        ("add", "50", False, ("100", "90", "0", "190")),
        ("add", "50", True, ("150", "90", "0", "190")),
        ("reduce", "15.5", None, ("100", "24.5", "0", "124.5")),
        ("reduce", "15.5", True, ("84.5", "24.5", "0", "124.5")),
        ("reduce", "40", None, ("100", "0", "0", "100")),  # all of availBal
    ],
)
def test_an_executed_margin_change_moves_the_documented_fields(okx, client, action, amt, allow_reinvest, expected):
    okx.bots[BOT].u_time_ms = 1
    sent_ms = okx.now_ms()
    client.adjust_margin(MarginRequest(BOT, action, amt, allow_reinvest))
    bot = details(client)
    assert balances(bot) == expected
    assert int(bot["uTime"]) >= sent_ms
    assert [body["amt"] for body in okx.executed] == [amt]
    assert events(client) == []  # OKX's docs do not say an API margin change is an event


def test_an_api_margin_change_is_an_event_only_when_asked(okx, client):
    okx.events_for_margin = True
    client.adjust_margin(MarginRequest(BOT, "add", "5"))
    assert [(e["eventType"], e["eventProcessMsg"]) for e in events(client)] == [
        ("user_action", "Margin added via API: 5")
    ]


@pytest.mark.parametrize(
    "setup, margin_request, code",
    [
        (lambda okx: okx.stop_bot(BOT), MarginRequest(BOT, "add", "10"), "51291"),
        (lambda okx: setattr(okx.bots[BOT], "state", "stopping"), MarginRequest(BOT, "add", "10"), "51291"),
        (lambda okx: setattr(okx.bots[BOT], "state", "starting"), MarginRequest(BOT, "reduce", "1"), "51291"),
        (lambda okx: okx.bots.pop(BOT), MarginRequest(BOT, "add", "10"), "51291"),
        (lambda okx: okx.bots.clear(), MarginRequest(BOT, "add", "10"), "51291"),
        (lambda okx: setattr(okx.bots, "unlisted_run", False), MarginRequest("42", "add", "10"), "51291"),
        (lambda okx: None, MarginRequest(BOT, "reduce", "40.01"), "51008"),  # more than availBal
        (lambda okx: okx.play(OkxReply("0")), MarginRequest(BOT, "reduce", "41"), "51008"),  # scripted success too
    ],
    ids=[
        "stopped",
        "stopping",
        "starting",
        "removed",
        "cleared",
        "unlisted",
        "over-availBal",
        "scripted-0-over-availBal",
    ],
)
def test_a_refused_margin_request_changes_nothing(okx, client, setup, margin_request, code):
    setup(okx)
    before = {algo_id: bot.okx_json(algo_id) for algo_id, bot in okx.bots.items()}
    with pytest.raises(OkxRefused) as refused:
        client.adjust_margin(margin_request)
    assert refused.value.code == code
    assert {algo_id: bot.okx_json(algo_id) for algo_id, bot in okx.bots.items()} == before
    assert okx.executed == [] and [r.code for r in okx.margin_requests()] == [code]


@pytest.mark.parametrize(
    "remove, known",
    [
        (lambda okx: None, {BOT: True, "42": True, "43": True}),  # any algoId a test names is a bot
        (lambda okx: okx.bots.pop("42"), {BOT: True, "42": False, "43": True}),
        (lambda okx: okx.bots.__delitem__(BOT), {BOT: False, "42": True, "43": True}),
        (lambda okx: okx.bots.clear(), {BOT: False, "42": False, "43": False}),
        (lambda okx: (okx.bots.clear(), okx.add_bot("42")), {BOT: False, "42": True, "43": False}),
        (lambda okx: setattr(okx.bots, "unlisted_run", False), {BOT: True, "42": True, "43": False}),
    ],
    ids=["unlisted-run", "pop", "del", "clear", "clear-then-add", "listed-only"],
)
def test_okx_knows_the_bots_a_test_has_not_removed(okx, client, remove, known):
    okx.add_bot("42")
    remove(okx)
    for algo_id, exists in known.items():
        if exists:
            assert details(client, algo_id)["state"] == "running"
        else:
            query = {**CONTRACT, "algoId": algo_id}
            assert okx_code(lambda: client.get_signed(BOT_DETAILS_PATH, query)) == "51293"  # noqa: B023


def test_an_algo_id_never_mentioned_is_a_running_bot_with_the_default_fields(okx, client):
    client.adjust_margin(MarginRequest("7", "add", "1"))
    assert balances(details(client, "7")) == ("100", "41", "0", "141")
    assert [b["algoId"] for b in client.get_signed(BOTS_PENDING_PATH, CONTRACT)["data"]] == [BOT, "7"]


# -- the three signed reads -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path, query",
    [
        (BOT_DETAILS_PATH, f"algoOrdType=contract&algoId={BOT}"),
        (BOTS_PENDING_PATH, "algoOrdType=contract"),
        (BOT_EVENTS_PATH, f"algoId={BOT}"),
    ],
)
@pytest.mark.parametrize(
    "signed_path, secret",
    [
        (lambda path, query: f"{path}?{query}", "not-the-secret"),  # wrong key
        (lambda path, query: path, None),  # the query string left out of the prehash
        (lambda path, query: f"{path}?{query}&limit=5", None),  # another query than the one sent
    ],
    ids=["wrong-secret", "query-not-signed", "other-query-signed"],
)
def test_a_read_with_a_wrong_signature_is_refused(okx, path, query, signed_path, secret):
    timestamp = okx_timestamp(okx.now())
    headers = {
        "OK-ACCESS-KEY": okx.api_key,
        "OK-ACCESS-SIGN": sign(secret or okx.secret_key, timestamp, "GET", signed_path(path, query), b""),
        "OK-ACCESS-TIMESTAMP": timestamp,
        "OK-ACCESS-PASSPHRASE": okx.passphrase,
    }
    reply = requests.get(f"{okx.base_url}{path}?{query}", headers=headers, timeout=3)
    assert (reply.status_code, reply.json()["code"], reply.json()["data"]) == (401, "50113", [])


@pytest.mark.parametrize(
    "path, query, code",
    [
        (BOT_DETAILS_PATH, {"algoId": BOT}, "50014"),  # no algoOrdType=contract
        (BOT_DETAILS_PATH, {"algoOrdType": "grid", "algoId": BOT}, "51000"),
        (BOT_DETAILS_PATH, CONTRACT, "50014"),  # no algoId
        (BOT_DETAILS_PATH, {**CONTRACT, "algoId": "-42"}, "51293"),
        (BOTS_PENDING_PATH, {}, "50014"),
        (BOT_EVENTS_PATH, {"algoId": "-42"}, "51293"),
        (BOT_EVENTS_PATH, {}, "50014"),
        (BOT_EVENTS_PATH, {"algoId": BOT, "limit": "101"}, "51000"),
    ],
)
def test_reads_refuse_what_okx_refuses(client, path, query, code):
    assert okx_code(lambda: client.get_signed(path, query)) == code


def test_pending_lists_the_bots_that_are_not_stopped(okx, client):
    okx.add_bot("1001", state="starting", inst_ids=["ETH-USDT-SWAP"])
    okx.add_bot("1002", state="stopping")
    okx.add_bot("1003", state="stopped")
    okx.add_bot("1004", avail_bal=Decimal("0.5"), total_eq=Decimal("100.5"))
    pending = client.get_signed(BOTS_PENDING_PATH, CONTRACT)["data"]
    assert [(b["algoId"], b["state"]) for b in pending] == [
        (BOT, "running"),
        ("1001", "starting"),
        ("1002", "stopping"),
        ("1004", "running"),
    ]
    assert pending[1]["instIds"] == ["ETH-USDT-SWAP"] and balances(pending[3]) == ("100", "0.5", "0", "100.5")
    assert pending[0] == details(client)  # the same fields as the details


# -- the world moving besides our requests ---------------------------------------------------


@pytest.mark.parametrize(
    "world, expected, event_types",  # expected: investAmt, availBal, frozenBal, totalEq
    [
        (lambda okx: okx.move_pnl(BOT, Decimal("-3.5")), ("100", "36.5", "0", "136.5"), []),
        (lambda okx: okx.trade(BOT), ("100", "30", "10", "140"), ["signal_processing"]),
        (lambda okx: okx.change_margin(BOT, "add", Decimal("5")), ("100", "45", "0", "145"), ["user_action"]),
        (lambda okx: okx.change_margin(BOT, "reduce", Decimal("5"), True), ("95", "35", "0", "135"), ["user_action"]),
        (lambda okx: okx.stop_bot(BOT), ("100", "40", "0", "140"), ["user_action"]),
    ],
    ids=["pnl", "trade", "app-add", "app-reduce-reinvest", "stop"],
)
def test_the_world_moves_the_bot(okx, client, world, expected, event_types):
    okx.bots[BOT].u_time_ms = 1
    world(okx)
    bot = details(client)
    assert balances(bot) == expected and int(bot["uTime"]) > 1
    assert [e["eventType"] for e in events(client)] == event_types
    assert okx.executed == []


def test_event_history_lists_the_events_newest_first(okx, client):
    okx.trade(BOT, alert_msg='{"action":"ENTER_LONG","instrument":"BTC-USDT-SWAP"}')
    okx.clock_offset = 1.0  # a second later on OKX's clock
    okx.change_margin(BOT, "add", Decimal("5"))
    okx.clock_offset = 2.0
    okx.stop_bot(BOT)
    listed = events(client)
    assert [(e["eventType"], e["eventStatus"], e["eventProcessMsg"]) for e in listed] == [
        ("user_action", "success", "Bot stopped by user"),
        ("user_action", "success", "Margin added: 5"),
        ("signal_processing", "success", "Signal processed: order placed"),
    ]
    times = [int(e["eventCtime"]) for e in listed]
    assert times[0] - times[1] >= 1000 and times[1] - times[2] >= 1000
    assert listed[2]["alertMsg"] == '{"action":"ENTER_LONG","instrument":"BTC-USDT-SWAP"}'
    assert [e["eventProcessMsg"] for e in events(client, limit="1")] == ["Bot stopped by user"]


# -- the window around a request whose answer is lost ---------------------------------------


@pytest.mark.parametrize(
    "behaviour, change, outcome, expected_avail, executed",
    [
        (Drop(), lambda s, bot: None, OkxOutcomeUnknown, "90", 1),
        (DropUnexecuted(), lambda s, bot: None, OkxOutcomeUnknown, "40", 0),
        (Drop(), lambda s, bot: s.move_pnl(bot, Decimal("-3.5")), OkxOutcomeUnknown, "86.5", 1),
        (DropUnexecuted(), lambda s, bot: s.move_pnl(bot, Decimal("-3.5")), OkxOutcomeUnknown, "36.5", 0),
        (Drop(), lambda s, bot: s.change_margin(bot, "add", Decimal("5")), OkxOutcomeUnknown, "95", 1),
        (DropUnexecuted(), lambda s, bot: s.change_margin(bot, "add", Decimal("5")), OkxOutcomeUnknown, "45", 0),
        (Slow(0.1), lambda s, bot: s.trade(bot), None, "80", 1),
        (None, lambda s, bot: s.move_pnl(bot, Decimal("1")), None, "91", 1),
        (OkxReply("50004", "API endpoint request timeout"), lambda s, bot: None, OkxOutcomeUnknown, "40", 0),
    ],
    ids=[
        "drop",
        "drop-unexecuted",
        "drop-pnl",
        "drop-unexecuted-pnl",
        "drop-second-change",
        "drop-unexecuted-second-change",
        "slow-trade",
        "plain-pnl",
        "50004",
    ],
)
def test_meanwhile_changes_the_bot_after_okx_decided_and_before_the_answer(
    okx, client, behaviour, change, outcome, expected_avail, executed
):
    executed_when_changed = []

    def world(stand_in, algo_id):
        executed_when_changed.append(len(stand_in.executed))
        change(stand_in, algo_id)

    okx.play(Meanwhile(behaviour, world))
    send = lambda: client.adjust_margin(MarginRequest(BOT, "add", "50"))  # noqa: E731
    if outcome is None:
        send()
    else:
        with pytest.raises(outcome):
            send()
    assert details(client)["availBal"] == expected_avail
    assert len(okx.executed) == executed and executed_when_changed == [executed]


def test_meanwhile_is_played_by_faults_too(okx, client):
    okx.faults = lambda: Meanwhile(Drop(), lambda s, bot: s.move_pnl(bot, Decimal("-1")))
    for _ in range(2):
        with pytest.raises(OkxOutcomeUnknown):
            client.adjust_margin(MarginRequest(BOT, "add", "10"))
    assert details(client)["availBal"] == "58" and len(okx.executed) == 2


# -- reads have limits of their own -------------------------------------------------------------


@pytest.fixture
def slow_window_okx():
    """A 60 s window, so that 'within one window' never depends on how fast this machine is."""
    stand_in = OkxStandIn(window=60.0, rate_limit=3, read_rate_limit=3).start()
    yield stand_in
    stand_in.stop()


READS = {
    BOT_DETAILS_PATH: {**CONTRACT, "algoId": BOT},
    BOTS_PENDING_PATH: CONTRACT,
    BOT_EVENTS_PATH: {"algoId": BOT},
}


@pytest.mark.parametrize("exhausted", list(READS))
def test_each_read_has_its_own_limit_apart_from_the_margin_calls(slow_window_okx, exhausted):
    okx = slow_window_okx
    okx_client = client_for(okx)
    for _ in range(3):
        okx_client.get_signed(exhausted, READS[exhausted])
    with pytest.raises(OkxNotExecuted) as limited:
        okx_client.get_signed(exhausted, READS[exhausted])
    assert limited.value.code == "50011" and okx.read_limited == {exhausted: 1}
    for other in READS:
        if other != exhausted:
            okx_client.get_signed(other, READS[other])  # not limited by its neighbour
    okx_client.adjust_margin(MarginRequest(BOT, "add", "1"))  # nor is the margin call
    assert len(okx.reads(exhausted)) == 4 and okx.counted_times and okx.max_in_any_window() == 1
    okx_client.close()


def test_reads_never_count_against_the_margin_calls_limit(slow_window_okx):
    okx = slow_window_okx
    okx_client = client_for(okx)
    for _ in range(3):
        okx_client.adjust_margin(MarginRequest(BOT, "add", "1"))
    assert okx_code(lambda: okx_client.adjust_margin(MarginRequest(BOT, "add", "1"))) == "50011"
    for path, query in READS.items():
        okx_client.get_signed(path, query)
    assert okx.max_in_any_window() == 3 and okx.rate_limited == 1 and not okx.read_limited
    assert okx.stats()["reads"] == {path: 1 for path in READS}
    okx_client.close()
