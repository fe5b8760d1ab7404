"""Wrong-secret counts and lockouts in the SQLite journal: kept where ``flask lockouts`` reaches
them while the service runs (in its memory they were out of the command's reach, and only a
restart lifted one), and kept across a restart, as PostgreSQL keeps them."""

from __future__ import annotations

import json

from webhook_app.journal.shared import PrunedLockouts
from webhook_app.journal.sqlite.database import SqliteDatabase


class SqliteLockoutStore(PrunedLockouts):
    """The lockouts table: per address, its recent wrong secrets (a JSON list of times), the last
    one, and when its lockout ends, on the journal's clock. Rows that neither lock out nor count
    any more are pruned by ``failure``, at most once a minute, so a spray of addresses does not
    grow the table for ever."""

    db: SqliteDatabase

    def remaining(self, address: str) -> float:
        row = self.db.one("SELECT locked_until FROM lockouts WHERE address = ?", (address,))
        return max((row[0] or 0.0) - self.db.now(), 0.0) if row else 0.0

    def active(self) -> list[tuple[str, float]]:
        """(address, locked_until) for each address locked out now, soonest lifted first."""
        rows = self.db.all(
            "SELECT address, locked_until FROM lockouts WHERE locked_until > ? ORDER BY locked_until", (self.db.now(),)
        )
        return [(address, until) for address, until in rows]

    def clear(self, address: str) -> bool:
        """Lift the address's lockout and forget its wrong secrets; True when it was locked out."""

        def step(db):
            row = db.execute("SELECT locked_until FROM lockouts WHERE address = ?", (address,)).fetchone()
            db.execute("DELETE FROM lockouts WHERE address = ?", (address,))
            return bool(row and (row[0] or 0.0) > self.db.now())

        return self.db.transaction(step)

    def failure(self, address: str, threshold: int, window: float, duration: float) -> bool:
        """Count a wrong secret; True when it locked the address out. (Not waited onto the disk:
        a count lost in a power cut is one guess less counted.)"""

        def step(db):
            now = self.db.now()
            row = db.execute("SELECT failures FROM lockouts WHERE address = ?", (address,)).fetchone()
            failures = [at for at in json.loads(row[0]) if at > now - window] if row else []
            failures.append(now)
            locked = len(failures) >= threshold
            db.execute(
                "INSERT INTO lockouts (address, failures, last_failure, locked_until) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (address) DO UPDATE SET failures = excluded.failures, "
                "last_failure = excluded.last_failure, locked_until = coalesce(excluded.locked_until, locked_until)",
                (address, "[]" if locked else json.dumps(failures), now, now + duration if locked else None),
            )
            return locked

        locked = self.db.transaction(step, durable=False)
        self.prune_now_and_then(window)
        return locked

    def prune(self, window: float) -> int:
        """Delete the rows whose lockout has ended (or never began) and whose last wrong secret fell
        out of ``window``; returns how many."""
        now = self.db.now()
        return self.db.statement(
            "DELETE FROM lockouts WHERE coalesce(locked_until, 0) <= ? AND last_failure <= ?",
            (now, now - window),
            durable=False,
        )
