"""Rate slots after the claim: each held by one attempt until it ends, exactly once, and every
end the journal could not record tried again later, so a slot is given back on every path."""

from __future__ import annotations

import logging

from webhook_app.journal import JournalUnavailable
from webhook_app.workers.delivery.board import Board
from webhook_app.workers.pacing import Pacer

log = logging.getLogger("webhook_app")


class SlotLedger:
    """Ends slots in their pacers; an end that failed is kept and tried again by ``settle``."""

    def __init__(self, board: Board):
        self._board = board
        self._unsettled: list[tuple[str, Pacer, object]] = []  # pacing writes that failed, tried again later

    def release(self, pacer: Pacer, slot) -> None:
        """The request's exchange with OKX is over: its slot counts until the pacer's window has passed."""
        try:
            pacer.release(slot)
        except JournalUnavailable as exc:
            log.error("could not record the end of a request in the pacing ledger (tried again later): %s", exc)
            self._unsettled.append(("release", pacer, slot))
        self._board.wake()

    def cancel(self, pacer: Pacer, slots: list) -> None:
        """Slots never used: as if never taken."""
        try:
            pacer.cancel(slots)
        except JournalUnavailable as exc:
            log.error("could not give back unused rate slots (tried again later): %s", exc)
            self._unsettled.append(("cancel", pacer, slots))

    def settle(self) -> None:
        """Pacing writes that failed earlier, in order, until one fails again."""
        while self._unsettled:
            kind, pacer, slot = self._unsettled[0]
            try:
                pacer.release(slot) if kind == "release" else pacer.cancel(slot)
            except JournalUnavailable:
                return
            self._unsettled.pop(0)


class HeldSlot:
    """One rate slot that an attempt holds, ended once, one way: given back unused (``give_back``),
    released when the exchange with OKX is over (``release``), or closed by the journal write that
    carried it (``closed``). Holding none (``None``), every way is a no-op."""

    def __init__(self, ledger: SlotLedger, pacer: Pacer | None, slot):
        self._ledger = ledger
        self._pacer = pacer
        self._slot = slot

    @property
    def slot(self):
        """The pacer's own slot while held, for a read that uses it or a write that carries it; None once ended."""
        return self._slot

    def give_back(self) -> None:
        if self._slot is not None:
            slot, self._slot = self._slot, None
            self._ledger.cancel(self._pacer, [slot])

    def release(self) -> None:
        if self._slot is not None:
            slot, self._slot = self._slot, None
            self._ledger.release(self._pacer, slot)

    def closed(self) -> None:
        """The journal write that carried it ran (fenced out or not): it ended the slot."""
        self._slot = None
