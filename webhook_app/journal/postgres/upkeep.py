"""What keeps the PostgreSQL queue moving besides the sends: expiry, lapsed claims settled by any
live instance, alerts no instance can send failed, and lost claims given back with their slots."""

from __future__ import annotations

from webhook_app.journal.contracts import QueueUpkeep
from webhook_app.journal.postgres.sql import LOCK_RECOVERY, NOW, log_events
from webhook_app.journal.records import (
    COLUMNS,
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


class PostgresUpkeep(Store, QueueUpkeep):
    def expire_overdue(self, now: float) -> list[Record]:
        def step(conn):
            rows = conn.execute(
                "WITH picked AS MATERIALIZED (SELECT id FROM alerts WHERE state = 'queued' AND expires_at < %s "
                "FOR UPDATE SKIP LOCKED) UPDATE alerts SET state = 'expired', finished_at = %s, "
                "detail = %s FROM picked WHERE alerts.id = picked.id "
                f"RETURNING {', '.join('alerts.' + c for c in COLUMNS)}",
                (now, now, EXPIRED_DETAIL),
            ).fetchall()
            records = [Record(*row) for row in rows]
            log_events(conn, [(r.id, "expired", r.detail) for r in records])
            return records

        return self.db.transaction(step, durable=False)

    def fail_unrouted(self, instance: str, accounts: list[str]) -> list[Record]:
        def step(conn):
            # What this instance sends for (NULL, as an older release leaves it, stands for anything).
            conn.execute(
                "UPDATE instances SET accounts = %s WHERE id = %s AND accounts IS DISTINCT FROM %s",
                (accounts, instance, accounts),
            )
            rows = conn.execute(
                f"UPDATE alerts SET state = 'failed', finished_at = {NOW}, detail = replace(%s, %s, account), "
                "lease_until = NULL WHERE state = 'queued' AND NOT account = ANY(%s) AND NOT EXISTS (SELECT 1 "
                f"FROM instances i WHERE i.id <> %s AND (i.accounts IS NULL OR alerts.account = ANY(i.accounts))) "
                f"{RETURNING_ALERTS}",
                (UNROUTED_DETAIL, "{account}", accounts, instance),
            ).fetchall()
            records = [Record(*row) for row in rows]
            log_events(conn, [(r.id, "failed", r.detail) for r in records])
            return records

        return sorted(self.db.transaction(step), key=lambda r: r.id)

    def free_orphans(self, instance: str, live: list[Claim]) -> list[Record]:
        held = "SELECT 1 FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS live(id, attempt) WHERE live.id = "
        orphaned = (
            "state = 'sending' AND claimed_by = %(instance)s AND sent_at IS NULL AND lease_until IS NOT NULL "
            f"AND NOT EXISTS ({held} alerts.id AND live.attempt = alerts.attempts)"
        )
        params = {
            "instance": instance,
            "ids": [claim.alert_id for claim in live],
            "attempts": [claim.attempt for claim in live],
            "expired": NEVER_SENT_EXPIRED_DETAIL,
            "queued": NEVER_SENT_DETAIL,
        }

        def step(conn):
            # Attempts stay counted: a claim on (alert, instance, attempt) is never made twice.
            rows = conn.execute(expired_unsent(orphaned, NOW, "%(expired)s"), params).fetchall()
            rows += conn.execute(queued_again(orphaned, "%(queued)s"), params).fetchall()
            records = [Record(*row) for row in rows]
            log_events(conn, [(r.id, r.state if r.final else "requeued", r.detail) for r in records])
            never_sent = {**params, "ids": [r.id for r in records], "attempts": [r.attempts for r in records]}
            conn.execute(  # never used: as if never taken
                f"DELETE FROM okx_pacing p WHERE instance = %(instance)s AND ended_at IS NULL AND EXISTS ({held} "
                "p.alert_id AND live.attempt = p.attempt)",
                never_sent,
            )
            conn.execute(  # their senders are done (or never were): the exchange is over
                f"UPDATE okx_pacing p SET ended_at = {NOW} WHERE instance = %(instance)s AND ended_at IS NULL "
                f"AND alert_id IS NOT NULL AND NOT EXISTS ({held} p.alert_id AND live.attempt = p.attempt)",
                params,
            )
            return records

        return sorted(self.db.transaction(step), key=lambda r: r.id)

    def recover(self, instance: str, dead_after: float, lease: float = 30.0) -> list[Record]:
        # Only a lapsed lease, by the database's clock, ends a claim: an instance that merely looks dead
        # (a paused process) may still hold a current claim, and its sender checks it before sending.
        # A claim without a lease was made by an earlier release: it lapses when its claimant stops
        # heartbeating, as that release's own rule says (a deploy that overlaps both keeps working).
        lapsed = (
            f"state = 'sending' AND (lease_until < {NOW} OR (lease_until IS NULL "
            "AND (claimed_by IS NULL OR claimed_by NOT IN (SELECT id FROM instances))))"
        )

        def step(conn):
            # One instance at a time, and never waiting: another one recovering now does the same work.
            if not conn.execute("SELECT pg_try_advisory_xact_lock(%s, 0)", (LOCK_RECOVERY,)).fetchone()[0]:
                return []
            conn.execute(f"DELETE FROM instances WHERE heartbeat_at < {NOW} - %s AND id != %s", (dead_after, instance))
            rows = conn.execute(unknown_if_it_may_have_left(lapsed, NOW, "%s"), (INTERRUPTED_DETAIL,)).fetchall()
            rows += conn.execute(expired_unsent(lapsed, NOW, "%s"), (NEVER_SENT_EXPIRED_DETAIL,)).fetchall()
            rows += conn.execute(queued_again(lapsed, "%s"), (NEVER_SENT_DETAIL,)).fetchall()
            records = [Record(*row) for row in rows]
            log_events(conn, [(r.id, r.state if r.final else "requeued", r.detail) for r in records])
            # A dead instance's requests: none leaves later than a lease after its slot was taken
            # (its sender gives up first), so the slot counts until then, never less.
            conn.execute(
                f"UPDATE okx_pacing SET ended_at = GREATEST({NOW}, started_at + %s) WHERE ended_at IS NULL "
                "AND (instance IS NULL OR instance NOT IN (SELECT id FROM instances))",
                (lease,),
            )
            return records

        return sorted(self.db.transaction(step), key=lambda r: r.id)
