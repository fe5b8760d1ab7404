"""The OKX client on its own: what each way of failing says about whether OKX may have acted."""

import contextlib
import socket
import threading

import pytest

from tests.conftest import make_alert
from tests.okx_stand_in import OkxReply
from webhook_app.okx.client import OkxClient
from webhook_app.okx.errors import OkxNotExecuted, OkxOutcomeUnknown, OkxRefused, OkxUnreachable, outcome_of
from webhook_app.okx.margin.outcomes import MARGIN_OUTCOMES
from webhook_app.okx.margin.request import MarginRequest

REQUEST = MarginRequest(algo_id="581628185981813760", type="add", amt="10")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_server(handle):
    """A server on 127.0.0.1 that hands each connection to ``handle`` on a thread of its own; its URL."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                handle(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


@pytest.fixture
def refusing_proxy():
    """An HTTP proxy on 127.0.0.1 that answers every CONNECT with 403, as a proxy whose
    allowlist lacks OKX's host does. It records what it was asked."""
    asked = []

    def refuse(conn):
        asked.append(conn.recv(65536).split(b"\r\n", 1)[0])
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    with loopback_server(refuse) as url:
        yield url, asked


def live_client(base_url):
    return OkxClient(
        base_url, "key-0123456789", "secret-0123456789", "passphrase", connect_timeout=0.5, read_timeout=1.0
    )


def test_a_proxy_refusing_the_tunnel_means_nothing_was_sent(refusing_proxy, monkeypatch):
    proxy, asked = refusing_proxy
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    with pytest.raises(OkxUnreachable):
        live_client("https://www.okx.com").adjust_margin(REQUEST)
    assert [line.split()[:2] for line in asked] == [[b"CONNECT", b"www.okx.com:443"]]  # the POST never left


def test_a_proxy_that_is_down_means_nothing_was_sent(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(OkxUnreachable):
        live_client("https://www.okx.com").adjust_margin(REQUEST)


def test_through_a_dead_proxy_an_alert_is_retried_then_failed_not_unknown(make_app, okx, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")  # the stand-in speaks plain http
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = make_app(okx_max_attempts=2).test_client()
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 503, response.json
    assert response.json["status"] == "failed"
    assert response.json["detail"].startswith("not executed: gave up after 2 attempt(s)")
    assert okx.received == []


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("50013", 200, OkxNotExecuted),  # the common table
        ("51008", 200, OkxRefused),  # margin-balance's own
        ("51008_1000", 200, OkxRefused),  # a sub-code means what its code means
        ("50013_2", 200, OkxNotExecuted),
        ("50004_7", 400, OkxOutcomeUnknown),
        ("59999", 200, OkxRefused),  # unlisted: refused
        ("59999_1", 503, OkxOutcomeUnknown),  # unlisted with a 5xx: OKX may have acted
    ],
)
def test_an_okx_code_is_read_against_the_actions_table_then_the_common_one(code, status, expected):
    assert outcome_of(code, status, MARGIN_OUTCOMES)[0] is expected


def test_a_sub_code_in_okx_answer_is_judged_by_its_code(okx):
    okx.play(OkxReply("50013_1000", "Systems are busy"))
    client = OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase)
    with pytest.raises(OkxNotExecuted) as raised:
        client.adjust_margin(MarginRequest("581628185981813760", "add", "10"))
    assert raised.value.code == "50013_1000" and okx.executed == []


def test_the_environment_is_read_once_when_the_client_is_made(monkeypatch, tmp_path):
    """HTTPS_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE as they were at the start, for every request after."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    session = live_client("https://www.okx.com").session
    assert not session.trust_env
    assert session.proxies["https"] == "http://proxy.example:3128"
    assert session.verify == str(tmp_path / "ca.pem")
    monkeypatch.setenv("NO_PROXY", "www.okx.com")
    assert "https" not in live_client("https://www.okx.com").session.proxies


@pytest.fixture
def cookie_setting_okx():
    """A plain-HTTP OKX on 127.0.0.1 that sets a cookie (as a CDN in front of OKX may) and answers
    every request with OKX's success; it records each request's head."""
    heads = []

    def answer(conn):
        while (data := conn.recv(65536)) and b"\r\n\r\n" in data:
            heads.append(data.split(b"\r\n\r\n", 1)[0].decode())
            body = b'{"code":"0","msg":"","data":[]}'
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: edge=abc; Path=/\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )

    with loopback_server(answer) as url:
        yield url, heads


def test_each_request_carries_the_sessions_headers_and_the_cookies_okx_set(cookie_setting_okx):
    url, heads = cookie_setting_okx
    client = live_client(url)
    client.get_signed("/api/v5/tradingBot/signal/orders-algo-details", {"algoId": "1"})
    client.post_signed("/api/v5/tradingBot/signal/margin-balance", b'{"amt":"1"}', {})
    first, second = heads
    assert first.startswith("GET /api/v5/tradingBot/signal/orders-algo-details?algoId=1 HTTP/1.1")
    assert second.startswith("POST /api/v5/tradingBot/signal/margin-balance HTTP/1.1")
    for head in heads:
        assert "User-Agent: python-requests/" in head and "OK-ACCESS-SIGN: " in head
    assert "Cookie" not in first and "Cookie: edge=abc" in second
    assert "Content-Length: 11" in second and "Content-Type: application/json" in second
