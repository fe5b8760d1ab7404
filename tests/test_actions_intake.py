"""Every signal-bot action through the intake (issue 23): each action's alert and the exact request
it makes, every refusal naming its field, ALLOWED_ACTIONS and MAX_SIZE, a size in coin units turned
into contracts by OKX's public figures (never rounded), and how repeats are told from new orders.

Most tests journal alerts in dry-run and hand them to a delivery that only returns the record
(``JournaledOnly``); the live tests check what is refused before the journal, and one takes every
action through the real dry-run delivery (what it sends live: tests/test_actions_relay.py)."""

import json
import logging
from decimal import Decimal

import pytest

from tests.conftest import ADMIN_TOKEN, ALL_ACTIONS, DELETE, WEBHOOK_SECRET, make_action_alert, make_alert
from webhook_app.clock import ManualClock
from webhook_app.intake.alerts import InvalidAlert, load_alert
from webhook_app.intake.sizing import InstrumentsRefused, contracts_of, in_contracts
from webhook_app.okx.instruments import ContractSpec, InstrumentReader, InstrumentsUnavailable, UnknownInstrument

BOT = "581628185981813760"
SIGNAL = "/api/v5/tradingBot/signal"
# Each action's request at OKX for make_action_alert(action): path, and the exact bytes signed and sent.
EXPECTED = {
    "add": (f"{SIGNAL}/margin-balance", f'{{"algoId":"{BOT}","type":"add","amt":"10"}}'),
    "reduce": (f"{SIGNAL}/margin-balance", f'{{"algoId":"{BOT}","type":"reduce","amt":"10"}}'),
    "buy": (
        f"{SIGNAL}/sub-order",
        f'{{"instId":"BTC-USDT-SWAP","algoId":"{BOT}","side":"buy","ordType":"market","sz":"2","reduceOnly":false}}',
    ),
    "sell": (
        f"{SIGNAL}/sub-order",
        f'{{"instId":"BTC-USDT-SWAP","algoId":"{BOT}","side":"sell","ordType":"market","sz":"2","reduceOnly":false}}',
    ),
    "close": (f"{SIGNAL}/close-position", f'{{"algoId":"{BOT}","instId":"BTC-USDT-SWAP"}}'),
    "cancel": (f"{SIGNAL}/cancel-sub-order", f'{{"algoId":"{BOT}","instId":"BTC-USDT-SWAP"}}'),
    "tpsl": (
        f"{SIGNAL}/amendTPSL",
        f'{{"algoId":"{BOT}","exitSettingParam":{{"tpSlType":"pnl","tpPct":"0.05","slPct":"0.02"}}}}',
    ),
    "stop": (f"{SIGNAL}/stop-order-algo", f'[{{"algoId":"{BOT}"}}]'),
}
ENDPOINT_NAMES = {
    "add": "margin-balance",
    "reduce": "margin-balance",
    "buy": "sub-order",
    "sell": "sub-order",
    "close": "close-position",
    "cancel": "cancel-sub-order",
    "tpsl": "amendTPSL",
    "stop": "stop-order-algo",
}
AMOUNTS = {"add": "10", "reduce": "10", "buy": "2", "sell": "2"}  # the journal's amount; "" for the others


class JournaledOnly:
    """The intake's delivery for a dry-run alert, until delivery signs every action: the record as journaled."""

    def submit(self, record, wait=0.0, sending=None):
        assert record.state == "dry_run", record
        return record


@pytest.fixture
def dry_app(make_app, okx):
    """A dry-run service that takes every action (nothing is sent; instruments are read from the stand-in)."""

    def build(**settings):
        no_key = {"okx_api_key": "", "okx_api_secret": "", "okx_api_passphrase": ""}
        app = make_app(**{"dry_run": True, **no_key, "allowed_actions": ALL_ACTIONS, **settings})
        app.extensions["webhook"].intake.delivery = JournaledOnly()
        return app

    return build


def journal_of(app):
    return app.extensions["webhook"].journal


# -- each action's request ---------------------------------------------------------------------


@pytest.mark.parametrize("action", EXPECTED)
def test_each_action_makes_its_exact_request(action):
    order = load_alert(make_action_alert(action)).order
    assert (order.path, order.body_bytes().decode()) == EXPECTED[action]
    assert order.endpoint == ENDPOINT_NAMES[action]


@pytest.mark.parametrize("action", EXPECTED)
def test_each_action_is_journaled_with_its_request_endpoint_and_amount(dry_app, database_url, action):
    app = dry_app(database_url=database_url)
    response = app.test_client().post("/webhook", json=make_action_alert(action))
    assert response.status_code == 200, response.json
    path, body = EXPECTED[action]
    assert (response.json["status"], response.json["action"]) == ("dry_run", action)
    assert response.json["request"] == {"method": "POST", "path": path, "body": json.loads(body)}
    record = journal_of(app).get(response.json["id"])
    assert (record.action, record.endpoint, record.request_body) == (action, ENDPOINT_NAMES[action], body)
    assert (record.amount, record.algo_id) == (AMOUNTS.get(action, ""), BOT)
    assert response.json["order"] == record.summary


@pytest.mark.parametrize("action", sorted(ALL_ACTIONS - {"add", "reduce"}))
def test_each_action_goes_through_the_dry_run_delivery(make_app, action):
    no_key = {"okx_api_key": "", "okx_api_secret": "", "okx_api_passphrase": ""}
    app = make_app(dry_run=True, allowed_actions=ALL_ACTIONS, **no_key)
    response = app.test_client().post("/webhook", json=make_action_alert(action))
    assert response.status_code == 200 and response.json["request"]["path"] == EXPECTED[action][0]


SUB_ORDER = json.loads(EXPECTED["buy"][1])
TPSL = json.loads(EXPECTED["tpsl"][1])


@pytest.mark.parametrize(
    "action, changes, sent",
    [
        ("buy", {"action": "BUY"}, {}),
        ("sell", {"action": "Sell"}, {"side": "sell"}),
        ("buy", {"action": DELETE, "type": "buy"}, {}),  # OKX's name, as for add and reduce
        ("buy", {"instId": DELETE, "instrument": "ETH-USDT-SWAP"}, {"instId": "ETH-USDT-SWAP"}),
        ("buy", {"size": DELETE, "sz": "3"}, {"sz": "3"}),
        ("buy", {"size": "2", "sz": 2}, {}),  # two spellings of one value
        ("buy", {"size": 3}, {"sz": "3"}),
        ("buy", {"size": "2.50"}, {"sz": "2.5"}),
        ("buy", {"size": "0.001"}, {"sz": "0.001"}),
        ("buy", {"size": "123456789012.5"}, {"sz": "123456789012.5"}),
        ("buy", {"orderType": "LIMIT", "price": "60000.10"}, {"ordType": "limit", "px": "60000.1"}),
        ("buy", {"ordType": "limit", "px": "59000"}, {"ordType": "limit", "px": "59000"}),
        ("buy", {"orderType": "market"}, {}),
        ("buy", {"reduceOnly": True}, {"reduceOnly": True}),
        ("sell", {"reduceOnly": "true"}, {"side": "sell", "reduceOnly": True}),
        ("buy", {"reduceOnly": "FALSE"}, {}),
        ("buy", {"sizeIn": "Contracts"}, {}),
    ],
)
def test_sub_order_fields_map_to_okxs_body(action, changes, sent):
    body = load_alert(make_action_alert(action, **changes)).order.body
    assert body == {**SUB_ORDER, **sent}
    assert list(body) == [k for k in ("instId", "algoId", "side", "ordType", "sz", "px", "reduceOnly") if k in body]


@pytest.mark.parametrize(
    "changes, exit_setting",
    [
        ({"slPct": DELETE}, {"tpSlType": "pnl", "tpPct": "0.05"}),
        ({"tpPct": DELETE}, {"tpSlType": "pnl", "slPct": "0.02"}),
        ({"tpSlType": "PRICE", "tpPct": "1.5"}, {"tpSlType": "price", "tpPct": "1.5", "slPct": "0.02"}),
        ({"tpPct": "0.0500", "slPct": "0.999"}, {"tpSlType": "pnl", "tpPct": "0.05", "slPct": "0.999"}),
    ],
)
def test_tpsl_fields_map_to_okxs_exit_setting(changes, exit_setting):
    assert load_alert(make_action_alert("tpsl", **changes)).order.body == {**TPSL, "exitSettingParam": exit_setting}


@pytest.mark.parametrize("action", ["close", "cancel"])
def test_close_and_cancel_take_the_instrument_by_either_name(action):
    order = load_alert(make_action_alert(action, instId=DELETE, instrument="ETH-USDT-SWAP")).order
    assert order.body == {"algoId": BOT, "instId": "ETH-USDT-SWAP"}


def test_an_add_keeps_ignoring_every_other_field_as_it_always_did():
    alert = make_alert(size="{{strategy.order.contracts}}", price="{{close}}", instId="x", tpPct="5")
    assert load_alert(alert).order.body == {"algoId": BOT, "type": "add", "amt": "10"}


# -- refused: 422 naming the field, nothing journaled or sent -----------------------------------

BAD = [
    # buy and sell
    ("buy", "instId", {"instId": DELETE}),
    ("buy", "instId", {"instId": ""}),
    ("buy", "instId", {"instId": "btc-usdt-swap"}),
    ("buy", "instId", {"instId": "BTCUSDT.P"}),
    ("buy", "instId", {"instId": "BTCUSDT"}),
    ("buy", "instId", {"instId": "BTC_USDT_SWAP"}),
    ("buy", "instId", {"instId": "BTC--USDT"}),
    ("buy", "instId", {"instId": "-BTC-USDT"}),
    ("buy", "instId", {"instId": "BTC-USDT-SWAP "}),
    ("buy", "instId", {"instId": "A" * 60 + "-SWAP"}),
    ("buy", "instId", {"instId": 5}),
    ("buy", "instId", {"instId": "{{ticker}}"}),
    ("buy", "instId", {"instId": "BTC-USDT-SWAP", "instrument": "ETH-USDT-SWAP"}),
    ("sell", "size", {"size": DELETE}),
    ("buy", "size", {"size": "0"}),
    ("buy", "size", {"size": "-1"}),
    ("buy", "size", {"size": "1,5"}),
    ("buy", "size", {"size": "1e2"}),
    ("buy", "size", {"size": " 2"}),
    ("buy", "size", {"size": "2."}),
    ("buy", "size", {"size": 0}),
    ("buy", "size", {"size": True}),
    ("buy", "size", {"size": None}),
    ("buy", "size", {"size": [2]}),
    ("buy", "size", {"size": "{{strategy.order.contracts}}"}),
    ("buy", "size", {"size": "12345678901234567"}),
    ("buy", "size", {"size": "0.12345678901234567"}),
    ("buy", "size", {"size": "1000000000000"}),
    ("buy", "size", {"size": "2", "sz": "3"}),
    ("buy", "orderType", {"orderType": "stop"}),
    ("buy", "orderType", {"orderType": "post_only"}),
    ("buy", "orderType", {"orderType": ""}),
    ("buy", "orderType", {"orderType": 1}),
    ("buy", "orderType", {"orderType": "limit", "ordType": "market", "price": "1"}),
    ("buy", "price", {"price": "60000"}),  # a market order takes no price
    ("buy", "price", {"orderType": "market", "px": "60000"}),
    ("buy", "price", {"orderType": "limit"}),  # a limit order needs one
    ("buy", "price", {"orderType": "limit", "price": "0"}),
    ("buy", "price", {"orderType": "limit", "price": "-5"}),
    ("buy", "price", {"orderType": "limit", "price": "{{close}}"}),
    ("buy", "price", {"orderType": "limit", "price": "1e4"}),
    ("buy", "reduceOnly", {"reduceOnly": "yes"}),
    ("buy", "reduceOnly", {"reduceOnly": 1}),
    ("buy", "reduceOnly", {"reduceOnly": None}),
    ("buy", "sizeIn", {"sizeIn": "coins"}),
    ("buy", "sizeIn", {"sizeIn": "usdt"}),
    ("buy", "amount", {"amount": "10"}),  # another action's field
    ("buy", "tpPct", {"tpPct": "0.05"}),
    ("sell", "investmentType", {"investmentType": "margin"}),
    # close and cancel
    ("close", "instId", {"instId": DELETE}),
    ("close", "instId", {"instId": "BTCUSDT.P"}),
    ("close", "size", {"size": "1"}),  # close-position closes it all: a size would read as a partial close
    ("close", "price", {"price": "60000"}),
    ("close", "amount", {"amount": "10"}),
    ("cancel", "instId", {"instId": DELETE}),
    ("cancel", "instId", {"instId": "eth-usdt-swap"}),
    ("cancel", "orderType", {"orderType": "limit"}),
    # tpsl
    ("tpsl", "tpSlType", {"tpSlType": DELETE}),
    ("tpsl", "tpSlType", {"tpSlType": "percent"}),
    ("tpsl", "tpSlType", {"tpSlType": 1}),
    ("tpsl", "tpPct", {"tpPct": DELETE, "slPct": DELETE}),
    ("tpsl", "tpPct", {"tpPct": "5%"}),
    ("tpsl", "tpPct", {"tpPct": "0"}),
    ("tpsl", "tpPct", {"tpPct": "-0.05"}),
    ("tpsl", "tpPct", {"tpPct": ""}),
    ("tpsl", "slPct", {"slPct": "1"}),  # a fraction: 100 % never triggers
    ("tpsl", "slPct", {"slPct": "5"}),  # "5" meant 5 %: 0.05
    ("tpsl", "slPct", {"slPct": "0"}),
    ("tpsl", "instId", {"instId": "BTC-USDT-SWAP"}),
    ("tpsl", "amount", {"amount": "10"}),
    # stop
    ("stop", "instId", {"instId": "BTC-USDT-SWAP"}),
    ("stop", "size", {"size": "1"}),
    ("stop", "amount", {"amount": "10"}),
    ("stop", "tpSlType", {"tpSlType": "pnl"}),
    # what every action has
    ("buy", "algoId", {"algoId": DELETE}),
    ("close", "algoId", {"algoId": "abc"}),
    ("stop", "action", {"action": "Stop it"}),
    ("tpsl", "id", {"id": "{{strategy.order.id}}"}),
]


@pytest.mark.parametrize("action, field, changes", BAD, ids=[f"{a}-{f}-{i}" for i, (a, f, _) in enumerate(BAD)])
def test_an_invalid_field_of_any_action_is_422_naming_it_and_nothing_is_journaled_or_sent(
    make_app, okx, action, field, changes
):
    app = make_app(allowed_actions=ALL_ACTIONS)
    response = app.test_client().post("/webhook", json=make_action_alert(action, **changes))
    assert response.status_code == 422, response.json
    assert response.json["status"] == "invalid"
    assert field in [e["field"] for e in response.json["errors"]], response.json
    assert all(e["message"] for e in response.json["errors"])
    assert WEBHOOK_SECRET not in response.get_data(as_text=True)
    assert journal_of(app).recent(10) == [] and okx.received == []


@pytest.mark.parametrize(
    "changes, says",
    [
        ({"price": "60000"}, 'is only for "orderType": "limit"'),
        ({"orderType": "limit"}, 'is required with "orderType": "limit"'),
        ({"instId": "btc-usdt-swap"}, "upper case"),
        ({"instId": "BTCUSDT.P"}, "not TradingView's ticker"),
        ({"amount": "10"}, 'is not a field of action "buy" (only add, reduce take it)'),
    ],
)
def test_a_refusal_says_what_to_send_instead(changes, says):
    with pytest.raises(InvalidAlert) as refused:
        load_alert(make_action_alert("buy", **changes))
    assert says in str(refused.value)


def test_every_bad_field_is_named_at_once_the_common_ones_and_the_actions_own():
    with pytest.raises(InvalidAlert) as refused:
        load_alert(make_action_alert("buy", algoId="x", size="-1", orderType="stop", amount="5"))
    assert [e["field"] for e in refused.value.errors] == ["algoId", "size", "orderType", "amount"]


# -- ALLOWED_ACTIONS and MAX_SIZE ----------------------------------------------------------------


@pytest.mark.parametrize("action", sorted(ALL_ACTIONS - {"add", "reduce"}))
def test_an_action_not_allowed_is_403_naming_the_setting_and_nothing_is_journaled_or_read(make_app, okx, action):
    app = make_app()  # ALLOWED_ACTIONS: add,reduce by default
    alert = make_action_alert(action, **({"sizeIn": "base", "size": "0.05"} if action in ("buy", "sell") else {}))
    response = app.test_client().post("/webhook", json=alert)
    assert response.status_code == 403, response.json
    assert response.json["status"] == "forbidden_action"
    (error,) = response.json["errors"]
    assert error["field"] == "action" and "ALLOWED_ACTIONS" in error["message"] and "add, reduce" in error["message"]
    assert journal_of(app).recent(10) == [] and okx.received == []  # not even OKX's instruments were read
    svc = app.extensions["webhook"]
    svc.refusals.flush()
    (refusal,) = svc.journal.refusals(10)
    assert (refusal.status, refusal.kind) == (403, "forbidden_action")


def test_margin_is_refused_too_when_only_other_actions_are_allowed(make_app, okx):
    app = make_app(allowed_actions=frozenset({"buy", "sell"}))
    response = app.test_client().post("/webhook", json=make_alert(action="REDUCE"))
    assert response.status_code == 403 and response.json["status"] == "forbidden_action"
    assert '"reduce" is not in ALLOWED_ACTIONS (allowed: buy, sell)' in response.json["errors"][0]["message"]
    assert okx.received == []


def test_an_invalid_alert_of_an_action_not_allowed_is_422_its_fields_first(make_app, okx):
    response = make_app().test_client().post("/webhook", json=make_action_alert("buy", size="-1"))
    assert response.status_code == 422 and response.json["errors"][0]["field"] == "size"


@pytest.mark.parametrize(
    "changes, status",
    [
        ({"size": "4"}, 200),
        ({"size": "4.01"}, 422),
        ({"size": "0.04", "sizeIn": "base"}, 200),  # 4 contracts of 0.01 BTC
        ({"size": "0.0401", "sizeIn": "base"}, 422),
    ],
)
def test_max_size_caps_a_sub_orders_contracts(dry_app, okx, changes, status):
    app = dry_app(max_size=Decimal("4"))
    response = app.test_client().post("/webhook", json=make_action_alert("sell", **changes))
    assert response.status_code == status, response.json
    if status == 422:
        (error,) = response.json["errors"]
        assert error["field"] == "size" and "over MAX_SIZE (4 contracts)" in error["message"], error
        assert journal_of(app).recent(10) == []


def test_max_amount_and_the_daily_cap_apply_to_add_and_reduce_only(dry_app):
    app = dry_app(max_amount=Decimal("1"), max_amount_per_day=Decimal("1"))
    client = app.test_client()
    assert client.post("/webhook", json=make_action_alert("buy", size="5")).status_code == 200
    assert client.post("/webhook", json=make_action_alert("buy", size="6")).status_code == 200
    assert client.post("/webhook", json=make_alert(amount="2")).status_code == 422  # MAX_AMOUNT
    assert client.post("/webhook", json=make_alert(amount="1")).status_code == 200
    capped = client.post("/webhook", json=make_alert(amount="0.5", action="add", id="more"))
    assert capped.status_code == 422 and capped.json["status"] == "over_daily_cap"


# -- sizes in coin units ----------------------------------------------------------------------

BTC = ContractSpec("BTC-USDT-SWAP", Decimal("0.01"), Decimal("1"), "BTC", Decimal("1"), Decimal("1"))
BTC_FINE = ContractSpec("BTC-USDT-SWAP", Decimal("0.01"), Decimal("1"), "BTC", Decimal("0.01"), Decimal("0.01"))
ETH = ContractSpec("ETH-USDT-SWAP", Decimal("0.1"), Decimal("1"), "ETH", Decimal("0.01"), Decimal("0.01"))
PEPE = ContractSpec("PEPE-USDT-SWAP", Decimal("10000000"), Decimal("1"), "PEPE", Decimal("1"), Decimal("1"))
MULT = ContractSpec("XYZ-USDT-SWAP", Decimal("0.5"), Decimal("10"), "XYZ", Decimal("0.1"), Decimal("1"))
INVERSE = ContractSpec("BTC-USD-SWAP", Decimal("100"), Decimal("1"), "USD", Decimal("1"), Decimal("1"))


@pytest.mark.parametrize(
    "spec, base, contracts",
    [
        (BTC, "0.05", "5"),
        (BTC, "1", "100"),
        (BTC, "0.01", "1"),
        (BTC_FINE, "0.0001", "0.01"),
        (BTC_FINE, "0.1234", "12.34"),
        (ETH, "1.234", "12.34"),
        (ETH, "0.001", "0.01"),
        (PEPE, "250000000", "25"),
        (MULT, "5", "1"),  # a contract is 0.5 x 10 = 5 XYZ
        (MULT, "5.5", "1.1"),
    ],
)
def test_a_size_in_coin_units_is_turned_into_contracts_exactly(spec, base, contracts):
    assert contracts_of(Decimal(base), spec) == Decimal(contracts)


@pytest.mark.parametrize(
    "spec, base, nearest",
    [
        (BTC, "0.015", "0.01 BTC (1 contracts) and 0.02 BTC (2 contracts)"),
        (BTC, "0.05000001", "0.05 BTC (5 contracts) and 0.06 BTC (6 contracts)"),
        (BTC, "0.005", "are 0.01 BTC (1 contracts); "),  # below the smallest order: the smallest only
        (BTC_FINE, "0.00015", "0.0001 BTC (0.01 contracts) and 0.0002 BTC (0.02 contracts)"),
        (ETH, "0.0011", "0.001 ETH (0.01 contracts) and 0.002 ETH (0.02 contracts)"),
        (PEPE, "12345", "are 10000000 PEPE (1 contracts); "),
        (MULT, "5.25", "5 XYZ (1 contracts) and 5.5 XYZ (1.1 contracts)"),
        (MULT, "4.5", "are 5 XYZ (1 contracts); "),  # 0.9 contracts: whole lots, below the minimum of 1
    ],
)
def test_a_size_that_is_not_whole_lots_is_refused_naming_the_nearest_valid_sizes(spec, base, nearest):
    with pytest.raises(InvalidAlert) as refused:
        contracts_of(Decimal(base), spec)
    (error,) = refused.value.errors
    assert error["field"] == "size" and nearest in error["message"], error["message"]
    assert "never rounded" in error["message"]


def test_a_size_in_coin_units_of_an_inverse_contract_is_refused():
    with pytest.raises(InvalidAlert) as refused:
        contracts_of(Decimal("1"), INVERSE)
    (error,) = refused.value.errors
    assert error["field"] == "sizeIn" and "100 USD" in error["message"]


class FakeInstruments:
    """The intake's contract for the instruments, as a test scripts it: figures, or an error, per instId."""

    def __init__(self, **answers):
        self.answers = answers
        self.asked = []

    def spec(self, inst_id):
        self.asked.append(inst_id)
        answer = self.answers.get(inst_id.split("-")[0], UnknownInstrument(inst_id))
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_an_alert_in_contracts_never_asks_for_the_instruments():
    instruments = FakeInstruments()
    alert = load_alert(make_action_alert("buy"))
    assert in_contracts(alert, instruments) is alert and instruments.asked == []


def test_an_alert_in_coin_units_gets_its_contracts_and_keeps_the_rest_of_its_order():
    alert = load_alert(make_action_alert("sell", size="0.0125", sizeIn="base", reduceOnly=True))
    sized = in_contracts(alert, FakeInstruments(BTC=BTC_FINE))
    assert sized.order.body == {**SUB_ORDER, "side": "sell", "sz": "1.25", "reduceOnly": True}
    assert (sized.size_in, sized.size, sized.dedup_key) == ("contracts", Decimal("1.25"), alert.dedup_key)


@pytest.mark.parametrize(
    "answer, error, field",
    [
        (InstrumentsUnavailable("could not reach https://www.okx.com: ConnectTimeout"), InstrumentsRefused, "instId"),
        (None, InvalidAlert, "instId"),  # OKX lists no such swap
    ],
)
def test_instruments_that_cannot_say_refuse_the_alert_naming_the_instrument(answer, error, field):
    instruments = FakeInstruments(BTC=answer) if answer is not None else FakeInstruments()
    with pytest.raises(error) as refused:
        in_contracts(load_alert(make_action_alert("buy", size="0.05", sizeIn="base")), instruments)
    assert refused.value.errors[0]["field"] == field and "BTC-USDT-SWAP" in str(refused.value)


def test_a_size_in_coin_units_is_sent_in_contracts_by_the_stand_ins_figures(dry_app, okx):
    app = dry_app()
    response = app.test_client().post("/webhook", json=make_action_alert("buy", size="0.05", sizeIn="base"))
    assert response.status_code == 200, response.json
    assert response.json["request"]["body"]["sz"] == "5"  # the stand-in's BTC: 0.01 BTC a contract
    assert journal_of(app).get(response.json["id"]).amount == "5"
    (read,) = okx.received
    assert read.path == "/api/v5/public/instruments?instType=SWAP&instId=BTC-USDT-SWAP"
    assert "OK-ACCESS-KEY" not in read.headers  # a public read: no key is sent


def test_a_size_in_coin_units_not_whole_lots_is_422_naming_the_nearest_sizes(dry_app, okx):
    app = dry_app()
    response = app.test_client().post("/webhook", json=make_action_alert("buy", size="0.00015", sizeIn="base"))
    assert response.status_code == 422, response.json
    (error,) = response.json["errors"]
    assert error["field"] == "size"
    assert "0.0001 BTC (0.01 contracts) and 0.0002 BTC (0.02 contracts)" in error["message"]
    assert journal_of(app).recent(10) == []


def test_an_instrument_okx_does_not_list_is_422(dry_app, okx):
    app = dry_app()
    alert = make_action_alert("buy", instId="DOGE-USDT-SWAP", size="100", sizeIn="base")
    response = app.test_client().post("/webhook", json=alert)
    assert response.status_code == 422 and response.json["errors"][0]["field"] == "instId"
    assert "lists no perpetual swap DOGE-USDT-SWAP" in response.json["errors"][0]["message"]


def test_instruments_that_cannot_be_read_refuse_the_alert_503_journal_nothing_and_record_it(make_app, okx, caplog):
    caplog.set_level(logging.INFO, logger="webhook_app")
    app = make_app(allowed_actions=ALL_ACTIONS, okx_base_url="http://127.0.0.1:1")  # nothing listens there
    response = app.test_client().post("/webhook", json=make_action_alert("buy", size="0.05", sizeIn="base"))
    assert response.status_code == 503, response.json
    assert response.json["status"] == "instruments_unavailable"
    (error,) = response.json["errors"]
    assert error["field"] == "instId" and "BTC-USDT-SWAP" in error["message"]
    assert "could not reach http://127.0.0.1:1" in error["message"]
    assert journal_of(app).recent(10) == []
    svc = app.extensions["webhook"]
    svc.refusals.flush()
    (refusal,) = svc.journal.refusals(10)
    assert (refusal.status, refusal.kind, refusal.errors[0]["field"]) == (503, "instruments_unavailable", "instId")
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alert http=")]
    assert "http=503" in line and "status=instruments_unavailable" in line and "BTC-USDT-SWAP" in line


def test_the_instruments_are_kept_an_hour_per_instrument_then_read_again(okx):
    clock = ManualClock()
    reader = InstrumentReader(okx.base_url, clock=clock)
    assert reader.spec("BTC-USDT-SWAP") == BTC_FINE
    assert reader.spec("ETH-USDT-SWAP").ct_val == Decimal("0.1")
    clock.advance(3599)
    reader.spec("BTC-USDT-SWAP")
    assert len(okx.received) == 2  # each read once
    clock.advance(1)
    reader.spec("BTC-USDT-SWAP")
    assert [r.path.rsplit("=", 1)[1] for r in okx.received] == ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "BTC-USDT-SWAP"]


def test_an_instrument_okx_does_not_list_is_unknown_and_not_kept(okx):
    reader = InstrumentReader(okx.base_url)
    for _ in range(2):
        with pytest.raises(UnknownInstrument):
            reader.spec("DOGE-USDT-SWAP")
    assert len(okx.received) == 2


def test_an_unreachable_site_leaves_the_instruments_unavailable():
    with pytest.raises(InstrumentsUnavailable, match="could not reach http://127.0.0.1:1: ConnectionError"):
        InstrumentReader("http://127.0.0.1:1").spec("BTC-USDT-SWAP")


# -- repeats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first, second, status",
    [
        (make_action_alert("buy"), make_action_alert("buy"), 409),  # TradingView's resend: the same fields
        (make_action_alert("buy"), make_action_alert("buy", size="3"), 200),
        (make_action_alert("buy"), make_action_alert("sell"), 200),
        (make_action_alert("close"), make_action_alert("cancel"), 200),
        (make_action_alert("buy", id="L-1"), make_action_alert("buy", id="L-1", ticker="X"), 409),
        (make_action_alert("buy", id="L-1"), make_action_alert("buy", id="L-1", size="3"), 200),
        (make_action_alert("buy", id="L-1"), make_action_alert("sell", id="L-1"), 200),
        (make_action_alert("buy", id="L-1"), make_alert(id="L-1"), 200),  # one bar's entry and its margin
        (make_action_alert("tpsl", id="T"), make_action_alert("tpsl", id="T", slPct="0.03"), 200),
        (make_action_alert("stop", id="S"), make_action_alert("stop", id="S"), 409),
        (
            make_alert(id="M"),
            make_alert(id="M", action="reduce", amount="3"),
            409,
        ),  # add/reduce: the id alone, as before
    ],
)
def test_a_repeat_is_a_duplicate_and_a_different_order_never_is(dry_app, first, second, status):
    client = dry_app().test_client()
    assert client.post("/webhook", json=first).status_code == 200
    assert client.post("/webhook", json=second).status_code == status


def failed_alert(app, action, body, amount=""):
    """An alert of ``action`` journaled as failed (OKX certainly did not act): one an operator may resend."""
    journal = app.extensions["webhook"].journal
    record, _ = journal.add(
        dedup_key=f"fp:{action}",
        dedup_since=0,
        algo_id=BOT,
        action=action,
        amount=amount,
        request_body=body,
        expires_at=journal.now() + 60,
        state="failed",
        endpoint=ENDPOINT_NAMES[action],
    )
    return record


def test_an_operators_resend_of_a_sub_order_sends_the_same_order_again(dry_app):
    app = dry_app()
    body = EXPECTED["sell"][1].replace('"reduceOnly":false', '"reduceOnly":true')
    original = failed_alert(app, "sell", body, amount="2")
    resent = app.extensions["webhook"].intake.resend(original.id, by="operator")
    assert (resent.action, resent.endpoint, resent.amount, resent.request_body) == ("sell", "sub-order", "2", body)
    assert (resent.resent_from, resent.dedup_key) == (original.id, "fp:sell")


@pytest.mark.parametrize("action", ["tpsl", "stop", "close"])
def test_an_operators_resend_of_any_action_sends_its_request_again(dry_app, action):
    app = dry_app()
    original = failed_alert(app, action, EXPECTED[action][1])
    resent = app.extensions["webhook"].intake.resend(original.id, by="operator")
    assert (resent.action, resent.request_body, resent.endpoint) == (
        action,
        EXPECTED[action][1],
        ENDPOINT_NAMES[action],
    )


def test_an_action_no_longer_allowed_is_not_resent(dry_app):
    app = dry_app(allowed_actions=frozenset({"add", "reduce"}))
    original = failed_alert(app, "stop", EXPECTED["stop"][1])
    response = app.test_client().post(
        f"/alerts/{original.id}/resend", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 403 and response.json["status"] == "forbidden_action", response.json
