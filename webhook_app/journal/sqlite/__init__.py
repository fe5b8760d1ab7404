"""The SQLite journal: the embedded default, for one process.

One connection (``SqliteDatabase``), serialised by a lock; each store runs its statements
through it: journaled alerts, the queue's claims, outcomes and upkeep, timelines, refused
requests, sessions. WAL with synchronous=FULL: a journaled alert survives a power cut. One process
sends from a file (``SqliteInstances`` holds the lock that says so).
"""

from __future__ import annotations

from webhook_app.journal.contracts import Journal
from webhook_app.journal.shared import SharedNotifications
from webhook_app.journal.sqlite.activity import SqliteActivity
from webhook_app.journal.sqlite.alerts import SqliteAlertLog
from webhook_app.journal.sqlite.claims import SqliteClaims
from webhook_app.journal.sqlite.database import SqliteDatabase
from webhook_app.journal.sqlite.instances import SqliteInstances
from webhook_app.journal.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION
from webhook_app.journal.sqlite.outcomes import SqliteOutcomes
from webhook_app.journal.sqlite.refusals import SqliteRefusals
from webhook_app.journal.sqlite.sessions import SqliteSessions
from webhook_app.journal.sqlite.upkeep import SqliteUpkeep

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteDatabase", "SqliteJournal"]


class SqliteJournal(Journal):
    def __init__(self, path: str, busy_timeout: float = 1.0):
        db = SqliteDatabase(path, busy_timeout)
        super().__init__(
            db,
            alerts=SqliteAlertLog(db),
            activity=SqliteActivity(db),
            notifications=SharedNotifications(db),
            claims=SqliteClaims(db),
            outcomes=SqliteOutcomes(db),
            upkeep=SqliteUpkeep(db),
            refusal_log=SqliteRefusals(db),
            sessions=SqliteSessions(db),
            instances=SqliteInstances(db),
        )

    @property
    def path(self) -> str:
        return self.database.path
