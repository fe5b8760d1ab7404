"""Every signal-bot action through gunicorn to the stand-in (issue 23): each action's request as
OKX receives it, one bot's alerts of different actions in the order they came under a burst to
other bots, each endpoint's own budget shared by two instances, and each ambiguous answer settled
by its action's rule, on SQLite and on PostgreSQL with two instances."""

import concurrent.futures
import json
from decimal import Decimal

import pytest
import requests

from tests.conftest import ADMIN_TOKEN, ALL_ACTIONS, eventually, live_env, make_action_alert, make_alert
from tests.okx_stand_in import (
    AMEND_TPSL_PATH,
    CANCEL_SUB_ORDER_PATH,
    CLOSE_POSITION_PATH,
    MARGIN_PATH,
    STOP_BOTS_PATH,
    SUB_ORDER_PATH,
    Drop,
    DropUnexecuted,
)

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BOT = "581628185981813760"
OTHER_BOTS = [f"70000000000000000{n}" for n in range(8)]
BTC = "BTC-USDT-SWAP"
EVERY_ACTION = ",".join(sorted(ALL_ACTIONS))
PATHS = {
    "add": MARGIN_PATH,
    "buy": SUB_ORDER_PATH,
    "sell": SUB_ORDER_PATH,
    "close": CLOSE_POSITION_PATH,
    "cancel": CANCEL_SUB_ORDER_PATH,
    "tpsl": AMEND_TPSL_PATH,
    "stop": STOP_BOTS_PATH,
}


def env_of(okx, tmp_path, database_url=None, **extra):
    env = live_env(okx, tmp_path, ADMIN_TOKEN=ADMIN_TOKEN, ALLOWED_ACTIONS=EVERY_ACTION, **extra)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env


def post(url: str, alert: dict) -> dict:
    reply = requests.post(url + "/webhook", json=alert, timeout=10)
    assert reply.status_code in (200, 202), reply.text
    return reply.json()


def final(url: str, alert_id: int, timeout: float = 60.0) -> dict:
    def done():
        record = requests.get(f"{url}/alerts/{alert_id}", headers=BEARER, timeout=5).json()["alert"]
        return record if record["state"] not in ("queued", "sending") else None

    return eventually(done, timeout)


@pytest.fixture
def rich_bots(okx):
    """The bots have the funds and the instruments the orders need."""
    for algo_id in (BOT, *OTHER_BOTS):
        bot = okx.bot(algo_id)
        bot.avail_bal = Decimal("100000")
    return okx


@pytest.mark.parametrize("action", ["buy", "sell", "close", "cancel", "tpsl", "stop"])
def test_each_action_reaches_okx_as_its_own_request_signed(rich_bots, tmp_path, service_factory, action):
    okx = rich_bots
    service = service_factory(env_of(okx, tmp_path))
    if action == "close":
        okx.open_position(BOT, BTC, "0.3")
    if action == "cancel":
        post(service.url, make_action_alert("buy", orderType="limit", price="59000", size="0.1"))
        eventually(lambda: len(okx.requests_to(SUB_ORDER_PATH)) == 1)
    reply = post(service.url, make_action_alert(action))
    record = final(service.url, reply["id"])
    assert record["state"] == "ok", record
    (request,) = okx.requests_to(PATHS[action])  # the stand-in checked its signature, key and timestamp
    body = json.loads(request.body)
    if action == "cancel":  # the journaled body names the instrument; each live sub-order is cancelled
        assert body == {**record["request"], "signalOrdId": okx.bot(BOT).orders[0].cl_ord_id}
    else:
        assert body == record["request"]
    assert ("expTime" in request.headers) == (action in ("buy", "sell"))
    assert len(okx.executions_of(PATHS[action])) == 1


def test_one_bots_add_buy_and_close_reach_okx_in_the_order_they_came_under_a_burst(
    rich_bots, tmp_path, service_factory
):
    okx = rich_bots
    service = service_factory(env_of(okx, tmp_path))
    burst = [make_alert(algoId=OTHER_BOTS[n % 8], amount=f"{n + 1}") for n in range(40)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        others = [pool.submit(post, service.url, alert) for alert in burst]
        ids = [post(service.url, make_action_alert(a))["id"] for a in ("add", "buy", "close")]
        assert all(f.result() for f in others)
    assert [final(service.url, i)["state"] for i in ids] == ["ok", "ok", "ok"]
    mine = sorted(
        (arrived, path)
        for path in (MARGIN_PATH, SUB_ORDER_PATH, CLOSE_POSITION_PATH)
        for arrived, body in okx.executions_of(path)
        if body.get("algoId") == BOT
    )
    assert [path for _, path in mine] == [MARGIN_PATH, SUB_ORDER_PATH, CLOSE_POSITION_PATH]
    assert okx.bot(BOT).positions == {}  # the buy's position, closed after it


def test_bursts_of_margin_calls_and_sub_orders_drain_side_by_side_each_in_its_own_budget(
    rich_bots, pg_url, tmp_path, service_factory
):
    okx = rich_bots
    env = env_of(okx, tmp_path, pg_url)
    first, second = service_factory(env), service_factory(env)
    alerts = []
    for n in range(40):
        alerts.append(make_alert(algoId=OTHER_BOTS[n % 4], amount=f"{n + 1}"))
        alerts.append(make_action_alert("buy", algoId=OTHER_BOTS[4 + n % 4], size=f"0.{n + 1:02d}"))
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda i: post((first, second)[i % 2].url, alerts[i]), range(len(alerts))))
    for reply in replies:
        assert final(first.url, reply["id"])["state"] == "ok"
    margin, orders = okx.executions_of(MARGIN_PATH), okx.executions_of(SUB_ORDER_PATH)
    assert (len(margin), len(orders)) == (40, 40)
    assert okx.max_in_any_window(MARGIN_PATH) <= 20 and okx.max_in_any_window(SUB_ORDER_PATH) <= 20
    assert okx.rate_limited == 0
    # Side by side: sub-orders went while margin calls were still waiting for their budget (one
    # shared budget would have sent 40 of one kind, at most 20 per 2 s, before or among the other).
    first_order = min(t for t, _ in orders)
    margin_after = sum(1 for t, _ in margin if t > first_order)
    print(f"margin calls executed after the first sub-order: {margin_after} of 40")
    assert margin_after > 0 and sum(1 for t, _ in orders if t < max(t for t, _ in margin)) > 20


@pytest.fixture(params=["sqlite", "postgres"])
def services(request, rich_bots, tmp_path, service_factory):
    """One instance on SQLite; two on PostgreSQL, alerts posted to either."""
    okx = rich_bots
    if request.param == "sqlite":
        return [service_factory(env_of(okx, tmp_path, RESOLVE_UNKNOWN="auto", UNKNOWN_SETTLE_SECONDS="1"))]
    env = env_of(okx, tmp_path, request.getfixturevalue("pg_url"), RESOLVE_UNKNOWN="auto", UNKNOWN_SETTLE_SECONDS="1")
    return [service_factory(env), service_factory(env)]


def target_reached(okx, action: str) -> bool:
    """Whether the bot is where ``action`` (the builder's) takes it, by the stand-in's own state."""
    bot = okx.bot(BOT)
    if action == "close":
        return bot.positions == {}
    if action == "cancel":
        return not any(order.state in ("live", "partially_filled") for order in bot.orders)
    if action == "tpsl":
        return bot.exit_setting == {"tpSlType": "pnl", "tpPct": "0.05", "slPct": "0.02"}
    return bot.state in ("stopped", "stopping")


@pytest.mark.parametrize("action", ["close", "cancel", "tpsl", "stop"])
@pytest.mark.parametrize("behaviour", [Drop(), DropUnexecuted()], ids=["executed-then-dropped", "dropped-unexecuted"])
def test_an_action_stating_a_target_whose_answer_is_lost_is_settled_from_okx_and_sent_again_only_if_not_reached(
    services, rich_bots, action, behaviour
):
    okx = rich_bots
    if action == "close":
        okx.open_position(BOT, BTC, "0.3")
    if action == "cancel":
        post(services[0].url, make_action_alert("buy", orderType="limit", price="59000", size="0.1"))
        eventually(lambda: len(okx.requests_to(SUB_ORDER_PATH)) == 1)
    okx.play(PATHS[action], behaviour)
    record = final(services[-1].url, post(services[0].url, make_action_alert(action))["id"])
    sent = len(okx.requests_to(PATHS[action]))
    print(f"{action}: {type(behaviour).__name__}: {record['state']} after {sent} request(s): {record['detail']}")
    assert (record["state"], record["resolution"]) == ("ok", None), record
    assert sent == (1 if isinstance(behaviour, Drop) else 2)  # sent again only when nothing had moved
    assert len(okx.executions_of(PATHS[action])) == 1 and target_reached(okx, action)


@pytest.mark.parametrize(
    ("behaviour", "finding", "executions"),
    [(Drop(), "executed", 1), (DropUnexecuted(), "not_executed", 0)],
    ids=["executed-then-dropped", "dropped-unexecuted"],
)
def test_a_buy_whose_answer_is_lost_is_judged_from_okxs_sub_orders_once_its_exp_time_passed(
    services, rich_bots, behaviour, finding, executions
):
    okx = rich_bots
    okx.play(SUB_ORDER_PATH, behaviour)
    reply = post(services[0].url, make_action_alert("buy"))
    record = final(services[-1].url, reply["id"])
    assert record["state"] == "unknown"

    def marked():
        current = requests.get(f"{services[-1].url}/alerts/{reply['id']}", headers=BEARER, timeout=5).json()["alert"]
        return current if current["resolution"] else None

    record = eventually(marked, 30)
    assert (record["proposal"], record["resolution"]) == (finding, finding), record
    assert len(okx.executions_of(SUB_ORDER_PATH)) == executions
