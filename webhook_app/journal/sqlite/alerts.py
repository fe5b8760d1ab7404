"""Journaled alerts on SQLite: one process writes the file. Alerts arriving together share one
fsync (group commit), each checked for duplicates and the daily cap inside the one write
transaction; the finding on an unknown alert, resends' links and pruning."""

from __future__ import annotations

import dataclasses
import threading
from decimal import Decimal

from webhook_app.journal.records import (
    CAP_STATES,
    NOT_MARKABLE,
    RESOLUTIONS,
    ActionRefused,
    DailyCapExceeded,
    JournalUnavailable,
    Record,
    marked_detail,
    resend_details,
)
from webhook_app.journal.shared import RETURNING_ALERTS, SELECT_ALERTS, SharedAlertLog, SharedRecords
from webhook_app.journal.sqlite.sql import log_events, read_alert


@dataclasses.dataclass
class _PendingAdd:
    params: dict
    result: tuple[Record, bool] | None = None
    error: BaseException | None = None
    done: bool = False


class SqliteRecords(SharedRecords):
    """The finding on an unknown alert, which the alert log and the activity both answer."""

    def resolve(self, alert_id: int, resolution: str, by: str) -> Record:
        assert resolution in RESOLUTIONS, resolution
        now = self.db.now()

        def step(db):
            row = db.execute(
                "UPDATE alerts SET resolution = ? WHERE id = ? AND state = 'unknown' AND resolution IS NULL "
                f"{RETURNING_ALERTS}",
                (resolution, alert_id),
            ).fetchone()
            if row is None:
                raise ActionRefused(NOT_MARKABLE)
            log_events(db, [(alert_id, now, "marked", marked_detail(resolution, by))])
            return Record(*row)

        return self.db.transaction(step)


class SqliteAlertLog(SqliteRecords, SharedAlertLog):
    def __init__(self, db):
        super().__init__(db)
        self._pending: list[_PendingAdd] = []  # adds waiting for the next group commit
        self._pending_lock = threading.Lock()

    def add(self, *, now: float | None = None, **params) -> tuple[Record, bool]:
        # Group commit: alerts arriving together are checked one after another inside one write
        # transaction, so duplicates and caps hold between them, and they share one fsync.
        pending = _PendingAdd({**params, "now": self.db.now() if now is None else now})
        with self._pending_lock:
            self._pending.append(pending)
        with self.db.lock:
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
                    pending.result = _add_one(db, **pending.params)
                except DailyCapExceeded as exc:  # nothing of it was written; the others go on
                    pending.error = exc

        try:
            self.db.locked_transaction(step, write=True, durable=True)
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

    def link_resend(self, original_id: int, resend_id: int, by: str) -> None:
        now = self.db.now()

        def step(db):
            db.execute("UPDATE alerts SET resent_as = ? WHERE id = ?", (resend_id, original_id))
            db.execute("UPDATE alerts SET resent_from = ? WHERE id = ?", (original_id, resend_id))
            on_original, on_resend = resend_details(original_id, resend_id, by)
            log_events(db, [(original_id, now, "resent", on_original), (resend_id, now, "resent", on_resend)])

        self.db.transaction(step)

    def prune(self, before: float) -> int:
        def step(db):
            removed = db.execute(
                "DELETE FROM alerts WHERE received_at < ? AND state NOT IN ('queued', 'sending')", (before,)
            ).rowcount
            db.execute("DELETE FROM alert_events WHERE at < ? AND alert_id NOT IN (SELECT id FROM alerts)", (before,))
            return removed

        return self.db.transaction(step)


def _add_one(
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
    endpoint="margin-balance",
    now,
) -> tuple[Record, bool]:
    row = db.execute(
        f"{SELECT_ALERTS} WHERE dedup_key = ? AND received_at >= ? AND state != 'failed' ORDER BY id DESC LIMIT 1",
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
        "expires_at, state, secret_name, trader_id, account, endpoint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            now,
            dedup_key,
            algo_id,
            action,
            amount,
            request_body,
            expires_at,
            state,
            secret_name,
            trader_id,
            account,
            endpoint,
        ),
    )
    return read_alert(db, cursor.lastrowid), True
