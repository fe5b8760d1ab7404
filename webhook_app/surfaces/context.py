"""What every route reaches for: the service's parts (``Services``, through ``services()``) and the
operator's request errors. Below the routes (``web``, ``admin``) and the operator's auth (``auth``),
so they share these without importing each other."""

from __future__ import annotations

import dataclasses

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from webhook_app.config import Config
from webhook_app.errors import Refused
from webhook_app.intake.alerts import parse_body
from webhook_app.intake.pipeline import Intake
from webhook_app.intake.protection import Protection
from webhook_app.intake.refusals import RefusalLog
from webhook_app.journal import Journal
from webhook_app.workers.bots import BotWatches
from webhook_app.workers.delivery import Delivery
from webhook_app.workers.investigation import Investigator
from webhook_app.workers.notify import Notifier
from webhook_app.workers.readiness import Readiness


@dataclasses.dataclass
class Services:
    config: Config
    journal: Journal
    delivery: Delivery
    protection: Protection
    readiness: Readiness
    notifier: Notifier
    refusals: RefusalLog
    intake: Intake
    bots: BotWatches | None = None  # OKX's word on the bots' states (None in dry-run)
    investigator: Investigator | None = None  # the evidence for unknown outcomes (None in dry-run)


def services() -> Services:
    """The running app's parts."""
    return current_app.extensions["webhook"]


def read_body() -> bytes:
    """The request's body, whole; ``RequestEntityTooLarge`` (413) when it is longer than
    MAX_CONTENT_LENGTH, whether it came with a Content-Length or chunked. (werkzeug stops a
    chunked body at the limit and returns what it read, as if that were all of it.)"""
    data = request.get_data(cache=False)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    chunked = request.content_length is None
    if limit is not None and chunked and len(data) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()  # the server's own stream had more
    return data


def posted(name: str) -> object:
    """One field of an operator's POST: from its JSON object when it came as JSON (read by the
    webhook's parser: a body that is not a JSON object is ``InvalidBody``, 400), else from its form."""
    if request.is_json:
        shape = f'{{"{name}": ...}}'
        return parse_body(read_body(), what=shape, hint=f"send {shape}").get(name)
    return request.form.get(name)


class InvalidParameter(Refused):
    """A parameter of an operator's request is wrong (422): a query-string filter of ``/alerts``
    or ``/refused``, or a form's field (a lockout's address, a mark's resolution). Not an alert's
    field: nothing about an alert was refused. Each problem is a (parameter, message) pair."""

    status, kind = 422, "invalid_parameter"

    def __init__(self, parameter: str, problem: str, *more: tuple[str, str]):
        problems = ((parameter, problem), *more)
        super().__init__(
            "; ".join(f"{name}: {text}" for name, text in problems),
            errors=[{"field": name, "message": text} for name, text in problems],
        )
