"""What every route reaches for: the service's parts (``Services``, through ``services()``) and the
operator's request errors. Below the routes (``web``, ``admin``) and the operator's auth (``auth``),
so they share these without importing each other."""

from __future__ import annotations

import dataclasses
import time

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_content_length

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
    """The service's parts (built by ``wiring.build_services``), and the life of every background
    worker among them: ``start`` and ``stop``, for gunicorn.conf.py and the tests alike."""

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
    _stopped: bool = dataclasses.field(default=False, init=False, repr=False)

    def start(self) -> None:
        """Start every worker: sending first (what a previous process left queued goes now), then
        the readiness checks (in the background: they never hold up the start) and the rest."""
        self.notifier.start()  # before anything it is told of
        self.delivery.start()
        self.readiness.start()
        self.refusals.start()  # also prunes refused requests past their retention, hourly
        if self.bots is not None:
            self.bots.start()
            self.investigator.start()  # also picks up unknown alerts a dead instance left without a proposal

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every worker once, in the reverse order of ``start``, within about ``timeout``
        seconds in all (gunicorn's graceful_timeout must hold it), then close the journal: queued
        alerts stay in it for the next start or another instance."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout

        def left(most: float = timeout) -> float:
            return max(min(deadline - time.monotonic(), most), 0.0)

        # The helpers' loops end within a bot read (2 s at most): the rest of the time is delivery's.
        if self.bots is not None:
            self.investigator.stop(timeout=left(2))  # an unknown left unread: the next start's sweep reads it
            self.bots.stop(timeout=left(2))
        self.refusals.stop(timeout=left(2))  # then writes what it holds
        self.readiness.stop(timeout=left(2))
        self.delivery.stop(timeout=left() / 2)  # it may wait twice: for the dispatcher, then for sends under way
        self.notifier.stop(timeout=left(2))
        self.journal.close()


def services() -> Services:
    """The running app's parts."""
    return current_app.extensions["webhook"]


def read_body() -> bytes:
    """The request's body, whole; ``RequestEntityTooLarge`` (413) when it is longer than
    MAX_CONTENT_LENGTH, whether it came with a Content-Length or chunked. (werkzeug stops a
    chunked body at the limit and returns what it read, as if that were all of it.)"""
    environ = request.environ
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    length = get_content_length(environ)
    if length is not None and "wsgi.input_terminated" in environ:
        # The server (gunicorn) ends the stream at Content-Length: read it straight, as werkzeug's
        # wrapper would, without the wrapper's per-request layers (a tenth of the webhook's CPU).
        if limit is not None and length > limit:
            raise RequestEntityTooLarge()
        return environ["wsgi.input"].read(length)
    data = request.get_data(cache=False)
    chunked = length is None
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
