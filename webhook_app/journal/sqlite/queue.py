"""The alert queue on SQLite: one process sends from a file. Alerts arriving together share one
fsync (group commit); each claim and each outcome is one write transaction."""

from __future__ import annotations

import dataclasses
import threading
from decimal import Decimal

from webhook_app.journal.contracts import AlertQueue
from webhook_app.journal.records import (
    CAP_STATES,
    COLUMNS,
    EXPIRED_DETAIL,
    FINAL_STATES,
    INTERRUPTED_DETAIL,
    NEVER_SENT_DETAIL,
    NEVER_SENT_EXPIRED_DETAIL,
    UNCLAIMED_DETAIL,
    UNROUTED_DETAIL,
    Claim,
    DailyCapExceeded,
    JournalUnavailable,
    Record,
    answer_detail,
    claimed_detail,
    retry_detail,
)
from webhook_app.journal.sqlite.activity import log_events
from webhook_app.journal.sqlite.database import SqliteDatabase

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM alerts"
# Due, and its bot's turn: no other alert for the bot is being sent, and no earlier one is queued inside its lag.
_BOTS_TURN = (
    "NOT EXISTS (SELECT 1 FROM alerts b "
    "WHERE b.algo_id = alerts.algo_id AND b.id != alerts.id AND b.state IN ('queued', 'sending') "
    "AND (b.state = 'sending' OR (b.id < alerts.id AND b.expires_at >= :now)))"
)
_DUE = f"state = 'queued' AND not_before <= :now AND expires_at >= :now AND {_BOTS_TURN}"
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


class SqliteAlertQueue(AlertQueue):
    def __init__(self, db: SqliteDatabase):
        self.db = db
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
                    pending.result = self._add_one(db, **pending.params)
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
        return self.db.transaction(lambda db: self._get(db, alert_id), write=False)

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

        return self.db.transaction(step, write=False)

    def count_due(
        self, now: float | None = None, before_id: int | None = None, in_turn: bool = True, account: str | None = None
    ) -> int:
        now = self.db.now() if now is None else now
        due = _DUE if in_turn else "state = 'queued' AND not_before <= :now AND expires_at >= :now"
        return self.db.one(
            f"SELECT count(*) FROM alerts WHERE {due} AND {_OF_ACCOUNT} AND id < :before",
            {"now": now, "before": 2**63 - 1 if before_id is None else before_id, "account": account},
        )[0]

    def next_due_at(self) -> float | None:
        # Alerts waiting behind one that is being sent have no time of their own: its outcome wakes them.
        return self.db.one(
            f"SELECT min(not_before) FROM alerts WHERE state = 'queued' AND expires_at >= :now AND {_BOTS_TURN}",
            {"now": self.db.now()},
        )[0]

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
                    "lease_until": self.db.now() + lease,
                    "account": account,
                },
            ).fetchall()
            records = sorted((Record(*row) for row in rows), key=lambda r: r.id)
            log_events(db, [(r.id, now, "claimed", claimed_detail(r.attempts, instance)) for r in records])
            return records

        return self.db.transaction(step) if limit > 0 else []

    def claim_paced(self, instance, pacer, wanted, lease, account, now=None, read_pacer=None):
        now = self.db.now() if now is None else now
        return super().claim_paced(instance, pacer, wanted, lease, account, now, read_pacer)

    def confirm_send(self, claim: Claim, evidence: str | None = None, read_slot=None) -> bool:
        _no_slot(read_slot)

        # Durable: once this says yes the request may leave, and a crash must not forget that it may have.
        def step(db):
            return db.execute(
                "UPDATE alerts SET sent_at = :now, evidence = :evidence "
                f"WHERE {_CLAIMED} AND lease_until > :now AND expires_at >= :now",
                {"now": self.db.now(), "evidence": evidence, **_fence(claim)},
            ).rowcount

        return self.db.transaction(step) == 1

    def expire_overdue(self, now: float) -> list[Record]:
        def step(db):
            records = [
                Record(*row)
                for row in db.execute(
                    "UPDATE alerts SET state = 'expired', finished_at = ?, detail = ? "
                    f"WHERE state = 'queued' AND expires_at < ? RETURNING {', '.join(COLUMNS)}",
                    (now, EXPIRED_DETAIL, now),
                ).fetchall()
            ]
            log_events(db, [(r.id, now, "expired", r.detail) for r in records])
            return records

        return self.db.transaction(step, durable=False)

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
            now = self.db.now()
            log_events(db, [(i, now, "unclaimed", UNCLAIMED_DETAIL) for i in undone])

        self.db.transaction(step)

    def requeue(self, alert_id: int, okx_code, okx_msg, detail: str, not_before: float, claim=None, slot=None) -> bool:
        _no_slot(slot)
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
                retry = retry_detail(okx_code, okx_msg, detail, not_before)
                log_events(db, [(alert_id, self.db.now(), "retry", retry)])
            return changed == 1

        return self.db.transaction(step)

    def finish(
        self,
        alert_id,
        state,
        *,
        okx_code=None,
        okx_msg=None,
        detail=None,
        latency_ms=None,
        now=None,
        claim=None,
        slot=None,
    ):
        assert state in FINAL_STATES, state
        _no_slot(slot)
        now = self.db.now() if now is None else now
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
            log_events(db, [(alert_id, now, state, answer_detail(state, okx_code, okx_msg, detail))])
            return record

        # No fsync: an outcome lost in a power cut leaves the alert "sending", which reads as
        # unknown at the next start; never resent.
        return self.db.transaction(step, durable=False)

    def prune(self, before: float) -> int:
        def step(db):
            removed = db.execute(
                "DELETE FROM alerts WHERE received_at < ? AND state NOT IN ('queued', 'sending')", (before,)
            ).rowcount
            db.execute("DELETE FROM alert_events WHERE at < ? AND alert_id NOT IN (SELECT id FROM alerts)", (before,))
            return removed

        return self.db.transaction(step)

    def fail_unrouted(self, instance: str, accounts: list[str]) -> list[Record]:
        # One process sends from the file: an account it lacks, nobody has. Looked for by a read first.
        unrouted = f"state = 'queued' AND account NOT IN ({', '.join('?' * len(accounts))})"
        if not self.db.one(f"SELECT count(*) FROM alerts WHERE {unrouted}", accounts)[0]:
            return []

        def step(db):
            now = self.db.now()
            rows = db.execute(
                "UPDATE alerts SET state = 'failed', finished_at = ?, detail = replace(?, ?, account), "
                f"lease_until = NULL WHERE {unrouted} RETURNING {', '.join(COLUMNS)}",
                (now, UNROUTED_DETAIL, "{account}", *accounts),
            ).fetchall()
            records = sorted((Record(*row) for row in rows), key=lambda r: r.id)
            log_events(db, [(r.id, now, "failed", r.detail) for r in records])
            return records

        return self.db.transaction(step)

    def free_orphans(self, instance: str, live: list[Claim]) -> list[Record]:
        # A claim is one in-process transaction whose commit is its last step: if it raised, nothing
        # was claimed, and its slots (in memory) went back with the error. What is found here is a
        # claim left by a failed unclaim. Looked for by a read first: no write lock while none.
        held = {(claim.alert_id, claim.attempt) for claim in live}
        found = self.db.all(
            "SELECT id, attempts FROM alerts WHERE state = 'sending' AND claimed_by = ? AND sent_at IS NULL "
            "AND lease_until IS NOT NULL",
            (instance,),
        )
        orphans = [(alert_id, attempt) for alert_id, attempt in found if (alert_id, attempt) not in held]
        if not orphans:
            return []

        def step(db):
            now, records = self.db.now(), []
            late = "expires_at < :now"
            for alert_id, attempt in orphans:
                # Attempts stay counted: a claim on (alert, instance, attempt) is never made twice.
                row = db.execute(
                    f"UPDATE alerts SET state = CASE WHEN {late} THEN 'expired' ELSE 'queued' END, "
                    f"claimed_by = CASE WHEN {late} THEN claimed_by END, finished_at = CASE WHEN {late} THEN :now END, "
                    f"detail = CASE WHEN {late} THEN :expired ELSE :queued END, lease_until = NULL "
                    f"WHERE {_CLAIMED} AND sent_at IS NULL RETURNING {', '.join(COLUMNS)}",
                    {
                        "now": now,
                        "expired": NEVER_SENT_EXPIRED_DETAIL,
                        "queued": NEVER_SENT_DETAIL,
                        **_fence(Claim(alert_id, instance, attempt)),
                    },
                ).fetchone()
                records += [Record(*row)] if row else []
            log_events(db, [(r.id, now, r.state if r.final else "requeued", r.detail) for r in records])
            return records

        return self.db.transaction(step)

    def recover(self, instance: str, dead_after: float, lease: float = 30.0) -> list[Record]:
        # Holding the sender lock, no other process sends: every other claim is a dead one's.
        # Our own claims lapse with their lease (a sender that never came back).
        now = self.db.now()
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
            log_events(db, [(r.id, now, r.state if r.final else "requeued", r.detail) for r in records])
            return records

        return sorted(self.db.transaction(step), key=lambda r: r.id)

    def _get(self, db, alert_id: int) -> Record | None:
        row = db.execute(f"{_SELECT} WHERE id = ?", (alert_id,)).fetchone()
        return Record(*row) if row else None


def _fence(claim: Claim) -> dict:
    return {"id": claim.alert_id, "instance": claim.instance, "attempt": claim.attempt}


def _no_slot(slot) -> None:
    # SQLite's rate ledger lives in the process's memory (``MemoryPacer``): the sender closes its slots.
    if slot is not None:
        raise ValueError("the SQLite journal holds no rate slots: release the slot with its pacer")
