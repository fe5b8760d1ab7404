"""OKX v5 REST client: signing, the session, the clock offset, the signed reads of a bot
(``okx/reads.py``) and sending any action's request (``send``; each action's module under
``okx/actions/`` says how). A send either returns an ``OkxAck`` or raises one of the ``OkxError``
types (``okx/errors.py``), which say what matters for money: did OKX act?
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from webhook_app.clock import elapsed
from webhook_app.okx.actions import BotOrder
from webhook_app.okx.actions.registry import SUB_ORDER_ACTIONS, module_for
from webhook_app.okx.errors import (
    CLOCK_SKEW_CODE,
    OkxNotExecuted,
    OkxOutcomeUnknown,
    OkxRefused,
    OkxSendTooLate,
    OkxUnreachable,
    answer_outcome,
)
from webhook_app.okx.margin.request import MarginRequest
from webhook_app.okx.reads import (  # noqa: F401 (imported from here by the workers)
    BOT_DETAILS_PATH,
    BOT_EVENTS_PATH,
    BOTS_PENDING_PATH,
    POSITIONS_PATH,
    SUB_ORDERS_PATH,
    SignalReads,
)
from webhook_app.okx.records import OkxAck, okx_timestamp

__all__ = ["OkxAck", "OkxClient", "sign"]

SERVER_TIME_PATH = "/api/v5/public/time"


ACCOUNT_CONFIG_PATH = "/api/v5/account/config"


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
    "50120": "The API key lacks a permission: the signal-bot actions need the Trade permission.",
}


def sign(secret_key: str, timestamp: str, method: str, request_path: str, body: bytes | str) -> str:
    """Base64(HMAC-SHA256(secret_key, timestamp + METHOD + requestPath + body))."""
    if isinstance(body, str):
        body = body.encode()
    prehash = (timestamp + method.upper() + request_path).encode() + body
    digest = hmac.new(secret_key.encode(), prehash, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class OkxClient(SignalReads):
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
        settle_environment(self.session, self.base_url)

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

    def send(
        self,
        order: BotOrder,
        send_by: float | None = None,
        exp_time_ms: int | None = None,
        *,
        pace: Callable[[str], None] | None = None,
    ) -> OkxAck:
        """Send ``order``'s request, signed afresh, as its action's module says (one POST; for
        ``cancel`` a read of the pending sub-orders, then one POST for each). Raises an ``OkxError``
        unless OKX took it on or found its target already reached (``OkxAck.already``).

        ``send_by`` (a ``clock.elapsed()`` reading, which counts a suspension of the host): the last
        moment a request may leave; checked as late as we can, right before each POST (after it:
        ``OkxSendTooLate``, that one not sent). ``exp_time_ms``: OKX's expTime header (epoch ms on
        OKX's clock, ``okx_deadline_ms``), required for buy/sell and not sent for other actions
        (OKX honours it on sub-order only). ``pace(path)``: called before each request the send
        makes (reads included), e.g. to wait for that endpoint's rate budget."""
        module = module_for(order.action)
        if order.action in SUB_ORDER_ACTIONS and exp_time_ms is None:
            raise ValueError(f"a {order.action} is sent with its expTime: OKX must never act on it late")
        if self.dry_run:
            if self._secret_key:  # sign anyway, so dry-run exercises the whole path
                self.signed_headers("POST", order.path, order.body_bytes())
            return OkxAck(algo_id=order.algo_id, dry_run=True)
        return module.send(self, order, send_by, exp_time_ms, pace)

    def adjust_margin(self, request: MarginRequest, send_by: float | None = None) -> OkxAck:
        """Send one margin-balance request (``send`` of its ``BotOrder``)."""
        return self.send(BotOrder(request.type, request.body()), send_by)

    def post_signed(
        self, path: str, body: bytes, outcomes: dict, send_by: float | None = None, headers: dict | None = None
    ) -> dict:
        """One signed POST of ``body`` (the exact bytes), with ``headers`` added (e.g. expTime),
        sent only before ``send_by``. OKX's payload when its answer is a success; otherwise the
        ``OkxError`` its answer means, read against ``outcomes`` (the action's own codes) first."""
        signed = self.signed_headers("POST", path, body)
        signed.update(headers or {})
        if send_by is not None and elapsed() >= send_by:
            raise OkxSendTooLate("not sent: its claim had grown too old to send on (the process was held up)")
        return self._post(path, body, signed, outcomes)

    def okx_deadline_ms(self, send_by: float) -> int:
        """``send_by`` (a ``clock.elapsed()`` reading) as OKX's epoch ms: the expTime of a
        sub-order that must not be acted on after it."""
        return int((self.okx_now() + (send_by - elapsed())) * 1000)

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
            response = self._request(
                "GET",
                self.base_url + request_path,
                headers,
                None,
                self.timeout if timeout is None else (timeout / 2, timeout / 2),
            )
        except requests.RequestException as exc:
            raise OkxUnreachable(f"could not reach {self.base_url}: {type(exc).__name__}") from None
        return self._interpret(response)

    def okx_now(self) -> float:
        """Epoch seconds on OKX's clock: ours plus the offset measured by ``sync_clock``."""
        return self._clock() + self._offset

    def _post(self, path: str, body: bytes, headers: dict, outcomes: dict) -> dict:
        """``outcomes``: the action's own table of OKX codes, read before the common one."""
        try:
            response = self._request("POST", self.base_url + path, headers, body, self.timeout)
        except requests.ConnectionError as exc:
            if _never_sent(exc):
                raise OkxUnreachable("could not connect to OKX; nothing was sent") from None
            raise OkxOutcomeUnknown("the connection dropped after the request was sent") from None
        except requests.Timeout:
            raise OkxOutcomeUnknown(f"OKX did not answer within {self.timeout[1]:g} s") from None
        except requests.RequestException:
            raise OkxOutcomeUnknown("the reply from OKX could not be read") from None
        return self._interpret(response, outcomes)

    def _request(self, method: str, url: str, headers: dict, body: bytes | None, timeout) -> requests.Response:
        """One request on the session, never redirected, prepared here: the session's settings
        were settled once (``settle_environment``), so requests' merge of them into each request
        (seven merges and a copy of the cookie jar, 15% of a request's CPU) is skipped. The
        session's headers, cookies, auth and hooks apply as before."""
        session = self.session
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method,
            url=url,
            headers={**session.headers, **headers},
            data=body,
            cookies=session.cookies,
            auth=session.auth,
            hooks=session.hooks,
        )
        return session.send(
            prepared,
            timeout=timeout,
            allow_redirects=False,
            proxies=session.proxies,
            stream=False,
            verify=session.verify,
            cert=session.cert,
        )

    def _interpret(self, response: requests.Response, outcomes: dict | None = None) -> dict:
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
        outcome = answer_outcome(code, message, status, payload.get("data"), outcomes or {})
        if outcome is None:
            return payload
        error, retry_after, code, message = outcome  # an item's own sCode, when one failed
        hint = self.hint(code)
        if issubclass(error, OkxNotExecuted):
            raise error(message, code, hint, retry_after=retry_after)
        raise error(message, code, hint)


def settle_environment(session: requests.Session, base_url: str) -> None:
    """The environment's word on requests to ``base_url`` (HTTP(S)_PROXY and NO_PROXY,
    REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, ~/.netrc), read once into ``session``: every request
    goes to that one host, and requests would read it all again (a ~/.netrc lookup included) for
    each one, 2-3% of the relay's CPU."""
    settings = session.merge_environment_settings(base_url, {}, None, None, None)
    auth = requests.utils.get_netrc_auth(base_url)
    session.trust_env = False
    session.proxies.update(settings["proxies"])
    session.verify, session.cert = settings["verify"], settings["cert"]
    if auth and session.auth is None:
        session.auth = auth


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
