"""A stand-in for OKX's REST API on 127.0.0.1, checking what OKX checks.

It verifies the key, passphrase, timestamp format and freshness, the signature over the
exact body bytes, the content type, the demo header, and the margin-balance body; it
enforces the 20-requests-per-2-seconds limit per key; and it plays scripted faults.
``executed`` lists the requests after which OKX changed margin: the figure that must
never count an alert twice.

It also keeps the account's signal bots (``bots``: one ``Bot`` per algoId) with the fields
OKX documents: an executed margin change moves ``availBal`` and ``totalEq`` (and
``investAmt`` with ``allowReinvest``), a bot that is not running refuses with 51291, and
each bot has an event history (an algoId a test never mentioned is a running bot with the
default fields, until the test removes it or clears ``bots``: see ``Bots``). It serves the
three signed reads (details, pending, event history), each with its own 20-per-2-s limit
apart from the margin call's. Tests script the world between two reads with ``move_pnl``,
``trade``, ``change_margin`` and ``stop_bot``, and inside a margin request's handling with
``Meanwhile``.
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
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

MARGIN_PATH = "/api/v5/tradingBot/signal/margin-balance"
TIME_PATH = "/api/v5/public/time"
ACCOUNT_CONFIG_PATH = "/api/v5/account/config"
BOT_DETAILS_PATH = "/api/v5/tradingBot/signal/orders-algo-details"
BOTS_PENDING_PATH = "/api/v5/tradingBot/signal/orders-algo-pending"
BOT_EVENTS_PATH = "/api/v5/tradingBot/signal/event-history"
# Each has its own limit at OKX (20 per 2 s per User ID), apart from margin-balance's.
BOT_READ_PATHS = (BOT_DETAILS_PATH, BOTS_PENDING_PATH, BOT_EVENTS_PATH)
DEFAULT_BOT = "581628185981813760"
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
    """An answer without an OKX body, e.g. a 502 from a proxy. ``executed``: did OKX act first?
    ``late``: OKX acts that many seconds after the answer instead (an ``executed`` request only)."""

    http: int
    text: str = "<html>Bad Gateway</html>"
    executed: bool = True
    late: float = 0.0


@dataclasses.dataclass
class Slow:
    """OKX acts, then answers after ``seconds``; with ``late``, it acts that many seconds after
    its answer instead."""

    seconds: float
    late: float = 0.0


@dataclasses.dataclass
class Drop:
    """OKX acts, then the connection drops without a reply; with ``late``, it acts that many
    seconds after the drop instead."""

    late: float = 0.0


@dataclasses.dataclass
class Hold:
    """OKX acts (unless ``answer`` is a refusal), then holds its answer until ``release`` is set:
    a test can freeze the sender while the answer is on its way. ``peer_port`` is the sender's
    local port, to find which process sent it."""

    answer: OkxReply | None = None
    arrived: threading.Event = dataclasses.field(default_factory=threading.Event)
    release: threading.Event = dataclasses.field(default_factory=threading.Event)
    peer_port: int = 0


@dataclasses.dataclass
class DropUnexecuted:
    """The connection drops after the request arrived and before OKX acted: not executed, but the
    sender cannot tell it from ``Drop``."""


@dataclasses.dataclass
class Meanwhile:
    """``behaviour`` as usual (None: OKX acts and answers), and ``change(stand_in, algo_id)``
    applied while the request is handled: after OKX executed it or not, before the reply (or
    the dropped connection). E.g. ``Meanwhile(Drop(), lambda s, bot: s.move_pnl(bot, Decimal("-3.5")))``."""

    behaviour: object
    change: Callable[[OkxStandIn, str], None]


# -- the account's signal bots -------------------------------------------------------------


@dataclasses.dataclass
class Event:
    """One entry of a bot's event history, as event-history lists it."""

    event_type: str  # system_action | user_action | signal_processing
    event_status: str  # success | failure
    ctime_ms: int  # eventCtime: epoch ms on the stand-in's (OKX's) clock
    message: str  # eventProcessMsg
    alert_msg: str = ""  # the alert text OKX received, for signal_processing

    def okx_json(self, algo_id: str) -> dict:
        return {
            "algoId": algo_id,
            "eventType": self.event_type,
            "eventStatus": self.event_status,
            "eventCtime": str(self.ctime_ms),
            "eventUtime": str(self.ctime_ms),
            "eventProcessMsg": self.message,
            "alertMsg": self.alert_msg,
            "triggeredOrdData": [],
        }


@dataclasses.dataclass
class Bot:
    """One signal bot: its state and the balance fields orders-algo-details reports."""

    state: str = "running"  # starting | running | stopping | stopped
    inst_ids: list[str] = dataclasses.field(default_factory=lambda: ["BTC-USDT-SWAP"])
    invest_amt: Decimal = Decimal("100")
    avail_bal: Decimal = Decimal("40")
    frozen_bal: Decimal = Decimal("0")
    total_eq: Decimal = Decimal("140")
    u_time_ms: int = 0
    c_time_ms: int = 0
    events: list[Event] = dataclasses.field(default_factory=list)

    def okx_json(self, algo_id: str) -> dict:
        """The bot as orders-algo-details and orders-algo-pending give it; decimals as plain strings."""
        return {
            "algoId": algo_id,
            "algoOrdType": "contract",
            "state": self.state,
            "instType": "SWAP",
            "instIds": list(self.inst_ids),
            "investAmt": _plain(self.invest_amt),
            "availBal": _plain(self.avail_bal),
            "frozenBal": _plain(self.frozen_bal),
            "totalEq": _plain(self.total_eq),
            "uTime": str(self.u_time_ms),
            "cTime": str(self.c_time_ms),
        }


class Bots(dict):
    """The account's signal bots by algoId (``dict[str, Bot]``).

    So that tests about other things may name any algoId, an algoId (digits) never mentioned is a
    running bot with ``Bot``'s default fields, made on its first use. One removed (``pop``, ``del``) is
    unknown to OKX from then on, and after ``clear()`` every algoId not added again is unknown;
    ``unlisted_run = False`` makes OKX know only the listed bots from the start.
    """

    def __init__(self, make_bot: Callable[[], Bot]):
        super().__init__()
        self._make_bot = make_bot
        self.unlisted_run = True
        self.removed: set[str] = set()

    def find(self, algo_id: str) -> Bot | None:
        """The bot OKX knows by ``algo_id``, or None when OKX knows no such bot."""
        unlisted = algo_id not in self and algo_id.isdigit() and algo_id not in self.removed
        if unlisted and self.unlisted_run:
            super().__setitem__(algo_id, self._make_bot())
        return self.get(algo_id)

    def __setitem__(self, algo_id, bot):
        self.removed.discard(algo_id)
        super().__setitem__(algo_id, bot)

    def __delitem__(self, algo_id):
        self.removed.add(algo_id)
        super().__delitem__(algo_id)

    def pop(self, algo_id, *default):
        self.removed.add(algo_id)
        return super().pop(algo_id, *default)

    def popitem(self):
        algo_id, bot = super().popitem()
        self.removed.add(algo_id)
        return algo_id, bot

    def clear(self):
        self.unlisted_run = False
        super().clear()


def _plain(value: Decimal) -> str:
    """A decimal as OKX writes it: digits and a point, never an exponent."""
    return format(value, "f")


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
        read_rate_limit=20,
        events_for_margin=False,
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
        self.bots = Bots(lambda: Bot(u_time_ms=self.now_ms(), c_time_ms=self.now_ms()))
        # OKX's docs do not say whether an API margin change appears in event-history: off by default.
        self.events_for_margin = events_for_margin
        self.read_rate_limit = read_rate_limit
        self.read_limited: collections.Counter = collections.Counter()  # per path: reads refused with 50011
        self._read_arrivals: dict[str, list[float]] = collections.defaultdict(list)
        self._recent_reads: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self.script: collections.deque = collections.deque()
        # Called for a behaviour when the script is empty (None: OKX simply acts and answers "0").
        self.faults: Callable[[], object] | None = None
        self.received: list[Received] = []
        self.executed: list[dict] = []
        # (arrival of the request, time.time(); its body) for each execution, in the order OKX executed them.
        self.executions: list[tuple[float, dict]] = []
        self.late_pending = 0  # executions scheduled after a drop or an answer, not yet done
        self.late_executed = 0
        self.rate_limited = 0
        self.counted_times: list[float] = []  # arrivals that used up a slot of the limit
        self._recent: collections.deque = collections.deque()
        self._lock = threading.RLock()  # re-entrant: a Meanwhile change runs helpers that take it
        self.add_bot(DEFAULT_BOT)
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

    def reads(self, path: str) -> list[float]:
        """Arrival times (time.monotonic()) of the GETs to ``path``, e.g. BOT_DETAILS_PATH."""
        with self._lock:
            return list(self._read_arrivals[path])

    # -- scripting the bots (what happens at OKX besides our requests) ---------------------

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def add_bot(self, algo_id: str, state: str = "running", **fields) -> Bot:
        """A bot of this account; ``fields`` are ``Bot``'s (invest_amt=Decimal("50"), ...)."""
        now_ms = self.now_ms()
        fields.setdefault("u_time_ms", now_ms)
        fields.setdefault("c_time_ms", now_ms)
        bot = Bot(state=state, **fields)
        with self._lock:
            self.bots[algo_id] = bot
        return bot

    def bot(self, algo_id: str) -> Bot:
        """The bot OKX knows by ``algo_id`` (KeyError when none)."""
        with self._lock:
            bot = self.bots.find(algo_id)
        if bot is None:
            raise KeyError(f"OKX knows no bot {algo_id}")
        return bot

    def add_event(self, algo_id: str, event_type: str, message: str, status: str = "success", alert_msg: str = ""):
        with self._lock:
            self.bot(algo_id).events.append(Event(event_type, status, self.now_ms(), message, alert_msg))

    def stop_bot(self, algo_id: str) -> None:
        """The user stops the bot in OKX's app: state stopped and a user_action event."""
        with self._lock:
            self.bot(algo_id).state = "stopped"
            self.bot(algo_id).u_time_ms = self.now_ms()
            self.add_event(algo_id, "user_action", "Bot stopped by user")

    def move_pnl(self, algo_id: str, delta: Decimal) -> None:
        """The market moves the bot's PnL: availBal and totalEq by ``delta``, no event."""
        with self._lock:
            bot = self.bot(algo_id)
            bot.avail_bal += delta
            bot.total_eq += delta
            bot.u_time_ms = self.now_ms()

    def trade(self, algo_id: str, margin: Decimal = Decimal("10"), alert_msg: str = '{"action":"ENTER_LONG"}') -> None:
        """A TradingView signal opens a position: ``margin`` moves from availBal to frozenBal
        (totalEq unchanged), with a signal_processing success event."""
        with self._lock:
            bot = self.bot(algo_id)
            bot.avail_bal -= margin
            bot.frozen_bal += margin
            bot.u_time_ms = self.now_ms()
            self.add_event(algo_id, "signal_processing", "Signal processed: order placed", alert_msg=alert_msg)

    def change_margin(self, algo_id: str, action: str, amt: Decimal, allow_reinvest: bool = False) -> None:
        """A margin change made out of band (e.g. in OKX's app): the change and a user_action event."""
        with self._lock:
            self._apply_margin(self.bot(algo_id), action, amt, allow_reinvest)
            self.add_event(algo_id, "user_action", f"Margin {'added' if action == 'add' else 'reduced'}: {amt}")

    def _apply_margin(self, bot: Bot, action: str, amt: Decimal, allow_reinvest: bool) -> None:
        sign = 1 if action == "add" else -1
        bot.avail_bal += sign * amt
        bot.total_eq += sign * amt
        if allow_reinvest:
            bot.invest_amt += sign * amt
        bot.u_time_ms = self.now_ms()

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

    def _read_over_limit(self, path: str) -> bool:
        """Each read endpoint's own limit, never the margin call's."""
        with self._lock:
            now = time.monotonic()
            recent = self._recent_reads[path]
            while recent and now - recent[0] >= self.window:
                recent.popleft()
            if len(recent) >= self.read_rate_limit:
                self.read_limited[path] += 1
                return True
            recent.append(now)
            return False

    def _bot_read(self, path: str, query: str) -> tuple[int, dict]:
        """The answer to a signed, authentic read of one of BOT_READ_PATHS."""
        params = {key: values[0] for key, values in parse_qs(query).items()}
        algo_id = params.get("algoId", "")
        if path in (BOT_DETAILS_PATH, BOTS_PENDING_PATH):
            if "algoOrdType" not in params:
                return 400, {"code": "50014", "msg": "Parameter algoOrdType can not be empty", "data": []}
            if params["algoOrdType"] != "contract":
                return 400, {"code": "51000", "msg": "Parameter algoOrdType error", "data": []}
        if path in (BOT_DETAILS_PATH, BOT_EVENTS_PATH) and not algo_id:
            return 400, {"code": "50014", "msg": "Parameter algoId can not be empty", "data": []}
        with self._lock:
            if path == BOTS_PENDING_PATH:
                data = [bot.okx_json(i) for i, bot in self.bots.items() if bot.state != "stopped"]
                return 200, {"code": "0", "msg": "", "data": data}
            bot = self.bots.find(algo_id)
            if bot is None:
                return 200, {"code": "51293", "msg": "Bot does not exist", "data": []}
            if path == BOT_DETAILS_PATH:
                return 200, {"code": "0", "msg": "", "data": [bot.okx_json(algo_id)]}
            limit = params.get("limit", "100")
            if not limit.isdigit() or not 1 <= int(limit) <= 100:
                return 400, {"code": "51000", "msg": "Parameter limit error", "data": []}
            newest_first = [event.okx_json(algo_id) for event in reversed(bot.events)]
            return 200, {"code": "0", "msg": "", "data": newest_first[: int(limit)]}

    def _execute_later(self, body: bytes, arrived: float, seconds: float) -> None:
        """OKX acts on the request ``seconds`` from now (after it dropped the connection or answered)."""

        def act():
            with self._lock:
                self._execute(body, arrived)
                self.late_pending -= 1
                self.late_executed += 1

        with self._lock:
            self.late_pending += 1
        timer = threading.Timer(seconds, act)
        timer.daemon = True
        timer.start()

    def _execute(self, body: bytes, arrived: float = 0.0) -> tuple[str, str] | None:
        """OKX acts on a margin request: None when it changed the bot, else its refusal (code, msg)."""
        request = json.loads(body)
        amt, action = Decimal(request["amt"]), request["type"]
        with self._lock:
            bot = self.bots.find(request["algoId"])
            if bot is None or bot.state != "running":
                return "51291", "Bot does not exist or stopped"
            if action == "reduce" and amt > bot.avail_bal:
                return "51008", "Order failed. Insufficient USDT balance in account."
            self._apply_margin(bot, action, amt, request.get("allowReinvest", False))
            if self.events_for_margin:
                done = "added" if action == "add" else "reduced"
                self.add_event(request["algoId"], "user_action", f"Margin {done} via API: {amt}")
            self.executed.append(request)
            self.executions.append((arrived, request))
            return None

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
                path, _, query = self.path.partition("?")
                with stand_in._lock:
                    arrived = time.monotonic()
                    stand_in.received.append(Received(arrived, self.path, dict(self.headers), b"", "0"))
                    stand_in._read_arrivals[path].append(arrived)
                if path == TIME_PATH:
                    return self._json(200, {"code": "0", "msg": "", "data": [{"ts": str(int(stand_in.now() * 1000))}]})
                if path != ACCOUNT_CONFIG_PATH and path not in BOT_READ_PATHS:
                    return self._json(404, {"code": "50000", "msg": "not found", "data": []})
                if not stand_in.right_region:  # OKX's other regional sites do not know the key
                    return self._json(401, {"code": "50119", "msg": "API key doesn't exist", "data": []})
                refusal = stand_in.check("GET", self.path, self.headers, b"")  # signed over path and query
                if refusal is None and not stand_in.ip_allowed:
                    refusal = (401, "50110", "Your IP 127.0.0.1 is not included in your API key's IP whitelist.")
                if refusal is None and path in BOT_READ_PATHS and stand_in._read_over_limit(path):
                    refusal = (429, "50011", "Too Many Requests")
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
                self._json(*stand_in._bot_read(path, query))

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
                change = None
                if isinstance(behaviour, Meanwhile):
                    behaviour, change = behaviour.behaviour, behaviour.change
                algo_id = json.loads(body)["algoId"]
                arrived = time.time()  # wall-clock time, as the journal's received_at
                late = getattr(behaviour, "late", 0.0)

                def meanwhile():  # the world moves after OKX decided, before the answer leaves
                    if change is not None:
                        change(stand_in, algo_id)

                if isinstance(behaviour, DropUnexecuted):
                    meanwhile()
                    return self._drop()
                if isinstance(behaviour, Hold):
                    return self._hold(behaviour, body, arrived, record)
                if isinstance(behaviour, OkxReply):
                    reply = {"code": behaviour.code, "msg": behaviour.msg, "data": behaviour.data}
                    status = behaviour.http
                    if behaviour.code == "0":  # a scripted success still meets the bot's own refusals
                        bot_refusal = stand_in._execute(body)
                        if bot_refusal:
                            status, reply = 200, {"code": bot_refusal[0], "msg": bot_refusal[1], "data": []}
                    record.code = reply["code"]
                    meanwhile()
                    return self._json(status, reply)
                if isinstance(behaviour, RawReply):
                    if behaviour.executed and not late:
                        stand_in._execute(body, arrived)
                    meanwhile()
                    self._raw(behaviour.http, behaviour.text.encode(), "text/html")
                    if behaviour.executed and late:
                        stand_in._execute_later(body, arrived, late)
                    return None
                bot_refusal = None if late else stand_in._execute(body, arrived)
                meanwhile()
                if isinstance(behaviour, Drop):
                    self._drop()
                    if late:
                        stand_in._execute_later(body, arrived, late)
                    return None
                if isinstance(behaviour, Slow):
                    time.sleep(behaviour.seconds)
                if late:  # the answer says done; OKX acts on it a little later
                    record.code = "0"
                    self._json(200, {"code": "0", "msg": "", "data": [{"algoId": algo_id}]})
                    return stand_in._execute_later(body, arrived, late)
                if bot_refusal:  # OKX answers a bot's refusal with HTTP 200 and its code
                    record.code = bot_refusal[0]
                    return self._json(200, {"code": bot_refusal[0], "msg": bot_refusal[1], "data": []})
                record.code = "0"
                self._json(200, {"code": "0", "msg": "", "data": [{"algoId": algo_id}]})

            def _hold(self, hold: Hold, body: bytes, arrived: float, record: Received):
                answer = hold.answer or OkxReply("0")
                reply = {"code": answer.code, "msg": answer.msg, "data": answer.data}
                if answer.code == "0":
                    refusal = stand_in._execute(body, arrived)
                    if refusal:
                        reply = {"code": refusal[0], "msg": refusal[1], "data": []}
                    else:
                        reply["data"] = [{"algoId": json.loads(body)["algoId"]}]
                record.code = reply["code"]
                hold.peer_port = self.client_address[1]
                hold.arrived.set()
                hold.release.wait(timeout=300)
                self._json(answer.http, reply)

            def _drop(self):
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

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

    def max_in_any_window(self) -> int:
        """The most margin-balance requests counted against its limit within any ``window``
        seconds (reads have limits of their own and never count here)."""
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
                "reads": {path: len(self._read_arrivals[path]) for path in BOT_READ_PATHS},
                "read_limited": dict(self.read_limited),
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
