"""Journaled alerts on PostgreSQL: the insert that checks duplicates and the daily cap, the
finding on an unknown alert, resends' links and pruning. Duplicates and the cap: the check and the
insert run under transaction-scoped advisory locks on the dedup key and on (bot, direction), so
under READ COMMITTED two instances cannot both pass a check and both insert (``journal_add_row``,
one statement that returns the stored row)."""

from __future__ import annotations

from decimal import Decimal

from webhook_app.journal.postgres.instances import PostgresPacer
from webhook_app.journal.postgres.sql import NOW, log_events
from webhook_app.journal.records import (
    CAP_STATES,
    COLUMNS,
    NOT_MARKABLE,
    RESOLUTIONS,
    UNCLAIMED_DETAIL,
    ActionRefused,
    ClaimedAtOnce,
    DailyCapExceeded,
    Record,
    SendNow,
    marked_detail,
    resend_details,
)
from webhook_app.journal.shared import ALERT_COLUMNS, RETURNING_ALERTS, UNCLAIM, SharedAlertLog, SharedRecords

_ADD = (
    f"SELECT added.created, added.used, {', '.join(f'(added.alert).{c}' for c in COLUMNS)} "
    f"FROM journal_add_row({', '.join(['%s'] * 15)}) added"
)


_ADD_CLAIMED = (
    f"SELECT added.created, added.used, added.slot, added.read_slot, "
    f"{', '.join(f'(added.alert).{c}' for c in COLUMNS)} "
    f"FROM journal_add_claimed({', '.join(['%s'] * 26)}) added"
)


class PostgresRecords(SharedRecords):
    """The finding on an unknown alert, which the alert log and the activity both answer."""

    def resolve(self, alert_id: int, resolution: str, by: str) -> Record:
        assert resolution in RESOLUTIONS, resolution

        def step(conn):
            row = conn.execute(
                "UPDATE alerts SET resolution = %s WHERE id = %s AND state = 'unknown' AND resolution IS NULL "
                f"{RETURNING_ALERTS}",
                (resolution, alert_id),
            ).fetchone()
            if row is None:
                raise ActionRefused(NOT_MARKABLE)
            log_events(conn, [(alert_id, "marked", marked_detail(resolution, by))])
            return Record(*row)

        return self.db.transaction(step)


class PostgresAlertLog(PostgresRecords, SharedAlertLog):
    def add(self, **fields) -> tuple[Record, bool]:
        # journal_add_row (migration 11's, storing the endpoint; migration 7's without it) checks and
        # inserts under advisory locks and returns the row: one statement, one round trip.
        created, used, *row = self.db.one(_ADD, _add_params(**fields))
        if row[0] is None:
            raise DailyCapExceeded(fields.get("daily_cap"), Decimal(used))
        return Record(*row), created

    def add_claimed(self, send_now: SendNow | None, **fields) -> tuple[Record, bool, ClaimedAtOnce | None]:
        if send_now is None or not isinstance(send_now.pacer, PostgresPacer):
            return super().add_claimed(send_now, **fields)
        pacer, reads = send_now.pacer, send_now.reads if isinstance(send_now.reads, PostgresPacer) else None
        for ledger in (pacer, reads):
            if ledger is not None and ledger.db is not self.db:
                raise ValueError("a PostgreSQL rate ledger is only used with the journal that made it")
        params = _add_params(**fields) + (send_now.instance, send_now.lease, pacer.account, pacer.limit, pacer.window)
        params += (reads.account, reads.limit, reads.window) if reads else (None, None, None)
        params += (list(send_now.actions), send_now.evidence, send_now.receipt)
        # journal_add_claimed (migration 13): journal_add_row, then the claim and its confirmation
        # when the alert can go at once: one durable statement, one round trip.
        created, used, slot, read_slot, *row = self.db.one(_ADD_CLAIMED, params)
        if row[0] is None:
            raise DailyCapExceeded(fields.get("daily_cap"), Decimal(used))
        return Record(*row), created, None if slot is None else ClaimedAtOnce(slot, read_slot)

    def unclaim_at_receipt(self, receipt: str, instance: str) -> Record | None:
        # Only the request that made the claim knows its receipt, and it never handed the claim to a sender.
        row = self.db.one(
            f"WITH undone AS ({UNCLAIM} WHERE receipt = %s AND claimed_by = %s AND state = 'sending' "
            f"AND attempts = 1 {RETURNING_ALERTS}), logged AS (INSERT INTO alert_events "
            f"(alert_id, at, kind, detail) SELECT id, {NOW}, 'unclaimed', %s FROM undone) "
            f"SELECT {ALERT_COLUMNS} FROM undone",
            (receipt, instance, UNCLAIMED_DETAIL),
        )
        return Record(*row) if row else None

    def link_resend(self, original_id: int, resend_id: int, by: str) -> None:
        def step(conn):
            conn.execute("UPDATE alerts SET resent_as = %s WHERE id = %s", (resend_id, original_id))
            conn.execute("UPDATE alerts SET resent_from = %s WHERE id = %s", (original_id, resend_id))
            on_original, on_resend = resend_details(original_id, resend_id, by)
            log_events(conn, [(original_id, "resent", on_original), (resend_id, "resent", on_resend)])

        self.db.transaction(step)

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


def _add_params(
    *,
    dedup_key: str,
    dedup_since: float,
    algo_id: str,
    action: str,
    amount: str,
    request_body: str,
    expires_at: float,
    state: str = "queued",
    secret_name: str | None = None,
    daily_cap: Decimal | None = None,
    trader_id: str | None = None,
    now: float | None = None,
    cap_states: tuple[str, ...] = CAP_STATES,
    account: str = "default",
    endpoint: str = "margin-balance",
) -> tuple:
    """journal_add_row's arguments, in its order (``AlertLog.add``'s fields and defaults)."""
    return (
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
        endpoint,
    )
