"""The stand-in itself: its server, what it checks, its scripts and its records."""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http.server import ThreadingHTTPServer

from tests.okx_stand_in.actions import Actions, Answer, Call, Execution
from tests.okx_stand_in.bodies import body_problem
from tests.okx_stand_in.bots import Bot, Bots
from tests.okx_stand_in.faults import AFTER_FIRST_LOOK, LATEST_FIRST_LOOK
from tests.okx_stand_in.handler import Received, handler_class
from tests.okx_stand_in.instruments import default_instruments
from tests.okx_stand_in.limits import RateLimits
from tests.okx_stand_in.paths import ACTION_PATHS, BOT_READ_PATHS, DEFAULT_BOT, MARGIN_PATH
from tests.okx_stand_in.world import World

_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


class OkxStandIn(World):
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
        # Each action's limit (rate_limit) and each read's (read_rate_limit) per ``window`` seconds.
        self.rate_limit, self.window, self.max_skew = rate_limit, window, max_skew
        self.read_rate_limit = read_rate_limit
        self.clock_offset = 0.0  # OKX's clock minus ours, to play 50102
        # For the signed reads (readiness): the key's permissions, whether this caller's IP and
        # region are the key's, and the signal bots of the account with their states.
        self.perm = "read_only,trade"
        self.ip_allowed = True
        self.right_region = True
        self.bots = Bots(lambda: Bot(u_time_ms=self.now_ms(), c_time_ms=self.now_ms()))
        self.instruments = default_instruments()
        # What OKX's docs leave open (⚠), as a test chooses: whether an API margin change is an
        # event, what close-position answers without a position ("51058" or "0", nothing done),
        # whether a stopped bot's positions are closed, and how long stopping and cancelling take.
        self.events_for_margin = events_for_margin
        self.close_without_position = "51058"
        self.close_on_stop = True
        self.stop_delay = 0.0
        self.cancel_delay = 0.0
        # The spellings of the sub-orders read's state OKX refuses (51000): its docs disagree between
        # "cancelled" and "canceled" ⚠; none refused by default.
        self.refused_states: set[str] = set()
        # Whether orders-algo-pending's rows carry exitSettingParam as the details' do (its docs do
        # not list its fields ⚠), and the signed reads OKX fails by path: path -> (http, code, msg).
        self.pending_lists_exit_setting = True
        self.failing_reads: dict[str, tuple[int, str, str]] = {}
        self.limits = RateLimits()
        self._read_arrivals: dict[str, list[float]] = collections.defaultdict(list)
        self.scripts: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self.script = self.scripts[MARGIN_PATH]
        # Called for a behaviour, on any action, when its script is empty (None: OKX simply acts).
        self.faults: Callable[[], object] | None = None
        self.received: list[Received] = []
        self.executed: list[dict] = []  # the margin bodies OKX acted on, in order
        self.executions: list[Execution] = []  # every action OKX carried out, in order
        self.late_pending = 0  # executions scheduled after a drop or an answer, not yet done
        self._after_events_read: dict[str, list[Callable[[], None]]] = {}  # algoId -> AFTER_FIRST_LOOK acts
        self.late_executed = 0
        self._lock = threading.RLock()  # re-entrant: a Meanwhile change runs helpers that take it
        self.actions = Actions(self)
        self.add_bot(DEFAULT_BOT)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler_class(self))
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

    # -- scripts and records ------------------------------------------------------------

    def play(self, *behaviours) -> None:
        """Script the next requests to margin-balance, or with a path first, to that action:
        ``play(Drop())``, ``play(SUB_ORDER_PATH, Slow(1), OkxReply("51008"))``."""
        path = MARGIN_PATH
        if behaviours and isinstance(behaviours[0], str):
            path, behaviours = behaviours[0], behaviours[1:]
        if path not in ACTION_PATHS:
            raise ValueError(f"{path} is not an action the stand-in serves")
        with self._lock:
            self.scripts[path].extend(behaviours)

    def next_behaviour(self, path: str):
        with self._lock:
            script = self.scripts[path]
            behaviour = script.popleft() if script else None
        if behaviour is None and self.faults is not None:
            behaviour = self.faults()
        return behaviour

    def margin_requests(self) -> list[Received]:
        return [r for r in self.received if r.path == MARGIN_PATH]

    def requests_to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path.partition("?")[0] == path]

    def executions_of(self, path: str) -> list[tuple[float, dict | list]]:
        """(arrival, body) of each request to ``path`` OKX carried out, in the order it did."""
        with self._lock:
            return [(e.arrived, e.body) for e in self.executions if e.path == path]

    def reads(self, path: str) -> list[float]:
        """Arrival times (time.monotonic()) of the GETs to ``path``, e.g. BOT_DETAILS_PATH."""
        with self._lock:
            return list(self._read_arrivals[path])

    # -- acting -------------------------------------------------------------------------

    def act(self, call: Call) -> Answer:
        return self.actions.act(call)

    def act_later(self, call: Call, seconds: float) -> Callable[[], None]:
        """OKX acts on ``call`` ``seconds`` after the returned ``start()`` (called once the
        connection dropped or the answer left), or, with ``AFTER_FIRST_LOOK``, right after its next
        answer to the bot's event history. Counted in ``late_pending`` at once, before the sender
        can see the drop or the answer: a wait for ``late_pending == 0`` never ends before it."""

        done = threading.Event()

        def act():
            with self._lock:
                if done.is_set():  # the look came, or the bound passed: OKX acts once
                    return
                done.set()
                self.actions.act(call)
                self.late_pending -= 1
                self.late_executed += 1

        def start(after: float = seconds):
            timer = threading.Timer(after, act)
            timer.daemon = True
            timer.start()

        with self._lock:
            self.late_pending += 1
            if seconds == AFTER_FIRST_LOOK:
                # OKX's lateness is bounded: with no look by then (its investigator killed), it acts anyway.
                self._after_events_read.setdefault(call.algo_id, []).append(act)
                return lambda: start(LATEST_FIRST_LOOK)
        return start

    def events_read(self, algo_id: str) -> None:
        """The bot's event history was just answered: what waited for that is acted on now."""
        with self._lock:
            waiting = self._after_events_read.pop(algo_id, [])
        for act in waiting:
            act()

    # -- what OKX checks ----------------------------------------------------------------

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
            return body_problem(path.partition("?")[0], body)
        return None

    def over_limit(self, path: str) -> bool:
        """True when ``path`` has used its own limit (actions: ``rate_limit``, reads:
        ``read_rate_limit``) within the last ``window`` seconds; else the request takes a slot."""
        limit = self.rate_limit if path in ACTION_PATHS else self.read_rate_limit
        with self._lock:
            return self.limits.over(path, time.monotonic(), limit, self.window)

    def max_in_any_window(self, path: str = MARGIN_PATH) -> int:
        """The most requests to ``path`` counted against its limit within any ``window`` seconds
        (each endpoint has a limit of its own: none counts against another's)."""
        with self._lock:
            return self.limits.max_in_any_window(path, self.window)

    @property
    def rate_limited(self) -> int:
        """Margin-balance requests refused with 50011."""
        return self.limits.refused[MARGIN_PATH]

    @property
    def read_limited(self) -> collections.Counter:
        """Per path, the reads refused with 50011."""
        return collections.Counter({p: n for p, n in self.limits.refused.items() if p not in ACTION_PATHS})

    @property
    def counted_times(self) -> list[float]:
        """Arrivals at margin-balance that used up a slot of its limit (time.monotonic())."""
        return self.limits.counted(MARGIN_PATH)

    def arrivals(self) -> list[dict]:
        """Each request to an action, in arrival order: when its request line was read
        (time.monotonic()), its path, its body as text and the code answered."""
        with self._lock:
            return [
                {
                    "first_line_at": r.first_line_at,
                    "path": r.path,
                    "body": r.body.decode(errors="replace"),
                    "code": r.code,
                }
                for r in self.received
                if r.path in ACTION_PATHS
            ]

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
                "limited": dict(self.limits.refused),
            }
