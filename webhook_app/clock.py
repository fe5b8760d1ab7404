"""This host's elapsed time, and waits measured on it: one ``Clock`` for delivery's deadlines
and timers, the heartbeats, the in-memory rate ledgers, the bot reads' ages and the investigator.

It is local elapsed time (``elapsed``: Linux's boot time, which keeps counting while the host is
suspended, where ``time.monotonic`` stops), never "when": the time an alert was received,
a lease's end or a retry's due time are the journal's clock (the database's ``now()``), which
this one never replaces. Tests pass a ``ManualClock`` and advance it instead of sleeping.
"""

from __future__ import annotations

import threading
import time

Waitable = threading.Event | threading.Condition

POLL = 0.005  # real seconds between a ManualClock waiter's looks at the time it was moved to

if hasattr(time, "CLOCK_BOOTTIME"):

    def elapsed() -> float:
        """This host's elapsed time, counting time suspended (Linux's boot time): a deadline measured
        on it is past after a suspension as long as the deadline, where ``time.monotonic`` stood still."""
        return time.clock_gettime(time.CLOCK_BOOTTIME)

else:  # elsewhere the monotonic clock

    def elapsed() -> float:
        return time.monotonic()


class Clock:
    """The host's elapsed time (``elapsed``, counting a suspension) and the threading primitives'
    own timed waits."""

    def monotonic(self) -> float:
        return elapsed()

    def __call__(self) -> float:
        """The reading, so that a clock stands wherever a ``() -> float`` is expected."""
        return self.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        """``waitable.wait(timeout)`` (a Condition's lock held by the caller): False once ``timeout``
        seconds of this clock passed without a set or a notify."""
        return waitable.wait(timeout)

    def host_deadline(self, moment: float) -> float:
        """``moment`` of this clock as an ``elapsed()`` reading, for code that checks a deadline
        itself (the OKX client's ``send_by``, right before the bytes leave). The same number here."""
        return moment


SYSTEM_CLOCK = Clock()


class ManualClock(Clock):
    """A clock that moves only when told (``advance``), for tests; waits on it end when it has been
    moved past their timeout, or when their Event is set or their Condition notified.

    ``runs=True``: it also moves with the host's clock, for a whole running service whose journal's
    clock moves on its own (a retry due in a quarter of a second must still come)."""

    def __init__(self, start: float = 1000.0, *, runs: bool = False):
        self._start = start
        self._advanced = 0.0
        self._host_start = elapsed() if runs else None
        self._lock = threading.Lock()
        self._waiting = 0

    def monotonic(self) -> float:
        with self._lock:
            running = 0.0 if self._host_start is None else elapsed() - self._host_start
            return self._start + self._advanced + running

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._advanced += seconds

    @property
    def waiting(self) -> int:
        """Threads in a ``wait`` or ``sleep`` on this clock now."""
        with self._lock:
            return self._waiting

    def until_waiting(self, count: int = 1, limit: float = 5.0) -> None:
        """Returns once ``count`` threads wait on this clock (so that an ``advance`` reaches them),
        or raises after ``limit`` real seconds."""
        give_up = time.monotonic() + limit
        while self.waiting < count:
            if time.monotonic() >= give_up:
                raise AssertionError(f"{self.waiting} thread(s) waiting on the clock, not {count}")
            time.sleep(POLL)

    def sleep(self, seconds: float) -> None:
        self.wait(threading.Event(), seconds)

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        deadline = None if timeout is None else self.monotonic() + timeout
        with self._lock:
            self._waiting += 1
        try:
            while deadline is None or self.monotonic() < deadline:
                if waitable.wait(POLL):
                    return True
            return False
        finally:
            with self._lock:
                self._waiting -= 1

    def host_deadline(self, moment: float) -> float:
        # What is left of it on this clock, from the host's now: past on one is past on the other.
        return elapsed() + (moment - self.monotonic())
