"""Each action's answers at OKX, classified in the one outcome table: its own codes first, then the
common ones; a sub-code (51008_1000) by its code; an item's own sCode (cancel-sub-order's,
stop-order-algo's) deciding, even under a "0"; and the codes saying the target was already reached."""

import pytest

from tests.bot_orders import BOT, bot_order, client_of
from tests.okx_stand_in import CANCEL_SUB_ORDER_PATH, STOP_BOTS_PATH, OkxReply, Queued
from webhook_app.okx.actions import ACTIONS
from webhook_app.okx.actions.registry import MODULES, outcomes_for
from webhook_app.okx.errors import (
    OkxError,
    OkxNotExecuted,
    OkxOutcomeUnknown,
    OkxRefused,
    OkxTargetReached,
    outcome_of,
)

ALREADY = "already"  # send answers an OkxAck whose ``already`` says why nothing was needed


def item(code: str, **more) -> dict:
    """One item of a bulk answer's data."""
    return {"algoId": BOT, "sCode": code, "sMsg": f"item {code}", "algoClOrdId": "", **more}


@pytest.fixture
def client(okx):
    okx_client = client_of(okx)
    yield okx_client
    okx_client.close()


def test_every_action_has_its_module_with_request_outcomes_and_evidence():
    assert tuple(MODULES) == ACTIONS
    for module in set(MODULES.values()):
        assert isinstance(module.OUTCOMES, dict)
        assert callable(module.send) and callable(module.settle) and callable(module.settle_after_ms)


TABLE = [
    # (action, OKX's code, HTTP status, what it means)
    ("add", "51008", 200, OkxRefused),
    ("add", "51008_1000", 200, OkxRefused),
    ("add", "51288", 200, OkxRefused),  # the common table: bot stopping
    ("buy", "51008_1001", 200, OkxRefused),  # insufficient margin, with a sub-code
    ("buy", "50036", 200, OkxNotExecuted),  # expTime already past at arrival
    ("buy", "50037", 200, OkxNotExecuted),  # expired before OKX acted on it
    ("sell", "51121", 200, OkxRefused),
    ("sell", "51169", 200, OkxRefused),  # reduce-only, no position: a refusal for a sub-order...
    ("close", "51169", 200, OkxTargetReached),  # ...but nothing left to close for close-position
    ("close", "51058", 200, OkxTargetReached),
    ("close", "51023", 200, OkxTargetReached),
    ("close", "51032", 200, OkxNotExecuted),  # a market close already under way
    ("close", "50013_2", 200, OkxNotExecuted),  # the common table, sub-code
    ("cancel", "51400", 200, OkxTargetReached),
    ("cancel", "51410", 200, OkxTargetReached),
    ("cancel", "51603", 200, OkxTargetReached),
    ("tpsl", "55102", 200, OkxRefused),
    ("tpsl", "51290", 200, OkxNotExecuted),
    ("stop", "51288", 200, OkxTargetReached),
    ("stop", "51291", 200, OkxTargetReached),
    ("stop", "51293", 200, OkxRefused),  # no such bot at all: a wrong algoId, not a stopped bot
    ("stop", "50004", 400, OkxOutcomeUnknown),
    ("stop", "2", 200, OkxOutcomeUnknown),  # partially succeeded, no item saying which part
    ("stop", "1", 200, OkxRefused),
    ("tpsl", "59999", 503, OkxOutcomeUnknown),  # unlisted with a 5xx
    ("tpsl", "59999", 200, OkxRefused),
]


@pytest.mark.parametrize("action, code, status, expected", TABLE, ids=[f"{a}-{c}-{s}" for a, c, s, _ in TABLE])
def test_the_outcome_table(action, code, status, expected):
    assert outcome_of(code, status, outcomes_for(action))[0] is expected


# -- through the stand-in: what send does with each answer ------------------------------------------

ANSWERS = [
    # (action, OKX's scripted answer, what send does: an error type, or ALREADY)
    ("buy", OkxReply("51008_1000", "Insufficient USDT margin"), OkxRefused),
    ("buy", OkxReply("50037", "Order expired."), OkxNotExecuted),
    ("close", OkxReply("51058", "No available position for this algo order"), ALREADY),
    ("close", OkxReply("51032", "Closing all the positions at the market price."), OkxNotExecuted),
    ("close", OkxReply("50004", "API endpoint request timeout", http=400), OkxOutcomeUnknown),
    ("tpsl", OkxReply("55103", "Stop loss % should be less than the current bot's PnL%"), OkxRefused),
    ("tpsl", OkxReply("50011", "Too Many Requests", http=429), OkxNotExecuted),
    ("stop", OkxReply("1", "Operation failed.", data=[item("51288")]), ALREADY),
    ("stop", OkxReply("1", "Operation failed.", data=[item("51291")]), ALREADY),
    ("stop", OkxReply("1", "Operation failed.", data=[item("51293")]), OkxRefused),
    ("stop", OkxReply("1", "Operation failed.", data=[item("50004")]), OkxOutcomeUnknown),
    ("stop", OkxReply("1", "Operation failed.", data=[item("50013_1000")]), OkxNotExecuted),
    ("stop", OkxReply("2", "Bulk operation partially succeeded.", data=[item("0")]), OkxOutcomeUnknown),
    ("stop", OkxReply("1", "Operation failed."), OkxRefused),
    # "0" to the call, an item failed: not a success (the stand-in acted anyway; the reading is under test)
    ("stop", OkxReply("0", data=[item("51293")]), OkxRefused),
    ("stop", OkxReply("0", data=[item("50013")]), OkxNotExecuted),
    ("stop", OkxReply("0", data=[item("0")]), None),
    ("cancel", OkxReply("1", "Operation failed.", data=[item("51400", signalOrdId="O1")]), ALREADY),
    ("cancel", OkxReply("0", data=[item("51410", signalOrdId="O1")]), ALREADY),
    ("cancel", OkxReply("0", data=[item("51000", signalOrdId="O1")]), OkxRefused),
    ("cancel", OkxReply("1", "Operation failed.", data=[item("50011", signalOrdId="O1")]), OkxNotExecuted),
    ("cancel", OkxReply("1", "Operation failed.", data=[item("51149", signalOrdId="O1")]), OkxOutcomeUnknown),
]


def decisive(reply: OkxReply) -> str:
    """The code an answer rests on: its failed item's, else its own."""
    failed = [entry["sCode"] for entry in reply.data if entry["sCode"] != "0"]
    return failed[0] if failed else reply.code


@pytest.mark.parametrize(
    "action, reply, expected",
    ANSWERS,
    ids=[f"{a}-{r.code}" + "".join(f"-item-{entry['sCode']}" for entry in r.data) for a, r, _ in ANSWERS],
)
def test_what_send_makes_of_each_answer(okx, client, action, reply, expected):
    if action == "cancel":  # one pending sub-order to cancel
        client.send(bot_order("buy", ordType="limit", px="59000", sz="0.1"), exp_time_ms=okx.now_ms() + 30_000)
    okx.play(bot_order(action).path, reply)
    if expected is None:
        assert client.send(bot_order(action), exp_time_ms=okx.now_ms() + 30_000).already == ""
    elif expected == ALREADY:
        ack = client.send(bot_order(action), exp_time_ms=okx.now_ms() + 30_000)
        assert ack.algo_id == BOT and decisive(reply) in ack.already and ack.cancelled == ()
    else:
        with pytest.raises(OkxError) as raised:
            client.send(bot_order(action), exp_time_ms=okx.now_ms() + 30_000)
        assert type(raised.value) is expected
        assert raised.value.code == decisive(reply)  # an item's own code when one failed


def test_a_second_stop_finds_the_target_reached(okx, client):
    okx.stop_delay = 30.0  # stopping for a while
    assert client.send(bot_order("stop")).already == ""
    assert client.send(bot_order("stop")).already.startswith("51288")  # as OKX itself answers, unscripted
    okx.stop_bot(BOT)
    assert client.send(bot_order("stop")).already.startswith("51291")
    assert [r.code for r in okx.requests_to(STOP_BOTS_PATH)] == ["0", "1", "1"]


def test_a_close_without_a_position_finds_the_target_reached(okx, client):
    assert client.send(bot_order("close")).already.startswith("51058")
    okx.close_without_position = "0"  # OKX's docs are silent: it may also say "0" and do nothing
    assert client.send(bot_order("close")).already == ""
    assert okx.executions == []


def test_a_sub_order_okx_reached_after_its_exp_time_is_not_executed(okx, client):
    okx.play(bot_order("buy").path, Queued(1.5))
    with pytest.raises(OkxNotExecuted) as raised:
        client.send(bot_order("buy"), exp_time_ms=okx.now_ms() + 1000)
    assert raised.value.code == "50037" and okx.executions == []


def test_an_order_filled_between_the_read_and_its_cancel_is_no_longer_pending(okx, client):
    client.send(bot_order("buy", ordType="limit", px="59000", sz="0.1"), exp_time_ms=okx.now_ms() + 30_000)
    signal_ord_id = okx.bot(BOT).orders[0].cl_ord_id

    def market_fills_it(path):
        if path == CANCEL_SUB_ORDER_PATH:
            okx.fill_order(BOT, signal_ord_id)

    ack = client.send(bot_order("cancel"), pace=market_fills_it)
    assert ack.cancelled == () and ack.already == f"no longer pending: {signal_ord_id} (51400)"
    assert [r.code for r in okx.requests_to(CANCEL_SUB_ORDER_PATH)] == ["1"]  # OKX's own answer, unscripted
