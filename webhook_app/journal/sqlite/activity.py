"""Each alert's timeline and what operators do about it, on SQLite: timelines, findings,
evidence, resends and the hourly chart."""

from __future__ import annotations

from webhook_app.journal.contracts import Activity
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
from webhook_app.journal.sqlite.database import SqliteDatabase


def log_events(db, events: list[tuple[int, float, str, str]]) -> None:
    """Timeline entries, written in the transaction that made them true."""
    if events:
        db.executemany("INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (?, ?, ?, ?)", events)


class SqliteActivity(Activity):
    def __init__(self, db: SqliteDatabase):
        self.db = db

    def note(self, alert_id: int, kind: str, detail: str) -> None:
        self.db.transaction(lambda db: log_events(db, [(alert_id, self.db.now(), kind, detail)]), durable=False)

    def events(self, alert_id: int) -> list[Event]:
        rows = self.db.all(
            "SELECT alert_id, at, kind, detail FROM alert_events WHERE alert_id = ? ORDER BY id", (alert_id,)
        )
        return [Event(*row) for row in rows]

    def resolve(self, alert_id: int, resolution: str, by: str) -> Record:
        assert resolution in RESOLUTIONS, resolution
        now = self.db.now()

        def step(db):
            row = db.execute(
                "UPDATE alerts SET resolution = ? WHERE id = ? AND state = 'unknown' AND resolution IS NULL "
                f"RETURNING {', '.join(COLUMNS)}",
                (resolution, alert_id),
            ).fetchone()
            if row is None:
                raise ActionRefused(NOT_MARKABLE)
            detail = marked_detail(resolution, by)
            log_events(db, [(alert_id, now, "marked", detail)])
            return Record(*row)

        return self.db.transaction(step)

    def record_evidence(self, alert_id: int, evidence: str, proposal: str, note: str) -> Record | None:
        now = self.db.now()

        def step(db):
            row = db.execute(
                "UPDATE alerts SET evidence = ?, proposal = ? WHERE id = ? AND state = 'unknown' AND proposal IS NULL "
                f"RETURNING {', '.join(COLUMNS)}",
                (evidence, proposal, alert_id),
            ).fetchone()
            if row is None:
                return None
            log_events(db, [(alert_id, now, "evidence", note)])
            return Record(*row)

        return self.db.transaction(step)

    def revise_evidence(self, alert_id: int, evidence: str, proposal: str, note: str, was: str) -> Record | None:
        now = self.db.now()

        def step(db):
            row = db.execute(
                "UPDATE alerts SET evidence = ?, proposal = ? WHERE id = ? AND state = 'unknown' AND proposal = ? "
                f"RETURNING {', '.join(COLUMNS)}",
                (evidence, proposal, alert_id, was),
            ).fetchone()
            if row is None:
                return None
            log_events(db, [(alert_id, now, "evidence", note)])
            return Record(*row)

        return self.db.transaction(step)

    def awaiting_evidence(self, since: float, limit: int = 20) -> list[Record]:
        rows = self.db.all(
            f"SELECT {', '.join(COLUMNS)} FROM alerts WHERE state = 'unknown' AND proposal IS NULL "
            "AND finished_at >= ? ORDER BY finished_at, id LIMIT ?",
            (since, limit),
        )
        return [Record(*row) for row in rows]

    def link_resend(self, original_id: int, resend_id: int, by: str) -> None:
        now = self.db.now()

        def step(db):
            db.execute("UPDATE alerts SET resent_as = ? WHERE id = ?", (resend_id, original_id))
            db.execute("UPDATE alerts SET resent_from = ? WHERE id = ?", (original_id, resend_id))
            on_original, on_resend = resend_details(original_id, resend_id, by)
            log_events(db, [(original_id, now, "resent", on_original), (resend_id, now, "resent", on_resend)])

        self.db.transaction(step)

    def later_alerts(self, alert_id: int, dedup_key: str) -> list[Record]:
        """Alerts journaled after ``alert_id`` with this dedup key, oldest first: copies of it, and resends."""
        rows = self.db.all(
            f"SELECT {', '.join(COLUMNS)} FROM alerts WHERE dedup_key = ? AND id > ? ORDER BY id", (dedup_key, alert_id)
        )
        return [Record(*row) for row in rows]

    def hourly_counts(self, since: float) -> list[tuple[int, str, int]]:
        rows = self.db.all(
            "SELECT CAST(received_at / 3600 AS INTEGER) * 3600 AS hour, state, count(*) FROM alerts "
            "WHERE received_at >= ? GROUP BY hour, state ORDER BY hour",
            (since,),
        )
        return [(int(hour), state, count) for hour, state, count in rows]
