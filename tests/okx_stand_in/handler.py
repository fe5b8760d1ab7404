"""The HTTP side of the stand-in: admission (path, signature, limit, expTime) and the faults played."""

from __future__ import annotations

import dataclasses
import functools
import json
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

from tests.okx_stand_in.actions import Answer, Call
from tests.okx_stand_in.faults import Drop, DropUnexecuted, Hold, Meanwhile, OkxReply, Queued, RawReply, Slow
from tests.okx_stand_in.paths import (
    ACCOUNT_CONFIG_PATH,
    ACTION_PATHS,
    ARRIVALS_PATH,
    PUBLIC_PATHS,
    SIGNED_READ_PATHS,
    STATS_PATH,
    SUB_ORDER_PATH,
    TIME_PATH,
)
from tests.okx_stand_in.reads import answer_read

if TYPE_CHECKING:
    from tests.okx_stand_in.stand_in import OkxStandIn

UNLIMITED = (TIME_PATH, ACCOUNT_CONFIG_PATH)  # not modelled: OKX's own limits there are never reached


@dataclasses.dataclass
class Received:
    at: float
    path: str
    headers: dict
    body: bytes
    code: str  # what the stand-in answered ("0" for success, "" for no OKX body)
    # time.monotonic() when its request line had been read: before the headers, the body and any check
    first_line_at: float = 0.0


def exp_time_problem(exp_time: str | None, now_ms: int) -> tuple[int, str, str] | None:
    """OKX's refusal of a request whose expTime header (epoch ms) is malformed or already past."""
    if exp_time is None:
        return None
    if not exp_time.isdigit():
        return 400, "51000", "Parameter expTime error"
    if int(exp_time) < now_ms:
        return 200, "50036", "The expTime can't be earlier than the current system time."
    return None


class Handler(BaseHTTPRequestHandler):
    """One request to OKX: admitted or refused, then acted on as the script says."""

    okx: OkxStandIn  # set by handler_class
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, *args):  # quiet
        pass

    def parse_request(self) -> bool:
        # Called as soon as the request line is read: the arrival a latency benchmark compares with
        # its client's clock (time.monotonic() is system-wide on Linux).
        self.first_line_at = time.monotonic()
        return super().parse_request()

    def do_GET(self):
        if self.path == STATS_PATH:  # for benchmarks running the stand-in in its own process
            return self._json(200, self.okx.stats())
        if self.path == ARRIVALS_PATH:
            return self._json(200, self.okx.arrivals())
        path, _, query = self.path.partition("?")
        with self.okx._lock:
            arrived = time.monotonic()
            self.okx.received.append(Received(arrived, self.path, dict(self.headers), b"", "0"))
            self.okx._read_arrivals[path].append(arrived)
        if path not in PUBLIC_PATHS and path not in SIGNED_READ_PATHS:
            return self._json(404, {"code": "50000", "msg": "not found", "data": []})
        refusal = None if path in PUBLIC_PATHS else self._refuse_read() or self.okx.failing_reads.get(path)
        if refusal is None and path not in UNLIMITED and self.okx.over_limit(path):
            refusal = (429, "50011", "Too Many Requests")
        if refusal:
            return self._json(refusal[0], {"code": refusal[1], "msg": refusal[2], "data": []})
        self._json(*answer_read(self.okx, path, query))

    def _refuse_read(self) -> tuple[int, str, str] | None:
        if not self.okx.right_region:  # OKX's other regional sites do not know the key
            return 401, "50119", "API key doesn't exist"
        refusal = self.okx.check("GET", self.path, self.headers, b"")  # signed over path and query
        if refusal is None and not self.okx.ip_allowed:
            refusal = (401, "50110", "Your IP 127.0.0.1 is not included in your API key's IP whitelist.")
        return refusal

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path not in ACTION_PATHS:
            return self._json(404, {"code": "50000", "msg": "not found", "data": []})
        refusal = self.okx.check("POST", self.path, self.headers, body)
        if refusal is None and self.okx.over_limit(self.path):
            refusal = (429, "50011", "Too Many Requests")
        exp_time = self.headers.get("expTime") if self.path == SUB_ORDER_PATH else None
        if refusal is None:
            refusal = exp_time_problem(exp_time, self.okx.now_ms())
        record = Received(time.monotonic(), self.path, dict(self.headers), body, "", self.first_line_at)
        with self.okx._lock:
            self.okx.received.append(record)
        if refusal:
            record.code = refusal[1]
            return self._json(refusal[0], {"code": refusal[1], "msg": refusal[2], "data": []})
        behaviour, change = self.okx.next_behaviour(self.path), None
        if isinstance(behaviour, Meanwhile):
            behaviour, change = behaviour.behaviour, behaviour.change
        exp_time_ms = int(exp_time) if exp_time else None
        call = Call(self.path, json.loads(body), time.time(), exp_time_ms)  # wall clock, as received_at
        self._perform(behaviour, change, call, record)

    def _perform(self, behaviour, change, call: Call, record: Received):
        """OKX acts on ``call`` (now, later or never) and answers as ``behaviour`` says."""
        late = getattr(behaviour, "late", 0.0)

        def meanwhile():  # the world moves after OKX decided, before the answer leaves
            if change is not None:
                change(self.okx, call.algo_id)

        if isinstance(behaviour, DropUnexecuted):
            meanwhile()
            return self._drop()
        if isinstance(behaviour, Hold):
            return self._hold(behaviour, call, record)
        if isinstance(behaviour, OkxReply):
            return self._scripted(behaviour, call, record, meanwhile)
        if isinstance(behaviour, RawReply):
            if behaviour.executed and not late:
                self.okx.act(call)
            meanwhile()
            reply = functools.partial(self._raw, behaviour.http, behaviour.text.encode(), "text/html")
            return self._reply_then_act(reply, call, late if behaviour.executed else 0.0)
        if isinstance(behaviour, Queued):
            time.sleep(behaviour.seconds)
        outcome = None if late else self.okx.act(call)
        meanwhile()
        if isinstance(behaviour, Drop):
            return self._reply_then_act(self._drop, call, late)
        if isinstance(behaviour, Slow):
            time.sleep(behaviour.seconds)
        if late:  # the answer says done; OKX acts on it a little later
            reply = functools.partial(self._answer, 200, self.okx.actions.accepted(call), record)
            return self._reply_then_act(reply, call, late)
        self._answer(200, outcome, record)  # OKX answers its own refusals with HTTP 200 too

    def _reply_then_act(self, reply, call: Call, late: float):
        """``reply()`` (an answer or a dropped connection), then OKX acts on ``call`` ``late``
        seconds later (never when 0). The late act is counted pending before the reply leaves."""
        start = self.okx.act_later(call, late) if late else None
        reply()
        if start is not None:
            start()

    def _scripted(self, scripted: OkxReply, call: Call, record: Received, meanwhile):
        """The scripted answer; a scripted success still meets OKX's own refusals."""
        status, reply = scripted.http, Answer(scripted.code, scripted.msg, scripted.data)
        if scripted.code == "0":
            outcome = self.okx.act(call)
            if outcome.code != "0":
                status, reply = 200, outcome
        meanwhile()
        self._answer(status, reply, record)

    def _hold(self, hold: Hold, call: Call, record: Received):
        answer = hold.answer or OkxReply("0")
        reply = Answer(answer.code, answer.msg, answer.data)
        if answer.code == "0":
            outcome = self.okx.act(call)
            reply = outcome if outcome.code != "0" else Answer("0", answer.msg, outcome.data)
        record.code = reply.code
        hold.peer_port = self.client_address[1]
        hold.arrived.set()
        hold.release.wait(timeout=300)
        self._json(answer.http, reply.okx_json())

    def _answer(self, status: int, reply: Answer, record: Received):
        record.code = reply.code
        self._json(status, reply.okx_json())

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


def handler_class(okx: OkxStandIn) -> type[Handler]:
    """The handler class for ``okx``'s server."""
    return type("Handler", (Handler,), {"okx": okx})
