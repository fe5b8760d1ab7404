"""Sending at once: an alert that can go as it arrives (its bot's turn, nothing due ahead of it, a
slot free, this instance sending) is accepted, claimed and confirmed in one durable write
(``AlertLog.add_claimed``), then handed straight to a sender of the door's own: no dispatcher round,
no claim and no confirmation of their own before the first byte. Everything else (waits, retries,
recovery) stays the dispatcher's. Fencing, the bot's order and pacing are the journal's, as for
every claim; only a budget kept in the journal's database can be taken in that write (PostgreSQL).

The request is carried by a sender rather than by the request's own thread, so that the reply
still leaves by REPLY_DEADLINE (TradingView gives up at 3 s) while a slow OKX is answering."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from webhook_app.journal import ClaimedAtOnce, JournalUnavailable, Record, SendNow
from webhook_app.okx.actions import EXPIRING, actions_of
from webhook_app.workers.delivery.attempt import Attempt, Desk
from webhook_app.workers.delivery.book import SlotBook
from webhook_app.workers.delivery.lanes import Lane
from webhook_app.workers.pacing import Pacer


class AtOnce:
    """One request's chance to send its alert at once: held from before the journal's write until
    its attempt is handed over (or it turned out to be queued). Its ``send_now`` goes to ``add_claimed``."""

    def __init__(self, door: Door, lane: Lane, pacer: Pacer, send_by: float, send_now: SendNow, exp_time):
        self.door, self.lane, self.pacer, self.send_by = door, lane, pacer, send_by
        self.send_now, self.exp_time_ms = send_now, exp_time
        self._gate = contextlib.ExitStack()  # passing the slot book's gate, until closed
        self._holds_room = True  # the door's room, until an attempt takes it over

    def __enter__(self) -> AtOnce:
        self._gate.enter_context(self.door.book.gate.passing())
        return self

    def __exit__(self, *exc) -> None:
        self._gate.close()
        if self._holds_room:
            self._holds_room = False
            self.door.leave()

    def start(self, record: Record, claimed: ClaimedAtOnce) -> Sending | None:
        """Hand the claimed alert's attempt to a sender now, entered in the slot book before the gate
        opens. None when it could not be (the delivery is stopping: it is back in the queue)."""
        door = self.door
        attempt = Attempt(
            door.desk, record, self.lane, self.send_by, claimed.slot, claimed.read_slot, self.pacer
        ).confirmed_at_receipt(self.exp_time_ms)
        try:
            future = door.pool.submit(attempt.run)
        except RuntimeError:  # the delivery is stopping: never sent, back in the queue for the others
            attempt.give_back()
            with contextlib.suppress(JournalUnavailable):
                door.desk.queue.unclaim([attempt.claim])
            return None
        door.book.enter(attempt, future)
        self._holds_room = False  # the attempt holds the room now, until it is done
        future.add_done_callback(lambda _: door.leave())
        self._gate.close()  # entered: the orphan sweep sees its claim from here
        door.counted()
        return Sending(attempt, future)


@dataclasses.dataclass(frozen=True)
class Sending:
    """An alert's attempt under way on a sender of the door's."""

    attempt: Attempt
    future: Future

    def outcome(self, wait: float) -> Record | None:
        """Its final record, waiting up to ``wait`` seconds; None when it is not final by then
        (still being sent, queued again, or its outcome unwritten)."""
        try:
            self.future.result(timeout=max(wait, 0.0))
        except Exception:  # not done in time; cancelled unstarted by a stop (queued again); a bug the book logs
            return None
        return self.attempt.final


class Door:
    """Decides, per request, whether its alert may try to go at once, and runs those attempts on
    senders of its own (``capacity`` of them): one never waits behind the dispatcher's, and is
    never queued behind others past its deadline, since no more start than there are senders."""

    def __init__(self, desk: Desk, lanes: dict[str, Lane], book: SlotBook, instance: str, capacity: int):
        self.desk, self.lanes, self.book = desk, lanes, book
        self.instance = instance
        capacity = max(capacity, 1)
        self._room = threading.BoundedSemaphore(capacity)
        self.pool = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="okx-at-once")
        self.sent_at_once = 0  # attempts started at once since the start (a figure for tests and benchmarks)
        self._count_lock = threading.Lock()
        self._open = False  # from the delivery's start to its stop

    def enter(self, account: str, endpoint: str, action: str) -> AtOnce | None:
        """An ``AtOnce`` for a new alert, or None: it is queued for the dispatcher (a budget not in the
        journal's database, the delivery not sending, or ``capacity`` sends at once already under way)."""
        lane = self.lanes.get(account)
        pacer = lane.budget(endpoint) if lane is not None else None
        if pacer is None or not pacer.shares_journal or not self._open:
            return None
        if not self._room.acquire(blocking=False):
            return None
        try:
            return self._at_once(lane, pacer, endpoint, action)
        except BaseException:
            self.leave()
            raise

    def _at_once(self, lane: Lane, pacer: Pacer, endpoint: str, action: str) -> AtOnce:
        terms = self.desk.terms
        # Read before the write, as the dispatcher reads it before its claim: the local deadline then
        # ends before the lease the journal grants from its own clock.
        send_by = terms.clock() + terms.send_by
        exp_time = None
        if action in EXPIRING:
            exp_time = lane.client.okx_deadline_ms(terms.clock.host_deadline(send_by))
        evidence = None if exp_time is None else json.dumps({"expTime": str(exp_time)})  # as Attempt keeps it
        receipt = uuid.uuid4().hex
        send_now = SendNow(self.instance, terms.lease, pacer, lane.read_pacer, actions_of(endpoint), evidence, receipt)
        return AtOnce(self, lane, pacer, send_by, send_now, exp_time)

    def leave(self) -> None:
        self._room.release()

    def counted(self) -> None:
        with self._count_lock:
            self.sent_at_once += 1

    def open(self) -> None:
        """Alerts may go at once from here on (the delivery has started)."""
        self._open = True

    def close(self) -> None:
        """No alert goes at once from here on (the delivery is stopping)."""
        self._open = False

    def stop(self) -> None:
        self.close()
        self.pool.shutdown(wait=False)
