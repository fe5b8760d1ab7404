"""The claim loop: one thread that takes each account's due alerts within its rate budget and
hands each claim to a sender thread as an ``Attempt``; between rounds, the ``Upkeep``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from webhook_app.journal import JournalUnavailable, PacedClaim
from webhook_app.okx.actions import actions_of
from webhook_app.workers.delivery.attempt import Attempt, Desk
from webhook_app.workers.delivery.book import SlotBook
from webhook_app.workers.delivery.lanes import Lane
from webhook_app.workers.delivery.upkeep import Upkeep

log = logging.getLogger("webhook_app")


class Dispatcher:
    """Its thread claims queued alerts for this process and hands them to senders, entering each in
    the slot book as it hands it over: ``Upkeep`` (run on that thread between looks) frees any claim
    of ours the book lacks, so nothing else may claim, or start an attempt, behind the book's back;
    the one other claimant, a request whose alert goes at once (``at_once``), enters its attempt in
    the book while it holds the book's gate, which the upkeep closes."""

    def __init__(
        self,
        desk: Desk,
        lanes: Mapping[str, Lane],
        book: SlotBook,
        upkeep: Upkeep,
        instance: str,
        senders: int,
        poll_interval: float,
    ):
        """``senders``: sender threads, and the most alerts one look claims; ``poll_interval``: the
        longest rest between looks (others may queue alerts too)."""
        self.desk = desk
        self.lanes = lanes
        self.book = book
        self.upkeep = upkeep
        self.instance = instance
        self.senders = senders
        self.poll_interval = poll_interval
        self._dry_run = next(iter(lanes.values())).pacer is None  # no budget: nothing is sent
        self._pool = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="okx-sender")
        # Each account's endpoints, each with its own budget: a queue is (account, endpoint).
        self._queues = [(name, endpoint) for name, lane in lanes.items() for endpoint in lane.endpoints()]
        self._lane_turn = 0  # which queue is served first in this round (each in turn)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="okx-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop claiming, put back any claimed send that had not started, and wait up to
        ``timeout`` for sends under way."""
        self.desk.board.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self._put_back_unstarted()
        # The host's own seconds, whatever the terms' clock: a bound on shutting this process down.
        deadline = time.monotonic() + timeout
        while self.book and time.monotonic() < deadline:
            time.sleep(0.01)
        self._pool.shutdown(wait=False)

    def _put_back_unstarted(self) -> None:
        attempts = self.book.take_back_unstarted()
        if not attempts:
            return
        ids = [attempt.claim.alert_id for attempt in attempts]
        for attempt in attempts:
            attempt.give_back()
        try:
            self.desk.queue.unclaim([attempt.claim for attempt in attempts])
            log.info("stopping: claimed alerts %s had not been sent yet and are queued again", ids)
        except JournalUnavailable as exc:
            log.error(
                "stopping: alerts %s were never sent; their claims lapse and they are queued again (%s)", ids, exc
            )

    def _run(self) -> None:
        while True:
            try:
                pause = self._round()
            except JournalUnavailable as exc:  # nothing is claimed unrecorded; look again shortly
                log.error("journal unavailable while dispatching: %s", exc)
                pause = 1.0
            except Exception:  # keep the dispatcher alive whatever happens
                log.exception("dispatcher failed")
                pause = 1.0
            if not self.desk.board.pause(self.desk.terms.clock, pause):
                return

    def _round(self) -> float:
        """Claims and starts what may go now; returns how long to wait before looking again."""
        self.upkeep.prune_due()
        if self._dry_run:
            return 60.0
        self.desk.ledger.settle()
        self.upkeep.run_due()
        # Each queue in turn goes first, so that none waits behind another's burst.
        queues = self._queues
        self._lane_turn = (self._lane_turn + 1) % len(queues)
        return min(self._dispatch_lane(*queue) for queue in queues[self._lane_turn :] + queues[: self._lane_turn])

    def _dispatch_lane(self, account: str, endpoint: str) -> float:
        """Claims and starts what one account may send to one endpoint now; returns how long until
        it needs to look again (a finish, a retry or a new alert wakes the dispatcher sooner)."""
        lane, board, terms = self.lanes[account], self.desk.board, self.desk.terms
        pacer = lane.budget(endpoint)
        finishes = board.finishes
        with board.dispatching:
            # Read before the slots and the claim: the local deadline then ends before the lease the
            # journal grants, and before the others would close the slots of an instance taken for
            # dead (at their start + the lease) had this one been paused between taking and claiming.
            send_by = terms.clock() + terms.send_by
            try:
                taken = self.desk.queue.claim_paced(
                    self.instance,
                    pacer,
                    self.senders,
                    terms.lease,
                    account,
                    read_pacer=lane.read_pacer,
                    actions=actions_of(endpoint),
                )
            except Exception:
                # It may have committed with its reply lost: alerts claimed and slots taken that no
                # sender of ours holds. The next round asks the journal for them and gives them back.
                self.upkeep.suspect_orphans()
                raise
        # What is still queued beside what was just claimed: when nothing, a finish wakes no one. A
        # finish during the look may have made one of them due after the look counted: look again.
        queue = (account, endpoint)
        board.backlog[queue] = None if taken.queued is None else taken.queued - len(taken.claims)
        raced = board.finishes != finishes and board.backlog[queue] != 0
        for record, slot in taken.claims:
            attempt = Attempt(self.desk, record, lane, send_by, slot, taken.read_slots.get(record.id), pacer)
            self.book.enter(attempt, self._pool.submit(attempt.run))
        return self._rest(pacer, taken, raced)

    def _rest(self, pacer, taken: PacedClaim, raced: bool) -> float:
        """How long one queue may wait, after a look that found and took ``taken``."""
        poll = self.poll_interval
        if taken.due and not taken.granted:  # the budget is spent
            opens_in = pacer.opens_in()  # a reply here wakes us sooner
            return poll if opens_in is None else min(max(opens_in, 0.001), poll)
        if raced:
            return 0.0
        if taken.due > len(taken.claims):
            # Due but not claimed: more than the senders took (look again at once), or another
            # instance (or a sweep) holds them for a moment.
            return 0.0 if taken.claims else min(poll, 0.05)
        # Everything due is under way: sleep until the next retry is due, at the poll's pace at most
        # (other instances queue alerts too). Alerts behind one being sent have no time of their
        # own: its outcome wakes us.
        return poll if taken.next_in is None or taken.next_in <= 0 else min(taken.next_in, poll)
