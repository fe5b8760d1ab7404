"""After an ambiguous answer, what OKX's records say (``settle``), action by action, read from the
stand-in over 127.0.0.1: executed, not executed (for the actions that state a target: not reached,
so sending again is safe), can't tell only when the reads fail or allow two readings."""

import json
from decimal import Decimal

import pytest

from tests.bot_orders import BOT, BTC, ETH, bot_order, client_of
from tests.conftest import eventually
from tests.okx_stand_in import SUB_ORDERS_PATH, Drop, DropUnexecuted, Meanwhile
from webhook_app.okx.actions import BotOrder
from webhook_app.okx.actions.common import SentWindow
from webhook_app.okx.actions.registry import settle, settle_after_ms
from webhook_app.okx.errors import OkxOutcomeUnknown


@pytest.fixture
def client(okx):
    okx_client = client_of(okx)
    yield okx_client
    okx_client.close()


def now_ms(client) -> int:
    return int(client.okx_now() * 1000)


def ambiguous(client, okx, order: BotOrder, behaviour, exp_seconds: float = 2.0) -> SentWindow:
    """Send ``order`` while OKX plays ``behaviour`` (one that leaves the answer unknown); the window."""
    okx.play(order.path, behaviour)
    before = client.bot_snapshot(BOT) if order.action in ("add", "reduce") else None
    started = now_ms(client)
    exp_time_ms = started + int(exp_seconds * 1000) if order.action in ("buy", "sell") else None
    with pytest.raises(OkxOutcomeUnknown):
        client.send(order, exp_time_ms=exp_time_ms)
    return SentWindow(started, now_ms(client), exp_time_ms, before)


def past_exp_time(client, okx, order: BotOrder, window: SentWindow) -> None:
    """OKX's clock moves on past expTime (and the grace): OKX can no longer act on the order."""
    okx.clock_offset += (settle_after_ms(order, window) - now_ms(client)) / 1000 + 0.1
    client.sync_clock()


def judged(client, order: BotOrder, window: SentWindow):
    found = settle(client, order, window)
    evidence = json.loads(found.evidence)
    assert (evidence["proposal"], evidence["reason"]) == (found.verdict, found.reason)
    assert ". " not in found.reason  # one sentence
    return found, evidence


def limit_order(client, okx, px="59000", inst_id=BTC) -> str:
    client.send(bot_order("buy", ordType="limit", px=px, sz="0.1", instId=inst_id), exp_time_ms=okx.now_ms() + 30_000)
    return okx.bot(BOT).orders[-1].cl_ord_id


# -- buy / sell -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour, verdict, words",
    [
        (Drop(), "executed", "OKX lists sub-order O"),
        (DropUnexecuted(), "not_executed", "no sub-order of that instrument, side and size"),
        (Drop(late=0.3), "executed", "(filled)"),  # OKX acts after the drop, within its expTime
    ],
    ids=["acted", "not-acted", "acted-late"],
)
def test_a_sub_order_is_found_by_instrument_side_and_size_once_its_exp_time_passed(
    okx, client, behaviour, verdict, words
):
    order = bot_order("buy")
    window = ambiguous(client, okx, order, behaviour)
    eventually(lambda: okx.late_pending == 0)
    past_exp_time(client, okx, order, window)
    found, evidence = judged(client, order, window)
    assert found.verdict == verdict, found.reason
    assert words in found.reason and "the request asked to buy 0.5 BTC-USDT-SWAP (market)" in found.reason
    assert len(evidence["candidates"]) == len(okx.executions)
    assert [p["pos"] for p in evidence["positions"]] == ["0.5"] * len(okx.executions)  # shown, not deciding


def test_okx_never_acts_on_a_sub_order_past_its_exp_time_so_none_found_is_not_executed(okx, client):
    def okx_clock_moves_on(stand_in, algo_id):  # by the time OKX would act late, expTime has passed
        stand_in.clock_offset += 10.0

    order = bot_order("sell")
    window = ambiguous(client, okx, order, Meanwhile(Drop(late=0.3), okx_clock_moves_on))
    eventually(lambda: okx.late_pending == 0)
    client.sync_clock()
    assert okx.executions == [] and okx.late_executed == 1  # the late act was refused 50037
    assert judged(client, order, window)[0].verdict == "not_executed"


def test_two_matching_sub_orders_in_the_window_cannot_be_told_apart(okx, client):
    order = bot_order("buy", sz="0.2")
    started = now_ms(client)
    client.send(order, exp_time_ms=started + 2000)  # an earlier one, answered, in the same window
    window = ambiguous(client, okx, order, Drop())
    window = SentWindow(started, window.ended_ms, window.exp_time_ms)
    past_exp_time(client, okx, order, window)
    found, evidence = judged(client, order, window)
    assert found.verdict == "cant_tell" and "2 sub-orders match" in found.reason
    assert len(evidence["candidates"]) == 2


def test_sub_orders_of_another_size_side_or_instrument_do_not_match(okx, client):
    okx.bot(BOT).inst_ids.append(ETH)
    order = bot_order("buy", sz="0.2")
    started = now_ms(client)
    for other in (bot_order("buy", sz="0.1"), bot_order("sell", sz="0.2"), bot_order("buy", sz="0.2", instId=ETH)):
        client.send(other, exp_time_ms=started + 2000)
    window = ambiguous(client, okx, order, DropUnexecuted())
    window = SentWindow(started, window.ended_ms, window.exp_time_ms)
    past_exp_time(client, okx, order, window)
    found, evidence = judged(client, order, window)
    assert found.verdict == "not_executed" and evidence["candidates"] == []
    assert len(evidence["subOrders"]) == 2  # ETH's is filtered out (instId is no parameter of the read)


@pytest.mark.parametrize("refused", [set(), {"canceled"}, {"cancelled"}], ids=["both", "en-only", "cn-only"])
def test_a_canceled_sub_order_counts_whichever_spelling_okx_takes(okx, client, refused):
    """A reduce-only sell larger than the position fills what it can; OKX cancels the rest."""
    okx.open_position(BOT, BTC, "0.2")
    okx.refused_states = refused
    order = bot_order("sell", sz="0.5", reduceOnly=True)
    window = ambiguous(client, okx, order, Drop())
    past_exp_time(client, okx, order, window)
    found, _ = judged(client, order, window)
    assert found.verdict == "executed" and "(canceled)" in found.reason
    asked = [r.path.split("state=")[1].split("&")[0] for r in okx.requests_to(SUB_ORDERS_PATH)]
    assert asked[:3] == ["live", "partially_filled", "filled"] and set(asked[3:]) - refused


def test_a_sub_order_read_before_its_exp_time_passed_cannot_tell(okx, client):
    order = bot_order("buy")
    window = ambiguous(client, okx, order, Drop(), exp_seconds=30.0)
    found, _ = judged(client, order, window)
    assert found.verdict == "cant_tell" and "read too early" in found.reason
    assert okx.requests_to(SUB_ORDERS_PATH) == []


def test_without_an_exp_time_none_found_cannot_tell(okx, client):
    order = bot_order("buy")
    window = ambiguous(client, okx, order, DropUnexecuted())
    unbounded = SentWindow(window.started_ms, window.ended_ms)
    past_exp_time(client, okx, order, unbounded)
    found, _ = judged(client, order, unbounded)
    assert found.verdict == "cant_tell" and "no expTime bounded" in found.reason


# -- close, cancel, tpsl, stop: a target -----------------------------------------------------------


def open_btc(okx, client):
    okx.open_position(BOT, BTC, "0.3")


def pending_btc(okx, client):
    limit_order(client, okx)


TARGETS = [
    # (action, what the bot holds first, what OKX does, verdict, words of the reason)
    ("close", open_btc, Drop(), "executed", "no position in BTC-USDT-SWAP: the target is reached"),
    ("close", open_btc, DropUnexecuted(), "not_executed", "still holds 0.3 contracts long in BTC-USDT-SWAP"),
    ("cancel", pending_btc, Drop(), "executed", "no sub-order of BTC-USDT-SWAP is pending"),
    ("cancel", pending_btc, DropUnexecuted(), "not_executed", "1 sub-order(s) of BTC-USDT-SWAP still pending (O"),
    ("tpsl", None, Drop(), "executed", "OKX reports the TP/SL as asked"),
    ("tpsl", None, DropUnexecuted(), "not_executed", "OKX reports tpSlType '', tpPct '', slPct ''"),
    ("stop", None, Drop(), "executed", "the bot is stopped: the target is reached"),
    ("stop", None, DropUnexecuted(), "not_executed", "the bot is running: the target is not reached"),
]


@pytest.mark.parametrize(
    "action, holding, behaviour, verdict, words",
    TARGETS,
    ids=[f"{case[0]}-{type(case[2]).__name__}" for case in TARGETS],
)
def test_a_target_read_after_an_ambiguous_answer(okx, client, action, holding, behaviour, verdict, words):
    if holding is not None:
        holding(okx, client)
    order = bot_order(action)
    window = ambiguous(client, okx, order, behaviour)
    assert settle_after_ms(order, window) == window.ended_ms  # at once: no expTime to wait for
    found, evidence = judged(client, order, window)
    assert found.verdict == verdict and words in found.reason, found.reason
    assert evidence["request"] == order.body and evidence["window"]["startedMs"] == str(window.started_ms)


@pytest.mark.parametrize("action", ["close", "cancel", "tpsl", "stop"])
def test_a_target_whose_reads_fail_cannot_tell(okx, client, action):
    if action == "cancel":
        pending_btc(okx, client)
    order = bot_order(action)
    window = ambiguous(client, okx, order, Drop())
    okx.ip_allowed = False  # every read refused from now on
    found, _ = judged(client, order, window)
    assert found.verdict == "cant_tell" and "could not be read (50110" in found.reason


def test_a_close_okx_acts_on_late_is_found_not_reached_and_sending_again_closes_it_once(okx, client):
    okx.open_position(BOT, BTC, "0.3")
    order = bot_order("close")
    window = ambiguous(client, okx, order, Drop(late=2.0))
    assert judged(client, order, window)[0].verdict == "not_executed"
    client.send(order)  # inside the alert's lag: closes what is still open
    eventually(lambda: okx.late_pending == 0)
    assert len(okx.executions) == 1 and okx.bot(BOT).positions == {}  # the late one found nothing to close


def test_a_cancel_accepted_and_still_cancelling_has_reached_its_target(okx, client):
    okx.cancel_delay = 30.0
    signal_ord_id = limit_order(client, okx)
    order = bot_order("cancel")
    window = ambiguous(client, okx, order, Drop())
    assert okx.order(BOT, signal_ord_id).state == "cancelling"
    assert judged(client, order, window)[0].verdict == "executed"


@pytest.mark.parametrize(
    "reported, asked, verdict",
    [
        ({"tpSlType": "pnl", "tpPct": "0.05", "slPct": "0.02"}, {"tpPct": "0.050"}, "executed"),  # as numbers
        ({"tpSlType": "pnl", "tpPct": "0.05", "slPct": ""}, {"slPct": None}, "executed"),  # slPct not asked ⚠
        ({"tpSlType": "pnl", "tpPct": "0.05", "slPct": "0.03"}, {"slPct": None}, "executed"),  # ...either way
        ({"tpSlType": "price", "tpPct": "0.05", "slPct": "0.02"}, {}, "not_executed"),
        ({"tpSlType": "pnl", "tpPct": "", "slPct": "0.02"}, {"tpPct": ""}, "executed"),  # "" asked: unset
        ({"tpSlType": "pnl", "tpPct": "0.04", "slPct": "0.02"}, {}, "not_executed"),
    ],
)
def test_tpsl_compares_the_fields_asked(okx, client, reported, asked, verdict):
    okx.bot(BOT).exit_setting = reported
    order = bot_order("tpsl", **asked)
    found, evidence = judged(client, order, SentWindow(now_ms(client), now_ms(client)))
    assert found.verdict == verdict, found.reason
    assert evidence["exitSettingParam"] == reported


def test_tpsl_for_a_bot_okx_does_not_know_cannot_tell(okx, client):
    okx.bots.pop(BOT)
    found, _ = judged(client, bot_order("tpsl"), SentWindow(now_ms(client), now_ms(client)))
    assert found.verdict == "cant_tell" and f"OKX knows no bot {BOT}" in found.reason


@pytest.mark.parametrize(
    "world, words",
    [
        (lambda okx: setattr(okx, "stop_delay", 30.0), "the bot is stopping"),
        (lambda okx: okx.bots.pop(BOT), "OKX knows no running bot by that id"),
    ],
    ids=["stopping", "gone"],
)
def test_a_bot_stopping_or_gone_has_reached_the_stops_target(okx, client, world, words):
    order = bot_order("stop")
    started = now_ms(client)
    world(okx)
    if okx.bots.get(BOT) is not None:
        client.send(order)
    found, _ = judged(client, order, SentWindow(started, now_ms(client)))
    assert found.verdict == "executed" and words in found.reason


# -- add / reduce -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "events_for_margin, allow_reinvest, behaviour, verdict, words",
    [
        (True, True, Drop(), "executed", "each a successful user_action"),
        (True, None, Drop(), "executed", "each a successful user_action"),  # the event tells it from PnL
        (False, True, Drop(), "executed", "investAmt rose by 10"),
        (False, None, Drop(), "cant_tell", "cannot be told from PnL"),
        (True, True, DropUnexecuted(), "not_executed", "did not change"),
    ],
    ids=["event-reinvest", "event", "no-event-reinvest", "no-event", "not-acted"],
)
def test_margin_is_settled_from_two_snapshots_and_the_events(
    okx, client, events_for_margin, allow_reinvest, behaviour, verdict, words
):
    okx.events_for_margin = events_for_margin  # OKX may or may not list an API margin change ⚠
    order = bot_order("add", allowReinvest=allow_reinvest)
    window = ambiguous(client, okx, order, behaviour)
    found, evidence = judged(client, order, window)
    assert found.verdict == verdict and words in found.reason, found.reason
    assert evidence["before"]["availBal"] == "40"


def test_margin_with_a_signal_in_the_window_cannot_tell(okx, client):
    okx.events_for_margin = True
    order = bot_order("add", allowReinvest=True)
    window = ambiguous(client, okx, order, Meanwhile(Drop(), lambda stand_in, bot: stand_in.trade(bot, Decimal(0))))
    found, _ = judged(client, order, window)
    assert found.verdict == "cant_tell" and "never read as ours" in found.reason


def test_margin_without_a_snapshot_from_before_cannot_tell(okx, client):
    order = bot_order("add", allowReinvest=True)
    window = ambiguous(client, okx, order, Drop())
    found, _ = judged(client, order, SentWindow(window.started_ms, window.ended_ms))
    assert found.verdict == "cant_tell" and "no snapshot of the bot from before the send" in found.reason
