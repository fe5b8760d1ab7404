"""The instances on one PostgreSQL database and what they share besides the queue: who is alive
(heartbeats say whose rate slots to close), OKX's rate budget (a ledger of request slots per API
key), the wrong-secret lockouts and a generated secret."""

from __future__ import annotations

import hashlib
import socket

from webhook_app.journal.contracts import Instances
from webhook_app.journal.postgres.database import PostgresDatabase
from webhook_app.journal.postgres.sql import LOCK_PACING, NOW
from webhook_app.journal.shared import PrunedLockouts, Store
from webhook_app.workers.pacing import Pacer

# Alive: a new instance, or one back after a long pause.
_ALIVE = f"INSERT INTO instances (id, host) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET heartbeat_at = {NOW}"


# The slots a ledger has in use (params: the ledger, its window): in flight, or ended less than a window ago.
BUSY_SLOTS = f"SELECT count(*) FROM okx_pacing WHERE account = %s AND (ended_at IS NULL OR ended_at + %s > {NOW})"


class PostgresInstances(Store, Instances):
    shared = True

    def register(self, instance: str) -> None:
        self.db.statement(_ALIVE, (instance, socket.gethostname()[:200]))

    def heartbeat(self, instance: str) -> None:
        # On a connection of its own: a pool busy with sends must never make a live instance look dead.
        self.db.execute_alone(_ALIVE, (instance, socket.gethostname()[:200]))

    def deregister(self, instance: str) -> None:
        self.db.statement("DELETE FROM instances WHERE id = %s", (instance,))

    def stored_secret(self, name, make):
        def step(conn):
            conn.execute(
                "INSERT INTO settings (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (name, make())
            )
            return conn.execute("SELECT value FROM settings WHERE name = %s", (name,)).fetchone()[0]

        return self.db.transaction(step)

    def pacer(self, account: str, limit: int, window: float) -> PostgresPacer:
        return PostgresPacer(self.db, account, limit, window)

    def lockout_store(self) -> PostgresLockoutStore:
        return PostgresLockoutStore(self.db)


class PostgresPacer(Pacer):
    """OKX's rate budget for one API key, shared by every instance on the database."""

    shares_journal = True  # see Pacer: the queue claims with its slots, and outcomes close them

    def __init__(self, db: PostgresDatabase, account: str, limit: int, window: float = 2.0, margin: float = 0.01):
        self.db = db
        # The ledger names the account by a hash of its API key, never the key itself.
        self.account = hashlib.sha256(account.encode()).hexdigest()[:16]
        self.limit = limit
        self.window = window + margin

    def _locked(self, conn) -> float:
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_PACING, self.account))
        now = conn.execute(f"SELECT {NOW}").fetchone()[0]
        conn.execute(
            "DELETE FROM okx_pacing WHERE account = %s AND ended_at IS NOT NULL AND ended_at + %s <= %s",
            (self.account, self.window, now),
        )
        return now

    def acquire(self, instance: str, wanted: int) -> list:
        if wanted <= 0:
            return []
        rows = self.db.transaction(
            lambda conn: conn.execute(
                "SELECT pacing_acquire(%s, %s, %s, %s, %s)", (self.account, instance, wanted, self.limit, self.window)
            ).fetchall(),
            atomic=False,
            durable=False,
        )
        return [row[0] for row in rows]

    def release(self, slot) -> None:
        # Only an open slot: one that a take-over closed (at the latest its request could end) stays so.
        self.db.statement(
            f"UPDATE okx_pacing SET ended_at = {NOW} WHERE id = %s AND ended_at IS NULL", (slot,), durable=False
        )

    def cancel(self, slots: list) -> None:
        if slots:
            self.db.statement("DELETE FROM okx_pacing WHERE id = ANY(%s)", (slots,), durable=False)

    def hold_off(self, seconds: float) -> None:
        def step(conn):
            now = self._locked(conn)
            conn.execute(
                "INSERT INTO okx_pacing (account, instance, ended_at) SELECT %s, NULL, %s FROM generate_series(1, %s)",
                (self.account, now + seconds - self.window, self.limit),
            )

        self.db.transaction(step)

    def busy(self) -> int:
        return self.db.one(BUSY_SLOTS, (self.account, self.window))[0]

    def opens_in(self) -> float | None:
        busy, first_opening, now = self.db.one(
            f"SELECT count(*), min(ended_at) + %s, {NOW} FROM okx_pacing WHERE account = %s "
            f"AND (ended_at IS NULL OR ended_at + %s > {NOW})",
            (self.window, self.account, self.window),
        )
        if busy < self.limit:
            return 0.0
        return None if first_opening is None else max(first_opening - now, 0.0)


class PostgresLockoutStore(PrunedLockouts):
    """Wrong-secret counts and lockouts, shared by every instance and kept across restarts.
    Rows that neither lock out nor count any more are pruned by ``failure``, at most once a
    minute per instance, so a spray of addresses does not grow the table for ever."""

    db: PostgresDatabase

    def prune(self, window: float) -> int:
        """Delete the rows whose lockout has ended (or never began) and whose failures all fell
        out of ``window``; returns how many."""

        def step(conn):
            return conn.execute(
                f"DELETE FROM lockouts WHERE coalesce(locked_until, 0) <= {NOW} "
                f"AND NOT EXISTS (SELECT 1 FROM unnest(failures) f WHERE f > {NOW} - %s)",
                (window,),
            ).rowcount

        return self.db.transaction(step, atomic=False)

    def remaining(self, address: str) -> float:
        # Asked for every webhook request: one statement, no BEGIN and COMMIT around it.
        row = self.db.one(f"SELECT locked_until - {NOW} FROM lockouts WHERE address = %s", (address,))
        return max(row[0] or 0.0, 0.0) if row else 0.0

    def active(self) -> list[tuple[str, float]]:
        """(address, locked_until) for each address locked out now. The table keeps when a
        lockout ends, not when it began nor its failures (cleared when it begins)."""
        return [
            (address, until)
            for address, until in self.db.transaction(
                lambda conn: conn.execute(
                    f"SELECT address, locked_until FROM lockouts WHERE locked_until > {NOW} ORDER BY locked_until"
                ).fetchall()
            )
        ]

    def clear(self, address: str) -> bool:
        """Lift the address's lockout and forget its wrong secrets; True when it was locked out."""

        def step(conn):
            row = conn.execute(
                f"DELETE FROM lockouts WHERE address = %s RETURNING coalesce(locked_until, 0) > {NOW}", (address,)
            ).fetchone()
            return bool(row and row[0])

        return self.db.transaction(step)

    def failure(self, address: str, threshold: int, window: float, duration: float) -> bool:
        def step(conn):
            now = conn.execute(f"SELECT {NOW}").fetchone()[0]
            row = conn.execute(
                "INSERT INTO lockouts (address, failures) VALUES (%s, ARRAY[%s]::double precision[]) "
                "ON CONFLICT (address) DO UPDATE SET failures = "
                "array_append(ARRAY(SELECT f FROM unnest(lockouts.failures) f WHERE f > %s), %s) "
                "RETURNING cardinality(failures)",
                (address, now, now - window, now),
            ).fetchone()
            if row[0] >= threshold:
                conn.execute(
                    "UPDATE lockouts SET failures = '{}', locked_until = %s WHERE address = %s",
                    (now + duration, address),
                )
                return True
            return False

        locked = self.db.transaction(step)
        self.prune_now_and_then(window)
        return locked
