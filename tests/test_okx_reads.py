"""The signed reads of a signal bot: details, the active bots, the event history.

Against a tiny fake OKX on 127.0.0.1 that checks each request's signature (prehash with the
query string) and serves canned bodies shaped as OKX's documentation gives them.
"""

import dataclasses
import json
import socket
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from webhook_app.okx.client import BOT_DETAILS_PATH, BOT_EVENTS_PATH, BOTS_PENDING_PATH, OkxClient, sign
from webhook_app.okx.errors import OkxError, OkxRefused, OkxUnreachable
from webhook_app.okx.margin.evidence import propose
from webhook_app.okx.margin.request import MarginRequest
from webhook_app.okx.records import BotEvent, BotSnapshot

API_KEY, SECRET, PASSPHRASE = "key-0123456789", "secret-0123456789", "passphrase-42"
ALGO_ID = "581628185981813760"


def okx_bot(**changes) -> dict:
    """A row of orders-algo-details / orders-algo-pending; ``changes`` replace fields (None drops one)."""
    row = {
        "algoId": ALGO_ID,
        "algoOrdType": "contract",
        "state": "running",
        "instType": "SWAP",
        "instIds": ["BTC-USDT-SWAP"],
        "investAmt": "100",
        "availBal": "40.5",
        "frozenBal": "12.25",
        "totalEq": "152.75",
        "uTime": "1795392000123",
        "cTime": "1795300000000",
    }
    row.update(changes)
    return {key: value for key, value in row.items() if value is not None}


def okx_event(ctime_ms: int, event_type="signal_processing", status="success", message="ENTER_LONG done") -> dict:
    return {
        "algoId": ALGO_ID,
        "eventType": event_type,
        "eventStatus": status,
        "eventCtime": str(ctime_ms),
        "eventUtime": str(ctime_ms),
        "eventProcessMsg": message,
        "alertMsg": "",
        "triggeredOrdData": [],
    }


def ok(*rows) -> dict:
    return {"code": "0", "msg": "", "data": list(rows)}


@dataclasses.dataclass
class Served:
    path: str  # with its query string, as received
    signed_over: str  # "path+query" | "path only" | "neither": what the signature covered


class FakeOkx:
    """Answers GETs from ``replies`` (path without query -> body), checking the signature as OKX does."""

    def __init__(self):
        self.replies: dict[str, dict] = {}
        self.delay = 0.0  # seconds to wait before answering (a slow OKX)
        self.served: list[Served] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                time.sleep(fake.delay)
                timestamp = self.headers.get("OK-ACCESS-TIMESTAMP", "")
                given = self.headers.get("OK-ACCESS-SIGN", "")
                path_only = self.path.split("?", 1)[0]
                if given == sign(SECRET, timestamp, "GET", self.path, b""):
                    signed_over = "path+query"
                elif given == sign(SECRET, timestamp, "GET", path_only, b""):
                    signed_over = "path only"
                else:
                    signed_over = "neither"
                fake.served.append(Served(self.path, signed_over))
                if signed_over != "path+query" or self.headers.get("OK-ACCESS-KEY") != API_KEY:
                    self._answer(401, {"code": "50113", "msg": "Invalid Sign", "data": []})
                else:
                    self._answer(200, fake.replies.get(path_only, {"code": "50000", "msg": "no reply set"}))

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeOkx()
    yield server
    server.close()


def client_for(base_url, **options) -> OkxClient:
    options.setdefault("connect_timeout", 1.0)
    options.setdefault("read_timeout", 5.0)
    return OkxClient(base_url, API_KEY, SECRET, PASSPHRASE, **options)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- signing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "read, path",
    [
        (lambda c: c.bot_snapshot(ALGO_ID), f"{BOT_DETAILS_PATH}?algoOrdType=contract&algoId={ALGO_ID}"),
        (lambda c: c.running_bots(), f"{BOTS_PENDING_PATH}?algoOrdType=contract"),
        (lambda c: c.bot_events(ALGO_ID, limit=20), f"{BOT_EVENTS_PATH}?algoId={ALGO_ID}&limit=20"),
    ],
    ids=["details", "pending", "events"],
)
def test_each_read_is_signed_over_the_path_with_its_query_string(fake, read, path):
    fake.replies = {BOT_DETAILS_PATH: ok(okx_bot()), BOTS_PENDING_PATH: ok(okx_bot()), BOT_EVENTS_PATH: ok()}
    read(client_for(fake.url))
    assert fake.served == [Served(path, "path+query")]


def test_the_signed_timestamp_is_on_okx_clock():
    client = client_for("http://127.0.0.1:9", clock=lambda: 1795392000.0)
    client._offset = 2.5  # as sync_clock would set it
    assert client.okx_now() == 1795392002.5
    assert client.signed_headers("GET", BOT_DETAILS_PATH, b"")["OK-ACCESS-TIMESTAMP"] == "2026-11-23T00:00:02.500Z"


# -- bot_snapshot: every field --------------------------------------------------------------


def test_a_bot_is_read_field_by_field(fake):
    fake.replies[BOT_DETAILS_PATH] = ok(okx_bot())
    snapshot = client_for(fake.url).bot_snapshot(ALGO_ID)
    assert dataclasses.replace(snapshot, read_at=0.0) == BotSnapshot(
        algo_id=ALGO_ID,
        state="running",
        inst_ids=("BTC-USDT-SWAP",),
        invest_amt=Decimal("100"),
        avail_bal=Decimal("40.5"),
        frozen_bal=Decimal("12.25"),
        total_eq=Decimal("152.75"),
        u_time_ms=1795392000123,
        read_at=0.0,
    )


@pytest.mark.parametrize(
    "changes, attribute, expected",
    [
        ({"state": "stopping"}, "state", "stopping"),
        ({"state": "stopped"}, "state", "stopped"),
        ({"instIds": ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]}, "inst_ids", ("BTC-USDT-SWAP", "ETH-USDT-SWAP")),
        ({"instIds": "BTC-USDT-SWAP,ETH-USDT-SWAP"}, "inst_ids", ("BTC-USDT-SWAP", "ETH-USDT-SWAP")),
        ({"instIds": "BTC-USDT-SWAP"}, "inst_ids", ("BTC-USDT-SWAP",)),
        ({"instIds": None}, "inst_ids", ()),
        ({"instIds": ""}, "inst_ids", ()),
        ({"investAmt": "12345678901234567890.123456789"}, "invest_amt", Decimal("12345678901234567890.123456789")),
        ({"availBal": "0.000000000000000000000000000001"}, "avail_bal", Decimal("1E-30")),
        ({"frozenBal": "0"}, "frozen_bal", Decimal("0")),
        ({"totalEq": "-3.50"}, "total_eq", Decimal("-3.50")),
        ({"investAmt": None}, "invest_amt", None),
        ({"availBal": ""}, "avail_bal", None),
        ({"frozenBal": "n/a"}, "frozen_bal", None),
        ({"totalEq": "NaN"}, "total_eq", None),
        ({"totalEq": "Infinity"}, "total_eq", None),
        ({"availBal": 40.5}, "avail_bal", None),  # a JSON float may be rounded already: not trusted
        ({"uTime": "1795392000999"}, "u_time_ms", 1795392000999),
        ({"uTime": None}, "u_time_ms", None),
        ({"uTime": ""}, "u_time_ms", None),
        ({"uTime": "1795392000.5"}, "u_time_ms", None),
    ],
)
def test_each_field_is_read_exactly_or_left_unknown(fake, changes, attribute, expected):
    fake.replies[BOT_DETAILS_PATH] = ok(okx_bot(**changes))
    value = getattr(client_for(fake.url).bot_snapshot(ALGO_ID), attribute)
    assert value == expected
    if isinstance(expected, Decimal):
        assert str(value) == str(expected)  # every digit kept: no rounding, no normalising


def test_many_digits_survive_to_json_unrounded(fake):
    fake.replies[BOT_DETAILS_PATH] = ok(okx_bot(availBal="12345678901234567890.123456789", totalEq="1E+2"))
    shown = client_for(fake.url).bot_snapshot(ALGO_ID).to_json()
    assert shown["availBal"] == "12345678901234567890.123456789"
    assert shown["totalEq"] == "100"  # no exponent


def test_read_at_is_the_midpoint_of_the_read_on_okx_clock(fake):
    ticks = iter([1000.0, 1003.0])  # our clock before and after the request
    client = client_for(fake.url, clock=lambda: next(ticks, 1003.0))
    client._offset = -0.5
    fake.replies[BOT_DETAILS_PATH] = ok(okx_bot())
    assert client.bot_snapshot(ALGO_ID).read_at == pytest.approx(1001.0)


@pytest.mark.parametrize(
    "reply",
    [
        {"code": "51291", "msg": "Bot does not exist or stopped", "data": []},
        {"code": "51293", "msg": "Bot does not exist", "data": []},
        {"code": "51289", "msg": "Bot configuration does not exist", "data": []},
        {"code": "0", "msg": "", "data": []},
    ],
    ids=["51291", "51293", "51289", "empty-data"],
)
def test_okx_knowing_no_such_bot_is_an_answer_missing(fake, reply):
    fake.replies[BOT_DETAILS_PATH] = reply
    snapshot = client_for(fake.url).bot_snapshot(ALGO_ID)
    assert (snapshot.algo_id, snapshot.state, snapshot.inst_ids) == (ALGO_ID, "missing", ())
    assert (snapshot.invest_amt, snapshot.avail_bal, snapshot.frozen_bal, snapshot.total_eq) == (None,) * 4
    assert snapshot.u_time_ms is None


@pytest.mark.parametrize(
    "reply",
    [
        {"code": "51288", "msg": "Bot is stopping", "data": []},
        {"code": "50011", "msg": "Too Many Requests", "data": []},
        {"code": "0", "msg": "", "data": "not a list"},
        {"code": "0", "msg": "", "data": ["not an object"]},
    ],
    ids=["51288", "50011", "data-not-a-list", "row-not-an-object"],
)
def test_any_other_answer_is_a_failed_read(fake, reply):
    fake.replies[BOT_DETAILS_PATH] = reply
    with pytest.raises(OkxError):
        client_for(fake.url).bot_snapshot(ALGO_ID)


def test_a_closed_port_is_unreachable():
    with pytest.raises(OkxUnreachable):
        client_for(f"http://127.0.0.1:{closed_port()}").bot_snapshot(ALGO_ID)


def test_dry_run_without_credentials_reads_nothing():
    client = OkxClient("http://127.0.0.1:9", dry_run=True)
    for read in (lambda: client.bot_snapshot(ALGO_ID), client.running_bots, lambda: client.bot_events(ALGO_ID)):
        with pytest.raises(OkxRefused):
            read()


def test_the_per_call_timeout_overrides_the_clients(fake):
    """OKX answers after 1 s: within the client's 5 s, not within the call's 0.2 s."""
    fake.replies[BOT_DETAILS_PATH] = ok(okx_bot())
    fake.delay = 1.0
    client = client_for(fake.url)
    with pytest.raises(OkxError):
        client.bot_snapshot(ALGO_ID, timeout=0.2)
    assert client.bot_snapshot(ALGO_ID).state == "running"  # the client's own timeout is unchanged


# -- running_bots and bot_events ------------------------------------------------------------


def test_the_active_bots_are_listed_each_with_its_own_id(fake):
    fake.replies[BOTS_PENDING_PATH] = ok(okx_bot(), okx_bot(algoId="2", instIds="ETH-USDT-SWAP", availBal="7"))
    bots = client_for(fake.url).running_bots()
    assert [(b.algo_id, b.inst_ids, b.avail_bal) for b in bots] == [
        (ALGO_ID, ("BTC-USDT-SWAP",), Decimal("40.5")),
        ("2", ("ETH-USDT-SWAP",), Decimal("7")),
    ]
    assert bots[0].read_at == bots[1].read_at


def test_no_active_bots_is_an_empty_list(fake):
    fake.replies[BOTS_PENDING_PATH] = ok()
    assert client_for(fake.url).running_bots() == []


def test_events_come_newest_first_as_okx_gives_them(fake):
    fake.replies[BOT_EVENTS_PATH] = ok(
        okx_event(1795392003900, "user_action", "success", "margin added"),
        okx_event(1795392001200, "signal_processing", "failure", "maxLag exceeded"),
    )
    assert client_for(fake.url).bot_events(ALGO_ID) == [
        BotEvent("user_action", "success", 1795392003900, "margin added"),
        BotEvent("signal_processing", "failure", 1795392001200, "maxLag exceeded"),
    ]
    assert fake.served[0].path.endswith("&limit=100")


def test_an_event_that_cannot_be_placed_in_time_fails_the_read(fake):
    row = okx_event(1795392001200)
    row["eventCtime"] = ""
    fake.replies[BOT_EVENTS_PATH] = ok(okx_event(1795392003900), row)
    with pytest.raises(OkxError):
        client_for(fake.url).bot_events(ALGO_ID)


# -- JSON round trips ---------------------------------------------------------------------


def test_a_snapshot_round_trips_through_json(fake):
    fake.replies[BOT_DETAILS_PATH] = ok(okx_bot(investAmt="12345678901234567890.123456789", frozenBal="0.10"))
    snapshot = client_for(fake.url).bot_snapshot(ALGO_ID)
    shown = json.loads(json.dumps(snapshot.to_json()))
    again = BotSnapshot.from_json(shown)
    assert again.to_json() == shown
    assert dataclasses.replace(again, read_at=0.0) == dataclasses.replace(snapshot, read_at=0.0)
    assert again.read_at == pytest.approx(snapshot.read_at, abs=1e-3)
    assert shown["frozenBal"] == "0.10"


def test_a_missing_bot_round_trips_with_nulls():
    snapshot = BotSnapshot.missing(ALGO_ID, 1795392000.25)
    shown = json.loads(json.dumps(snapshot.to_json()))
    assert shown == {
        "algoId": ALGO_ID,
        "state": "missing",
        "instIds": [],
        "investAmt": None,
        "availBal": None,
        "frozenBal": None,
        "totalEq": None,
        "uTime": None,
        "readAt": "2026-11-23T00:00:00.250Z",
    }
    assert BotSnapshot.from_json(shown) == snapshot


@pytest.mark.parametrize("ctime_ms", [0, 1607418537715, 1795392000001, 1795392000999])
def test_an_event_round_trips_to_the_millisecond(ctime_ms):
    event = BotEvent("system_action", "success", ctime_ms, "bot started")
    shown = json.loads(json.dumps(event.to_json()))
    assert BotEvent.from_json(shown) == event
    if ctime_ms == 1607418537715:
        assert shown["eventCtime"] == "2020-12-08T09:08:57.715Z"


# -- against the loopback stand-in: the client and the rule together --------------------------

STAND_IN_BOT = "700000000000000001"


def stand_in_scenarios():
    """What happens at the stand-in between the two reads: (send an add of 50?, then what else)."""
    return [
        ("executed add", True, lambda okx: None, "executed"),
        ("nothing sent", False, lambda okx: None, "not_executed"),
        ("PnL moved", True, lambda okx: okx.move_pnl(STAND_IN_BOT, Decimal("-3.5")), "cant_tell"),
        ("a trade", True, lambda okx: okx.trade(STAND_IN_BOT, Decimal("10")), "cant_tell"),
    ]


@pytest.mark.parametrize(
    "send, meanwhile, verdict", [s[1:] for s in stand_in_scenarios()], ids=[s[0] for s in stand_in_scenarios()]
)
def test_the_stand_in_read_and_judged(okx, send, meanwhile, verdict):
    okx.add_bot(STAND_IN_BOT, u_time_ms=okx.now_ms() - 60_000)  # last touched a minute ago
    client = OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase, read_timeout=5.0)
    before = client.bot_snapshot(STAND_IN_BOT, timeout=2.0)
    if send:
        client.adjust_margin(MarginRequest(STAND_IN_BOT, "add", "50", allow_reinvest=True))
    meanwhile(okx)
    after = client.bot_snapshot(STAND_IN_BOT, timeout=2.0)
    events = client.bot_events(STAND_IN_BOT, timeout=2.0)
    assert propose("add", Decimal(50), True, before, after, events).verdict == verdict  # investAmt moves too
    assert STAND_IN_BOT in {bot.algo_id for bot in client.running_bots(timeout=2.0)}
