"""The slot book: which claims, and so which rate slots, this process's senders hold now."""

from __future__ import annotations

import dataclasses
import logging
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
    """Only the dispatcher thread enters attempts here, and it is the only one that hands claims to
    senders: so whenever it asks, the book holds every claim of ours being worked on, and a claim
    of ours that is not in it has no sender (``Upkeep`` frees such orphans on that word). An
    attempt leaves the book when its sender is done."""

    def __init__(self):
        self._held: dict[Future, InFlight] = {}

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
