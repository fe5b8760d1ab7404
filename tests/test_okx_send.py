"""``OkxClient.send``: every action's exact request at OKX (the stand-in on 127.0.0.1), the send
deadline, the expTime header, what a connection failure means, and cancel's read-then-cancel."""

import base64
import hashlib
import hmac
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.bot_orders import BOT, BTC, ETH, bot_order, client_of
from tests.conftest import eventually
from tests.okx_stand_in import (
    AMEND_TPSL_PATH,
    CANCEL_SUB_ORDER_PATH,
    CLOSE_POSITION_PATH,
    MARGIN_PATH,
    STOP_BOTS_PATH,
    SUB_ORDER_PATH,
    SUB_ORDERS_PATH,
    Drop,
    DropUnexecuted,
)
from webhook_app.clock import elapsed
from webhook_app.okx.client import OkxAck, OkxClient
from webhook_app.okx.errors import OkxNotExecuted, OkxOutcomeUnknown, OkxRefused, OkxSendTooLate, OkxUnreachable
from webhook_app.okx.margin.request import MarginRequest

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


@pytest.fixture
def client(okx):
    okx_client = client_of(okx)
    yield okx_client
    okx_client.close()


def exp_time(okx, seconds=30.0) -> int:
    return okx.now_ms() + int(seconds * 1000)


def signature(secret: str, headers: dict, method: str, path: str, body: bytes) -> str:
    """OKX's scheme (tests/okx-sign-vectors.json): Base64(HMAC-SHA256(secret, ts + METHOD + path + body))."""
    prehash = (headers["OK-ACCESS-TIMESTAMP"] + method + path).encode() + body
    return base64.b64encode(hmac.new(secret.encode(), prehash, hashlib.sha256).digest()).decode()


def limit_order(client, okx, px="59000", inst_id=BTC, side="buy") -> str:
    """A pending limit sub-order of the bot; its signalOrdId."""
    client.send(bot_order(side, ordType="limit", px=px, sz="0.1", instId=inst_id), exp_time_ms=exp_time(okx))
    return okx.bot(BOT).orders[-1].cl_ord_id


# -- each action's exact request ------------------------------------------------------------------

EXACT = [
    ("add", MARGIN_PATH, b'{"algoId":"581628185981813760","type":"add","amt":"10"}'),
    ("reduce", MARGIN_PATH, b'{"algoId":"581628185981813760","type":"reduce","amt":"2.5"}'),
    (
        "buy",
        SUB_ORDER_PATH,
        b'{"instId":"BTC-USDT-SWAP","algoId":"581628185981813760","side":"buy","ordType":"market","sz":"0.5"}',
    ),
    ("close", CLOSE_POSITION_PATH, b'{"algoId":"581628185981813760","instId":"BTC-USDT-SWAP"}'),
    (
        "tpsl",
        AMEND_TPSL_PATH,
        b'{"algoId":"581628185981813760","exitSettingParam":{"tpSlType":"pnl","tpPct":"0.05","slPct":"0.02"}}',
    ),
    ("stop", STOP_BOTS_PATH, b'[{"algoId":"581628185981813760"}]'),  # OKX's docs: an array
]


@pytest.mark.parametrize("action, path, body", EXACT, ids=[case[0] for case in EXACT])
def test_each_action_reaches_okx_as_its_exact_signed_request(okx, client, action, path, body):
    if action == "close":
        okx.open_position(BOT, BTC, "0.3")
    deadline = exp_time(okx)
    ack = client.send(bot_order(action), exp_time_ms=deadline)
    assert ack == OkxAck(BOT)
    (received,) = okx.received
    assert (received.path, received.body, received.code) == (path, body, "0")
    headers = received.headers
    assert headers["OK-ACCESS-KEY"] == okx.api_key and headers["OK-ACCESS-PASSPHRASE"] == okx.passphrase
    assert TIMESTAMP.match(headers["OK-ACCESS-TIMESTAMP"]) and headers["Content-Type"] == "application/json"
    assert headers["OK-ACCESS-SIGN"] == signature(okx.secret_key, headers, "POST", path, body)
    assert "x-simulated-trading" not in headers
    # OKX honours expTime on sub-order only (as its docs say), so only a sub-order carries it.
    assert headers.get("expTime") == (str(deadline) if action in ("buy", "sell") else None)
    assert [(p, b) for _, p, b in okx.executions] == [(path, json.loads(body))]


def test_a_limit_sell_with_reduce_only_keeps_its_fields_and_types(okx, client):
    okx.open_position(BOT, BTC, "0.3")
    order = bot_order("sell", ordType="limit", px="61000.5", sz="0.3", reduceOnly=True)
    client.send(order, exp_time_ms=exp_time(okx))
    assert okx.received[0].body == (
        b'{"instId":"BTC-USDT-SWAP","algoId":"581628185981813760","side":"sell","ordType":"limit",'
        b'"sz":"0.3","px":"61000.5","reduceOnly":true}'
    )


def test_a_demo_client_marks_every_action_simulated(okx):
    okx.demo = True
    demo = client_of(okx, demo=True)
    demo.send(bot_order("stop"))
    assert okx.received[0].headers["x-simulated-trading"] == "1" and okx.received[0].code == "0"


def test_adjust_margin_is_the_send_of_its_order(okx, client):
    assert client.adjust_margin(MarginRequest(BOT, "add", "10", allow_reinvest=True)) == OkxAck(BOT)
    assert okx.received[0].body == b'{"algoId":"581628185981813760","type":"add","amt":"10","allowReinvest":true}'


# -- expTime --------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["buy", "sell"])
def test_a_sub_order_is_never_sent_without_its_exp_time(okx, client, action):
    with pytest.raises(ValueError, match="expTime"):
        client.send(bot_order(action))
    assert okx.received == []


def test_the_exp_time_is_the_send_deadline_on_okxs_clock(okx, client):
    okx.clock_offset = 120.0  # OKX's clock two minutes ahead of ours
    client.sync_clock()
    deadline = client.okx_deadline_ms(elapsed() + 5.0)
    assert abs(deadline - (okx.now_ms() + 5000)) < 1000
    client.send(bot_order("buy"), exp_time_ms=deadline)
    assert okx.requests_to(SUB_ORDER_PATH)[0].code == "0"


# -- the send deadline and the connection ------------------------------------------------------------


@pytest.mark.parametrize("action", ["buy", "close", "cancel", "tpsl", "stop"])
def test_nothing_is_sent_after_its_send_by(okx, client, action):
    if action == "cancel":
        limit_order(client, okx)
        okx.received.clear()
    with pytest.raises(OkxSendTooLate):
        client.send(bot_order(action), send_by=elapsed() - 0.001, exp_time_ms=exp_time(okx))
    assert [r.path for r in okx.received if not r.path.startswith(SUB_ORDERS_PATH)] == []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("action", ["buy", "close", "tpsl", "stop"])
def test_no_connection_means_nothing_was_sent(action):
    unreachable = OkxClient(f"http://127.0.0.1:{closed_port()}", "key", "secret", "passphrase", connect_timeout=0.5)
    with pytest.raises(OkxUnreachable):
        unreachable.send(bot_order(action), exp_time_ms=1)


@pytest.mark.parametrize("behaviour, executed", [(Drop(), 1), (DropUnexecuted(), 0)], ids=["acted", "not-acted"])
@pytest.mark.parametrize("action", ["buy", "close", "tpsl", "stop"])
def test_a_connection_dropped_after_sending_is_unknown_whatever_okx_did(okx, client, action, behaviour, executed):
    if action == "close":
        okx.open_position(BOT, BTC, "0.3")
    path = bot_order(action).path
    okx.play(path, behaviour)
    with pytest.raises(OkxOutcomeUnknown):
        client.send(bot_order(action), exp_time_ms=exp_time(okx))
    assert len(okx.executions_of(path)) == executed


def test_a_dry_run_signs_and_sends_nothing(okx):
    dry = OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase, dry_run=True)
    for action in ("buy", "cancel", "stop"):
        assert dry.send(bot_order(action), exp_time_ms=1) == OkxAck(BOT, dry_run=True)
    assert okx.received == []


# -- cancel: read, then cancel each -----------------------------------------------------------------


def test_cancel_reads_the_pending_sub_orders_then_cancels_each_by_its_signal_ord_id(okx, client):
    first, second = limit_order(client, okx, "59000"), limit_order(client, okx, "58000")
    okx.fill_order(BOT, second, sz="0.05")  # partially filled: still pending
    okx.bot(BOT).inst_ids.append(ETH)
    limit_order(client, okx, "3000", inst_id=ETH)  # another instrument's: left alone
    client.send(bot_order("buy"), exp_time_ms=exp_time(okx))  # filled at once: nothing to cancel
    okx.received.clear()
    paced = []
    ack = client.send(bot_order("cancel"), pace=paced.append)
    assert set(ack.cancelled) == {first, second} and ack.already == ""
    reads = [r.path for r in okx.received if r.path.startswith(SUB_ORDERS_PATH)]
    assert [re.search(r"state=(\w+)", path).group(1) for path in reads] == ["live", "partially_filled"]
    assert all("instId" not in path for path in reads)  # not a documented parameter: filtered here
    posts = [r for r in okx.received if r.path == CANCEL_SUB_ORDER_PATH]
    assert sorted(r.body for r in posts) == sorted(
        b'{"algoId":"581628185981813760","instId":"BTC-USDT-SWAP","signalOrdId":"%s"}' % id_.encode()
        for id_ in (first, second)
    )
    for received in posts:
        body = received.body
        assert received.headers["OK-ACCESS-SIGN"] == signature(
            okx.secret_key, received.headers, "POST", CANCEL_SUB_ORDER_PATH, body
        )
        assert "expTime" not in received.headers
    assert paced == [SUB_ORDERS_PATH, SUB_ORDERS_PATH, CANCEL_SUB_ORDER_PATH, CANCEL_SUB_ORDER_PATH]
    eventually(lambda: {okx.order(BOT, first).state, okx.order(BOT, second).state} == {"canceled"})
    assert [o.state for o in okx.bot(BOT).orders if o.inst_id == ETH] == ["live"]


def test_cancel_with_nothing_pending_sends_no_cancel(okx, client):
    ack = client.send(bot_order("cancel"))
    assert ack.cancelled == () and "nothing to cancel" in ack.already
    assert okx.requests_to(CANCEL_SUB_ORDER_PATH) == []


def test_a_cancel_whose_deadline_passes_midway_says_what_was_cancelled(okx, client):
    first, second = limit_order(client, okx, "59000"), limit_order(client, okx, "58000")
    send_by = elapsed() + 2.0
    cancels = []

    def pace(path):  # the process is held up before the second cancel, past its send_by
        if path == CANCEL_SUB_ORDER_PATH:
            cancels.append(path)
            if len(cancels) == 2:
                eventually(lambda: elapsed() >= send_by)

    with pytest.raises(OkxSendTooLate) as raised:
        client.send(bot_order("cancel"), send_by=send_by, pace=pace)
    assert len(okx.requests_to(CANCEL_SUB_ORDER_PATH)) == 1
    accepted = json.loads(okx.requests_to(CANCEL_SUB_ORDER_PATH)[0].body)["signalOrdId"]
    left = ({first, second} - {accepted}).pop()
    assert f"OKX accepted 1 of 2 cancels ({accepted}); then {left}: not sent" in raised.value.message
    # Sending it again is safe: it reads what is still pending and cancels only that.
    assert client.send(bot_order("cancel")).cancelled == (left,)


def test_a_cancel_whose_read_is_refused_sent_nothing(okx, client):
    limit_order(client, okx)
    okx.ip_allowed = False  # the reads are refused
    with pytest.raises(OkxRefused) as raised:
        client.send(bot_order("cancel"))
    assert raised.value.code == "50110" and okx.requests_to(CANCEL_SUB_ORDER_PATH) == []


@pytest.fixture
def bad_gateway():
    """An HTTP server on 127.0.0.1 answering every request 502 without an OKX body."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_cancel_whose_read_gets_an_ambiguous_answer_is_not_executed(bad_gateway):
    """A 502 to a POST may follow OKX acting; to the read before any cancel it means nothing was sent."""
    gateway = OkxClient(bad_gateway, "key", "secret", "passphrase", read_timeout=2.0)
    with pytest.raises(OkxOutcomeUnknown):
        gateway.send(bot_order("close"))
    with pytest.raises(OkxNotExecuted, match="nothing was cancelled"):
        gateway.send(bot_order("cancel"))
