"""The SQLite journal's database: one connection, serialised by a lock; BEGIN IMMEDIATE makes
each check and its write one step. WAL with synchronous=FULL: a journaled alert survives a power
cut. Every SQLite store runs its statements through one ``SqliteDatabase``."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from webhook_app.journal.contracts import Database
from webhook_app.journal.records import JournalUnavailable
from webhook_app.journal.sqlite import migrations


class SqliteDatabase(Database):
    placeholder = "?"

    def __init__(self, path: str, busy_timeout: float = 1.0):
        self.path = path
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            self.connection.execute("PRAGMA journal_mode=WAL")
            # FULL: a journaled alert survives a power cut, not only a process crash.
            self.connection.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise JournalUnavailable(f"cannot open the journal at {path}: {exc}") from None
        self.lock = threading.Lock()  # held by every transaction; a store may hold it across several

    def _migrate(self) -> None:
        """Bring the file to SCHEMA_VERSION under the write lock, so two processes opening one
        file at once do not both migrate it."""
        db = self.connection
        latest = migrations.SCHEMA_VERSION  # read at each open: a test may stand in an older release
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            self.found_version = version
            if version > latest:
                raise sqlite3.DatabaseError(
                    f"the journal is at schema version {version}, newer than this "
                    f"release's {latest}: run the newer release"
                )
            for target, script in migrations.MIGRATIONS:
                if target > version:
                    for statement in script.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version = {target}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def now(self) -> float:
        return time.time()

    def schema_version(self) -> int:
        return self.transaction(lambda db: db.execute("PRAGMA user_version").fetchone()[0], write=False)

    def close(self) -> None:
        with self.lock:
            self.connection.close()

    def transaction(self, step, write: bool = True, durable: bool = True):
        """Run ``step(connection)`` in one transaction: ``write`` takes the write lock at BEGIN,
        ``durable=False`` skips the fsync."""
        with self.lock:
            return self.locked_transaction(step, write, durable)

    def locked_transaction(self, step, write: bool = True, durable: bool = True):
        """``transaction`` for a caller that already holds ``lock``."""
        try:
            if not durable:
                self.connection.execute("PRAGMA synchronous=NORMAL")
            try:
                return self._run(step, write)
            finally:
                if not durable:
                    self.connection.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise JournalUnavailable(f"journal error: {exc}") from None

    def one(self, sql: str, params=()):
        return self.transaction(lambda db: db.execute(sql, params).fetchone(), write=False)

    def all(self, sql: str, params=()):
        return self.transaction(lambda db: db.execute(sql, params).fetchall(), write=False)

    def statement(self, sql: str, params=(), durable: bool = True) -> int:
        """One write; returns how many rows it changed."""
        return self.transaction(lambda db: db.execute(sql, params).rowcount, durable=durable)

    def _run(self, step, write: bool):
        db = self.connection
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = step(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result
