"""The SQLite journal: the embedded default, for one process.

One connection, serialised by a lock; BEGIN IMMEDIATE makes each check and its write one
step. WAL with synchronous=FULL: a journaled alert survives a power cut. Alerts arriving
together share one fsync (group commit). One process sends from a file: ``register`` takes
an exclusive lock beside it, so a second sender refuses to start instead of pacing itself to
a second, silent rate limit. Readers (the CLI) need no lock.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import sqlite3
import threading
import time
from decimal import Decimal
from pathlib import Path

from . import (
    CAP_STATES,
    COLUMNS,
    FINAL_STATES,
    INTERRUPTED_DETAIL,
    NEVER_SENT_DETAIL,
    NEVER_SENT_EXPIRED_DETAIL,
    Claim,
    DailyCapExceeded,
    Journal,
    JournalInUse,
    JournalUnavailable,
    Record,
    answer_detail,
    claimed_detail,
    iso_time,
)
from .sqlite_activity import SqliteActivity

# Schema versions, kept in SQLite's user_version; each step runs once, in order, at open.
# Version 1 is the first release's schema (IF NOT EXISTS: a file from before versions were
# kept is at version 0 and already has it).
MIGRATIONS = (
    (
        1,
        """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    dedup_key TEXT NOT NULL,
    algo_id TEXT NOT NULL,
    action TEXT NOT NULL,
    amount TEXT NOT NULL,
    request_body TEXT NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    okx_code TEXT,
    okx_msg TEXT,
    detail TEXT,
    secret_name TEXT,
    first_sent_at REAL,
    finished_at REAL,
    latency_ms REAL
);
CREATE INDEX IF NOT EXISTS alerts_dedup ON alerts (dedup_key, received_at);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, id);
CREATE INDEX IF NOT EXISTS alerts_received ON alerts (received_at);
CREATE INDEX IF NOT EXISTS alerts_bot ON alerts (algo_id, action, received_at);
""",
    ),
    # The trader's own "id", shown and searchable (the dedup key holds it only in a prefixed form).
    (2, "ALTER TABLE alerts ADD COLUMN trader_id TEXT; CREATE INDEX alerts_trader ON alerts (trader_id, id);"),
    # The queue lives in the journal: who claimed an alert, and when a retry is due.
    (
        3,
        "ALTER TABLE alerts ADD COLUMN claimed_by TEXT; "
        "ALTER TABLE alerts ADD COLUMN not_before REAL NOT NULL DEFAULT 0; "
        "CREATE INDEX alerts_queue ON alerts (state, not_before, id);",
    ),
    # What operators see and do: each alert's timeline, their findings and resends, refused requests.
    (
        4,
        """
ALTER TABLE alerts ADD COLUMN resolution TEXT;
ALTER TABLE alerts ADD COLUMN resent_from INTEGER;
ALTER TABLE alerts ADD COLUMN resent_as INTEGER;
CREATE TABLE alert_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);
CREATE INDEX alert_events_at ON alert_events (at);
CREATE TABLE refused (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    status INTEGER NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    client TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    algo_id TEXT,
    trader_id TEXT,
    count INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX refused_at ON refused (at);
CREATE TABLE admin_sessions (
    sid TEXT PRIMARY KEY,
    client TEXT,
    started_at REAL NOT NULL,
    ended_at REAL
)
""",
    ),
    # Fenced claims (a lease, and when the attempt was cleared to go on the wire), and each bot's
    # open alerts found fast (one bot's alerts go in order).
    (
        5,
        "ALTER TABLE alerts ADD COLUMN lease_until REAL; "
        "ALTER TABLE alerts ADD COLUMN sent_at REAL; "
        "CREATE INDEX alerts_open_bot ON alerts (algo_id, id) WHERE state IN ('queued', 'sending')",
    ),
    # OKX's own records on an unknown outcome, and the verdict proposed from them. Nullable columns
    # only: an older release still running on the file reads and writes it as before.
    (6, "ALTER TABLE alerts ADD COLUMN evidence TEXT; ALTER TABLE alerts ADD COLUMN proposal TEXT"),
    # Several OKX accounts: each alert names the one that sends it. Every alert journaled before, and
    # any an older release still running inserts without naming it, belongs to the single account
    # there was, "default". The index serves the operator's filter by account; claims find the few
    # queued alerts through alerts_queue and filter those.
    (
        7,
        "ALTER TABLE alerts ADD COLUMN account TEXT NOT NULL DEFAULT 'default'; "
        "CREATE INDEX alerts_account ON alerts (account, id)",
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM alerts"
# Due, and its bot's turn: no other alert for the bot is being sent, and no earlier one is queued inside its lag.
_DUE = (
    "state = 'queued' AND not_before <= :now AND expires_at >= :now AND NOT EXISTS (SELECT 1 FROM alerts b "
    "WHERE b.algo_id = alerts.algo_id AND b.id != alerts.id AND b.state IN ('queued', 'sending') "
    "AND (b.state = 'sending' OR (b.id < alerts.id AND b.expires_at >= :now)))"
)
# One account's alerts, or (no account named) every account's.
_OF_ACCOUNT = "(:account IS NULL OR account = :account)"
# The current attempt's claim, as a fence on every write after a send.
_CLAIMED = "id = :id AND state = 'sending' AND claimed_by = :instance AND attempts = :attempt"


@dataclasses.dataclass
class _PendingAdd:
    params: dict
    result: tuple[Record, bool] | None = None
    error: BaseException | None = None
    done: bool = False


class SqliteJournal(SqliteActivity, Journal):
    def __init__(self, path: str, busy_timeout: float = 1.0):
        self.path = path
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a journaled alert survives a power cut, not only a process crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise JournalUnavailable(f"cannot open the journal at {path}: {exc}") from None
        self._lock = threading.Lock()
        self._pending: list[_PendingAdd] = []  # adds waiting for the next group commit
        self._pending_lock = threading.Lock()
        self._sender_lock: int | None = None  # the fd holding the one-sender lock

    def _migrate(self) -> None:
        """Bring the file to SCHEMA_VERSION under the write lock, so two processes opening one
        file at once do not both migrate it."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"the journal is at schema version {version}, newer than this "
                    f"release's {SCHEMA_VERSION}: run the newer release"
                )
            for target, script in MIGRATIONS:
                if target > version:
                    for statement in script.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {target}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        return self._transaction(lambda db: db.execute("PRAGMA user_version").fetchone()[0], write=False)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._release_sender_lock()

    def now(self) -> float:
        return time.time()

    # -- alerts ---------------------------------------------------------------------------

    def add(self, *, now: float | None = None, **params) -> tuple[Record, bool]:
        # Group commit: alerts arriving together are checked one after another inside one write
        # transaction, so duplicates and caps hold between them, and they share one fsync.
        pending = _PendingAdd({**params, "now": time.time() if now is None else now})
        with self._pending_lock:
            self._pending.append(pending)
        with self._lock:
            if not pending.done:  # nobody took it into their batch: commit all that wait
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit_adds(batch)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _commit_adds(self, batch: list[_PendingAdd]) -> None:
        def step(db):
            for pending in batch:
                try:
                    pending.result = self._add_one(db, **pending.params)
                except DailyCapExceeded as exc:  # nothing of it was written; the others go on
                    pending.error = exc

        try:
            self._locked_transaction(step, write=True, durable=True)
        except Exception as exc:  # the journal failing, or one alert it cannot store (text it cannot encode)
            if len(batch) > 1:  # one bad alert must not sink the others: each in its own transaction
                for pending in batch:
                    pending.result = pending.error = None
                    self._commit_adds([pending])
            else:
                error = exc if isinstance(exc, JournalUnavailable) else JournalUnavailable(f"journal error: {exc}")
                batch[0].error, batch[0].result = error, None
        finally:
            for pending in batch:
                pending.done = True

    def _add_one(
        self,
        db,
        *,
        dedup_key,
        dedup_since,
        algo_id,
        action,
        amount,
        request_body,
        expires_at,
        state="queued",
        secret_name=None,
        daily_cap=None,
        trader_id=None,
        cap_states=CAP_STATES,
        account="default",
        now,
    ) -> tuple[Record, bool]:
        row = db.execute(
            f"{_SELECT} WHERE dedup_key = ? AND received_at >= ? AND state != 'failed' ORDER BY id DESC LIMIT 1",
            (dedup_key, dedup_since),
        ).fetchone()
        if row:
            return Record(*row), False
        if daily_cap is not None:
            rows = db.execute(
                "SELECT amount FROM alerts WHERE algo_id = ? AND action = ? AND received_at >= ? AND state IN "
                f"({', '.join('?' * len(cap_states))})",
                (algo_id, action, now - 86400, *cap_states),
            ).fetchall()
            used = sum((Decimal(r[0]) for r in rows), Decimal(0))  # exact: never SQLite's float SUM
            if used + Decimal(amount) > daily_cap:
                raise DailyCapExceeded(daily_cap, used)
        cursor = db.execute(
            "INSERT INTO alerts (received_at, dedup_key, algo_id, action, amount, request_body, "
            "expires_at, state, secret_name, trader_id, account) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (now, dedup_key, algo_id, action, amount, request_body, expires_at, state, secret_name, trader_id, account),
        )
        return self._get(db, cursor.lastrowid), True

    def get(self, alert_id: int) -> Record | None:
        if not 0 <= alert_id < 2**63:  # beyond SQLite's INTEGER: no such alert, not an error
            return None
        return self._transaction(lambda db: self._get(db, alert_id), write=False)

    def recent(self, limit=50, state=None, trader_id=None, algo_id=None, account=None) -> list[Record]:
        filters = [
            (c, v)
            for c, v in (("state", state), ("trader_id", trader_id), ("algo_id", algo_id), ("account", account))
            if v is not None
        ]
        where = " AND ".join(f"{column} = ?" for column, _ in filters)

        def step(db):
            rows = db.execute(
                f"{_SELECT} {'WHERE ' + where if where else ''} ORDER BY id DESC LIMIT ?",
                (*[value for _, value in filters], limit),
            )
            return [Record(*row) for row in rows.fetchall()]

        return self._transaction(step, write=False)

    def count_due(
        self, now: float | None = None, before_id: int | None = None, in_turn: bool = True, account: str | None = None
    ) -> int:
        now = time.time() if now is None else now
        due = _DUE if in_turn else "state = 'queued' AND not_before <= :now AND expires_at >= :now"
        return self._transaction(
            lambda db: db.execute(
                f"SELECT count(*) FROM alerts WHERE {due} AND {_OF_ACCOUNT} AND id < :before",
                {"now": now, "before": 2**63 - 1 if before_id is None else before_id, "account": account},
            ).fetchone()[0],
            write=False,
        )

    def next_due_at(self) -> float | None:
        # Alerts waiting behind one that is being sent have no time of their own: its outcome wakes them.
        return self._transaction(
            lambda db: db.execute(
                "SELECT min(not_before) FROM alerts WHERE state = 'queued' AND expires_at >= :now "
                "AND NOT EXISTS (SELECT 1 FROM alerts b "
                "WHERE b.algo_id = alerts.algo_id AND b.id != alerts.id AND b.state IN ('queued', 'sending') "
                "AND (b.state = 'sending' OR (b.id < alerts.id AND b.expires_at >= :now)))",
                {"now": time.time()},
            ).fetchone()[0],
            write=False,
        )

    def claim_due(
        self, instance: str, limit: int, now: float, lease: float = 30.0, account: str | None = None
    ) -> list[Record]:
        # One process sends from a file, and each claim is one write transaction: claims for
        # different accounts are already one after another, each a moment long.
        def step(db):
            # ``now`` was read before the claim: an alert received since then still never shows
            # a send that started before it arrived.
            rows = db.execute(
                "UPDATE alerts SET state = 'sending', attempts = attempts + 1, claimed_by = :instance, "
                "first_sent_at = COALESCE(first_sent_at, MAX(:now, received_at)), sent_at = NULL, "
                "lease_until = :lease_until "
                f"WHERE id IN (SELECT id FROM alerts WHERE {_DUE} AND {_OF_ACCOUNT} ORDER BY id LIMIT :limit) "
                f"RETURNING {', '.join(COLUMNS)}",
                {
                    "instance": instance,
                    "now": now,
                    "limit": limit,
                    "lease_until": time.time() + lease,
                    "account": account,
                },
            ).fetchall()
            records = sorted((Record(*row) for row in rows), key=lambda r: r.id)
            _log_events(db, [(r.id, now, "claimed", claimed_detail(r.attempts, instance)) for r in records])
            return records

        return self._transaction(step) if limit > 0 else []

    def confirm_send(self, claim: Claim, evidence: str | None = None) -> bool:
        # Durable: once this says yes the request may leave, and a crash must not forget that it may have.
        def step(db):
            return db.execute(
                "UPDATE alerts SET sent_at = :now, evidence = :evidence "
                f"WHERE {_CLAIMED} AND lease_until > :now AND expires_at >= :now",
                {"now": time.time(), "evidence": evidence, **_fence(claim)},
            ).rowcount

        return self._transaction(step) == 1

    def note(self, alert_id: int, kind: str, detail: str) -> None:
        self._transaction(lambda db: _log_events(db, [(alert_id, time.time(), kind, detail)]), durable=False)

    def expire_overdue(self, now: float) -> list[Record]:
        def step(db):
            records = [
                Record(*row)
                for row in db.execute(
                    "UPDATE alerts SET state = 'expired', finished_at = ?, "
                    "detail = 'too old to send: it waited past its lag; not sent' "
                    f"WHERE state = 'queued' AND expires_at < ? RETURNING {', '.join(COLUMNS)}",
                    (now, now),
                ).fetchall()
            ]
            _log_events(db, [(r.id, now, "expired", r.detail) for r in records])
            return records

        return self._transaction(step, durable=False)

    def unclaim(self, claims: list[Claim]) -> None:
        def step(db):
            undone = [
                claim.alert_id
                for claim in claims
                if db.execute(
                    "UPDATE alerts SET state = 'queued', attempts = attempts - 1, claimed_by = NULL, "
                    "lease_until = NULL, first_sent_at = CASE WHEN attempts = 1 THEN NULL ELSE first_sent_at END "
                    f"WHERE {_CLAIMED}",
                    _fence(claim),
                ).rowcount
            ]
            now = time.time()
            _log_events(db, [(i, now, "unclaimed", "back in the queue: the send never started") for i in undone])

        self._transaction(step)

    def requeue(self, alert_id: int, okx_code, okx_msg, detail: str, not_before: float, claim=None) -> bool:
        # Durable: losing it would leave the alert "sending", to be called unknown although OKX did not act.
        fence = f"AND {_CLAIMED}" if claim is not None else "AND id = :id AND state = 'sending'"

        def step(db):
            changed = db.execute(
                "UPDATE alerts SET state = 'queued', okx_code = :code, okx_msg = :msg, detail = :detail, "
                f"not_before = :not_before, lease_until = NULL WHERE 1 {fence}",
                {
                    "code": okx_code,
                    "msg": okx_msg,
                    "detail": detail,
                    "not_before": not_before,
                    **(_fence(claim) if claim is not None else {"id": alert_id}),
                },
            ).rowcount
            if changed:
                retry = f"{answer_detail('not executed', okx_code, okx_msg, detail)}; due again {iso_time(not_before)}"
                _log_events(db, [(alert_id, time.time(), "retry", retry)])
            return changed == 1

        return self._transaction(step)

    def finish(
        self, alert_id, state, *, okx_code=None, okx_msg=None, detail=None, latency_ms=None, now=None, claim=None
    ):
        assert state in FINAL_STATES, state
        now = time.time() if now is None else now
        fence = f"AND {_CLAIMED}" if claim is not None else "AND id = :id"

        def step(db):
            changed = db.execute(
                "UPDATE alerts SET state = :state, okx_code = COALESCE(:code, okx_code), "
                "okx_msg = COALESCE(:msg, okx_msg), detail = :detail, latency_ms = COALESCE(:latency, latency_ms), "
                f"finished_at = :now, lease_until = NULL WHERE 1 {fence}",
                {
                    "state": state,
                    "code": okx_code,
                    "msg": okx_msg,
                    "detail": detail,
                    "latency": latency_ms,
                    "now": now,
                    **(_fence(claim) if claim is not None else {"id": alert_id}),
                },
            ).rowcount
            if not changed:
                return None
            record = self._get(db, alert_id)
            _log_events(db, [(alert_id, now, state, answer_detail(state, okx_code, okx_msg, detail))])
            return record

        # No fsync: an outcome lost in a power cut leaves the alert "sending", which reads as
        # unknown at the next start; never resent.
        return self._transaction(step, durable=False)

    def prune(self, before: float) -> int:
        def step(db):
            removed = db.execute(
                "DELETE FROM alerts WHERE received_at < ? AND state NOT IN ('queued', 'sending')", (before,)
            ).rowcount
            db.execute("DELETE FROM alert_events WHERE at < ? AND alert_id NOT IN (SELECT id FROM alerts)", (before,))
            return removed

        return self._transaction(step)

    # -- instances: one sender per file ------------------------------------------------------

    def register(self, instance: str) -> None:
        if self.path == ":memory:" or self._sender_lock is not None:
            return
        lock_path = self.path + ".sender.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise JournalInUse(
                f"the SQLite journal {self.path} is already sending in {holder}; SQLite serves one process "
                "(one rate limit, one recovery): run one gunicorn worker and one instance, or use PostgreSQL "
                "to run several"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        self._sender_lock = fd

    def _release_sender_lock(self) -> None:
        if self._sender_lock is not None:
            os.close(self._sender_lock)  # closing the fd releases the flock
            self._sender_lock = None

    def heartbeat(self, instance: str) -> None:
        pass  # the lock is the heartbeat: the kernel drops it when the process dies

    def deregister(self, instance: str) -> None:
        self._release_sender_lock()

    def recover(self, instance: str, dead_after: float, lease: float = 30.0) -> list[Record]:
        # Holding the sender lock, no other process sends: every other claim is a dead one's.
        # Our own claims lapse with their lease (a sender that never came back).
        now = time.time()
        lapsed = (
            "state = 'sending' AND (claimed_by IS NULL OR claimed_by != :instance OR lease_until IS NULL "
            "OR lease_until < :now)"
        )
        params = {"now": now, "instance": instance}

        def step(db):
            rows = db.execute(
                f"UPDATE alerts SET state = 'unknown', finished_at = :now, detail = :detail, lease_until = NULL "
                f"WHERE {lapsed} AND (sent_at IS NOT NULL OR lease_until IS NULL) RETURNING {', '.join(COLUMNS)}",
                {**params, "detail": INTERRUPTED_DETAIL},
            ).fetchall()
            rows += db.execute(
                "UPDATE alerts SET state = 'expired', finished_at = :now, detail = :detail, lease_until = NULL "
                f"WHERE {lapsed} AND expires_at < :now RETURNING {', '.join(COLUMNS)}",
                {**params, "detail": NEVER_SENT_EXPIRED_DETAIL},
            ).fetchall()
            rows += db.execute(
                "UPDATE alerts SET state = 'queued', claimed_by = NULL, lease_until = NULL, detail = :detail "
                f"WHERE {lapsed} RETURNING {', '.join(COLUMNS)}",
                {**params, "detail": NEVER_SENT_DETAIL},
            ).fetchall()
            records = [Record(*row) for row in rows]
            _log_events(db, [(r.id, now, r.state if r.final else "requeued", r.detail) for r in records])
            return records

        return sorted(self._transaction(step), key=lambda r: r.id)

    # -- plumbing ---------------------------------------------------------------------------

    def _get(self, db, alert_id: int) -> Record | None:
        row = db.execute(f"{_SELECT} WHERE id = ?", (alert_id,)).fetchone()
        return Record(*row) if row else None

    def _transaction(self, step, write: bool = True, durable: bool = True):
        with self._lock:
            return self._locked_transaction(step, write, durable)

    def _locked_transaction(self, step, write: bool = True, durable: bool = True):
        """Run ``step`` in one transaction (the caller holds ``_lock``); ``durable=False`` skips the fsync."""
        try:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                return self._run(step, write)
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise JournalUnavailable(f"journal error: {exc}") from None

    def _run(self, step, write: bool):
        self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = step(self._db)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return result


def _fence(claim: Claim) -> dict:
    return {"id": claim.alert_id, "instance": claim.instance, "attempt": claim.attempt}


def _log_events(db, events: list[tuple[int, float, str, str]]) -> None:
    """Timeline entries, written in the transaction that made them true."""
    if events:
        db.executemany("INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (?, ?, ?, ?)", events)
