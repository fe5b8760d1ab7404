"""Journaled alerts on PostgreSQL: the insert that checks duplicates and the daily cap, the
finding on an unknown alert, resends' links and pruning. Duplicates and the cap: the check and the
insert run under transaction-scoped advisory locks on the dedup key and on (bot, direction), so
under READ COMMITTED two instances cannot both pass a check and both insert (``journal_add_row``,
one statement that returns the stored row)."""

from __future__ import annotations

from decimal import Decimal

from webhook_app.journal.postgres.sql import log_events
from webhook_app.journal.records import (
    CAP_STATES,
    COLUMNS,
    NOT_MARKABLE,
    RESOLUTIONS,
    ActionRefused,
    DailyCapExceeded,
    Record,
    marked_detail,
    resend_details,
)
from webhook_app.journal.shared import RETURNING_ALERTS, SharedAlertLog, SharedRecords

_ADD = (
    f"SELECT added.created, added.used, {', '.join(f'(added.alert).{c}' for c in COLUMNS)} "
    f"FROM journal_add_row({', '.join(['%s'] * 15)}) added"
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
        endpoint="margin-balance",
    ) -> tuple[Record, bool]:
        # journal_add_row (migration 11's, storing the endpoint; migration 7's without it) checks and
        # inserts under advisory locks and returns the row: one statement, one round trip.
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
                endpoint,
            ),
        )
        if row[0] is None:
            raise DailyCapExceeded(daily_cap, Decimal(used))
        return Record(*row), created

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
