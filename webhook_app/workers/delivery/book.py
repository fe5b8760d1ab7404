"""The slot book: which claims, and so which rate slots, this process's senders hold now."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future

from webhook_app.journal import Claim
from webhook_app.workers.delivery.attempt import Attempt

log = logging.getLogger("webhook_app")


@dataclasses.dataclass(frozen=True)
class InFlight:
    """A claimed alert handed to a sender: its attempt (holding its slots) and the sender's future."""

    attempt: Attempt
    future: Future


class SlotBook:
    """The dispatcher thread enters the attempts it hands to senders here, and a request whose alert
    was claimed at receipt enters its own while it passes the ``gate``: so whenever the dispatcher
    asks with the gate closed, the book holds every claim of ours being worked on, and a claim of
    ours that is not in it has no sender (``Upkeep`` frees such orphans on that word). An attempt
    leaves the book when its sender is done."""

    def __init__(self):
        self._held: dict[Future, InFlight] = {}
        # Claims made at receipt (request threads) pass this gate from before their write until they
        # are entered here; the orphan sweep closes it, so it never ends the rate slots of one claimed
        # and not yet entered (its alert it never touches: that claim is confirmed, so not an orphan's).
        self.gate = Gate()

    def enter(self, attempt: Attempt, future: Future) -> None:
        self._held[future] = InFlight(attempt, future)
        future.add_done_callback(self._done)

    def live_claims(self) -> list[Claim]:
        return [sending.attempt.claim for sending in list(self._held.values())]

    def take_back_unstarted(self) -> list[Attempt]:
        """The attempts whose sender had not started yet, cancelled: the caller puts them back."""
        return [sending.attempt for sending in list(self._held.values()) if sending.future.cancel()]

    def __bool__(self) -> bool:
        return bool(self._held)

    def _done(self, future: Future) -> None:
        sending = self._held.pop(future, None)
        alert_id = sending.attempt.claim.alert_id if sending else None
        if not future.cancelled() and future.exception() is not None:
            # Never swallowed by the pool: the alert may be left "sending" until its lease lapses and recovery takes it.
            log.error("sender failed on alert %s", alert_id, exc_info=future.exception())


class Gate:
    """Many may pass at once; closing it waits for those passing and holds new ones back meanwhile."""

    def __init__(self):
        self._cond = threading.Condition()
        self._passing = 0
        self._closed = False

    @contextlib.contextmanager
    def passing(self) -> Iterator[None]:
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._passing += 1
        try:
            yield
        finally:
            with self._cond:
                self._passing -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def closed(self) -> Iterator[None]:
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._closed = True
            while self._passing:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()
