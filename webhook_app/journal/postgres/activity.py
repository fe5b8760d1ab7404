"""Each alert's timeline and what operators do about it, on PostgreSQL: timelines, findings,
evidence, resends and the hourly chart."""

from __future__ import annotations

from webhook_app.journal.contracts import Activity
from webhook_app.journal.postgres.database import PostgresDatabase
from webhook_app.journal.postgres.sql import NOW
from webhook_app.journal.records import (
    COLUMNS,
    NOT_MARKABLE,
    RESOLUTIONS,
    ActionRefused,
    Event,
    Record,
    marked_detail,
    resend_details,
)


def log_events(conn, events: list[tuple[int, str, str]]) -> None:
    """Timeline entries, written in the transaction that made them true, at the database's time."""
    if events:
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (%s, {NOW}, %s, %s)", events
            )


class PostgresActivity(Activity):
    def __init__(self, db: PostgresDatabase):
        self.db = db

    def note(self, alert_id: int, kind: str, detail: str) -> None:
        self.db.statement(
            f"INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (%s, {NOW}, %s, %s)",
            (alert_id, kind, detail),
            durable=False,
        )

    def events(self, alert_id: int) -> list[Event]:
        rows = self.db.all(
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
                raise ActionRefused(NOT_MARKABLE)
            log_events(conn, [(alert_id, "marked", marked_detail(resolution, by))])
            return Record(*row)

        return self.db.transaction(step)

    def record_evidence(self, alert_id: int, evidence: str, proposal: str, note: str) -> Record | None:
        # One statement: the update and its timeline entry commit together, or neither does.
        row = self.db.one(
            "WITH found AS (UPDATE alerts SET evidence = %s, proposal = %s "
            f"WHERE id = %s AND state = 'unknown' AND proposal IS NULL RETURNING {', '.join(COLUMNS)}), "
            "logged AS (INSERT INTO alert_events (alert_id, at, kind, detail) "
            f"SELECT id, {NOW}, 'evidence', %s FROM found) SELECT {', '.join(COLUMNS)} FROM found",
            (evidence, proposal, alert_id, note),
        )
        return Record(*row) if row else None

    def revise_evidence(self, alert_id: int, evidence: str, proposal: str, note: str, was: str) -> Record | None:
        row = self.db.one(
            "WITH found AS (UPDATE alerts SET evidence = %s, proposal = %s "
            f"WHERE id = %s AND state = 'unknown' AND proposal = %s RETURNING {', '.join(COLUMNS)}), "
            "logged AS (INSERT INTO alert_events (alert_id, at, kind, detail) "
            f"SELECT id, {NOW}, 'evidence', %s FROM found) SELECT {', '.join(COLUMNS)} FROM found",
            (evidence, proposal, alert_id, was, note),
        )
        return Record(*row) if row else None

    def awaiting_evidence(self, since: float, limit: int = 20) -> list[Record]:
        rows = self.db.all(
            f"SELECT {', '.join(COLUMNS)} FROM alerts WHERE state = 'unknown' AND proposal IS NULL "
            "AND finished_at >= %s ORDER BY finished_at, id LIMIT %s",
            (since, limit),
        )
        return [Record(*row) for row in rows]

    def link_resend(self, original_id: int, resend_id: int, by: str) -> None:
        def step(conn):
            conn.execute("UPDATE alerts SET resent_as = %s WHERE id = %s", (resend_id, original_id))
            conn.execute("UPDATE alerts SET resent_from = %s WHERE id = %s", (original_id, resend_id))
            on_original, on_resend = resend_details(original_id, resend_id, by)
            log_events(conn, [(original_id, "resent", on_original), (resend_id, "resent", on_resend)])

        self.db.transaction(step)

    def later_alerts(self, alert_id: int, dedup_key: str) -> list[Record]:
        """Alerts journaled after ``alert_id`` with this dedup key, oldest first: copies of it, and resends."""
        rows = self.db.all(
            f"SELECT {', '.join(COLUMNS)} FROM alerts WHERE dedup_key = %s AND id > %s ORDER BY id",
            (dedup_key, alert_id),
        )
        return [Record(*row) for row in rows]

    def hourly_counts(self, since: float) -> list[tuple[int, str, int]]:
        rows = self.db.all(
            "SELECT (floor(received_at / 3600) * 3600)::BIGINT AS hour, state, count(*) FROM alerts "
            "WHERE received_at >= %s GROUP BY hour, state ORDER BY hour",
            (since,),
        )
        return [(int(hour), state, count) for hour, state, count in rows]
