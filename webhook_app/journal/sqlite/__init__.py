"""The SQLite journal: the embedded default, for one process.

One connection (``SqliteDatabase``), serialised by a lock; each store runs its statements
through it. WAL with synchronous=FULL: a journaled alert survives a power cut. One process
sends from a file (``SqliteInstances`` holds the lock that says so).
"""

from __future__ import annotations

from webhook_app.journal.contracts import Journal
from webhook_app.journal.sqlite.activity import SqliteActivity
from webhook_app.journal.sqlite.database import SqliteDatabase
from webhook_app.journal.sqlite.instances import SqliteInstances
from webhook_app.journal.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION
from webhook_app.journal.sqlite.queue import SqliteAlertQueue
from webhook_app.journal.sqlite.refusals import SqliteRefusals
from webhook_app.journal.sqlite.sessions import SqliteSessions

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteDatabase", "SqliteJournal"]


class SqliteJournal(Journal):
    def __init__(self, path: str, busy_timeout: float = 1.0):
        db = SqliteDatabase(path, busy_timeout)
        super().__init__(
            db,
            queue=SqliteAlertQueue(db),
            activity=SqliteActivity(db),
            refusal_log=SqliteRefusals(db),
            sessions=SqliteSessions(db),
            instances=SqliteInstances(db),
        )

    @property
    def path(self) -> str:
        return self.database.path
