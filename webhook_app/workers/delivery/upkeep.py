"""The queue's upkeep, run by the dispatcher between its claims: lapsed claims recovered, orphaned
claims freed, unroutable alerts failed, overdue alerts expired, old ones pruned."""

from __future__ import annotations

import logging

from webhook_app.journal import AlertLog, JournalUnavailable, QueueUpkeep
from webhook_app.workers.delivery.board import Board
from webhook_app.workers.delivery.book import SlotBook
from webhook_app.workers.delivery.terms import JournalClock, Terms
from webhook_app.workers.membership import Membership

log = logging.getLogger("webhook_app")

PRUNE_EVERY = 3600.0
EXPIRE_EVERY = 0.5  # seconds between sweeps that mark overdue queued alerts expired
RECOVER_EVERY = 1.0  # seconds between looks for lapsed claims (a dead instance's, or a stuck sender's)
# Seconds between looks for claims of ours that no sender holds (a claim whose reply was lost, an unclaim
# that failed: their alerts are queued again and their rate slots given back; at once after a failed
# claim), and for queued alerts under an account no instance has (failed at once).
UPKEEP_EVERY = 2.0


class Upkeep:
    """The chores, each at its own pace (``run_due``, ``prune_due``); ``recover`` also at the start."""

    def __init__(
        self,
        queue: QueueUpkeep,
        log: AlertLog,
        journal_clock: JournalClock,
        board: Board,
        book: SlotBook,
        membership: Membership,
        terms: Terms,
        accounts: list[str],
        retention: float,
    ):
        """``accounts``: this instance's; ``retention``: seconds a finished alert is kept."""
        self.queue = queue
        self.log = log  # its pruning: finished alerts past their retention
        self.journal_clock = journal_clock
        self.board = board
        self.book = book
        self.membership = membership
        self.terms = terms
        self.accounts = accounts
        self.retention = retention
        self._last_recovery = 0.0
        self._last_upkeep: float | None = None  # this host's clock, at the last look for orphans and unrouted alerts
        self._orphans_suspected = False  # a claim failed: it may have committed with its reply lost
        self._last_prune: float | None = None  # this host's clock, at the last pruning
        self._last_expiry: float | None = None  # ...and the last sweep for expired alerts

    def suspect_orphans(self) -> None:
        """A claim failed: it may have committed with its reply lost. The next round looks at once."""
        self._orphans_suspected = True

    def run_due(self) -> None:
        """What is due of the live chores (dry-run only prunes: ``prune_due``)."""
        clock = self.terms.clock
        if self._orphans_suspected or self._last_upkeep is None or clock() - self._last_upkeep >= UPKEEP_EVERY:
            self._last_upkeep = clock()
            self._free_orphans()
            self._fail_unrouted()
        if clock() - self._last_recovery >= RECOVER_EVERY:
            self.recover()
        if self._last_expiry is None or clock() - self._last_expiry >= EXPIRE_EVERY:
            self._last_expiry = clock()  # an alert is never claimed late anyway (the claim checks)
            for record in self.queue.expire_overdue(self.journal_clock.now()):
                self.board.finished(record)

    def recover(self) -> None:
        """Claims that lapsed (a dead or paused instance's, or a sender of ours that never came back):
        unknown if the request may have left (logged with its final state and notified), else queued again."""
        self._last_recovery = self.terms.clock()
        try:
            records = self.queue.recover(self.membership.instance, self.membership.dead_after, self.terms.lease)
        except JournalUnavailable as exc:
            log.error("could not look for lapsed claims: %s", exc)
            return
        for record in records:
            if record.final:
                log.warning(
                    "alert %s was being sent by %s, whose claim lapsed before it finished: now %s, not resent "
                    "(check bot %s on OKX)",
                    record.id,
                    record.claimed_by or "an earlier process",
                    record.state,
                    record.algo_id,
                )
                self.board.finished(record)
            else:
                log.warning("alert %s: its claimant lost its claim before sending it: queued again", record.id)
        if records:
            self.board.wake()

    def prune_due(self) -> None:
        clock = self.terms.clock
        if self._last_prune is not None and clock() - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = clock()
        try:
            removed = self.log.prune(self.journal_clock.now() - self.retention)
            if removed:
                log.info("pruned %d finished alert(s) older than the retention period", removed)
        except JournalUnavailable as exc:
            log.error("could not prune the journal: %s", exc)

    def _fail_unrouted(self) -> None:
        """Queued alerts under an account no longer configured (here, or on any instance) can never
        be sent: failed at once, naming the account, logged and notified, so that they hold their
        bot up no longer (they used to wait out their lag, up to an hour)."""
        try:
            records = self.queue.fail_unrouted(self.membership.instance, self.accounts)
        except JournalUnavailable as exc:
            log.error("could not look for alerts under an account no longer configured: %s", exc)
            return
        for record in records:
            self.board.finished(record)

    def _free_orphans(self) -> None:
        """Claims of ours that none of our senders holds (a claim whose reply was lost): their alerts
        are queued again (or expired) and their rate slots given back, long before their lease
        lapses or the ledger's 90-second rule ends the slots. Only on the dispatcher's thread, the
        one that hands claims to senders: then the slot book holds every claim of ours being worked on."""
        try:
            with self.book.gate.closed():  # no claim made at receipt is between its write and the book
                records = self.queue.free_orphans(self.membership.instance, self.book.live_claims())
        except JournalUnavailable as exc:
            log.error("could not look for claims of ours that no sender holds (looked for again shortly): %s", exc)
            return
        self._orphans_suspected = False
        for record in records:
            if record.final:
                self.board.finished(record)
            else:
                log.warning(
                    "alert %s: claimed by this instance (attempt %s) but never handed to a sender (the claim's "
                    "reply was lost): queued again, its rate slots given back",
                    record.id,
                    record.attempts,
                )
        if records:
            self.board.wake()
