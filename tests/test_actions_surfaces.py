"""What operators see of each signal-bot action (issue 23): GET /alerts and an alert's JSON, the
operator page's list and alert page, ``flask alerts`` and the notifications each say the action and
its fields in words (instrument, side, size, price, TP/SL...), never only an amount."""

import html
import json
import re

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.test_admin import logged_in
from tests.test_notify import Receiver
from webhook_app.journal import Record
from webhook_app.workers.notify import Notifier

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BOT = "581628185981813760"

# (action, endpoint, amount, request body) -> what the alert's fields are in words, and in one line.
CASES = {
    "buy": (
        "sub-order",
        "2",
        {"instId": "BTC-USDT-SWAP", "algoId": BOT, "side": "buy", "ordType": "limit", "sz": "2", "px": "60000.5",
         "reduceOnly": False},
        {"instId": "BTC-USDT-SWAP", "size": "2", "orderType": "limit", "price": "60000.5", "reduceOnly": False},
        "buy 2 contracts of BTC-USDT-SWAP limit 60000.5",
        [("Side", "buy"), ("Instrument", "BTC-USDT-SWAP"), ("Size (contracts)", "2"), ("Order type", "limit"),
         ("Price", "60000.5"), ("Reduce-only", "no")],
    ),
    "sell": (
        "sub-order",
        "0.5",
        {"instId": "ETH-USDT-SWAP", "algoId": BOT, "side": "sell", "ordType": "market", "sz": "0.5",
         "reduceOnly": True},
        {"instId": "ETH-USDT-SWAP", "size": "0.5", "orderType": "market", "reduceOnly": True},
        "sell 0.5 contracts of ETH-USDT-SWAP at market, reduce-only",
        [("Side", "sell"), ("Instrument", "ETH-USDT-SWAP"), ("Size (contracts)", "0.5"), ("Order type", "market"),
         ("Reduce-only", "yes")],
    ),
    "close": (
        "close-position",
        "",
        {"algoId": BOT, "instId": "BTC-USDT-SWAP"},
        {"instId": "BTC-USDT-SWAP"},
        "close the BTC-USDT-SWAP position at market",
        [("Instrument", "BTC-USDT-SWAP")],
    ),
    "cancel": (
        "cancel-sub-order",
        "",
        {"algoId": BOT, "instId": "BTC-USDT-SWAP"},
        {"instId": "BTC-USDT-SWAP"},
        "cancel the live sub-orders of BTC-USDT-SWAP",
        [("Instrument", "BTC-USDT-SWAP")],
    ),
    "tpsl": (
        "amendTPSL",
        "",
        {"algoId": BOT, "exitSettingParam": {"tpSlType": "pnl", "tpPct": "0.1", "slPct": "0.05"}},
        {"tpSlType": "pnl", "tpPct": "0.1", "slPct": "0.05"},
        "tpsl by pnl: take-profit 0.1, stop-loss 0.05",
        [("TP/SL by", "pnl"), ("Take-profit (fraction)", "0.1"), ("Stop-loss (fraction)", "0.05")],
    ),
    "stop": ("stop-order-algo", "", [{"algoId": BOT}], {}, "stop the bot", []),
    "add": (
        "margin-balance",
        "25",
        {"algoId": BOT, "type": "add", "amt": "25", "allowReinvest": True},
        {"amount": "25", "investmentType": "percentage_investment", "allowReinvest": True},
        "add 25",
        [("Margin", "25"), ("Investment type", "percentage_investment"), ("Reinvest", "yes")],
    ),
}  # fmt: skip


def journaled(app, action, state="failed", trader_id=None) -> Record:
    """An alert of ``action`` already in the journal, as the intake journals it."""
    endpoint, amount, body, *_ = CASES[action]
    journal = app.extensions["webhook"].journal
    record, created = journal.add(
        dedup_key=f"fp:{action}:{trader_id}",
        dedup_since=0.0,
        algo_id=BOT,
        action=action,
        amount=amount,
        request_body=json.dumps(body, separators=(",", ":")),
        expires_at=journal.now() + 600,
        state=state,
        trader_id=trader_id,
        endpoint=endpoint,
    )
    assert created
    return record


@pytest.mark.parametrize("action", CASES)
def test_an_alerts_json_says_its_action_endpoint_and_fields(make_app, action):
    endpoint, amount, body, fields, summary, _ = CASES[action]
    app = make_app()
    record = journaled(app, action)
    client = app.test_client()
    (listed,) = client.get("/alerts", headers=BEARER).json["alerts"]
    shown = client.get(f"/alerts/{record.id}", headers=BEARER).json
    for alert in (listed, shown["alert"]):
        assert (alert["action"], alert["endpoint"], alert["amount"], alert["request"]) == (
            action,
            endpoint,
            amount,
            body,
        )
        assert alert["order"] == {"summary": summary, **fields}
    assert shown["timeline"][0]["detail"] == f"{summary} for bot {BOT}"


@pytest.mark.parametrize("action", CASES)
def test_an_alerts_page_shows_its_action_and_each_field_in_words(make_app, action):
    endpoint, _, _, _, summary, rows = CASES[action]
    app = make_app()
    record = journaled(app, action)
    client = app.test_client()
    logged_in(client)
    page = html.unescape(client.get(f"/admin/alerts/{record.id}").text)
    assert f'<dd id="summary">{summary}</dd>' in page
    assert f'<dd class="mono" id="endpoint">{endpoint}</dd>' in page
    assert _order_fields(page) == rows
    assert f"Send alert {record.id} ({summary} on bot {BOT})" in page  # the resend's confirmation says it too


ORDER_FIELD = re.compile(
    r'<dt class="order-field">([^<]*)</dt><dd class="mono order-field" data-field="[^"]*">([^<]*)</dd>'
)


def _order_fields(page: str) -> list[tuple[str, str]]:
    return ORDER_FIELD.findall(page)


def test_the_alert_list_says_what_each_order_asks(make_app):
    app = make_app()
    for action in ("buy", "tpsl", "add"):
        journaled(app, action, state="ok")
    client = app.test_client()
    logged_in(client)
    page = html.unescape(client.get("/admin").text)
    assert '<small class="order">buy 2 contracts of BTC-USDT-SWAP limit 60000.5</small>' in page
    assert '<small class="order">tpsl by pnl: take-profit 0.1, stop-loss 0.05</small>' in page
    assert '<small class="order">add 25</small>' not in page  # a margin call: its action and amount say it


def test_flask_alerts_shows_each_orders_summary(make_app):
    app = make_app()
    for action in ("sell", "close", "add"):
        journaled(app, action, state="ok")
    lines = app.test_cli_runner().invoke(args=["alerts"]).output.splitlines()
    assert "order" in lines[0].split()
    assert "add 25" in lines[1] and "close the BTC-USDT-SWAP position at market" in lines[2]
    assert "sell 0.5 contracts of ETH-USDT-SWAP at market, reduce-only" in lines[3]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.mark.parametrize(
    "action, state, words",
    [
        ("buy", "unknown", ["Alert 1 unknown: bot 581628185981813760, buy 2 contracts of BTC-USDT-SWAP limit 60000.5",
                            "Check the bot's positions and orders on OKX"]),
        ("stop", "failed", ["Alert 1 failed: bot 581628185981813760, stop the bot", "do it on OKX by hand"]),
        ("tpsl", "rejected", [f"Alert 1 rejected: bot {BOT}, tpsl by pnl: take-profit 0.1, stop-loss 0.05"]),
        ("add", "failed", ["Alert 1 failed: bot 581628185981813760, add 25", "adjust the margin by hand"]),
    ],
)  # fmt: skip
def test_a_notification_says_the_action_and_its_fields(receiver, action, state, words):
    endpoint, amount, body, *_ = CASES[action]
    record = Record(1, 0.0, "fp:1", BOT, action, amount, json.dumps(body), 0.0, state, endpoint=endpoint)
    Notifier((receiver.url,)).alert_finished(record)
    (message,) = receiver.wait_for(1)
    for text in words:
        assert text in message["title"] + message["message"], message
