"""What keeps the SQLite queue moving besides the sends: expiry, lapsed claims settled (the sender
lock says every other process's claim is a dead one's), alerts no account here can send failed, and
claims a failed unclaim left given back."""

from __future__ import annotations

from webhook_app.journal.contracts import QueueUpkeep
from webhook_app.journal.records import (
    EXPIRED_DETAIL,
    INTERRUPTED_DETAIL,
    NEVER_SENT_DETAIL,
    NEVER_SENT_EXPIRED_DETAIL,
    UNROUTED_DETAIL,
    Claim,
    Record,
)
from webhook_app.journal.shared import (
    RETURNING_ALERTS,
    Store,
    expired_unsent,
    queued_again,
    unknown_if_it_may_have_left,
)
from webhook_app.journal.sqlite.sql import CLAIMED, fence, log_events


class SqliteUpkeep(Store, QueueUpkeep):
    def expire_overdue(self, now: float) -> list[Record]:
        def step(db):
            records = [
                Record(*row)
                for row in db.execute(
                    "UPDATE alerts SET state = 'expired', finished_at = ?, detail = ? "
                    f"WHERE state = 'queued' AND expires_at < ? {RETURNING_ALERTS}",
                    (now, EXPIRED_DETAIL, now),
                ).fetchall()
            ]
            log_events(db, [(r.id, now, "expired", r.detail) for r in records])
            return records

        return self.db.transaction(step, durable=False)

    def fail_unrouted(self, instance: str, accounts: list[str]) -> list[Record]:
        # One process sends from the file: an account it lacks, nobody has. Looked for by a read first.
        unrouted = f"state = 'queued' AND account NOT IN ({', '.join('?' * len(accounts))})"
        if not self.db.one(f"SELECT count(*) FROM alerts WHERE {unrouted}", accounts)[0]:
            return []

        def step(db):
            now = self.db.now()
            rows = db.execute(
                "UPDATE alerts SET state = 'failed', finished_at = ?, detail = replace(?, ?, account), "
                f"lease_until = NULL WHERE {unrouted} {RETURNING_ALERTS}",
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
                    f"WHERE {CLAIMED} AND sent_at IS NULL {RETURNING_ALERTS}",
                    {
                        "now": now,
                        "expired": NEVER_SENT_EXPIRED_DETAIL,
                        "queued": NEVER_SENT_DETAIL,
                        **fence(Claim(alert_id, instance, attempt)),
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
                unknown_if_it_may_have_left(lapsed, ":now", ":detail"), {**params, "detail": INTERRUPTED_DETAIL}
            ).fetchall()
            rows += db.execute(
                expired_unsent(lapsed, ":now", ":detail"), {**params, "detail": NEVER_SENT_EXPIRED_DETAIL}
            ).fetchall()
            rows += db.execute(queued_again(lapsed, ":detail"), {**params, "detail": NEVER_SENT_DETAIL}).fetchall()
            records = [Record(*row) for row in rows]
            log_events(db, [(r.id, now, r.state if r.final else "requeued", r.detail) for r in records])
            return records

        return sorted(self.db.transaction(step), key=lambda r: r.id)
