"""OKX's rate budget: at most ``limit`` of our requests in any ``window`` seconds, as OKX counts them.

OKX counts a request when it arrives, some time between our send and its reply. A request
therefore holds its slot from the send until ``window`` after its reply came back (or it
failed): whatever the network's jitter, no ``limit + 1`` of ours arrive within one window.

One interface, two ledgers: ``MemoryPacer`` for one process, and the database-backed one
in ``journal/postgres/instances.py`` (``PostgresPacer``) that every instance on one database shares.
"""

from __future__ import annotations

import abc
import collections
import threading

from webhook_app.clock import SYSTEM_CLOCK, Clock


class Pacer(abc.ABC):
    limit: int
    window: float
    # Its slots are rows in the journal's own database: a claim can take them, and an outcome's
    # write close one, in the same statement (``QueueClaims.claim_paced``, ``QueueOutcomes.finish(slot=)``).
    shares_journal: bool = False

    @abc.abstractmethod
    def acquire(self, instance: str, wanted: int) -> list:
        """Up to ``wanted`` slots that may start now (none when the budget is spent)."""

    @abc.abstractmethod
    def release(self, slot) -> None:
        """The request's exchange with OKX has ended (reply, error or never sent)."""

    @abc.abstractmethod
    def cancel(self, slots: list) -> None:
        """Slots acquired but never used (nothing was sent): as if never taken."""

    @abc.abstractmethod
    def hold_off(self, seconds: float) -> None:
        """OKX said we were over its limit (other clients share the account): start nothing for ``seconds``."""

    @abc.abstractmethod
    def busy(self) -> int:
        """Slots in use now (in flight, or ended less than a window ago)."""

    @abc.abstractmethod
    def opens_in(self) -> float | None:
        """Seconds until a slot frees, 0 if one is free; None while only a reply can free one."""

    def projected(self, ahead: int, busy: int | None = None) -> float:
        """Roughly how many seconds from now a request queued behind ``ahead`` others starts
        (``busy``: the slots in use, when already read)."""
        return (((self.busy() if busy is None else busy) + ahead) // self.limit) * self.window


class MemoryPacer(Pacer):
    """The ledger in this process's memory: right when this process is OKX's only client of ours."""

    class Slot:
        __slots__ = ("ended",)

        def __init__(self, ended: float | None = None):
            self.ended = ended  # monotonic time the exchange ended; None while in flight

    def __init__(self, limit: int, window: float = 2.0, margin: float = 0.01, clock: Clock = SYSTEM_CLOCK):
        """``clock``: any ``() -> float`` of elapsed seconds will do; the ledger only reads it."""
        self.limit = limit
        self.window = window + margin
        self._clock = clock
        self._slots: collections.deque[MemoryPacer.Slot] = collections.deque()
        self._lock = threading.Lock()

    def _busy(self, now: float) -> int:
        while self._slots and self._slots[0].ended is not None and self._slots[0].ended + self.window <= now:
            self._slots.popleft()
        return sum(1 for s in self._slots if s.ended is None or s.ended + self.window > now)

    def busy(self) -> int:
        with self._lock:
            return self._busy(self._clock())

    def acquire(self, instance: str, wanted: int) -> list:
        with self._lock:
            granted = [MemoryPacer.Slot() for _ in range(max(min(wanted, self.limit - self._busy(self._clock())), 0))]
            self._slots.extend(granted)
        return granted

    def release(self, slot) -> None:
        with self._lock:
            if slot.ended is None:
                slot.ended = self._clock()

    def cancel(self, slots: list) -> None:
        with self._lock:
            for slot in slots:
                self._slots.remove(slot)

    def hold_off(self, seconds: float) -> None:
        with self._lock:
            ended = self._clock() + seconds - self.window
            self._slots.extend(MemoryPacer.Slot(ended) for _ in range(self.limit))

    def opens_in(self) -> float | None:
        with self._lock:
            now = self._clock()
            if self._busy(now) < self.limit:
                return 0.0
            ends = [s.ended + self.window for s in self._slots if s.ended is not None]
            return max(min(ends) - now, 0.0) if ends else None
