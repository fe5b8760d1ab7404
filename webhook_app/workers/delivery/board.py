"""Where the delivery's parts meet without importing one another: the dispatcher's wake-ups,
the replies that wait on alerts, and the news of an alert reaching its final state.

The bottom of the package: attempts, upkeep and replies post here; the dispatcher waits here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from webhook_app.clock import Clock
from webhook_app.journal import Record

log = logging.getLogger("webhook_app")


class Board:
    """The meeting point: ``wake``/``pause``/``stop`` for the dispatcher, ``follow``/``signal`` for
    the replies, ``finished`` for every final state reached here."""

    def __init__(self, accounts: Iterable[str], on_final: Callable[[Record], None] | None = None):
        """``on_final``: told of every alert that reaches its final state (notifications)."""
        self._cond = threading.Condition()
        self._woken = False
        self._stopping = False
        self._on_final = on_final
        # Taking slots and claiming, as one step for this process: a reply that reads its turn under a
        # ledger outside the journal holds it too, or a slot would count against an alert about to go.
        self.dispatching = threading.Lock()
        self._done: dict[int, threading.Event] = {}  # alerts whose reply waits: set when there is news
        self._finals: dict[int, Record] = {}  # ...and the final record, as the write that made it returned
        # Per queue (account, endpoint), the queued alerts left unclaimed at its last look (None: not known, so a finish
        # always wakes the dispatcher); and how many alerts were finished, to tell a look that raced one.
        self.backlog: dict[tuple[str, str], int | None] = dict.fromkeys(accounts)
        self.finishes = 0

    # -- wake-ups ---------------------------------------------------------------------

    def wake(self) -> None:
        """Something may go now (a new alert, a retry, a slot given back): the dispatcher looks at once."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def pause(self, clock: Clock, seconds: float) -> bool:
        """The dispatcher's rest: up to ``seconds`` of ``clock``, none when woken since its last
        rest. False once the delivery is stopping."""
        with self._cond:
            if self._stopping:
                return False
            if not self._woken and seconds > 0:
                clock.wait(self._cond, seconds)
            self._woken = False
            return not self._stopping

    # -- replies ----------------------------------------------------------------------

    def follow(self, alert_id: int) -> threading.Event:
        """A reply waits on ``alert_id``: the event is set when there is news of it."""
        event = threading.Event()
        with self._cond:
            self._done[alert_id] = event
        return event

    def unfollow(self, alert_id: int) -> None:
        with self._cond:
            self._done.pop(alert_id, None)
            self._finals.pop(alert_id, None)

    def final_of(self, alert_id: int) -> Record | None:
        """The final record a write returned for a followed alert (no read needed), if any."""
        with self._cond:
            return self._finals.get(alert_id)

    def signal(self, alert_id: int, final: Record | None = None) -> None:
        """News of ``alert_id`` for its reply, if one waits: ``final``, or "read the journal"."""
        with self._cond:
            event = self._done.get(alert_id)
            if event is not None and final is not None:
                self._finals[alert_id] = final
        if event is not None:
            event.set()

    def finished(self, record: Record) -> None:
        """``record`` reached its final state: logged, its reply told, the dispatcher woken when
        anything is left queued (the next alert for its bot may go now), and ``on_final`` told."""
        log_outcome(record)
        self.finishes += 1
        self.signal(record.id, record)
        if any(backlog is None or backlog > 0 for backlog in self.backlog.values()):
            self.wake()
        if self._on_final is not None:
            try:
                self._on_final(record)
            except Exception:
                log.exception("telling of alert %s's outcome failed", record.id)


def log_outcome(record: Record) -> None:
    """One line per alert as it reaches its final state; WARNING unless OKX executed it."""
    level = logging.INFO if record.state in ("ok", "dry_run") else logging.WARNING
    log.log(
        level,
        "alert %s final state=%s algoId=%s action=%s amount=%s attempts=%s okx_code=%s okx_msg=%s "
        "latency_ms=%s detail=%s instance=%s",
        record.id,
        record.state,
        record.algo_id,
        record.action,
        record.amount,
        record.attempts,
        record.okx_code or "-",
        record.okx_msg or "-",
        "-" if record.latency_ms is None else f"{record.latency_ms:.1f}",
        record.detail or "-",
        record.claimed_by or "-",
    )
