"""The one instance sending from a SQLite file: ``register`` takes an exclusive lock beside
it, so a second sender refuses to start instead of pacing itself to a second, silent rate
limit. Readers (the CLI) need no lock. OKX's rate budget stays in memory; the lockouts are in
the journal (``SqliteLockoutStore``), where the CLI lifts them while the service runs."""

from __future__ import annotations

import fcntl
import os

from webhook_app.journal.contracts import Instances
from webhook_app.journal.records import JournalInUse
from webhook_app.journal.shared import Store
from webhook_app.journal.sqlite.database import SqliteDatabase
from webhook_app.journal.sqlite.lockouts import SqliteLockoutStore


class SqliteInstances(Store, Instances):
    def __init__(self, db: SqliteDatabase):
        super().__init__(db)
        self._sender_lock: int | None = None  # the fd holding the one-sender lock
        self._lockouts = SqliteLockoutStore(db)

    def lockout_store(self) -> SqliteLockoutStore:
        return self._lockouts

    def register(self, instance: str) -> None:
        if self.db.path == ":memory:" or self._sender_lock is not None:
            return
        lock_path = self.db.path + ".sender.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise JournalInUse(
                f"the SQLite journal {self.db.path} is already sending in {holder}; SQLite serves one process "
                "(one rate limit, one recovery): run one gunicorn worker and one instance, or use PostgreSQL "
                "to run several"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        self._sender_lock = fd

    def close(self) -> None:
        if self._sender_lock is not None:
            os.close(self._sender_lock)  # closing the fd releases the flock
            self._sender_lock = None

    def heartbeat(self, instance: str) -> None:
        pass  # the lock is the heartbeat: the kernel drops it when the process dies

    def deregister(self, instance: str) -> None:
        self.close()
