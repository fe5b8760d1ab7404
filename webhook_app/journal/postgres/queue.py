"""The alert queue on PostgreSQL: any number of instances on one database keep every guarantee.

- Duplicates and the daily cap: the check and the insert run under a transaction-scoped
  advisory lock on the dedup key and on (bot, direction), so under READ COMMITTED two
  instances cannot both pass a check and both insert (``journal_add_row``, one statement that
  returns the stored row).
- The queue: ``claim_due`` takes due alerts with FOR UPDATE SKIP LOCKED: one claimant each.
- Claims: fenced leases on the database's clock (``journal_claim``, ``confirm_send``); any live
  instance settles a lapsed one (``recover``).
- The rate ledger is in the same database (``instances.PostgresPacer``): a claim takes its slots
  and an outcome closes its slot in the same statement (``claim_paced``, ``finish``/``requeue``).
"""

from __future__ import annotations

from decimal import Decimal

from webhook_app.journal.contracts import AlertQueue
from webhook_app.journal.postgres.activity import log_events
from webhook_app.journal.postgres.database import PostgresDatabase
from webhook_app.journal.postgres.instances import BUSY_SLOTS, PostgresPacer
from webhook_app.journal.postgres.sql import LOCK_RECOVERY, NOW
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
    PacedClaim,
    Record,
    answer_detail,
    retry_detail,
)

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM alerts"
_RETURNING = f"RETURNING {', '.join(COLUMNS)}"
_CLAIM_PACED = (
    f"SELECT due, queued, next_in, granted, slot, read_slot, {', '.join(f'(alert).{c}' for c in COLUMNS)} "
    "FROM journal_claim_paced(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# Closes a request's rate slot in the statement that records its outcome: a CTE runs whether or not
# the fenced UPDATE beside it changes a row (a late answer still ends its request). NULL closes none.
_CLOSE_SLOT = f"closed AS (UPDATE okx_pacing SET ended_at = {NOW} WHERE id = %s AND ended_at IS NULL)"
_ADD = (
    f"SELECT added.created, added.used, {', '.join(f'(added.alert).{c}' for c in COLUMNS)} "
    f"FROM journal_add_row({', '.join(['%s'] * 14)}) added"
)

# Its bot's turn: no other alert for the bot is being sent, and no earlier one is queued inside its lag.
_BOTS_TURN = (
    "NOT EXISTS (SELECT 1 FROM alerts b WHERE b.algo_id = alerts.algo_id AND b.id <> alerts.id "
    "AND b.state IN ('queued', 'sending') AND (b.state = 'sending' OR (b.id < alerts.id AND b.expires_at >= clock.t)))"
)
# The current attempt's claim, as a fence on every write after a send.
_CLAIMED = "id = %s AND state = 'sending' AND claimed_by = %s AND attempts = %s"


class PostgresAlertQueue(AlertQueue):
    def __init__(self, db: PostgresDatabase):
        self.db = db

    def add(
        self,
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
        daily_cap: Decimal | None = None,
        trader_id=None,
        now=None,
        cap_states=CAP_STATES,
        account="default",
    ) -> tuple[Record, bool]:
        # journal_add_row (migration 7) checks and inserts under advisory locks and returns the row: one
        # statement, one round trip.
        created, used, *row = self.db.one(
            _ADD,
            (
                dedup_key,
                dedup_since,
                algo_id,
                action,
                amount,
                request_body,
                expires_at,
                state,
                secret_name,
                daily_cap,
                trader_id,
                now,
                list(cap_states),
                account,
            ),
        )
        if row[0] is None:
            raise DailyCapExceeded(daily_cap, Decimal(used))
        return Record(*row), created

    def get(self, alert_id: int) -> Record | None:
        if not 0 <= alert_id < 2**63:
            return None
        row = self.db.one(f"{_SELECT} WHERE id = %s", (alert_id,))
        return Record(*row) if row else None

    def recent(self, limit=50, state=None, trader_id=None, algo_id=None, account=None) -> list[Record]:
        filters = [
            (c, v)
            for c, v in (("state", state), ("trader_id", trader_id), ("algo_id", algo_id), ("account", account))
            if v is not None
        ]
        where = " AND ".join(f"{column} = %s" for column, _ in filters)
        rows = self.db.all(
            f"{_SELECT} {'WHERE ' + where if where else ''} ORDER BY id DESC LIMIT %s",
            (*[value for _, value in filters], limit),
        )
        return [Record(*row) for row in rows]

    def count_due(
        self, now: float | None = None, before_id: int | None = None, in_turn: bool = True, account: str | None = None
    ) -> int:
        of_account = "" if account is None else "AND account = %s"
        return self.db.one(
            f"SELECT count(*) FROM alerts, (SELECT COALESCE(%s, {NOW}) AS t) clock WHERE state = 'queued' "
            f"AND not_before <= clock.t AND expires_at >= clock.t AND id < %s {of_account} "
            f"{'AND ' + _BOTS_TURN if in_turn else ''}",
            (now, 2**63 - 1 if before_id is None else before_id, *(() if account is None else (account,))),
        )[0]

    def next_due_at(self) -> float | None:
        # Alerts waiting behind one that is being sent have no time of their own: its outcome wakes them.
        return self.db.one(
            f"SELECT min(not_before) FROM alerts, (SELECT {NOW} AS t) clock WHERE state = 'queued' "
            f"AND expires_at >= clock.t AND {_BOTS_TURN}"
        )[0]

    def claim_due(
        self, instance: str, limit: int, now: float, lease: float = 30.0, account: str | None = None
    ) -> list[Record]:
        if limit <= 0:
            return []
        # journal_claim (migration 6): the claim and its timeline entries, one statement, one round trip.
        rows = self.db.all(
            f"SELECT {', '.join(COLUMNS)} FROM journal_claim(%s, %s, %s, %s, %s)",
            (instance, limit, now, lease, account),
        )
        return sorted((Record(*row) for row in rows), key=lambda r: r.id)

    def claim_paced(self, instance, pacer, wanted, lease, account, now=None, read_pacer=None) -> PacedClaim:
        for ledger in (pacer, read_pacer):
            if isinstance(ledger, PostgresPacer) and ledger.db is not self.db:
                # Its ``shares_journal`` would have writes end its slots in the wrong database.
                raise ValueError("a PostgreSQL rate ledger is only used with the journal that made it")
        if not isinstance(pacer, PostgresPacer):
            now = self.db.now() if now is None else now
            return super().claim_paced(instance, pacer, wanted, lease, account, now, read_pacer)
        reads = read_pacer if isinstance(read_pacer, PostgresPacer) else None
        # journal_claim_paced (migration 8): count, slots, claims, unused slots back and the bot reads'
        # slots, one round trip. Durable, as every claim: a claim a crash forgot would be made again
        # with the same instance and attempt, and a sender of the forgotten one, still waiting to
        # confirm, would pass the new claim's fence (two sends).
        params = (instance, wanted, now, lease, account, pacer.account, pacer.limit, pacer.window)
        params += (reads.account, reads.limit, reads.window) if reads else (None, None, None)
        rows = self.db.all(_CLAIM_PACED, params)
        due, queued, next_in, granted = rows[0][:4]
        claimed = [(Record(*row[6:]), row[4], row[5]) for row in rows if row[4] is not None]
        claimed.sort(key=lambda c: c[0].id)
        return PacedClaim(
            due,
            granted,
            [(record, slot) for record, slot, _ in claimed],
            queued=queued,
            next_in=next_in,
            read_slots={record.id: read for record, _, read in claimed if read is not None},
        )

    def reply_outlook(self, record: Record, pacer) -> tuple[Record, int, int]:
        if not isinstance(pacer, PostgresPacer):
            return super().reply_outlook(record, pacer)
        # The alert, what is ahead of it and the ledger's slots in use: one statement, one round trip.
        row = self.db.one(
            f"SELECT {', '.join('a.' + c for c in COLUMNS)}, "
            f"(SELECT count(*) FROM alerts q, (SELECT {NOW} AS t) clock WHERE a.state = 'queued' "
            "AND q.state = 'queued' AND q.not_before <= clock.t AND q.expires_at >= clock.t AND q.id < a.id "
            f"AND q.account = a.account), ({BUSY_SLOTS}) FROM alerts a WHERE a.id = %s",
            (pacer.account, pacer.window, record.id),
        )
        if row is None:
            return record, 0, 0
        current, ahead, busy = Record(*row[:-2]), row[-2], row[-1]
        return (current, ahead, busy) if current.state == "queued" else (current, 0, 0)

    def confirm_send(self, claim: Claim, evidence: str | None = None, read_slot=None) -> bool:
        # Durable: once this says yes the request may leave, and a crash must not forget that it may have.
        return bool(
            self.db.statement(
                f"WITH {_CLOSE_SLOT} UPDATE alerts SET sent_at = {NOW}, evidence = %s "
                f"WHERE {_CLAIMED} AND lease_until > {NOW} AND expires_at >= {NOW}",
                (read_slot, evidence, claim.alert_id, claim.instance, claim.attempt),
            )
        )

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

    def unclaim(self, claims: list[Claim]) -> None:
        for claim in claims:
            self.db.statement(
                "WITH undone AS (UPDATE alerts SET state = 'queued', attempts = attempts - 1, claimed_by = NULL, "
                "lease_until = NULL, first_sent_at = CASE WHEN attempts = 1 THEN NULL ELSE first_sent_at END "
                f"WHERE {_CLAIMED} RETURNING id) "
                f"INSERT INTO alert_events (alert_id, at, kind, detail) SELECT id, {NOW}, 'unclaimed', %s FROM undone",
                (claim.alert_id, claim.instance, claim.attempt, UNCLAIMED_DETAIL),
            )

    def requeue(self, alert_id: int, okx_code, okx_msg, detail: str, not_before: float, claim=None, slot=None) -> bool:
        retry = retry_detail(okx_code, okx_msg, detail, not_before)
        fence, fence_params = _fence(alert_id, claim)
        return bool(
            self.db.statement(
                f"WITH {_CLOSE_SLOT}, requeued AS (UPDATE alerts SET state = 'queued', okx_code = %s, okx_msg = %s, "
                f"detail = %s, not_before = %s, lease_until = NULL WHERE {fence} RETURNING id) "
                f"INSERT INTO alert_events (alert_id, at, kind, detail) SELECT id, {NOW}, 'retry', %s FROM requeued",
                (slot, okx_code, okx_msg, detail, not_before, *fence_params, retry),
            )
        )

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
        fence, fence_params = _fence(alert_id, claim)
        if claim is None:
            fence = "id = %s"
        row = self.db.transaction(
            lambda conn: conn.execute(
                f"WITH {_CLOSE_SLOT}, done AS (UPDATE alerts SET state = %s, okx_code = COALESCE(%s, okx_code), "
                "okx_msg = COALESCE(%s, okx_msg), detail = %s, latency_ms = COALESCE(%s, latency_ms), "
                f"finished_at = COALESCE(%s, {NOW}), lease_until = NULL WHERE {fence} {_RETURNING}), "
                "logged AS (INSERT INTO alert_events (alert_id, at, kind, detail) "
                f"SELECT id, finished_at, %s, %s FROM done) SELECT {', '.join(COLUMNS)} FROM done",
                (
                    slot,
                    state,
                    okx_code,
                    okx_msg,
                    detail,
                    latency_ms,
                    now,
                    *fence_params,
                    state,
                    answer_detail(state, okx_code, okx_msg, detail),
                ),
            ).fetchone(),
            atomic=False,
            durable=False,
        )
        return Record(*row) if row else None

    def prune(self, before: float) -> int:
        def step(conn):
            removed = conn.execute(
                "DELETE FROM alerts WHERE received_at < %s AND state NOT IN ('queued', 'sending')", (before,)
            ).rowcount
            conn.execute(
                "DELETE FROM alert_events e WHERE e.at < %s "
                "AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.id = e.alert_id)",
                (before,),
            )
            return removed

        return self.db.transaction(step)

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
                f"{_RETURNING}",
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
            rows = conn.execute(
                f"UPDATE alerts SET state = 'expired', finished_at = {NOW}, detail = %(expired)s, lease_until = NULL "
                f"WHERE {orphaned} AND expires_at < {NOW} {_RETURNING}",
                params,
            ).fetchall()
            rows += conn.execute(
                "UPDATE alerts SET state = 'queued', claimed_by = NULL, lease_until = NULL, detail = %(queued)s "
                f"WHERE {orphaned} {_RETURNING}",
                params,
            ).fetchall()
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
            rows = conn.execute(
                f"UPDATE alerts SET state = 'unknown', finished_at = {NOW}, detail = %s, lease_until = NULL "
                f"WHERE {lapsed} AND (sent_at IS NOT NULL OR lease_until IS NULL) {_RETURNING}",
                (INTERRUPTED_DETAIL,),
            ).fetchall()
            rows += conn.execute(
                f"UPDATE alerts SET state = 'expired', finished_at = {NOW}, detail = %s, lease_until = NULL "
                f"WHERE {lapsed} AND expires_at < {NOW} {_RETURNING}",
                (NEVER_SENT_EXPIRED_DETAIL,),
            ).fetchall()
            rows += conn.execute(
                "UPDATE alerts SET state = 'queued', claimed_by = NULL, lease_until = NULL, detail = %s "
                f"WHERE {lapsed} {_RETURNING}",
                (NEVER_SENT_DETAIL,),
            ).fetchall()
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


def _fence(alert_id: int, claim: Claim | None) -> tuple[str, tuple]:
    """The WHERE clause that makes a write conditional on a claim (or on the alert still sending)."""
    if claim is None:
        return "id = %s AND state = 'sending'", (alert_id,)
    return _CLAIMED, (claim.alert_id, claim.instance, claim.attempt)
