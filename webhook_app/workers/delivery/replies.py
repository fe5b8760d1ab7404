"""The reply's wait for a journaled alert's outcome, whichever instance sends it."""

from __future__ import annotations

import contextlib
import logging
import threading

from webhook_app.journal import JournalUnavailable, Record, SendingQueue
from webhook_app.workers.delivery.board import Board
from webhook_app.workers.delivery.terms import Terms
from webhook_app.workers.pacing import Pacer

log = logging.getLogger("webhook_app")


class Replies:
    """Waits for outcomes on behalf of replies: the board's signal for ours, the journal for the others'."""

    def __init__(self, queue: SendingQueue, board: Board, terms: Terms, instance: str, poll: float | None):
        """``poll``: how often to look in the journal for an outcome another instance wrote (None
        where no other instance sends: the board's signal says it all)."""
        self.queue = queue
        self.board = board
        self.terms = terms
        self.instance = instance
        self.poll = poll

    def outcome(
        self, record: Record, pacer: Pacer | None, wait: float, actions: tuple[str, ...] | None = None
    ) -> Record:
        """Wake the dispatcher for the due ``record`` and wait up to ``wait`` seconds for its
        outcome, unless its turn under ``pacer``'s limit comes later than that anyway (a burst's
        tail is answered at once). Its latest record; ``record`` itself when the journal cannot say."""
        event = self.board.follow(record.id)
        self.board.wake()
        try:
            # The journal first: the alert was due from its commit on, so a dispatcher may already
            # have claimed or even sent it, before ``event`` was registered (that signal went to nobody).
            # Under the dispatch lock where slots are taken before the claim (a ledger outside the
            # journal): in between, a slot would count against an alert about to be sent.
            with contextlib.nullcontext() if pacer is None or pacer.shares_journal else self.board.dispatching:
                if wait <= 0 or pacer is None:
                    return self.queue.get(record.id) or record
                # Its turn under the rate limit, while queued: answer at once if it is far off.
                current, ahead, busy = self.queue.reply_outlook(record, pacer, actions)
                if current.final or (current.state == "queued" and pacer.projected(ahead, busy) >= wait):
                    return current
            latest = self._wait_final(record.id, event, self.terms.clock() + wait)
            if latest is None and event.is_set():
                latest = self.board.final_of(record.id)  # no read needed: the outcome's write returned it
            return latest or self.queue.get(record.id) or current
        except JournalUnavailable as exc:
            # It is journaled and queued, and will be sent: the reply must not say otherwise.
            log.error(
                "could not follow alert %s for its reply (%s); answering with its state at receipt", record.id, exc
            )
            return record
        finally:
            self.board.unfollow(record.id)

    def _wait_final(self, alert_id: int, event: threading.Event, deadline: float) -> Record | None:
        # Sent here, the event says so. Sent by another instance (PostgreSQL), only the journal
        # knows: look there until it is final, or until it turns out to be ours after all.
        clock, step = self.terms.clock, self.poll
        while (remaining := deadline - clock()) > 0:
            if clock.wait(event, remaining if step is None else min(step, remaining)):
                return None
            if step is not None:
                latest = self.queue.get(alert_id)
                if latest is not None and latest.final:
                    return latest
                if latest is not None and latest.claimed_by == self.instance:
                    step = None  # ours: the event will say when it is done
        return None
