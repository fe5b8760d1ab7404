"""Who is asking, for the operator's routes and the webhook: the request's sender (after the
trusted proxies), the ADMIN_TOKEN bearer, a logged-in browser's session and its CSRF token, and
``@operator_required`` in front of every operator route. Its errors become HTTP replies in
``web`` with every other error."""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
from collections.abc import Callable

from flask import abort, g, request, session

from webhook_app.errors import Refused
from webhook_app.intake.client_cert import Presented
from webhook_app.intake.protection import Sender
from webhook_app.surfaces.context import services

log = logging.getLogger("webhook_app")

SESSION_HOURS = 12


class AdminUnauthorized(Refused):
    """Neither the ADMIN_TOKEN bearer nor a logged-in session (401)."""

    status, kind = 401, "unauthorized"

    def __init__(self):
        super().__init__(
            "send Authorization: Bearer <ADMIN_TOKEN>, or log in at /admin", headers={"WWW-Authenticate": "Bearer"}
        )


class CsrfRefused(Refused):
    """A form posted with a session cookie but without its CSRF token (403)."""

    status, kind = 403, "csrf"

    def __init__(self):
        super().__init__("the form's CSRF token is missing or wrong; reload the page and try again")


class AdminOff(Refused):
    """The operator page was asked for without ADMIN_TOKEN set (a 404 page that says so)."""

    status, kind, template = 404, "not_found", "admin/off.html"

    def __init__(self):
        super().__init__("the operator page is off: ADMIN_TOKEN is not set")


def request_sender() -> Sender:
    """Who sent this request: the address the trusted proxies (TRUSTED_PROXY_HOPS) vouch for,
    and the key it is locked out by."""
    return services().protection.sender(request.remote_addr, request.headers.getlist("X-Forwarded-For"))


def request_certificate() -> Presented | None:
    """The client certificate this request's peer presented (None when none is required): from the
    TLS connection gunicorn serves, or from the trusted proxy's headers."""
    return services().intake.client_certs.presented(request.environ, request.remote_addr, request.headers)


def note_wrong_credential(sender: Sender, what: str) -> None:
    """A wrong secret, bearer token or login token counts against its sender; at the threshold
    the sender is locked out, logged and notified."""
    svc = services()
    if svc.protection.lockout.failure(sender.lockout_key):
        log.warning("locked out %s after wrong %s", sender.lockout_key, what)
        svc.notifier.lockout(sender.lockout_key, svc.config.protection.lockout_threshold)


def bearer_is_admin() -> bool:
    """The request carries ``Authorization: Bearer <ADMIN_TOKEN>`` (and ADMIN_TOKEN is set).

    A wrong bearer token counts against the sender like a wrong secret, in the same lockout;
    a sender locked out is refused (``LockedOut``, 429) even with the right token. Checked
    once per request."""
    if "bearer_is_admin" in g:
        return g.bearer_is_admin
    token = services().config.admin_token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        g.bearer_is_admin = False
        return False
    sender = request_sender()
    services().protection.lockout.check(sender.lockout_key)
    matched = hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"), token.encode("utf-8"))
    if not matched:
        note_wrong_credential(sender, "bearer tokens")
    g.bearer_is_admin = matched
    return matched


def enabled() -> None:
    """The operator's routes exist only with ADMIN_TOKEN set: a page saying how to turn them on, else 404."""
    if not services().config.admin_token:
        if request.path.startswith("/admin"):
            raise AdminOff()  # a browser: a page saying how to turn it on, no data
        abort(404)  # the page's JSON is off without ADMIN_TOKEN


def operator() -> str | None:
    """Who is asking: "token" (a script's bearer), "session <id>" (a logged-in browser whose
    session the journal still holds open: a logout ends it for every copy of the cookie), or None."""
    if "operator" not in g:
        g.operator = None
        if bearer_is_admin():
            g.operator = "token"
        elif session.get("sid") and services().journal.session_active(session["sid"], SESSION_HOURS * 3600):
            g.operator = f"session {session['sid']}"
    return g.operator


def operator_required(view: Callable | None = None, *, posting: bool = False):
    """The route answers only an operator (``AdminUnauthorized`` else); ``posting=True``: a form
    that changes something, so a browser's post must carry its CSRF token (a script's bearer
    needs none: no browser sends that header by itself). The view reads who it is with ``operator()``."""

    def guard(view: Callable) -> Callable:
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            enabled()
            who = operator()
            if who is None:
                raise AdminUnauthorized()
            if posting and who != "token":
                check_csrf()
            return view(*args, **kwargs)

        return guarded

    return guard(view) if view is not None else guard


def csrf_token() -> str:
    """The session's CSRF token, made on first use."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    given = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode()):
        raise CsrfRefused()
