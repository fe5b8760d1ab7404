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
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlencode

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

MARGIN_BALANCE_PATH = "/api/v5/tradingBot/signal/margin-balance"
SERVER_TIME_PATH = "/api/v5/public/time"
ACCOUNT_CONFIG_PATH = "/api/v5/account/config"
BOT_DETAILS_PATH = "/api/v5/tradingBot/signal/orders-algo-details"

HINTS = {
    "50119": "OKX does not know this API key at {base_url}. Accounts registered at my.okx.com use "
    "https://eea.okx.com and at app.okx.com use https://us.okx.com: check OKX_BASE_URL.",
    "50101": "The API key's environment does not match: demo-trading keys need OKX_DEMO=1, live keys OKX_DEMO=0.",
    "50102": "The request timestamp was outside OKX's 30 s window: check this server's clock.",
    "50110": "This server's IP address is not in the API key's IP allowlist.",
    "50111": "Check OKX_API_KEY.",
    "50113": "The signature was refused: check OKX_API_SECRET.",
    "50105": "The passphrase was refused: check OKX_API_PASSPHRASE.",
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
    ):
        if not dry_run and not (api_key and secret_key and passphrase):
            raise ValueError("OkxClient needs api_key, secret_key and passphrase unless dry_run")
        self.base_url = base_url.rstrip("/")
        self.demo = demo
        self.dry_run = dry_run
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
        ``send_by`` (time.monotonic()): the last moment the request may leave; checked as late as we can,
        right before the connection is used (``OkxSendTooLate`` after it, nothing sent)."""
        body = request.body_bytes()
        if self.dry_run:
            if self._secret_key:  # sign anyway, so dry-run exercises the whole path
                self.signed_headers("POST", MARGIN_BALANCE_PATH, body)
            return OkxAck(algo_id=request.algo_id, dry_run=True)
        headers = self.signed_headers("POST", MARGIN_BALANCE_PATH, body)
        if send_by is not None and time.monotonic() >= send_by:
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

    def get_signed(self, path: str, query: dict | None = None) -> dict:
        """A signed GET (a read): the prehash is timestamp + GET + the path with its query string,
        and an empty body. Returns OKX's payload when it said "0", raises an ``OkxError`` otherwise."""
        if self.dry_run and not self._secret_key:
            raise OkxRefused("no OKX credentials are set (dry-run)")
        request_path = path + ("?" + urlencode(query) if query else "")
        headers = self.signed_headers("GET", request_path, b"")
        try:
            response = self.session.get(
                self.base_url + request_path, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise OkxUnreachable(f"could not reach {self.base_url}: {type(exc).__name__}") from None
        return self._interpret(response)

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
        hint = HINTS.get(code, "").format(base_url=self.base_url)
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
