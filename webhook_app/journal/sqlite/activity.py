"""Each alert's timeline and what is found about it, on SQLite: timeline entries, OKX's evidence on
unknown alerts and the hourly chart."""

from __future__ import annotations

from webhook_app.journal.records import Record
from webhook_app.journal.shared import RETURNING_ALERTS, SharedActivity
from webhook_app.journal.sqlite.alerts import SqliteRecords
from webhook_app.journal.sqlite.sql import log_events


class SqliteActivity(SqliteRecords, SharedActivity):
    keeps_second_read = "json_extract(evidence, '$.recheck') IS NOT NULL"

    def note(self, alert_id: int, kind: str, detail: str) -> None:
        self.db.transaction(lambda db: log_events(db, [(alert_id, self.db.now(), kind, detail)]), durable=False)

    def record_evidence(self, alert_id: int, evidence: str, proposal: str, note: str) -> Record | None:
        return self._evidence(alert_id, evidence, proposal, note, "proposal IS NULL", ())

    def revise_evidence(self, alert_id: int, evidence: str, proposal: str, note: str, was: str) -> Record | None:
        return self._evidence(alert_id, evidence, proposal, note, "proposal = ?", (was,))

    def _evidence(self, alert_id, evidence, proposal, note, found: str, found_params: tuple) -> Record | None:
        """The evidence and proposal, where ``found`` holds, with a timeline entry, in one transaction."""
        now = self.db.now()

        def step(db):
            row = db.execute(
                f"UPDATE alerts SET evidence = ?, proposal = ? WHERE id = ? AND state = 'unknown' AND {found} "
                f"{RETURNING_ALERTS}",
                (evidence, proposal, alert_id, *found_params),
            ).fetchone()
            if row is None:
                return None
            log_events(db, [(alert_id, now, "evidence", note)])
            return Record(*row)

        return self.db.transaction(step)

    def hourly_counts(self, since: float) -> list[tuple[int, str, int]]:
        rows = self.db.all(
            "SELECT CAST(received_at / 3600 AS INTEGER) * 3600 AS hour, state, count(*) FROM alerts "
            "WHERE received_at >= ? GROUP BY hour, state ORDER BY hour",
            (since,),
        )
        return [(int(hour), state, count) for hour, state, count in rows]
