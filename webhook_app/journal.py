"""Durable record of every valid alert and its state, in SQLite.

States: queued -> sending -> ok | rejected | unknown | failed, queued -> expired,
and dry_run for alerts that were never meant to leave the machine. A row is written
(and fsynced) before anything is sent, and a row in ``sending`` found at start-up
means a crash mid-send: it becomes ``unknown``, never resent.

The interface is narrow on purpose (add, claim, requeue, finish, get, recent,
recover, prune, sent_total) so another backend can replace this one.
"""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Optional

FINAL_STATES = ("ok", "rejected", "unknown", "failed", "expired", "dry_run")
STATES = ("queued", "sending") + FINAL_STATES

_SCHEMA = """
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
"""


class JournalUnavailable(Exception):
    """The journal cannot be read or written; nothing may be sent (503)."""


class DailyCapExceeded(Exception):
    """The alert would take its bot and direction over the 24-hour cap (422)."""

    def __init__(self, cap: Decimal, used: Decimal):
        remaining = max(cap - used, Decimal(0))
        super().__init__(f"would exceed MAX_AMOUNT_PER_DAY ({cap}) for this bot and direction; "
                         f"{remaining.normalize():f} remains in the last 24 h")
        self.remaining = remaining


# States whose amount counts against the daily cap: sent, about to be, or maybe executed.
CAP_STATES = ("queued", "sending", "ok", "unknown")


@dataclasses.dataclass(frozen=True)
class Record:
    id: int
    received_at: float
    dedup_key: str
    algo_id: str
    action: str
    amount: str
    request_body: str
    expires_at: float
    state: str
    attempts: int = 0
    okx_code: Optional[str] = None
    okx_msg: Optional[str] = None
    detail: Optional[str] = None
    secret_name: Optional[str] = None
    first_sent_at: Optional[float] = None
    finished_at: Optional[float] = None
    latency_ms: Optional[float] = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def request(self) -> dict:
        return json.loads(self.request_body)

    def to_json(self) -> dict:
        """The record for operators: no secret is ever stored, so all of it may be shown."""
        out = dataclasses.asdict(self)
        out.pop("dedup_key")
        out["request"] = json.loads(out.pop("request_body"))
        return out


@dataclasses.dataclass
class _PendingAdd:
    params: dict
    result: Optional[tuple[Record, bool]] = None
    error: Optional[BaseException] = None
    done: bool = False


_COLUMNS = [f.name for f in dataclasses.fields(Record)]
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM alerts"


class Journal:
    """SQLite journal. One connection, serialised by a lock; BEGIN IMMEDIATE makes the
    duplicate check and the insert one step, also across processes sharing the file."""

    def __init__(self, path: str, busy_timeout: float = 1.0):
        self.path = path
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a journaled alert survives a power cut, not only a process crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise JournalUnavailable(f"cannot open the journal at {path}: {exc}") from None
        self._lock = threading.Lock()
        self._pending: list[_PendingAdd] = []  # adds waiting for the next group commit
        self._pending_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> "Journal":
        return cls(url[len("sqlite:///"):])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, *, dedup_key: str, dedup_since: float, algo_id: str, action: str, amount: str,
            request_body: str, expires_at: float, state: str = "queued",
            secret_name: Optional[str] = None, daily_cap: Optional[Decimal] = None,
            now: Optional[float] = None) -> tuple[Record, bool]:
        """Insert a new alert unless one with the same key is already journaled since
        ``dedup_since`` (alerts that ended ``failed`` were never executed and do not count),
        or unless it would take its bot and direction over ``daily_cap`` in the last 24 h
        (``DailyCapExceeded``). Returns (record, created) once the insert is on disk.

        Group commit: alerts arriving together are checked one after another inside one
        write transaction, so duplicates and caps hold between them, and share one fsync."""
        pending = _PendingAdd(dict(
            dedup_key=dedup_key, dedup_since=dedup_since, algo_id=algo_id, action=action, amount=amount,
            request_body=request_body, expires_at=expires_at, state=state, secret_name=secret_name,
            daily_cap=daily_cap, now=time.time() if now is None else now))
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

    def _commit_adds(self, batch: list["_PendingAdd"]) -> None:
        def step(db):
            for pending in batch:
                try:
                    pending.result = self._add_one(db, **pending.params)
                except DailyCapExceeded as exc:  # nothing of it was written; the others go on
                    pending.error = exc
        try:
            self._locked_transaction(step, write=True, durable=True)
        except JournalUnavailable as exc:
            for pending in batch:
                pending.error, pending.result = exc, None
        finally:
            for pending in batch:
                pending.done = True

    def _add_one(self, db, *, dedup_key, dedup_since, algo_id, action, amount, request_body, expires_at, state,
                 secret_name, daily_cap, now) -> tuple[Record, bool]:
        row = db.execute(f"{_SELECT} WHERE dedup_key = ? AND received_at >= ? AND state != 'failed' "
                         "ORDER BY id DESC LIMIT 1", (dedup_key, dedup_since)).fetchone()
        if row:
            return Record(*row), False
        if daily_cap is not None:
            rows = db.execute("SELECT amount FROM alerts WHERE algo_id = ? AND action = ? AND received_at >= ? "
                              f"AND state IN {CAP_STATES}", (algo_id, action, now - 86400)).fetchall()
            used = sum((Decimal(r[0]) for r in rows), Decimal(0))  # exact: never SQLite's float SUM
            if used + Decimal(amount) > daily_cap:
                raise DailyCapExceeded(daily_cap, used)
        cursor = db.execute(
            "INSERT INTO alerts (received_at, dedup_key, algo_id, action, amount, request_body, "
            "expires_at, state, secret_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (now, dedup_key, algo_id, action, amount, request_body, expires_at, state, secret_name))
        return Record(id=cursor.lastrowid, received_at=now, dedup_key=dedup_key, algo_id=algo_id, action=action,
                      amount=amount, request_body=request_body, expires_at=expires_at, state=state,
                      secret_name=secret_name), True

    def claim(self, alert_ids: list[int], now: Optional[float] = None) -> list[Record]:
        """queued -> sending, in one transaction, before they are sent. Returns the records
        claimed, in the order given; an alert no longer queued is left out."""
        now = time.time() if now is None else now

        def step(db):
            claimed = []
            for alert_id in alert_ids:
                if db.execute("UPDATE alerts SET state = 'sending', attempts = attempts + 1, "
                              "first_sent_at = COALESCE(first_sent_at, ?) WHERE id = ? AND state = 'queued'",
                              (now, alert_id)).rowcount == 1:
                    claimed.append(self._get(db, alert_id))
            return claimed

        return self._transaction(step) if alert_ids else []

    def requeue(self, alert_id: int, okx_code: str, okx_msg: str, detail: str) -> None:
        """sending -> queued, after OKX certainly did not act."""
        self._transaction(lambda db: db.execute(
            "UPDATE alerts SET state = 'queued', okx_code = ?, okx_msg = ?, detail = ? "
            "WHERE id = ? AND state = 'sending'", (okx_code, okx_msg, detail, alert_id)), durable=False)

    def finish(self, alert_id: int, state: str, *, okx_code: Optional[str] = None,
               okx_msg: Optional[str] = None, detail: Optional[str] = None,
               latency_ms: Optional[float] = None, now: Optional[float] = None) -> Record:
        assert state in FINAL_STATES, state
        now = time.time() if now is None else now

        def step(db):
            db.execute("UPDATE alerts SET state = ?, okx_code = COALESCE(?, okx_code), "
                       "okx_msg = COALESCE(?, okx_msg), detail = ?, latency_ms = COALESCE(?, latency_ms), "
                       "finished_at = ? WHERE id = ?",
                       (state, okx_code, okx_msg, detail, latency_ms, now, alert_id))
            return self._get(db, alert_id)

        return self._transaction(step, durable=False)

    def get(self, alert_id: int) -> Optional[Record]:
        return self._transaction(lambda db: self._get(db, alert_id), write=False)

    def recent(self, limit: int = 50, state: Optional[str] = None) -> list[Record]:
        def step(db):
            if state:
                rows = db.execute(f"{_SELECT} WHERE state = ? ORDER BY id DESC LIMIT ?", (state, limit))
            else:
                rows = db.execute(f"{_SELECT} ORDER BY id DESC LIMIT ?", (limit,))
            return [Record(*row) for row in rows.fetchall()]

        return self._transaction(step, write=False)

    def recover(self, now: Optional[float] = None) -> tuple[list[Record], list[Record]]:
        """At start-up: alerts caught in ``sending`` become ``unknown`` (OKX may have acted);
        returns (those, the queued alerts oldest first)."""
        now = time.time() if now is None else now

        def step(db):
            interrupted = [Record(*r) for r in db.execute(f"{_SELECT} WHERE state = 'sending' ORDER BY id")]
            db.execute("UPDATE alerts SET state = 'unknown', finished_at = ?, detail = "
                       "'the service stopped while this alert was being sent; check the bot on OKX' "
                       "WHERE state = 'sending'", (now,))
            queued = [Record(*r) for r in db.execute(f"{_SELECT} WHERE state = 'queued' ORDER BY id")]
            return interrupted, queued

        return self._transaction(step)

    def prune(self, before: float) -> int:
        """Delete finished alerts received before ``before``; queued and sending ones stay."""
        return self._transaction(lambda db: db.execute(
            "DELETE FROM alerts WHERE received_at < ? AND state NOT IN ('queued', 'sending')",
            (before,)).rowcount)

    def _get(self, db, alert_id: int) -> Optional[Record]:
        row = db.execute(f"{_SELECT} WHERE id = ?", (alert_id,)).fetchone()
        return Record(*row) if row else None

    def _transaction(self, step, write: bool = True, durable: bool = True):
        with self._lock:
            return self._locked_transaction(step, write, durable)

    def _locked_transaction(self, step, write: bool = True, durable: bool = True):
        """Run ``step`` in one transaction (the caller holds ``_lock``). ``durable=False`` skips
        the fsync: for writes whose loss in a power cut is safe (an outcome not recorded leaves
        the alert ``sending``, which reads as ``unknown`` at the next start; never resent)."""
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
