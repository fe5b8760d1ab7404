"""HTTP layer: the webhook and the service's own routes, and the one place where error types
become HTTP replies (the operator's routes in ``admin`` included). The webhook's pipeline is
``Intake.receive``'s; here it only becomes a reply, a log line and, when refused, a refusal record."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from pathlib import Path

from flask import Blueprint, current_app, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from webhook_app.errors import Refused
from webhook_app.intake.alerts import InvalidBody, holds_secret
from webhook_app.intake.pipeline import Receipt
from webhook_app.journal import JournalUnavailable, Record, Refusal, iso_time
from webhook_app.logs import scrubber
from webhook_app.okx.actions import ENDPOINTS
from webhook_app.surfaces.auth import bearer_is_admin, request_certificate, request_sender
from webhook_app.surfaces.context import read_body, services

log = logging.getLogger("webhook_app")
bp = Blueprint("webhook", __name__)

# Final and pending states -> HTTP status of the reply to TradingView. 503 makes TradingView
# resend after 5 s; only "failed" (OKX certainly did not act) gets it.
STATE_STATUS = {
    "ok": 200,
    "dry_run": 200,
    "rejected": 424,
    "unknown": 202,
    "queued": 202,
    "sending": 202,
    "failed": 503,
    "expired": 410,
}


@dataclasses.dataclass
class Trace:
    """One request's story, for the webhook's log line and refusal record (``g.trace``): when it
    began, what the intake read of it, what the reply said (``outcome``: state, OKX's code, the
    alert's id) and, when refused, why (``refusal``: kind, message, errors)."""

    started: float
    receipt: Receipt = dataclasses.field(default_factory=Receipt)
    outcome: tuple = (None, None, None)
    refusal: tuple | None = None


# The HTTP contract (README's reply tables, as OpenAPI 3), read once; checked by schemathesis in CI.
OPENAPI = json.loads(Path(__file__).with_name("openapi.json").read_text(encoding="utf-8"))


@bp.get("/openapi.json")
def openapi():
    return jsonify(OPENAPI)


@bp.get("/readyz")
def readyz():
    """Ready to move money? From the background checks' latest results (never a check on this
    request, so no visitor spends OKX's rate budget); the details only with the admin token."""
    readiness = services().readiness
    if readiness.results is None:
        body, status = {"status": "starting", "message": "the first check has not finished yet"}, 503
    else:
        body = {"status": "ready" if readiness.ready else "not_ready", "checked_at": iso_time(readiness.checked_at)}
        status = 200 if readiness.ready else 503
        if bearer_is_admin():
            body["checks"] = [dataclasses.asdict(check) for check in readiness.results]
    return jsonify(body), status


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok", dry_run=services().config.okx.dry_run)


@bp.post("/webhook")
def webhook():
    svc = services()
    svc.delivery.start()  # no-op once running; recovers the journal first when it is not
    trace = _trace()
    svc.intake.receive(
        read_body,  # read only once the sender passed its checks; 413 over the limit, chunked or not
        request_sender(),
        started=trace.started,
        receipt=trace.receipt,  # what was read of it, for the log line and refusal record even when refused
        certificate=request_certificate(),  # TradingView's client certificate, when required
    )
    return _alert_reply(trace.receipt.record, trace)


def _alert_reply(record: Record, trace: Trace):
    body = {"status": record.state, "id": record.id, "algoId": record.algo_id, "action": record.action}
    body["order"] = record.summary
    if record.state == "dry_run":
        body["message"] = "dry run: nothing was sent to OKX"
        if record.action == "cancel":  # the one action whose request is made at send time
            body["message"] += (
                "; cancel lists the bot's live sub-orders of the instrument, then sends one cancel-sub-order "
                "(with its signalOrdId) for each"
            )
        body["request"] = {"method": "POST", "path": ENDPOINTS[record.action], "body": record.request}
    elif record.state == "ok":
        body["okx"] = {"code": "0"}
    elif record.okx_code or record.okx_msg:
        body["okx"] = {"code": record.okx_code, "msg": record.okx_msg}
    if record.state == "rejected":
        said = " ".join(part for part in (record.okx_code, record.okx_msg) if part) or "no reason"
        body["message"] = f"OKX refused the request ({said}) and did not act on it; nothing was changed on the bot"
    if record.state == "unknown":
        body["message"] = unknown_next_steps(services().config, record.id)
    if record.state not in ("ok", "dry_run") and record.detail:
        body["detail"] = record.detail
    if record.state in ("queued", "sending"):
        body["detail"] = "accepted; the outcome was not known within the reply deadline and will be journaled"
    trace.outcome = (record.state, record.okx_code, record.id)
    return jsonify(body), STATE_STATUS[record.state]


def unknown_next_steps(config, alert_id: int) -> str:
    """What follows an unknown outcome and what the trader does, in the settings in force: the
    service reads OKX's records and proposes (and marks, with RESOLVE_UNKNOWN=auto); the trader
    checks the bot and marks or resends on the alert's page."""
    parts = [
        "OKX may have acted on it, so it is never resent.",
        f"In about {config.unknowns.settle:g} s the service reads the bot on OKX and proposes whether it was executed.",
    ]
    if config.unknowns.resolve == "auto":
        parts.append("RESOLVE_UNKNOWN=auto marks it itself when OKX's records leave no doubt.")
    if config.notify.urls and "unknown" in config.notify.events:
        parts.append("The proposal is notified (NOTIFY_URLS).")
    if config.admin_token:
        parts.append(
            f"Check the bot's margin on OKX, then mark the alert on its page ({config.web.alert_page(alert_id)}); "
            "send it again from there only if it was not executed."
        )
    else:
        parts.append(
            "Check the bot's margin on OKX before sending it again (set ADMIN_TOKEN for the operator page, "
            "where it is marked and sent again)."
        )
    return " ".join(parts)


def _error(http_status: int, kind: str, message: str, **extra):
    trace = _trace()
    trace.outcome = (kind, None, extra.get("id"))
    trace.refusal = (kind, message + (f" (alert {extra['id']})" if "id" in extra else ""), extra.get("errors", ()))
    return jsonify(status=kind, message=message, **extra), http_status


def _readable_fields(payload) -> dict:
    """The bot and the trader's id of a request that may yet be refused, for the refusal log:
    short strings only, scrubbed (a misconfigured alert could carry a secret anywhere)."""
    if not isinstance(payload, dict):
        return {}
    found = {}
    for name, key in (("algo_id", "algoId"), ("trader_id", "id")):
        value = payload.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            text = scrubber.scrub(str(value))  # the log's secrets; an OKX API key is not one of them
            found[name] = "[redacted]" if holds_secret(text, _not_shown()) else text[:64]
    return found


def _not_shown() -> tuple[str, ...]:
    """What no field shown back may hold (the intake refuses an alert whose id or account holds one)."""
    return services().intake.secrets


def _record_refusal(trace: Trace, status: int) -> None:
    """Every request to /webhook that left no alert in the journal leaves a refusal record."""
    kind, message, errors = trace.refusal or ("error", "no reply body", ())
    svc = services()
    svc.refusals.record(
        Refusal(
            at=time.time(),
            status=status,
            kind=kind,
            message=scrubber.scrub(message)[:500],
            client=trace.receipt.client or request.remote_addr,
            errors=tuple(
                {
                    "field": scrubber.scrub(str(e.get("field", "")))[:64],
                    "message": scrubber.scrub(str(e["message"]))[:300],
                }
                for e in (errors or ())[:20]
            ),
            **_readable_fields(trace.receipt.payload),
        )
    )


@bp.app_errorhandler(Refused)
def _refused(exc: Refused):
    """Every refusal's reply: its page for a browser where it has one, else its JSON."""
    if exc.template is not None:
        return render_template(exc.template), exc.status
    if isinstance(exc, InvalidBody) and request.path != "/webhook":  # the webhook's own line says it
        log.warning("refused the body of %s %s: %s", request.method, request.path, exc.message)
    fields = {"errors": exc.errors} if exc.errors is not None else {}
    response, status = _error(exc.status, exc.kind, exc.message, **fields, **exc.extra)
    response.headers.update(exc.headers)
    return response, status


@bp.app_errorhandler(JournalUnavailable)
def _journal_unavailable(exc):
    """An outage, not a refusal: its text is the journal's own and stays in the log."""
    log.error("journal unavailable: %s", exc)
    return _error(503, "unavailable", "the alert could not be recorded, so it was not sent; TradingView will resend it")


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    kind = {413: "too_large", 404: "not_found", 405: "method_not_allowed"}.get(exc.code, "error")
    message = exc.description
    if exc.code == 413:
        message = f"the body is larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes"
    elif exc.code is None or exc.code >= 500:
        message = "internal error; see the service log"
    response, status = _error(exc.code or 500, kind, message)
    if exc.code == 405:
        response.headers["Allow"] = ", ".join(exc.valid_methods or [])
    return response, status


@bp.app_errorhandler(Exception)
def _unexpected(exc):
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _error(500, "error", "internal error; nothing about it is shown here, see the service log")


@bp.after_app_request
def _log_alert(response):
    if request.path != "/webhook":
        return response
    trace = _trace()
    receipt = trace.receipt
    if receipt.record is None:
        _record_refusal(trace, response.status_code)
    if request.method == "POST":
        state, okx_code, alert_id = trace.outcome
        refusal = trace.refusal
        log.info(
            "alert http=%s status=%s id=%s algoId=%s action=%s amount=%s okx_code=%s latency_ms=%.1f "
            "client=%s secret=%s%s",
            response.status_code,
            _or_dash(state),
            _or_dash(alert_id),
            _or_dash(receipt.algo_id),
            _or_dash(receipt.action),
            _or_dash(receipt.amount),
            _or_dash(okx_code),
            (time.monotonic() - trace.started) * 1000,
            _or_dash(receipt.client),
            _or_dash(receipt.secret_name),
            f" errors={_log_errors(refusal)}" if refusal is not None else "",
        )
    return response


def _or_dash(value) -> str:
    """A value of the alert's log line; a missing one is "-" everywhere in it."""
    return "-" if value is None or value == "" else str(value)


_LOG_ERRORS_LENGTH = 600
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _log_errors(refusal) -> str:
    """Why an alert was refused, for its log line (TradingView never shows the reply, so this is
    where a trader reads it): each field and its problem, else the reply's message; scrubbed of
    every secret, on one line, bounded."""
    _kind, message, errors = refusal
    text = "; ".join(f"{e.get('field') or 'body'}: {e['message']}" for e in (errors or ())[:10]) or message
    text = _CONTROL.sub(" ", scrubber.scrub(str(text)))  # scrubbed whole, before any cut
    return text if len(text) <= _LOG_ERRORS_LENGTH else text[: _LOG_ERRORS_LENGTH - 3] + "..."


@bp.before_app_request
def _start_clock():
    g.trace = Trace(started=time.monotonic())


def _trace() -> Trace:
    """This request's trace (begun before anything else ran, unless an earlier hook failed)."""
    trace = g.get("trace")  # one lookup through Flask's proxy, not two
    if trace is None:
        trace = g.trace = Trace(started=time.monotonic())
    return trace
