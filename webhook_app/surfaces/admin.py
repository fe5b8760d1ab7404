"""The operator page (``/admin``) and the JSON behind it. Off without ADMIN_TOKEN (404).

Two ways in: a browser logs in with the token once and holds a signed session cookie
(HttpOnly, SameSite=Strict, Secure behind HTTPS; every form it posts carries a CSRF token);
a script sends ``Authorization: Bearer <ADMIN_TOKEN>`` and needs no CSRF token (no browser
sends that header by itself). A wrong token counts against the sender like a wrong secret.
Who is asking is ``auth``'s to say; the errors raised here become replies in ``web``."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import time
from datetime import timedelta

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface

from webhook_app.intake.alerts import UNSTORABLE_FILTER, unstorable
from webhook_app.intake.protection import LIFT_HINT, LockedOut
from webhook_app.journal import RESOLUTIONS, STATES
from webhook_app.surfaces import attention, dashboard
from webhook_app.surfaces.auth import (
    SESSION_HOURS,
    check_csrf,
    csrf_token,
    enabled,
    note_wrong_credential,
    operator,
    operator_required,
    request_sender,
)
from webhook_app.surfaces.context import InvalidParameter, posted, services

log = logging.getLogger("webhook_app")
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_]{1,32}\Z")  # as openapi.json's pattern for the filter
bp = Blueprint("admin", __name__, template_folder="templates", static_folder="static", static_url_path="/admin/static")

ALERT_FILTERS = ("limit", "state", "trader_id", "algo_id", "account")


class AdminSessions(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure when the browser came over HTTPS (directly, or
    through a trusted router that says so in X-Forwarded-Proto)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or _forwarded_https()


def install(app: Flask) -> None:
    """Register the page; with ADMIN_TOKEN set, sessions are signed with a key derived from it
    (so every instance agrees, and changing the token logs everyone out)."""
    token = services_of(app).config.admin_token
    if token:
        app.secret_key = hmac.new(token.encode(), b"webhook_app admin session", hashlib.sha256).hexdigest()
    app.session_interface = AdminSessions()
    app.config.update(
        SESSION_COOKIE_NAME="relay_admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )
    app.register_blueprint(bp)


def services_of(app: Flask):
    return app.extensions["webhook"]


# -- who is asking ---------------------------------------------------------------------------


def _forwarded_https() -> bool:
    hops = services().config.web.trusted_proxy_hops
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    return hops > 0 and proto == "https"


# A tiny icon, so browsers asking for /favicon.ico get one (same origin: within the page's policy).
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#24292f"/>'
    '<path d="M3 11l3-4 3 2 4-6" stroke="#3fb950" stroke-width="2" fill="none"/></svg>'
)


@bp.get("/favicon.ico")
@bp.get("/admin/favicon.svg")
def favicon():
    return Response(FAVICON, mimetype="image/svg+xml")


def _wants_json() -> bool:
    return operator() == "token" or request.accept_mimetypes.best == "application/json"


# -- the page ---------------------------------------------------------------------------------


@bp.get("/admin")
def page():
    enabled()
    if operator() is None:
        return _login_page()
    return render_template("admin/dashboard.html", **_dashboard(), csrf_token=csrf_token(), who=operator())


@bp.get("/admin/live")
@operator_required
def live():
    """The parts of the page that change (what needs the operator, and the rest), for refreshing
    without a reload."""
    return render_template("admin/_parts.html", **_dashboard(), csrf_token=csrf_token())


@bp.get("/admin/alerts/<int:alert_id>")
def alert_page(alert_id: int):
    enabled()
    if operator() is None:
        return _login_page()
    record = services().journal.get(alert_id)
    if record is None:
        abort(404)
    return _alert_page(record)


def _alert_page(record, doubt=None, status: int = 200):
    """An alert's page; ``doubt``: a resend just refused because its bot moved since the finding (or
    could not be read), said above a second button that sends it anyway."""
    svc = services()
    now = time.time()
    not_resent = svc.intake.resend_refusal(record)
    currency = attention.currencies(svc.bots.table() if svc.bots is not None else []).get(record.algo_id, "")
    steps = _timeline(record)
    can_mark = record.state == "unknown" and record.resolution is None
    okx_records = dashboard.okx_records(record)
    return render_template(
        "admin/alert.html",
        row=dashboard.alert_row(record, now, currency),
        steps=[{**step, **dashboard.when(step["at"], now)} for step in steps],
        csrf_token=csrf_token(),
        who=operator(),
        can_mark=can_mark,
        show_account=_several_accounts(),
        okx_records=okx_records,
        # The mark OKX's records point to, offered first as one click; the other stays offered.
        proposed=okx_records["verdict"] if can_mark and okx_records and okx_records["verdict"] in RESOLUTIONS else None,
        marked_by=_marked_by(steps) if record.resolution else None,
        can_resend=not_resent is None,
        # Said only where "Send again" would be expected: a failed alert, or one found not executed.
        not_resent=not_resent if _resendable_state(record) else None,
        doubt=doubt,
    ), status


def _marked_by(steps: list[dict]) -> str | None:
    """Who recorded the finding (an operator's session, a script's token, or the service from
    OKX's records), from the timeline's "marked <finding> by <who>" entry."""
    marked = [step["detail"] for step in steps if step["kind"] == "marked" and " by " in step["detail"]]
    return marked[-1].split(" by ", 1)[1] if marked else None


def _resendable_state(record) -> bool:
    return record.state == "failed" or record.resolution == "not_executed"


def _login_page(error: str = "", status: int = 200):
    return render_template("admin/login.html", csrf_token=csrf_token(), error=error), status


@bp.post("/admin/login")
def login():
    enabled()
    svc = services()
    sender = request_sender()
    try:
        svc.protection.lockout.check(sender.lockout_key)
    except LockedOut as exc:
        return _login_page(
            f"too many wrong tokens or secrets from this address: try again in {int(exc.retry_after) + 1} s "
            f"({LIFT_HINT})",
            429,
        )
    check_csrf()
    given = request.form.get("token", "").encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(given, svc.config.admin_token.encode()):
        note_wrong_credential(sender, "admin tokens")
        log.warning("admin login refused: wrong token from %s", sender.address)
        return _login_page("wrong token", 401)
    session.clear()  # a new session id and CSRF token: nothing carried over from before the login
    session.permanent = True
    session.update(sid=secrets.token_hex(4), csrf=secrets.token_urlsafe(32), client=sender.address or "-")
    svc.journal.start_session(session["sid"], sender.address)
    log.info("admin login from %s (session %s)", sender.address, session["sid"])
    return redirect(url_for("admin.page"), 303)


@bp.post("/admin/logout")
def logout():
    enabled()
    if session.get("sid"):
        check_csrf()
        services().journal.end_session(session["sid"])
        log.info("admin logout (session %s)", session["sid"])
    session.clear()
    return redirect(url_for("admin.page"), 303)


def _dashboard() -> dict:
    svc = services()
    filters = _alert_filters(default_limit=100, blank_is_any=True)
    now = time.time()
    records = svc.journal.recent(filters.pop("limit"), **filters)
    current = dashboard.status(svc.config, svc.readiness, svc.delivery, svc.journal, svc.refusals, svc.bots)
    currency = attention.currencies(current["bots"])
    return {
        "needs": attention.needs(svc.journal, svc.readiness, current["bots"], _page_path, now),
        "filters": filters,
        "states": STATES,
        "rows": [dashboard.alert_row(r, now, currency.get(r.algo_id, "")) for r in records],
        # Why a failed (or not executed) alert is not offered again, when it is not: few rows, one read each.
        "not_resent": {
            r.id: reason
            for r in records
            if _resendable_state(r) and r.resent_as is None and (reason := svc.intake.resend_refusal(r))
        },
        "refused": [dashboard.refused_row(r, now) for r in svc.journal.refusals(50)],
        "lockouts": [dashboard.lockout_row(entry, now) for entry in svc.protection.lockout.active()],
        "chart": dashboard.hourly_chart(svc.journal.hourly_counts(now - 24 * 3600), now),
        "status": current,
        "bots": [dashboard.bot_row(bot, now) for bot in current["bots"]],
        "bots_read": svc.bots is not None,  # dry-run reads no bot
        # The account is shown (a column, a filter, a table of accounts) only where there is a choice:
        # a single-account service's page stays as it was.
        "show_account": _several_accounts(),
        "account_names": [account.name for account in svc.config.okx.accounts],
    }


def _page_path(alert_id: int) -> str:
    return url_for("admin.alert_page", alert_id=alert_id)


def _several_accounts() -> bool:
    return len(services().config.okx.accounts) > 1


# -- JSON for scripts (bearer) and the page's actions --------------------------------------------


@bp.get("/alerts")
@operator_required
def list_alerts():
    filters = _alert_filters(default_limit=50)
    records = services().journal.recent(filters.pop("limit"), **filters)
    return jsonify(status="ok", alerts=[r.to_json() for r in records])


@bp.get("/alerts/<int:alert_id>")
@operator_required
def show_alert(alert_id: int):
    svc = services()
    record = svc.journal.get(alert_id)
    if record is None:
        abort(404, f"no alert {alert_id}")
    refusal = svc.intake.resend_refusal(record)
    return jsonify(
        status="ok",
        alert=record.to_json(),
        timeline=[dashboard.step_json(step) for step in _timeline(record)],
        resend={"offered": refusal is None, "reason": refusal},
    )


def _timeline(record) -> list[dict]:
    """The alert's timeline, the same for the page and the JSON."""
    return dashboard.timeline(record, services().journal.events(record.id))


@bp.get("/lockouts")
@operator_required
def list_lockouts():
    """The addresses locked out now (wrong secrets or tokens): even the right token is refused from them."""
    return jsonify(status="ok", lockouts=[dashboard.lockout_json(e) for e in services().protection.lockout.active()])


@bp.post("/lockouts/clear")
@bp.post("/admin/lockouts/clear")
@operator_required(posting=True)
def clear_lockout():
    """Lift one address's lockout: a form (with its CSRF token) or a script's JSON ``{"address": ...}``."""
    address = posted("address")
    try:
        address = str(ipaddress.ip_address(address.strip())) if isinstance(address, str) else None
    except ValueError:
        address = None
    if address is None:
        raise InvalidParameter("address", "must be an IP address, as listed")
    lifted = services().protection.lockout.clear(address)
    if lifted:
        log.warning("lockout of %s lifted by %s", address, operator())
    if _wants_json():
        return jsonify(status="ok", address=address, lifted=lifted)
    return redirect(url_for("admin.page") + "#lockouts", 303)


@bp.post("/alerts/<int:alert_id>/mark")
@operator_required(posting=True)
def mark(alert_id: int):
    who = operator()
    resolution = posted("resolution")
    if resolution not in RESOLUTIONS:
        raise InvalidParameter("resolution", f"must be one of {', '.join(RESOLUTIONS)}")
    record = services().intake.mark(alert_id, resolution, by=who)
    log.info("alert %s marked %s by %s", alert_id, resolution, who)
    if _wants_json():
        return jsonify(status="ok", alert=record.to_json())
    return redirect(url_for("admin.alert_page", alert_id=alert_id), 303)


@bp.post("/alerts/<int:alert_id>/resend")
@operator_required(posting=True)
def resend(alert_id: int):
    """Send again. An alert settled "not executed" goes only if its bot has not moved since that
    finding (read now); else 409 saying what moved, unless the operator insists (``insist``)."""
    who, insist = operator(), _insist()
    svc = services()
    original = svc.journal.get(alert_id)  # None: intake.resend says 404
    doubt = None
    if original is not None and svc.investigator is not None and svc.intake.resend_refusal(original) is None:
        doubt = svc.investigator.resend_doubt(original)
    if doubt is not None and not insist:
        log.warning("alert %s not sent again for %s: %s", alert_id, who, doubt.message)
        if _wants_json():
            raise doubt  # its 409, saying what moved, like every refusal
        return _alert_page(original, doubt=doubt, status=doubt.status)
    record = svc.intake.resend(alert_id, by=who)
    if doubt is not None:
        svc.journal.note(alert_id, "resent", f"{who} insisted on sending it again after reading: {doubt.message}")
        log.warning("alert %s sent again by %s, who insisted after reading: %s", alert_id, who, doubt.message)
    log.info("alert %s sent again as alert %s by %s", alert_id, record.id, who)
    if _wants_json():
        return jsonify(status="ok", alert=record.to_json(), resent_from=alert_id), 201
    return redirect(url_for("admin.alert_page", alert_id=record.id), 303)


def _insist() -> bool:
    """The resend's ``insist``: a JSON body's boolean, or the page's form field ("true"); absent, false."""
    if request.is_json and request.get_data():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidParameter("body", 'must be a JSON object, such as {"insist": true}, or empty')
        value = body.get("insist", False)
        if not isinstance(value, bool):
            raise InvalidParameter("insist", "must be true or false")
        return value
    value = request.form.get("insist", "false")
    if value not in ("true", "false"):
        raise InvalidParameter("insist", "must be true or false")
    return value == "true"


@bp.get("/refused")
@operator_required
def refused():
    limit = _limit(50)
    return jsonify(status="ok", refused=[r.to_json() for r in services().journal.refusals(limit)])


@bp.get("/status")
@operator_required
def status():
    svc = services()
    current = dashboard.status(svc.config, svc.readiness, svc.delivery, svc.journal, svc.refusals, svc.bots)
    current["checks"] = [dataclasses.asdict(check) for check in current["checks"]]
    current["checked"] = current["checked"]["utc"] if current["checked"] else None
    return jsonify(status="ok", service=current)


def _limit(default: int) -> int:
    try:
        limit = int(request.args.get("limit", str(default)))
    except ValueError:
        raise InvalidParameter("limit", "must be a whole number") from None
    if not 1 <= limit <= 1000:
        raise InvalidParameter("limit", "must be from 1 to 1000")
    return limit


def _alert_filters(default_limit: int, blank_is_any: bool = False) -> dict:
    """Filters from the query string. The page's form sends empty boxes (``blank_is_any``);
    for scripts an empty value is a mistake, never "everything"."""
    unknown = sorted(set(request.args) - set(ALERT_FILTERS))
    if unknown:  # a typo such as ?stat=ok must not silently list everything
        problems = [(name[:64], f"is not a filter; use {', '.join(ALERT_FILTERS)}") for name in unknown]
        raise InvalidParameter(*problems[0], *problems[1:])
    filters = {"limit": _limit(default_limit)}
    for name in ("state", "trader_id", "algo_id"):
        value = request.args.get(name)
        if value is None or (blank_is_any and not value.strip()):
            continue
        value = value.strip() if blank_is_any else value
        if name == "state" and value not in STATES:
            raise InvalidParameter("state", f"must be one of {', '.join(STATES)}")
        if not 1 <= len(value) <= 128:
            raise InvalidParameter(name, "must be 1 to 128 characters")
        if unstorable(value):  # PostgreSQL would refuse the whole query: never "could not be recorded"
            raise InvalidParameter(name, UNSTORABLE_FILTER)
        filters[name] = value
    account = request.args.get("account")
    if account is not None and not (blank_is_any and not account.strip()):
        account = account.strip() if blank_is_any else account
        if not ACCOUNT_NAME.match(account):
            raise InvalidParameter("account", "must be an account's name: 1 to 32 letters, digits or _")
        # A filter: a name the service does not have (an account since removed, say) finds nothing.
        filters["account"] = account.lower()
    return filters


@bp.after_request
def _page_headers(response):
    """The page loads nothing from elsewhere and runs only its own script; never cached or framed."""
    if request.path.startswith("/admin"):
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
    if not request.path.startswith("/admin/static"):
        response.headers["Cache-Control"] = "no-store"
    return response
