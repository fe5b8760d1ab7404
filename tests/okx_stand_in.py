"""A stand-in for OKX's REST API on 127.0.0.1, checking what OKX checks.

It verifies the key, passphrase, timestamp format and freshness, the signature over the
exact body bytes, the content type, the demo header, and the margin-balance body; it
enforces the 20-requests-per-2-seconds limit per key; and it plays scripted faults.
``executed`` lists the requests after which OKX changed margin: the figure that must
never count an alert twice.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

MARGIN_PATH = "/api/v5/tradingBot/signal/margin-balance"
TIME_PATH = "/api/v5/public/time"
ACCOUNT_CONFIG_PATH = "/api/v5/account/config"
BOT_DETAILS_PATH = "/api/v5/tradingBot/signal/orders-algo-details"
STATS_PATH = "/_stand_in/stats"
_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
_AMT = re.compile(r"[0-9]+(\.[0-9]+)?\Z")


# -- scripted behaviours, consumed one per margin-balance request -------------------------


@dataclasses.dataclass
class OkxReply:
    """OKX answers with this code (not executed, unless code is "0"), and ``data`` when given."""

    code: str
    msg: str = "scripted"
    http: int = 200
    data: object = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RawReply:
    """An answer without an OKX body, e.g. a 502 from a proxy. ``executed``: did OKX act first?"""

    http: int
    text: str = "<html>Bad Gateway</html>"
    executed: bool = True


@dataclasses.dataclass
class Slow:
    """OKX acts, then answers after ``seconds``."""

    seconds: float


@dataclasses.dataclass
class Drop:
    """OKX acts, then the connection drops without a reply."""


@dataclasses.dataclass
class DropUnexecuted:
    """The connection drops after the request arrived and before OKX acted: not executed, but the
    sender cannot tell it from ``Drop``."""


@dataclasses.dataclass
class Received:
    at: float
    path: str
    headers: dict
    body: bytes
    code: str  # what the stand-in answered ("0" for success, "" for no OKX body)


class OkxStandIn:
    def __init__(
        self,
        api_key="test-key-0123456789",
        secret_key="test-secret-0123456789abcdef",
        passphrase="test-passphrase-42",
        demo=False,
        rate_limit=20,
        window=2.0,
        max_skew=30.0,
        port=0,
    ):
        self.api_key, self.secret_key, self.passphrase = api_key, secret_key, passphrase
        self.demo = demo
        self.rate_limit, self.window, self.max_skew = rate_limit, window, max_skew
        self.clock_offset = 0.0  # OKX's clock minus ours, to play 50102
        # For the signed reads (readiness): the key's permissions, whether this caller's IP and
        # region are the key's, and the signal bots of the account with their states.
        self.perm = "read_only,trade"
        self.ip_allowed = True
        self.right_region = True
        self.bots: dict[str, str] = {"581628185981813760": "running"}
        self.script: collections.deque = collections.deque()
        # Called for a behaviour when the script is empty (None: OKX simply acts and answers "0").
        self.faults: Callable[[], object] | None = None
        self.received: list[Received] = []
        self.executed: list[dict] = []
        self.rate_limited = 0
        self.counted_times: list[float] = []  # arrivals that used up a slot of the limit
        self._recent: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OkxStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def play(self, *behaviours) -> None:
        self.script.extend(behaviours)

    def now(self) -> float:
        return time.time() + self.clock_offset

    def margin_requests(self) -> list[Received]:
        return [r for r in self.received if r.path == MARGIN_PATH]

    # -- what OKX checks --------------------------------------------------------------

    def check(self, method: str, path: str, headers, body: bytes) -> tuple[int, str, str] | None:
        """None when the request is authentic and well formed, else (http, code, msg)."""
        h = {k.lower(): v for k, v in headers.items()}
        for name, code in (
            ("ok-access-key", "50103"),
            ("ok-access-passphrase", "50104"),
            ("ok-access-sign", "50106"),
            ("ok-access-timestamp", "50107"),
        ):
            if not h.get(name):
                return 401, code, f"Request header {name.upper()} cannot be empty"
        if h["ok-access-key"] != self.api_key:
            return 401, "50111", "Invalid OK-ACCESS-KEY"
        timestamp = h["ok-access-timestamp"]
        if not _TS.match(timestamp):
            return 401, "50112", "Invalid OK-ACCESS-TIMESTAMP"
        sent = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
        if abs(self.now() - sent) > self.max_skew:
            return 401, "50102", "Timestamp request expired"
        if h["ok-access-passphrase"] != self.passphrase:
            return 401, "50105", "OK-ACCESS-PASSPHRASE incorrect"
        prehash = (timestamp + method + path).encode() + body
        expected = base64.b64encode(hmac.new(self.secret_key.encode(), prehash, hashlib.sha256).digest())
        if not hmac.compare_digest(expected, h["ok-access-sign"].encode()):
            return 401, "50113", "Invalid Sign"
        if (h.get("x-simulated-trading") == "1") != self.demo:
            return 401, "50101", "APIKey does not match current environment."
        if method == "POST":
            if h.get("content-type", "").split(";")[0].strip() != "application/json":
                return 400, "50000", "Content-Type must be application/json"
            problem = self._check_margin_body(body)
            if problem:
                return 400, "51000", problem
        return None

    @staticmethod
    def _check_margin_body(body: bytes) -> str | None:
        try:
            data = json.loads(body)
        except ValueError:
            return "Body is not JSON"
        if not isinstance(data, dict):
            return "Body is not an object"
        allowed = {"algoId": str, "type": str, "amt": str, "allowReinvest": bool}
        for key, value in data.items():
            if key not in allowed:
                return f"Parameter {key} error"
            if type(value) is not allowed[key]:
                return f"Parameter {key} error"
        for key in ("algoId", "type", "amt"):
            if key not in data:
                return f"Parameter {key} can not be empty"
        if not data["algoId"].isdigit() or data["type"] not in ("add", "reduce") or not _AMT.match(data["amt"]):
            return "Parameter error"
        return None

    def _over_limit(self) -> bool:
        with self._lock:
            now = time.monotonic()
            while self._recent and now - self._recent[0] >= self.window:
                self._recent.popleft()
            if len(self._recent) >= self.rate_limit:
                self.rate_limited += 1
                return True
            self._recent.append(now)
            self.counted_times.append(now)
            return False

    def _handler_class(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                if self.path == STATS_PATH:  # for benchmarks running the stand-in in its own process
                    return self._json(200, stand_in.stats())
                with stand_in._lock:
                    stand_in.received.append(Received(time.monotonic(), self.path, dict(self.headers), b"", "0"))
                path, _, query = self.path.partition("?")
                if path == TIME_PATH:
                    return self._json(200, {"code": "0", "msg": "", "data": [{"ts": str(int(stand_in.now() * 1000))}]})
                if path not in (ACCOUNT_CONFIG_PATH, BOT_DETAILS_PATH):
                    return self._json(404, {"code": "50000", "msg": "not found", "data": []})
                if not stand_in.right_region:  # OKX's other regional sites do not know the key
                    return self._json(401, {"code": "50119", "msg": "API key doesn't exist", "data": []})
                refusal = stand_in.check("GET", self.path, self.headers, b"")  # signed over path and query
                if refusal is None and not stand_in.ip_allowed:
                    refusal = (401, "50110", "Your IP 127.0.0.1 is not included in your API key's IP whitelist.")
                if refusal:
                    return self._json(refusal[0], {"code": refusal[1], "msg": refusal[2], "data": []})
                if path == ACCOUNT_CONFIG_PATH:
                    account = {
                        "uid": "44705892343619584",
                        "mainUid": "44705892343619584",
                        "acctLv": "2",
                        "perm": stand_in.perm,
                        "ip": "",
                        "label": "relay",
                    }
                    return self._json(200, {"code": "0", "msg": "", "data": [account]})
                algo_id = parse_qs(query).get("algoId", [""])[0]
                if algo_id not in stand_in.bots or "algoOrdType=contract" not in query:
                    return self._json(200, {"code": "51293", "msg": "Bot does not exist", "data": []})
                bot = {"algoId": algo_id, "state": stand_in.bots[algo_id], "investAmt": "100", "availBal": "40"}
                self._json(200, {"code": "0", "msg": "", "data": [bot]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.path != MARGIN_PATH:
                    return self._json(404, {"code": "50000", "msg": "not found", "data": []})
                refusal = stand_in.check("POST", self.path, self.headers, body)
                if refusal is None and stand_in._over_limit():
                    refusal = (429, "50011", "Too Many Requests")
                record = Received(time.monotonic(), self.path, dict(self.headers), body, "")
                with stand_in._lock:
                    stand_in.received.append(record)
                if refusal:
                    record.code = refusal[1]
                    return self._json(refusal[0], {"code": refusal[1], "msg": refusal[2], "data": []})
                with stand_in._lock:
                    behaviour = stand_in.script.popleft() if stand_in.script else None
                if behaviour is None and stand_in.faults is not None:
                    behaviour = stand_in.faults()
                if isinstance(behaviour, DropUnexecuted):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(behaviour, OkxReply):
                    record.code = behaviour.code
                    if behaviour.code == "0":
                        stand_in._execute(body)
                    return self._json(
                        behaviour.http, {"code": behaviour.code, "msg": behaviour.msg, "data": behaviour.data}
                    )
                if isinstance(behaviour, RawReply):
                    if behaviour.executed:
                        stand_in._execute(body)
                    return self._raw(behaviour.http, behaviour.text.encode(), "text/html")
                stand_in._execute(body)
                if isinstance(behaviour, Drop):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(behaviour, Slow):
                    time.sleep(behaviour.seconds)
                record.code = "0"
                algo_id = json.loads(body)["algoId"]
                self._json(200, {"code": "0", "msg": "", "data": [{"algoId": algo_id}]})

            def _json(self, status, payload):
                self._raw(status, json.dumps(payload).encode(), "application/json")

            def _raw(self, status, data, content_type):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (read time-out): OKX would not notice either
                    pass

        return Handler

    def _execute(self, body: bytes) -> None:
        with self._lock:
            self.executed.append(json.loads(body))

    def max_in_any_window(self) -> int:
        """The most requests counted against the limit within any ``window`` seconds."""
        times = sorted(self.counted_times)
        most, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= self.window:
                start += 1
            most = max(most, end - start + 1)
        return most

    def stats(self) -> dict:
        with self._lock:
            return {
                "executed": len(self.executed),
                "amounts": [b["amt"] for b in self.executed],
                "counted_times": list(self.counted_times),
                "rate_limited": self.rate_limited,
                "max_in_window": self.max_in_any_window(),
            }


def main() -> None:
    """Serve the stand-in in its own process: python -m tests.okx_stand_in --port P [--rate-limit N]."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate-limit", type=int, default=20)
    args = parser.parse_args()
    OkxStandIn(rate_limit=args.rate_limit, port=args.port)._server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
