"""SQL pieces every SQLite module of the journal shares."""

from __future__ import annotations

from webhook_app.journal.records import Claim, Record
from webhook_app.journal.shared import SELECT_ALERTS

# The current attempt's claim, as a fence on every write after a send (params: ``fence(claim)``).
CLAIMED = "id = :id AND state = 'sending' AND claimed_by = :instance AND attempts = :attempt"


def fence(claim: Claim) -> dict:
    return {"id": claim.alert_id, "instance": claim.instance, "attempt": claim.attempt}


def log_events(db, events: list[tuple[int, float, str, str]]) -> None:
    """Timeline entries, written in the transaction that made them true."""
    if events:
        db.executemany("INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (?, ?, ?, ?)", events)


def read_alert(db, alert_id: int) -> Record | None:
    """The alert as it is, read inside the caller's transaction."""
    row = db.execute(f"{SELECT_ALERTS} WHERE id = ?", (alert_id,)).fetchone()
    return Record(*row) if row else None


def no_slot(slot) -> None:
    # SQLite's rate ledger lives in the process's memory (``MemoryPacer``): the sender closes its slots.
    if slot is not None:
        raise ValueError("the SQLite journal holds no rate slots: release the slot with its pacer")
