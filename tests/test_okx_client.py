"""The OKX client on its own: what each way of failing says about whether OKX may have acted."""

import socket
import threading

import pytest

from tests.conftest import make_alert
from webhook_app.okx.client import MarginRequest, OkxClient, OkxUnreachable

REQUEST = MarginRequest(algo_id="581628185981813760", type="add", amt="10")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def refusing_proxy():
    """An HTTP proxy on 127.0.0.1 that answers every CONNECT with 403, as a proxy whose
    allowlist lacks OKX's host does. It records what it was asked."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    asked = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                asked.append(conn.recv(65536).split(b"\r\n", 1)[0])
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", asked
    server.close()


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
