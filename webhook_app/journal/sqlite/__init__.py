"""The SQLite journal: the embedded default, for one process.

One connection (``SqliteDatabase``), serialised by a lock; each store runs its statements
through it. WAL with synchronous=FULL: a journaled alert survives a power cut. One process
sends from a file (``SqliteInstances`` holds the lock that says so).
"""

from __future__ import annotations

from ..contracts import Journal
from .activity import SqliteActivity
from .database import SqliteDatabase
from .instances import SqliteInstances
from .migrations import MIGRATIONS, SCHEMA_VERSION
from .queue import SqliteAlertQueue
from .refusals import SqliteRefusals
from .sessions import SqliteSessions

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
