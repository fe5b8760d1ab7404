"""What operators see and do, on PostgreSQL: timelines, findings, resends, the hourly chart and
the log of refused requests. A mixin of ``PostgresJournal``, which gives it ``_transaction``."""

from __future__ import annotations

from . import COLUMNS, RESOLUTIONS, ActionRefused, Event, Record, Refusal, refusal_from_row, refusal_row
from .postgres_sql import NOW

_REFUSAL_SELECT = "SELECT at, status, kind, message, client, errors, algo_id, trader_id, count, id FROM refused"


class PostgresActivity:
    def events(self, alert_id: int) -> list[Event]:
        rows = self._all(
            "SELECT alert_id, at, kind, detail FROM alert_events WHERE alert_id = %s ORDER BY id", (alert_id,)
        )
        return [Event(*row) for row in rows]

    def resolve(self, alert_id: int, resolution: str, by: str) -> Record:
        assert resolution in RESOLUTIONS, resolution

        def step(conn):
            row = conn.execute(
                "UPDATE alerts SET resolution = %s WHERE id = %s AND state = 'unknown' AND resolution IS NULL "
                f"RETURNING {', '.join(COLUMNS)}",
                (resolution, alert_id),
            ).fetchone()
            if row is None:
                raise ActionRefused("only an unknown alert without a finding can be marked")
            conn.execute(
                f"INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (%s, {NOW}, 'marked', %s)",
                (alert_id, f"marked {resolution.replace('_', ' ')} by {by}"),
            )
            return Record(*row)

        return self._transaction(step)

    def record_evidence(self, alert_id: int, evidence: str, proposal: str, note: str) -> Record | None:
        # One statement: the update and its timeline entry commit together, or neither does.
        row = self._one(
            "WITH found AS (UPDATE alerts SET evidence = %s, proposal = %s "
            f"WHERE id = %s AND state = 'unknown' AND proposal IS NULL RETURNING {', '.join(COLUMNS)}), "
            "logged AS (INSERT INTO alert_events (alert_id, at, kind, detail) "
            f"SELECT id, {NOW}, 'evidence', %s FROM found) SELECT {', '.join(COLUMNS)} FROM found",
            (evidence, proposal, alert_id, note),
        )
        return Record(*row) if row else None

    def awaiting_evidence(self, since: float, limit: int = 20) -> list[Record]:
        rows = self._all(
            f"SELECT {', '.join(COLUMNS)} FROM alerts WHERE state = 'unknown' AND proposal IS NULL "
            "AND finished_at >= %s ORDER BY finished_at, id LIMIT %s",
            (since, limit),
        )
        return [Record(*row) for row in rows]

    def link_resend(self, original_id: int, resend_id: int, by: str) -> None:
        def step(conn):
            conn.execute("UPDATE alerts SET resent_as = %s WHERE id = %s", (resend_id, original_id))
            conn.execute("UPDATE alerts SET resent_from = %s WHERE id = %s", (original_id, resend_id))
            with conn.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (%s, {NOW}, 'resent', %s)",
                    [
                        (original_id, f"sent again as alert {resend_id} by {by}"),
                        (resend_id, f"a resend of alert {original_id} by {by}"),
                    ],
                )

        self._transaction(step)

    def later_alerts(self, alert_id: int, dedup_key: str) -> list[Record]:
        """Alerts journaled after ``alert_id`` with this dedup key, oldest first: copies of it, and resends."""
        rows = self._all(
            f"SELECT {', '.join(COLUMNS)} FROM alerts WHERE dedup_key = %s AND id > %s ORDER BY id",
            (dedup_key, alert_id),
        )
        return [Record(*row) for row in rows]

    def hourly_counts(self, since: float) -> list[tuple[int, str, int]]:
        rows = self._all(
            "SELECT (floor(received_at / 3600) * 3600)::BIGINT AS hour, state, count(*) FROM alerts "
            "WHERE received_at >= %s GROUP BY hour, state ORDER BY hour",
            (since,),
        )
        return [(int(hour), state, count) for hour, state, count in rows]

    def add_refusals(self, refusals: list[Refusal]) -> None:
        if not refusals:
            return

        def step(conn):
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO refused (at, status, kind, message, client, errors, algo_id, trader_id, count) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [refusal_row(r) for r in refusals],
                )

        self._transaction(step, durable=False)

    def refusals(self, limit: int = 50) -> list[Refusal]:
        return [refusal_from_row(row) for row in self._all(f"{_REFUSAL_SELECT} ORDER BY id DESC LIMIT %s", (limit,))]

    def refusal_rows(self) -> int:
        return self._one("SELECT count(*) FROM refused")[0]

    def prune_refusals(self, before: float) -> int:
        return self._statement("DELETE FROM refused WHERE at < %s", (before,)).rowcount

    def start_session(self, sid: str, client: str | None) -> None:
        def step(conn):
            conn.execute(f"DELETE FROM admin_sessions WHERE started_at < {NOW} - 86400 OR ended_at IS NOT NULL")
            conn.execute(f"INSERT INTO admin_sessions (sid, client, started_at) VALUES (%s, %s, {NOW})", (sid, client))

        self._transaction(step)

    def end_session(self, sid: str) -> None:
        self._statement(f"UPDATE admin_sessions SET ended_at = {NOW} WHERE sid = %s", (sid,))

    def session_active(self, sid: str, max_age: float) -> bool:
        row = self._one(
            f"SELECT 1 FROM admin_sessions WHERE sid = %s AND ended_at IS NULL AND started_at > {NOW} - %s",
            (sid, max_age),
        )
        return row is not None
