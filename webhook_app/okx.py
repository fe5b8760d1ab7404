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
from datetime import datetime, timezone
from typing import Callable, Optional

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

MARGIN_BALANCE_PATH = "/api/v5/tradingBot/signal/margin-balance"
SERVER_TIME_PATH = "/api/v5/public/time"

# Codes after which OKX certainly did not act, so a resend is safe (reference.md).
NOT_EXECUTED_CODES = {"50011", "50013", "50001", "50040"}
CLOCK_SKEW_CODE = "50102"
# Codes after which OKX may or may not have acted: never resend blindly.
OUTCOME_UNKNOWN_CODES = {"50004", "51149", "50026", "51054"}

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
    allow_reinvest: Optional[bool] = None  # sent only when not None

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


def okx_timestamp(epoch_seconds: float) -> str:
    """ISO 8601 UTC with exactly three millisecond digits, e.g. 2020-12-08T09:08:57.715Z."""
    moment = datetime.fromtimestamp(epoch_seconds, timezone.utc)
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

    def __init__(self, base_url: str, api_key: str = "", secret_key: str = "", passphrase: str = "",
                 *, demo: bool = False, dry_run: bool = False, connect_timeout: float = 1.0,
                 read_timeout: float = 10.0, pool_size: int = 16,
                 clock: Callable[[], float] = time.time):
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
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size,
                              max_retries=Retry(total=0, read=False, redirect=False))
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

    def adjust_margin(self, request: MarginRequest) -> OkxAck:
        """Send one margin-balance request, signed afresh. Raises an ``OkxError`` unless OKX said "0"."""
        body = request.body_bytes()
        if self.dry_run:
            if self._secret_key:  # sign anyway, so dry-run exercises the whole path
                self.signed_headers("POST", MARGIN_BALANCE_PATH, body)
            return OkxAck(algo_id=request.algo_id, dry_run=True)
        headers = self.signed_headers("POST", MARGIN_BALANCE_PATH, body)
        payload = self._post(MARGIN_BALANCE_PATH, body, headers)
        data = payload.get("data") or [{}]
        algo_id = data[0].get("algoId", request.algo_id) if isinstance(data[0], dict) else request.algo_id
        return OkxAck(algo_id=str(algo_id))

    def sync_clock(self) -> float:
        """Set the clock offset from GET /api/v5/public/time; returns it in seconds."""
        started = self._clock()
        try:
            response = self.session.get(self.base_url + SERVER_TIME_PATH, timeout=self.timeout)
            server_ms = int(response.json()["data"][0]["ts"])
        except (requests.RequestException, ValueError, KeyError, IndexError, TypeError):
            raise OkxNotExecuted("could not read OKX's server time", CLOCK_SKEW_CODE,
                                 HINTS[CLOCK_SKEW_CODE]) from None
        midpoint = (started + self._clock()) / 2
        with self._offset_lock:
            self._offset = server_ms / 1000 - midpoint
        return self._offset

    def _post(self, path: str, body: bytes, headers: dict) -> dict:
        try:
            response = self.session.post(self.base_url + path, data=body, headers=headers,
                                         timeout=self.timeout, allow_redirects=False)
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
        try:
            payload = response.json()
            code = str(payload["code"])
            message = str(payload.get("msg", ""))
        except (ValueError, KeyError, TypeError):
            if response.status_code >= 500:
                raise OkxOutcomeUnknown(f"OKX answered HTTP {response.status_code} without an OKX body") from None
            raise OkxRefused(f"OKX answered HTTP {response.status_code} without an OKX body",
                             f"HTTP {response.status_code}") from None
        # Decide on OKX's code, not on the HTTP status: 50011 comes with 429 or 200.
        if code == "0":
            return payload
        hint = HINTS.get(code, "").format(base_url=self.base_url)
        if code == CLOCK_SKEW_CODE:
            raise OkxClockSkew(message, code, hint)
        if code in NOT_EXECUTED_CODES:
            raise OkxNotExecuted(message, code, hint, retry_after=2.0 if code == "50011" else 0.0)
        if code in OUTCOME_UNKNOWN_CODES:
            raise OkxOutcomeUnknown(message, code, hint)
        raise OkxRefused(message, code, hint)


class OkxUnreachable(OkxNotExecuted):
    """The connection could not be made, so nothing was sent."""


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the failure happened while connecting, before any byte of the request left."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))
