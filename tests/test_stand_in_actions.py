"""The stand-in's signal-bot actions, seen the way the service will see them: signed HTTP requests.

Each test shows one answer the next issue relies on: an endpoint's success and its main refusal,
the expTime header, the lot size, each endpoint's own limit, and the faults on every action.
"""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from tests.conftest import eventually
from tests.okx_stand_in import (
    AMEND_TPSL_PATH,
    ARRIVALS_PATH,
    BOT_DETAILS_PATH,
    BOT_EVENTS_PATH,
    CANCEL_SUB_ORDER_PATH,
    CLOSE_POSITION_PATH,
    DEFAULT_BOT,
    INSTRUMENTS_PATH,
    MARGIN_PATH,
    POSITIONS_PATH,
    SET_INSTRUMENTS_PATH,
    STOP_BOTS_PATH,
    SUB_ORDER_PATH,
    SUB_ORDERS_PATH,
    Drop,
    DropUnexecuted,
    Meanwhile,
    OkxReply,
    OkxStandIn,
    Queued,
    Slow,
)

BOT = DEFAULT_BOT
BTC = "BTC-USDT-SWAP"
CONTRACT = {"algoOrdType": "contract", "algoId": BOT}


class Signed:
    """A tiny OKX client: signs over timestamp + method + path (with query) + the exact body bytes."""

    def __init__(self, okx: OkxStandIn):
        self.okx, self.http = okx, requests.Session()

    def headers(self, method: str, path: str, body: bytes, secret: str | None = None) -> dict:
        timestamp = datetime.fromtimestamp(self.okx.now(), UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        prehash = (timestamp + method + path).encode() + body
        digest = hmac.new((secret or self.okx.secret_key).encode(), prehash, hashlib.sha256).digest()
        return {
            "OK-ACCESS-KEY": self.okx.api_key,
            "OK-ACCESS-SIGN": base64.b64encode(digest).decode(),
            "OK-ACCESS-TIMESTAMP": timestamp,
            "OK-ACCESS-PASSPHRASE": self.okx.passphrase,
            "Content-Type": "application/json",
        }

    def post(self, path: str, payload, exp_time_ms: int | None = None, raw: bytes | None = None) -> requests.Response:
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = self.headers("POST", path, body)
        if exp_time_ms is not None:
            headers["expTime"] = str(exp_time_ms)
        return self.http.post(self.okx.base_url + path, data=body, headers=headers, timeout=5)

    def get(self, path: str, **query) -> requests.Response:
        target = path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
        return self.http.get(self.okx.base_url + target, headers=self.headers("GET", target, b""), timeout=5)

    def data(self, path: str, **query) -> list:
        reply = self.get(path, **query).json()
        assert reply["code"] == "0", reply
        return reply["data"]


@pytest.fixture
def api(okx):
    client = Signed(okx)
    yield client
    client.http.close()


def answer(reply: requests.Response) -> tuple:
    return reply.status_code, reply.json()["code"], reply.json()["data"]


def market(side="buy", sz="0.5", inst_id=BTC, **more) -> dict:
    return {"instId": inst_id, "algoId": BOT, "side": side, "ordType": "market", "sz": sz, **more}


def limit(side="buy", sz="0.5", px="59000", **more) -> dict:
    return {**market(side, sz, **more), "ordType": "limit", "px": px}


def only(items: list) -> dict:
    assert len(items) == 1, items
    return items[0]


# -- instruments ---------------------------------------------------------------------------


def test_instruments_are_public_with_their_steps_as_strings(okx):
    reply = requests.get(f"{okx.base_url}{INSTRUMENTS_PATH}?instType=SWAP&instId={BTC}", timeout=5)  # unsigned
    inst = only(reply.json()["data"])
    assert {k: inst[k] for k in ("instType", "instId", "ctVal", "lotSz", "minSz", "tickSz")} == {
        "instType": "SWAP",
        "instId": BTC,
        "ctVal": "0.01",
        "lotSz": "0.01",
        "minSz": "0.01",
        "tickSz": "0.1",
    }
    unknown = requests.get(f"{okx.base_url}{INSTRUMENTS_PATH}?instType=SWAP&instId=NOPE-USDT-SWAP", timeout=5)
    assert answer(unknown) == (200, "51001", [])
    assert answer(requests.get(f"{okx.base_url}{INSTRUMENTS_PATH}", timeout=5)) == (400, "50014", [])


# -- sub-order -------------------------------------------------------------------------------


def test_a_market_sub_order_fills_at_once_and_opens_a_net_position(okx, api):
    okx.set_price(BTC, "60000")
    reply = api.post(SUB_ORDER_PATH, market("buy", "0.5"))
    assert reply.json() == {"code": "0", "msg": "", "data": []}  # as documented: no order id
    position = only(api.data(POSITIONS_PATH, **CONTRACT))
    assert {k: position[k] for k in ("instId", "pos", "avgPx", "posSide", "lever", "upl", "imr")} == {
        "instId": BTC,
        "pos": "0.5",
        "avgPx": "60000",
        "posSide": "net",
        "lever": "10",
        "upl": "0",
        "imr": "30",  # 0.5 contracts x 0.01 BTC x 60000 / 10
    }
    order = only(api.data(SUB_ORDERS_PATH, **CONTRACT, state="filled"))
    assert order["clOrdId"].startswith("O") and order["ordId"].isdigit()
    assert {k: order[k] for k in ("side", "sz", "ordType", "px", "accFillSz", "avgPx", "state")} == {
        "side": "buy",
        "sz": "0.5",
        "ordType": "market",
        "px": "",
        "accFillSz": "0.5",
        "avgPx": "60000",
        "state": "filled",
    }
    event = only(api.data(BOT_EVENTS_PATH, algoId=BOT))
    assert event["eventType"] == "signal_processing" and event["triggeredOrdData"] == [{"clOrdId": order["clOrdId"]}]
    assert [(path, body) for _, path, body in okx.executions] == [(SUB_ORDER_PATH, market("buy", "0.5"))]
    assert okx.executed == []  # margin bodies only
    okx.set_price(BTC, "61000")
    assert only(api.data(POSITIONS_PATH, **CONTRACT))["upl"] == "5"  # 1000 x 0.5 x 0.01


def test_a_sell_reverses_a_long_into_a_short_and_realizes_the_pnl(okx, api):
    api.post(SUB_ORDER_PATH, market("buy", "0.5"))
    okx.set_price(BTC, "62000")
    api.post(SUB_ORDER_PATH, market("sell", "0.7"))
    position = only(api.data(POSITIONS_PATH, **CONTRACT))
    assert (position["pos"], position["avgPx"]) == ("-0.2", "62000")
    assert api.data(BOT_DETAILS_PATH, **CONTRACT)[0]["totalEq"] == "150"  # 140 + 2000 x 0.5 x 0.01


def test_a_limit_sub_order_stays_live_until_the_market_fills_it(okx, api):
    assert answer(api.post(SUB_ORDER_PATH, limit(px="59000.5"))) == (200, "0", [])
    order = only(api.data(SUB_ORDERS_PATH, **CONTRACT, state="live"))
    assert (order["px"], order["accFillSz"]) == ("59000.5", "0")
    assert api.data(POSITIONS_PATH, **CONTRACT) == []
    okx.fill_order(BOT, order["clOrdId"], sz="0.2")
    assert only(api.data(SUB_ORDERS_PATH, **CONTRACT, state="partially_filled"))["accFillSz"] == "0.2"
    okx.fill_order(BOT, order["clOrdId"])
    assert only(api.data(SUB_ORDERS_PATH, **CONTRACT, signalOrdId=order["clOrdId"]))["state"] == "filled"
    assert only(api.data(POSITIONS_PATH, **CONTRACT))["pos"] == "0.5"


@pytest.mark.parametrize(
    "body, expected",
    [
        ({k: v for k, v in limit().items() if k != "px"}, (400, "51000")),  # px required for limit
        (market(px="60000"), (400, "51000")),  # px refused for market
        (market(side="long"), (400, "51000")),
        (market(sz="-1"), (400, "51000")),
        (market(sz=1), (400, "51000")),  # numbers are strings
        (market(clOrdId="mine"), (400, "51000")),  # no such field
        ({k: v for k, v in market().items() if k != "sz"}, (400, "50014")),
        (market(sz="0.015"), (200, "51121")),  # not a whole number of lots (0.01)
        (market(sz="0.5", inst_id="COARSE-USDT-SWAP"), (200, "51020")),  # below minSz 1
        (market(sz="1.55", inst_id="COARSE-USDT-SWAP"), (200, "51121")),  # lotSz 0.1
        (market(inst_id="NOPE-USDT-SWAP"), (200, "51001")),
        (market(inst_id="ETH-USDT-SWAP"), (200, "51287")),  # not one of the bot's instruments
        (market(sz="0.7"), (200, "51008")),  # 42 USDT of margin, 40 available
        (market(reduceOnly=True), (200, "51169")),  # no position
        (market(reduceOnly="true"), (400, "51000")),  # a JSON boolean
    ],
)
def test_a_refused_sub_order_places_nothing(okx, api, body, expected):
    okx.add_instrument("COARSE-USDT-SWAP", ct_val="1", lot_sz="0.1", min_sz="1", tick_sz="0.01", last="1")
    okx.bot(BOT).inst_ids.append("COARSE-USDT-SWAP")
    reply = api.post(SUB_ORDER_PATH, body)
    assert answer(reply) == (*expected, [])
    assert okx.executions == [] and okx.bot(BOT).orders == [] and okx.bot(BOT).events == []


def test_reduce_only_reduces_an_opposite_position_and_never_grows_one(okx, api):
    okx.open_position(BOT, BTC, "0.3")
    assert answer(api.post(SUB_ORDER_PATH, market("buy", "0.1", reduceOnly=True)))[1] == "51170"
    assert answer(api.post(SUB_ORDER_PATH, market("sell", "0.5", reduceOnly=True)))[1] == "0"
    assert api.data(POSITIONS_PATH, **CONTRACT) == []
    order = only(api.data(SUB_ORDERS_PATH, **CONTRACT, state="canceled"))  # what it could not fill
    assert (order["sz"], order["accFillSz"]) == ("0.5", "0.3")


# -- the expTime header ------------------------------------------------------------------------


def test_a_sub_order_past_its_exp_time_at_arrival_is_refused_50036(okx, api):
    reply = api.post(SUB_ORDER_PATH, market(), exp_time_ms=okx.now_ms() - 1)
    assert answer(reply) == (200, "50036", []) and okx.executions == []
    assert answer(api.post(SUB_ORDER_PATH, market(), exp_time_ms="soon")) == (400, "51000", [])


def test_a_sub_order_acted_on_after_its_exp_time_is_refused_50037_and_never_executed(okx, api):
    okx.play(SUB_ORDER_PATH, Queued(1.5))  # acted on at least 1.5 s after arrival: past its expTime
    reply = api.post(SUB_ORDER_PATH, market(), exp_time_ms=okx.now_ms() + 1000)  # 1 s to arrive in
    assert answer(reply) == (200, "50037", []) and okx.executions == []
    assert [r.code for r in okx.requests_to(SUB_ORDER_PATH)] == ["50037"]


@pytest.mark.parametrize("meanwhile_s, executed", [(10.0, 0), (0.0, 1)])
def test_a_late_execution_checks_the_exp_time_again(okx, api, meanwhile_s, executed):
    """Admitted within its expTime (5 s away), dropped, acted on 0.3 s later: by then OKX's clock
    has moved ``meanwhile_s`` on, past the expTime or not, whatever this machine's speed."""

    def clock_moves(stand_in, algo_id):
        stand_in.clock_offset += meanwhile_s

    okx.play(SUB_ORDER_PATH, Meanwhile(Drop(late=0.3), clock_moves))
    with pytest.raises(requests.ConnectionError):
        api.post(SUB_ORDER_PATH, market(), exp_time_ms=okx.now_ms() + 5000)
    eventually(lambda: okx.late_executed == 1)
    assert len(okx.executions) == executed and len(okx.bot(BOT).orders) == executed


# -- cancel-sub-order -------------------------------------------------------------------------


def test_cancel_is_acceptance_then_the_order_is_canceled(okx, api):
    okx.cancel_delay = 1.0  # time enough to see it cancelling
    api.post(SUB_ORDER_PATH, limit())
    signal_ord_id = okx.bot(BOT).orders[0].cl_ord_id
    cancel = {"algoId": BOT, "instId": BTC, "signalOrdId": signal_ord_id}
    assert answer(api.post(CANCEL_SUB_ORDER_PATH, cancel)) == (
        200,
        "0",
        [{"signalOrdId": signal_ord_id, "sCode": "0", "sMsg": ""}],
    )
    assert okx.order(BOT, signal_ord_id).state == "cancelling"
    again = api.post(CANCEL_SUB_ORDER_PATH, cancel).json()
    assert (again["code"], only(again["data"])["sCode"]) == ("1", "51410")
    eventually(lambda: okx.order(BOT, signal_ord_id).state == "canceled")
    assert only(api.data(SUB_ORDERS_PATH, **CONTRACT, state="cancelled"))["clOrdId"] == signal_ord_id
    assert api.data(SUB_ORDERS_PATH, **CONTRACT, state="canceled") == api.data(
        SUB_ORDERS_PATH, **CONTRACT, state="cancelled"
    )  # both spellings of the docs ⚠


@pytest.mark.parametrize(
    "signal_ord_id, s_code", [(lambda okx: okx.bot(BOT).orders[0].cl_ord_id, "51400"), (lambda okx: "O1", "51603")]
)
def test_only_a_live_order_can_be_canceled(okx, api, signal_ord_id, s_code):
    api.post(SUB_ORDER_PATH, market())  # filled at once
    cancel = {"algoId": BOT, "instId": BTC, "signalOrdId": signal_ord_id(okx)}
    reply = api.post(CANCEL_SUB_ORDER_PATH, cancel).json()
    assert (reply["code"], only(reply["data"])["sCode"]) == ("1", s_code)
    assert [path for _, path, _ in okx.executions] == [SUB_ORDER_PATH]


# -- close-position -----------------------------------------------------------------------------


def test_close_position_closes_all_of_it_at_market(okx, api):
    okx.open_position(BOT, BTC, "-0.4", avg_px="61000")
    reply = api.post(CLOSE_POSITION_PATH, {"algoId": BOT, "instId": BTC})
    assert answer(reply) == (200, "0", [{"algoId": BOT}])
    assert api.data(POSITIONS_PATH, **CONTRACT) == []
    order = only(api.data(SUB_ORDERS_PATH, **CONTRACT, state="filled"))
    assert (order["side"], order["sz"], order["pnl"]) == ("buy", "0.4", "4")  # (61000 - 60000) x 0.4 x 0.01


@pytest.mark.parametrize("without_position, code, data", [("51058", "51058", []), ("0", "0", [{"algoId": BOT}])])
def test_close_position_without_a_position_does_nothing(okx, api, without_position, code, data):
    okx.close_without_position = without_position
    assert answer(api.post(CLOSE_POSITION_PATH, {"algoId": BOT, "instId": BTC})) == (200, code, data)
    assert okx.executions == [] and okx.bot(BOT).orders == []


# -- amendTPSL ------------------------------------------------------------------------------------


def test_amend_tpsl_sets_what_the_details_report(okx, api):
    assert api.data(BOT_DETAILS_PATH, **CONTRACT)[0]["exitSettingParam"] == {"tpSlType": "", "tpPct": "", "slPct": ""}
    setting = {"tpSlType": "pnl", "tpPct": "0.05", "slPct": "0.02"}
    reply = api.post(AMEND_TPSL_PATH, {"algoId": BOT, "exitSettingParam": setting})
    assert answer(reply) == (200, "0", [{"algoId": BOT}])
    assert api.data(BOT_DETAILS_PATH, **CONTRACT)[0]["exitSettingParam"] == setting


@pytest.mark.parametrize(
    "setting",
    [{"tpSlType": "percent", "tpPct": "0.05"}, {"tpSlType": "price", "tpPct": "5%"}, {"tpPct": "0.05"}, "pnl"],
)
def test_amend_tpsl_refuses_a_malformed_setting(okx, api, setting):
    assert answer(api.post(AMEND_TPSL_PATH, {"algoId": BOT, "exitSettingParam": setting})) == (400, "51000", [])
    assert okx.bot(BOT).exit_setting["tpSlType"] == ""


# -- stop-order-algo ------------------------------------------------------------------------------


def test_stop_is_stopping_then_stopped(okx, api):
    okx.stop_delay = 1.0  # time enough to see it stopping
    okx.open_position(BOT, BTC, "0.2")
    reply = api.post(STOP_BOTS_PATH, [{"algoId": BOT}])
    assert answer(reply) == (200, "0", [{"algoId": BOT, "sCode": "0", "sMsg": "", "algoClOrdId": ""}])
    assert api.data(BOT_DETAILS_PATH, **CONTRACT)[0]["state"] == "stopping"
    assert only(api.post(STOP_BOTS_PATH, [{"algoId": BOT}]).json()["data"])["sCode"] == "51288"
    eventually(lambda: okx.bot(BOT).state == "stopped")
    assert api.data(BOT_DETAILS_PATH, **CONTRACT)[0]["state"] == "stopped"
    assert api.data(POSITIONS_PATH, **CONTRACT) == []  # close_on_stop ⚠
    assert only(api.post(STOP_BOTS_PATH, [{"algoId": BOT}]).json()["data"])["sCode"] == "51291"
    assert answer(api.post(SUB_ORDER_PATH, market())) == (200, "51291", [])


def test_stop_answers_each_bot(okx, api):
    okx.stop_bot("42")
    reply = api.post(STOP_BOTS_PATH, [{"algoId": BOT}, {"algoId": "42"}]).json()
    assert reply["code"] == "2" and [item["sCode"] for item in reply["data"]] == ["0", "51291"]
    assert okx.bot(BOT).state == "stopped" and [path for _, path, _ in okx.executions] == [STOP_BOTS_PATH]


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"algoId": BOT}, (400, "51000")),  # an object, as the SDKs send: the docs say an array
        ([], (400, "51000")),
        ([{"algoId": str(n)} for n in range(11)], (200, "50025")),  # at most 10
        ([{"algoId": 42}], (400, "51000")),
    ],
)
def test_stop_refuses_a_body_that_is_not_an_array_of_up_to_ten(okx, api, body, expected):
    assert answer(api.post(STOP_BOTS_PATH, body)) == (*expected, [])
    assert okx.bot(BOT).state == "running"


def test_the_array_body_is_signed_over_its_exact_bytes(okx, api):
    body = b'[ {"algoId": "%s"} ]' % BOT.encode()
    headers = api.headers("POST", STOP_BOTS_PATH, body)
    tampered = requests.post(okx.base_url + STOP_BOTS_PATH, data=body.replace(b" ", b""), headers=headers, timeout=5)
    assert answer(tampered) == (401, "50113", [])
    assert answer(api.post(STOP_BOTS_PATH, None, raw=body))[1] == "0"


# -- set-instruments ------------------------------------------------------------------------------


def test_set_instruments_changes_what_the_bot_trades(okx, api):
    body = {"algoId": BOT, "instIds": ["ETH-USDT-SWAP"], "includeAll": False}
    assert answer(api.post(SET_INSTRUMENTS_PATH, body)) == (200, "0", [{"algoId": BOT}])
    assert api.data(BOT_DETAILS_PATH, **CONTRACT)[0]["instIds"] == ["ETH-USDT-SWAP"]
    assert answer(api.post(SUB_ORDER_PATH, market(inst_id=BTC)))[1] == "51287"
    assert answer(api.post(SET_INSTRUMENTS_PATH, {"algoId": BOT, "instIds": ["ETH-USDT-SWAP"]}))[1] == "50014"


# -- sub-orders read --------------------------------------------------------------------------------


def test_sub_orders_need_a_state_or_a_signal_ord_id_and_filter_by_time(okx, api):
    assert answer(api.get(SUB_ORDERS_PATH, **CONTRACT)) == (400, "50015", [])
    assert answer(api.get(SUB_ORDERS_PATH, **CONTRACT, state="open")) == (400, "51000", [])
    api.post(SUB_ORDER_PATH, limit(px="1"))
    okx.clock_offset = 5.0
    api.post(SUB_ORDER_PATH, limit(px="2"))
    newest, oldest = api.data(SUB_ORDERS_PATH, **CONTRACT, state="live")
    assert (newest["px"], oldest["px"]) == ("2", "1")
    later = api.data(SUB_ORDERS_PATH, **CONTRACT, state="live", begin=int(oldest["cTime"]) + 1)
    assert [order["px"] for order in later] == ["2"]
    assert [o["px"] for o in api.data(SUB_ORDERS_PATH, **CONTRACT, state="live", limit=1)] == ["2"]


# -- each endpoint its own limit -----------------------------------------------------------------------


@pytest.fixture
def slow_window_okx():
    """A 60 s window, so that 'within one window' never depends on how fast this machine is."""
    stand_in = OkxStandIn(window=60.0, rate_limit=3, read_rate_limit=3).start()
    yield stand_in
    stand_in.stop()


def test_each_action_and_read_has_its_own_limit(slow_window_okx):
    okx, api = slow_window_okx, Signed(slow_window_okx)
    for _ in range(3):
        api.post(AMEND_TPSL_PATH, {"algoId": BOT, "exitSettingParam": {"tpSlType": "pnl"}})
    assert answer(api.post(AMEND_TPSL_PATH, {"algoId": BOT, "exitSettingParam": {"tpSlType": "pnl"}})) == (
        429,
        "50011",
        [],
    )
    for _ in range(3):
        assert answer(api.post(SUB_ORDER_PATH, market(sz="0.01")))[1] == "0"  # not limited by its neighbour
        api.get(POSITIONS_PATH, **CONTRACT)
    assert answer(api.get(POSITIONS_PATH, **CONTRACT))[1] == "50011"
    assert answer(api.get(SUB_ORDERS_PATH, **CONTRACT, state="live"))[1] == "0"
    assert [okx.max_in_any_window(p) for p in (AMEND_TPSL_PATH, SUB_ORDER_PATH, POSITIONS_PATH, MARGIN_PATH)] == [
        3,
        3,
        3,
        0,
    ]
    assert okx.limits.refused == {AMEND_TPSL_PATH: 1, POSITIONS_PATH: 1}
    assert okx.rate_limited == 0 and okx.read_limited == {POSITIONS_PATH: 1}
    api.http.close()


# -- faults on every action ---------------------------------------------------------------------------


def test_each_action_has_its_own_script_and_margin_keeps_the_plain_one(okx, api):
    okx.play(CLOSE_POSITION_PATH, OkxReply("50013", "Systems are busy", http=429))
    okx.play(DropUnexecuted())  # margin-balance
    okx.open_position(BOT, BTC, "0.1")
    assert answer(api.post(SUB_ORDER_PATH, market(sz="0.1")))[1] == "0"  # its script is empty
    assert answer(api.post(CLOSE_POSITION_PATH, {"algoId": BOT, "instId": BTC})) == (429, "50013", [])
    assert only(api.data(POSITIONS_PATH, **CONTRACT))["pos"] == "0.2"  # not executed
    with pytest.raises(requests.ConnectionError):
        api.post(MARGIN_PATH, {"algoId": BOT, "type": "add", "amt": "1"})
    assert okx.executed == [] and [path for _, path, _ in okx.executions] == [SUB_ORDER_PATH]


@pytest.mark.parametrize(
    "behaviour, answered, executed",
    [
        (Drop(), None, 1),
        (DropUnexecuted(), None, 0),
        (Slow(0.1), "0", 1),
        (OkxReply("0"), "0", 1),
        (OkxReply("50004", "API endpoint request timeout", http=400), "50004", 0),
    ],
    ids=["drop", "drop-unexecuted", "slow", "scripted-0", "50004"],
)
def test_meanwhile_plays_on_a_sub_order(okx, api, behaviour, answered, executed):
    orders_when_changed = []

    def world(stand_in, algo_id):
        orders_when_changed.append(len(stand_in.bot(algo_id).orders))
        stand_in.set_price(BTC, "61000")

    okx.play(SUB_ORDER_PATH, Meanwhile(behaviour, world))
    try:
        code = api.post(SUB_ORDER_PATH, market(sz="0.1")).json()["code"]
    except requests.ConnectionError:
        code = None
    assert code == answered and orders_when_changed == [executed] and len(okx.executions) == executed
    assert okx.instruments[BTC].last == Decimal("61000")


def test_faults_play_on_every_action(okx, api):
    okx.faults = lambda: OkxReply("50013", "Systems are busy", http=429)
    assert answer(api.post(SUB_ORDER_PATH, market()))[1] == "50013"
    assert answer(api.post(STOP_BOTS_PATH, [{"algoId": BOT}]))[1] == "50013"
    assert okx.executions == [] and okx.bot(BOT).state == "running"


def test_arrivals_list_each_action_with_when_its_request_line_was_read(okx, api):
    # For the latency benchmark (bench/latency.py): the stand-in runs in its own process there.
    api.post(MARGIN_PATH, {"algoId": BOT, "type": "add", "amt": "7"})
    api.get(POSITIONS_PATH, **CONTRACT)  # reads are not actions: not listed
    arrivals = requests.get(okx.base_url + ARRIVALS_PATH, timeout=5).json()
    assert [(a["path"], json.loads(a["body"])["amt"], a["code"]) for a in arrivals] == [(MARGIN_PATH, "7", "0")]
    assert 0 < arrivals[0]["first_line_at"] <= okx.margin_requests()[0].at  # read before it was checked


def test_play_refuses_a_path_that_is_not_an_action(okx):
    with pytest.raises(ValueError):
        okx.play(POSITIONS_PATH, Drop())


@pytest.mark.parametrize(
    "path, query, expected",
    [
        (POSITIONS_PATH, {"algoId": BOT}, (400, "50014")),  # no algoOrdType=contract
        (POSITIONS_PATH, {"algoOrdType": "contract"}, (400, "50014")),  # no algoId
        (POSITIONS_PATH, {"algoOrdType": "contract", "algoId": "-1"}, (200, "51293")),
        (SUB_ORDERS_PATH, {"algoOrdType": "grid", "algoId": BOT, "state": "live"}, (400, "51000")),
        (SUB_ORDERS_PATH, {**CONTRACT, "state": "live", "limit": "101"}, (400, "51000")),
        (SUB_ORDERS_PATH, {**CONTRACT, "state": "live", "begin": "yesterday"}, (400, "51000")),
    ],
)
def test_the_order_reads_refuse_what_okx_refuses(api, path, query, expected):
    assert answer(api.get(path, **query)) == (*expected, [])
