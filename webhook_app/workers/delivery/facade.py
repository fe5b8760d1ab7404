"""``Delivery``: what the rest of the service asks of the delivery (start, stop, submit), wired
from its parts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from webhook_app.clock import SYSTEM_CLOCK, Clock
from webhook_app.journal import Journal, JournalUnavailable, Record
from webhook_app.okx.actions import actions_of
from webhook_app.workers.delivery.at_once import AtOnce, Door, Sending
from webhook_app.workers.delivery.attempt import Desk
from webhook_app.workers.delivery.board import Board
from webhook_app.workers.delivery.book import SlotBook
from webhook_app.workers.delivery.dispatcher import Dispatcher
from webhook_app.workers.delivery.lanes import Lane, lane_of
from webhook_app.workers.delivery.replies import Replies
from webhook_app.workers.delivery.sending import bot_order, exp_time_ms
from webhook_app.workers.delivery.slots import SlotLedger
from webhook_app.workers.delivery.terms import LEASE_MARGIN, SEND_BY, Terms
from webhook_app.workers.delivery.upkeep import Upkeep
from webhook_app.workers.membership import Membership
from webhook_app.workers.outcomes import OutcomePolicy

log = logging.getLogger("webhook_app")


class Delivery:
    """The delivery as the rest of the service sees it; the work is its parts'."""

    def __init__(
        self,
        journal: Journal,
        lanes: Mapping[str, Lane],
        policy: OutcomePolicy,
        membership: Membership,
        *,
        senders: int = 20,
        retention: float = 30 * 86400,
        on_final: Callable[[Record], None] | None = None,
        on_late: Callable[[Record, str], None] | None = None,
        send_by: float = SEND_BY,
        lease_margin: float = LEASE_MARGIN,
        clock: Clock = SYSTEM_CLOCK,
    ):
        """``lanes``: account name -> its ``Lane``; an alert goes by its account's lane only, and
        each account's alerts are claimed against its own budget, so a burst to one never slows another.
        ``on_final``: told of every alert that reaches its final state; ``on_late``: of an answer that
        came after its claim was taken over. ``clock``: this host's elapsed time, for the send
        deadlines, the timers, the reply waits and the write retries (the journal's clock stays the
        judge of leases and due times). ``lease_margin``: how much the lease outlasts the latest
        possible end of a request."""
        self.journal = journal
        self.lanes = dict(lanes)
        self.pacer = next(iter(self.lanes.values())).pacer  # the first account's budget (None: dry-run)
        self.membership = membership
        self.senders = senders
        lease = send_by + max(sum(lane.client.timeout) for lane in self.lanes.values()) + lease_margin
        self.terms = Terms(clock, send_by, lease)
        board = Board(
            [(name, endpoint) for name, lane in self.lanes.items() for endpoint in lane.endpoints()], on_final
        )
        desk = Desk(journal, journal, journal, policy, board, SlotLedger(board), self.terms, on_late)
        book = SlotBook()
        self._upkeep = Upkeep(
            journal, journal, journal, board, book, membership, self.terms, list(self.lanes), retention
        )
        self._dispatcher = Dispatcher(
            desk, self.lanes, book, self._upkeep, self.instance, senders, journal.poll_interval
        )
        self._door = Door(desk, self.lanes, book, self.instance, senders)
        poll = journal.poll_interval if journal.shared else None
        self._replies = Replies(journal, board, self.terms, self.instance, poll)
        self._started = False
        self._start_lock = threading.Lock()

    @property
    def instance(self) -> str:
        return self.membership.instance

    def start(self) -> None:
        """Join the instances sending from the journal, then start dispatching. Idempotent.
        In dry-run, queued live alerts are left queued: they wait for live mode."""
        with self._start_lock:
            if self._started:
                return
            self.membership.join()
            self._upkeep.recover()
            if self.pacer is None:
                try:
                    waiting = self.journal.count_due(self.journal.now(), in_turn=False)
                except JournalUnavailable:
                    waiting = 0
                if waiting:
                    log.warning(
                        "%d queued alert(s) in the journal wait for live mode: in dry-run nothing is sent; "
                        "they are sent, or expire, at the first live start",
                        waiting,
                    )
            # In dry-run too: it prunes the journal (and sends nothing, having no pacer).
            self._dispatcher.start()
            self._door.open()
            self._started = True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming (queued alerts stay in the journal, for the others or the next start),
        put back any claimed send that had not started, wait up to ``timeout`` for sends under
        way, and leave the instances."""
        self._door.close()  # first: no request hands a sender a claim once the dispatcher waits for them
        self._dispatcher.stop(timeout)
        self._door.stop()
        if self._started:
            self.membership.leave()

    @property
    def sent_at_once(self) -> int:
        """Attempts started at once (claimed as they were journaled) since the start."""
        return self._door.sent_at_once

    def at_once(self, account: str, endpoint: str, action: str) -> AtOnce | None:
        """A chance for a new alert to be sent at once (enter it around the journal's ``add_claimed``
        and, when that claimed it, ``AtOnce.start``), or None: it goes through the queue."""
        return self._door.enter(account, endpoint, action)

    def submit(self, record: Record, wait: float = 0.0, sending: Sending | None = None) -> Record:
        """A journaled alert is due: wake the dispatcher, and wait up to ``wait`` seconds for its
        outcome, whichever instance sends it, unless its turn under the rate limit comes later
        than that anyway (a burst's tail is answered at once). Returns its latest record.
        ``sending``: its attempt already under way (``AtOnce.start``): its outcome is waited for.

        A dry-run alert (journaled as ``dry_run``) is signed like a real one and goes no further."""
        lane = lane_of(self.lanes, record)
        if record.state == "dry_run":
            lane.client.send(bot_order(record), exp_time_ms=exp_time_ms(lane.client, record, None))
            return record
        if sending is not None:
            began = self.terms.clock()
            final = sending.outcome(wait)
            if final is not None:
                return final
            # Still being sent (the reply says so), or due again after "not executed": the queue's from here.
            wait -= self.terms.clock() - began
        self.start()
        endpoint = bot_order(record).endpoint
        return self._replies.outcome(record, lane.budget(endpoint), wait, actions_of(endpoint))
