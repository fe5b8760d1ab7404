"""OKX v5 REST client for the signal bot's margin-balance call: signing, session, error mapping.

No Flask here. ``OkxClient.adjust_margin`` either returns an ``OkxAck`` or raises one
of the ``OkxError`` types below, which say what matters for money: did OKX act?
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from webhook_app.clock import elapsed

MARGIN_BALANCE_PATH = "/api/v5/tradingBot/signal/margin-balance"
SERVER_TIME_PATH = "/api/v5/public/time"
ACCOUNT_CONFIG_PATH = "/api/v5/account/config"
BOT_DETAILS_PATH = "/api/v5/tradingBot/signal/orders-algo-details"
BOTS_PENDING_PATH = "/api/v5/tradingBot/signal/orders-algo-pending"
BOT_EVENTS_PATH = "/api/v5/tradingBot/signal/event-history"

# Formatted with the client's base URL and the prefix of its account's variables ("OKX_", "OKX_HEDGE_").
HINTS = {
    "50119": "OKX does not know this API key at {base_url}. Accounts registered at my.okx.com use "
    "https://eea.okx.com and at app.okx.com use https://us.okx.com: check {prefix}BASE_URL.",
    "50101": "The API key's environment does not match: "
    "demo-trading keys need {prefix}DEMO=1, live keys {prefix}DEMO=0.",
    "50102": "The request timestamp was outside OKX's 30 s window: check this server's clock.",
    "50110": "This server's IP address is not in the API key's IP allowlist.",
    "50111": "Check {prefix}API_KEY.",
    "50113": "The signature was refused: check {prefix}API_SECRET.",
    "50105": "The passphrase was refused: check {prefix}API_PASSPHRASE.",
    "50120": "The API key lacks a permission: margin-balance needs the Trade permission.",
}


@dataclasses.dataclass(frozen=True)
class MarginRequest:
    """The body of POST /api/v5/tradingBot/signal/margin-balance."""

    algo_id: str
    type: str  # "add" | "reduce"
    amt: str  # plain decimal string, never an exponent
    allow_reinvest: bool | None = None  # sent only when not None

    def body(self) -> dict:
        body = {"algoId": self.algo_id, "type": self.type, "amt": self.amt}
        if self.allow_reinvest is not None:
            body["allowReinvest"] = self.allow_reinvest
        return body

    def body_bytes(self) -> bytes:
        """The exact bytes that are signed and sent."""
        return json.dumps(self.body(), separators=(",", ":")).encode()


@dataclasses.dataclass(frozen=True)
class OkxAck:
    algo_id: str
    dry_run: bool = False


@dataclasses.dataclass(frozen=True)
class BotSnapshot:
    """One bot as OKX reported it at ``read_at``."""

    algo_id: str
    state: str  # OKX's state: starting | running | stopping | stopped; "missing" when OKX knows no such bot
    inst_ids: tuple[str, ...]  # the bot's instrument(s), e.g. ("BTC-USDT-SWAP",); () when unknown
    invest_amt: Decimal | None
    avail_bal: Decimal | None
    frozen_bal: Decimal | None
    total_eq: Decimal | None
    u_time_ms: int | None  # OKX's uTime (epoch ms, OKX's clock)
    read_at: float  # epoch seconds on OKX's clock (our clock + the client's offset), midpoint of the read

    def to_json(self) -> dict:
        """OKX's field names; decimals as plain strings (no exponent), unknown as null."""
        return {
            "algoId": self.algo_id,
            "state": self.state,
            "instIds": list(self.inst_ids),
            "investAmt": decimal_text(self.invest_amt),
            "availBal": decimal_text(self.avail_bal),
            "frozenBal": decimal_text(self.frozen_bal),
            "totalEq": decimal_text(self.total_eq),
            "uTime": None if self.u_time_ms is None else str(self.u_time_ms),
            "readAt": okx_timestamp(self.read_at),
        }

    @classmethod
    def from_json(cls, data: dict) -> BotSnapshot:
        """The inverse of ``to_json`` (``readAt`` comes back to the millisecond)."""
        return cls(
            algo_id=data["algoId"],
            state=data["state"],
            inst_ids=tuple(data["instIds"]),
            invest_amt=_okx_decimal(data["investAmt"]),
            avail_bal=_okx_decimal(data["availBal"]),
            frozen_bal=_okx_decimal(data["frozenBal"]),
            total_eq=_okx_decimal(data["totalEq"]),
            u_time_ms=_okx_ms(data["uTime"]),
            read_at=_iso_to_ms(data["readAt"]) / 1000,
        )

    @classmethod
    def missing(cls, algo_id: str, read_at: float) -> BotSnapshot:
        """OKX's answer that it knows no such bot (or no longer runs it)."""
        return cls(algo_id, "missing", (), None, None, None, None, None, read_at)


@dataclasses.dataclass(frozen=True)
class BotEvent:
    """One entry of a bot's event history, as OKX listed it."""

    event_type: str  # system_action | user_action | signal_processing (as OKX says)
    event_status: str  # success | failure
    ctime_ms: int  # eventCtime, epoch ms on OKX's clock
    message: str  # eventProcessMsg

    def to_json(self) -> dict:
        return {
            "eventType": self.event_type,
            "eventStatus": self.event_status,
            "eventCtime": _ms_to_iso(self.ctime_ms),
            "eventProcessMsg": self.message,
        }

    @classmethod
    def from_json(cls, data: dict) -> BotEvent:
        return cls(data["eventType"], data["eventStatus"], _iso_to_ms(data["eventCtime"]), data["eventProcessMsg"])


class OkxError(Exception):
    """OKX did not confirm the change. ``code``/``message`` are OKX's when it sent them."""

    state = "rejected"

    def __init__(self, message: str, code: str = "", hint: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


class OkxRefused(OkxError):
    """OKX refused the request; it did not act. Resending the same request cannot help."""


class OkxNotExecuted(OkxError):
    """OKX certainly did not act (busy, rate limit, unreachable): safe to try again."""

    state = "failed"

    def __init__(self, message: str, code: str = "", hint: str = "", retry_after: float = 0.0):
        super().__init__(message, code, hint)
        self.retry_after = retry_after


class OkxClockSkew(OkxNotExecuted):
    """50102: our timestamp was outside OKX's window; correct the clock offset, then retry."""


class OkxOutcomeUnknown(OkxError):
    """The request may have reached OKX and OKX may have acted: never resend automatically."""

    state = "unknown"


class OkxUnreachable(OkxNotExecuted):
    """The connection (to OKX, or to the proxy in front of it) could not be made: nothing was sent."""


class OkxSendTooLate(OkxNotExecuted):
    """The request was never sent: its claim was too old to send on (a pause, a slow journal)."""


# What each OKX code says about money: did OKX act? (reference.md; OKX's error-code pages.)
# The one table of OKX's answers; a code not listed is refused, unless it came with HTTP 5xx.
CLOCK_SKEW_CODE = "50102"
RATE_LIMIT_CODE = "50011"
CODE_OUTCOMES: dict[str, tuple[type[OkxError], float]] = {  # code -> (error, seconds to wait first)
    # Not executed: safe to send again after a pause.
    RATE_LIMIT_CODE: (OkxNotExecuted, 2.0),  # over 20 requests / 2 s: wait for the window
    "50013": (OkxNotExecuted, 0.0),  # systems busy
    "50001": (OkxNotExecuted, 0.0),  # service temporarily unavailable
    "50040": (OkxNotExecuted, 0.0),  # too frequent
    "51290": (OkxNotExecuted, 5.0),  # bot engine being upgraded: retry later
    CLOCK_SKEW_CODE: (OkxClockSkew, 0.0),  # timestamp outside OKX's window: fix the offset, then resend
    # Outcome unknown: OKX may have acted; never resend.
    "50004": (OkxOutcomeUnknown, 0.0),  # endpoint request timeout ("does not mean ... failed")
    "51149": (OkxOutcomeUnknown, 0.0),  # order timed out
    "50026": (OkxOutcomeUnknown, 0.0),  # system error
    "51054": (OkxOutcomeUnknown, 0.0),  # request timed out
    # Refused: OKX did not act, and the same request would be refused again.
    "51288": (OkxRefused, 0.0),  # bot is stopping
}
# Among the refusals (not listed above: refused by default), the codes by which OKX says it has no
# such bot: 51289 no such configuration, 51291 no such bot or stopped, 51293 no such bot. A read
# of the bot's details answered with one of them is an answer, "missing", not a failed read.
BOT_MISSING_CODES = ("51289", "51291", "51293")


def okx_timestamp(epoch_seconds: float) -> str:
    """ISO 8601 UTC with exactly three millisecond digits, e.g. 2020-12-08T09:08:57.715Z."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign(secret_key: str, timestamp: str, method: str, request_path: str, body: bytes | str) -> str:
    """Base64(HMAC-SHA256(secret_key, timestamp + METHOD + requestPath + body))."""
    if isinstance(body, str):
        body = body.encode()
    prehash = (timestamp + method.upper() + request_path).encode() + body
    digest = hmac.new(secret_key.encode(), prehash, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class OkxClient:
    """Owns one ``requests.Session`` (connection reuse) and the clock offset to OKX."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        secret_key: str = "",
        passphrase: str = "",
        *,
        demo: bool = False,
        dry_run: bool = False,
        connect_timeout: float = 1.0,
        read_timeout: float = 10.0,
        pool_size: int = 16,
        clock: Callable[[], float] = time.time,
        settings_prefix: str = "OKX_",
    ):
        """``settings_prefix``: how the account's variables begin, for the hints in OKX's errors."""
        if not dry_run and not (api_key and secret_key and passphrase):
            raise ValueError("OkxClient needs api_key, secret_key and passphrase unless dry_run")
        self.base_url = base_url.rstrip("/")
        self.demo = demo
        self.dry_run = dry_run
        self.settings_prefix = settings_prefix
        self.timeout = (connect_timeout, read_timeout)
        self._api_key = api_key
        self._secret_key = secret_key
        self._passphrase = passphrase
        self._clock = clock
        self._offset = 0.0  # OKX time minus our time, in seconds
        self._offset_lock = threading.Lock()
        self.session = requests.Session()
        # No automatic retries of any kind: whether to resend is decided above us,
        # knowing whether OKX may have acted.
        adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=pool_size, max_retries=Retry(total=0, read=False, redirect=False)
        )
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def hint(self, code: str) -> str:
        """What to check for OKX's error ``code``, naming this account's settings; "" if nothing is known."""
        return HINTS.get(code, "").format(base_url=self.base_url, prefix=self.settings_prefix)

    def __repr__(self) -> str:
        return f"OkxClient(base_url={self.base_url!r}, demo={self.demo}, dry_run={self.dry_run})"

    def close(self) -> None:
        self.session.close()

    def signed_headers(self, method: str, request_path: str, body: bytes) -> dict:
        timestamp = okx_timestamp(self._clock() + self._offset)
        headers = {
            "OK-ACCESS-KEY": self._api_key,
            "OK-ACCESS-SIGN": sign(self._secret_key, timestamp, method, request_path, body),
            "OK-ACCESS-TIMESTAMP": timestamp,
            "OK-ACCESS-PASSPHRASE": self._passphrase,
            "Content-Type": "application/json",
        }
        if self.demo:
            headers["x-simulated-trading"] = "1"
        return headers

    def adjust_margin(self, request: MarginRequest, send_by: float | None = None) -> OkxAck:
        """Send one margin-balance request, signed afresh. Raises an ``OkxError`` unless OKX said "0".
        ``send_by`` (a ``clock.elapsed()`` reading, which counts a suspension of the host): the last
        moment the request may leave; checked as late as we can, right before the connection is used
        (``OkxSendTooLate`` after it, nothing sent)."""
        body = request.body_bytes()
        if self.dry_run:
            if self._secret_key:  # sign anyway, so dry-run exercises the whole path
                self.signed_headers("POST", MARGIN_BALANCE_PATH, body)
            return OkxAck(algo_id=request.algo_id, dry_run=True)
        headers = self.signed_headers("POST", MARGIN_BALANCE_PATH, body)
        if send_by is not None and elapsed() >= send_by:
            raise OkxSendTooLate("not sent: its claim had grown too old to send on (the process was held up)")
        payload = self._post(MARGIN_BALANCE_PATH, body, headers)
        return OkxAck(algo_id=_acknowledged_algo_id(payload, request.algo_id))

    def sync_clock(self) -> float:
        """Set the clock offset from GET /api/v5/public/time; returns it in seconds."""
        started = self._clock()
        try:
            response = self.session.get(self.base_url + SERVER_TIME_PATH, timeout=self.timeout)
            server_ms = int(response.json()["data"][0]["ts"])
        except (requests.RequestException, ValueError, KeyError, IndexError, TypeError):
            raise OkxNotExecuted("could not read OKX's server time", CLOCK_SKEW_CODE, HINTS[CLOCK_SKEW_CODE]) from None
        midpoint = (started + self._clock()) / 2
        with self._offset_lock:
            self._offset = server_ms / 1000 - midpoint
        return self._offset

    def get_signed(self, path: str, query: dict | None = None, timeout: float | None = None) -> dict:
        """A signed GET (a read): the prehash is timestamp + GET + the path with its query string,
        and an empty body. Returns OKX's payload when it said "0", raises an ``OkxError`` otherwise.
        ``timeout``: seconds for the connect and the read together (half each), instead of the client's own."""
        if self.dry_run and not self._secret_key:
            raise OkxRefused("no OKX credentials are set (dry-run)")
        request_path = path + ("?" + urlencode(query) if query else "")
        headers = self.signed_headers("GET", request_path, b"")
        try:
            response = self.session.get(
                self.base_url + request_path,
                headers=headers,
                timeout=self.timeout if timeout is None else (timeout / 2, timeout / 2),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise OkxUnreachable(f"could not reach {self.base_url}: {type(exc).__name__}") from None
        return self._interpret(response)

    def okx_now(self) -> float:
        """Epoch seconds on OKX's clock: ours plus the offset measured by ``sync_clock``."""
        return self._clock() + self._offset

    def bot_snapshot(self, algo_id: str, timeout: float | None = None) -> BotSnapshot:
        """The bot's details as OKX reports them now; state "missing" when OKX says it has no such
        bot. Raises an ``OkxError`` (e.g. ``OkxUnreachable``) when the read fails."""
        started = self.okx_now()
        try:
            payload = self.get_signed(BOT_DETAILS_PATH, {"algoOrdType": "contract", "algoId": algo_id}, timeout)
        except OkxError as exc:
            if exc.code in BOT_MISSING_CODES:
                return BotSnapshot.missing(algo_id, (started + self.okx_now()) / 2)
            raise
        read_at = (started + self.okx_now()) / 2
        bots = _data_rows(payload, "the bot's details")
        if not bots:
            return BotSnapshot.missing(algo_id, read_at)
        return _bot_from_okx(bots[0], algo_id, read_at)

    def running_bots(self, timeout: float | None = None) -> list[BotSnapshot]:
        """OKX's active signal bots (its first page of them: up to 100)."""
        started = self.okx_now()
        payload = self.get_signed(BOTS_PENDING_PATH, {"algoOrdType": "contract"}, timeout)
        read_at = (started + self.okx_now()) / 2
        return [_bot_from_okx(bot, "", read_at) for bot in _data_rows(payload, "the list of active bots")]

    def bot_events(self, algo_id: str, timeout: float | None = None, limit: int = 100) -> list[BotEvent]:
        """The bot's latest events, newest first as OKX lists them. An entry without a readable
        time raises an ``OkxError``: an event that cannot be placed in time must not be dropped."""
        payload = self.get_signed(BOT_EVENTS_PATH, {"algoId": algo_id, "limit": str(limit)}, timeout)
        events = []
        for row in _data_rows(payload, "the bot's event history"):
            ctime_ms = _okx_ms(row.get("eventCtime"))
            if ctime_ms is None:
                raise OkxError(f"OKX listed an event of bot {algo_id} without a readable eventCtime")
            events.append(
                BotEvent(
                    event_type=_text(row.get("eventType")),
                    event_status=_text(row.get("eventStatus")),
                    ctime_ms=ctime_ms,
                    message=_text(row.get("eventProcessMsg")),
                )
            )
        return events

    def _post(self, path: str, body: bytes, headers: dict) -> dict:
        try:
            response = self.session.post(
                self.base_url + path, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.ConnectionError as exc:
            if _never_sent(exc):
                raise OkxUnreachable("could not connect to OKX; nothing was sent") from None
            raise OkxOutcomeUnknown("the connection dropped after the request was sent") from None
        except requests.Timeout:
            raise OkxOutcomeUnknown(f"OKX did not answer within {self.timeout[1]:g} s") from None
        except requests.RequestException:
            raise OkxOutcomeUnknown("the reply from OKX could not be read") from None
        return self._interpret(response)

    def _interpret(self, response: requests.Response) -> dict:
        """OKX's payload when it said "0"; otherwise the ``OkxError`` its answer means."""
        status = response.status_code
        try:
            payload = response.json()
            code = str(payload["code"])
            message = str(payload.get("msg", ""))
        except (ValueError, KeyError, TypeError):
            # Not an OKX answer. A 5xx or a 2xx may come after OKX acted (a gateway timing out,
            # a mangled reply); a 3xx/4xx page is a proxy's or CDN's, and the request never got to OKX.
            problem = f"OKX answered HTTP {status} without an OKX body"
            if status >= 500 or status < 300:
                raise OkxOutcomeUnknown(problem) from None
            raise OkxNotExecuted(
                f"HTTP {status} from something in front of OKX, not from OKX: the request did not reach OKX"
            ) from None
        # Decide on OKX's code, not on the HTTP status: 50011 comes with 429 or 200.
        if code == "0":
            return payload
        hint = self.hint(code)
        error, retry_after = CODE_OUTCOMES.get(code, (OkxOutcomeUnknown if status >= 500 else OkxRefused, 0.0))
        if issubclass(error, OkxNotExecuted):
            raise error(message, code, hint, retry_after=retry_after)
        raise error(message, code, hint)


def _acknowledged_algo_id(payload: dict, sent: str) -> str:
    """The algoId OKX echoed in ``data[0]``, or the one sent. OKX said "0", so the change is
    made whatever shape ``data`` has; its shape never turns a success into anything else."""
    data = payload.get("data")
    first = data[0] if isinstance(data, list) and data else None
    echoed = first.get("algoId") if isinstance(first, dict) else None
    return echoed if isinstance(echoed, str) and echoed else sent


def _data_rows(payload: dict, what: str) -> list[dict]:
    """OKX's ``data`` list, each row an object; an answer of another shape is a failed read."""
    data = payload.get("data")
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise OkxError(f"OKX's answer for {what} was not a list of objects")
    return data


def _bot_from_okx(row: dict, algo_id: str, read_at: float) -> BotSnapshot:
    """A row of orders-algo-details or orders-algo-pending. ``algo_id``: the one asked for,
    used only when OKX's row does not name its bot."""
    return BotSnapshot(
        algo_id=_text(row.get("algoId")) or algo_id,
        state=_text(row.get("state")),
        inst_ids=_inst_ids(row.get("instIds")),
        invest_amt=_okx_decimal(row.get("investAmt")),
        avail_bal=_okx_decimal(row.get("availBal")),
        frozen_bal=_okx_decimal(row.get("frozenBal")),
        total_eq=_okx_decimal(row.get("totalEq")),
        u_time_ms=_okx_ms(row.get("uTime")),
        read_at=read_at,
    )


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _inst_ids(value: object) -> tuple[str, ...]:
    """OKX's instIds: a list, or one comma-separated string."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return ()
    return tuple(item.strip() for item in value if isinstance(item, str) and item.strip())


def _okx_decimal(value: object) -> Decimal | None:
    """A decimal from OKX's string (or an integer), exactly; None when absent, blank or not a finite number.
    A JSON float is refused (None): it may already have been rounded."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _okx_ms(value: object) -> int | None:
    """Epoch milliseconds from OKX's digit string (or an integer); None otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def decimal_text(value: Decimal | None) -> str | None:
    """A Decimal as OKX-style text with no exponent, all its digits kept (1E+2 -> "100", 1.50 -> "1.50")."""
    return None if value is None else format(value, "f")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms_to_iso(epoch_ms: int) -> str:
    """Exact, with no float: 1607418537715 -> 2020-12-08T09:08:57.715Z."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_to_ms(text: str) -> int:
    """The inverse of ``_ms_to_iso`` (and of ``okx_timestamp``), to the millisecond."""
    return (datetime.fromisoformat(text.replace("Z", "+00:00")) - _EPOCH) // timedelta(milliseconds=1)


def plain_decimal(value: Decimal) -> str:
    """A Decimal as a plain string with no exponent and no trailing zeros, exactly:
    1E+2 -> "100", 10.50 -> "10.5". Unlike ``normalize()``, it never rounds."""
    return format(significant(value), "f")


def significant(value: Decimal) -> Decimal:
    """``value`` with trailing zeros dropped, exactly (``normalize()`` rounds at 28 digits)."""
    sign, digits, exponent = value.as_tuple()
    digits = list(digits)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exponent += 1
    if digits == [0]:
        exponent = 0
    return Decimal((sign, tuple(digits), exponent))


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the failure happened while connecting, before any byte of the request left."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.ProxyError)):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    # urllib3 raises ProxyError only before it has connected to the proxy or while the
    # proxy is opening the tunnel (has_connected_to_proxy is False): nothing reached OKX.
    return isinstance(
        reason,
        (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ProxyError),
    )
