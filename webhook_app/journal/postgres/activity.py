"""Each alert's timeline and what is found about it, on PostgreSQL: timeline entries, OKX's
evidence on unknown alerts and the hourly chart."""

from __future__ import annotations

from webhook_app.journal.postgres.alerts import PostgresRecords
from webhook_app.journal.postgres.sql import NOW
from webhook_app.journal.records import Record
from webhook_app.journal.shared import ALERT_COLUMNS, RETURNING_ALERTS, SharedActivity

# The evidence and proposal written, with a timeline entry, in one statement (params: evidence,
# proposal, alert, the proposal found (for a revision only), the entry's detail): both commit, or neither.
_EVIDENCE = (
    "WITH found AS (UPDATE alerts SET evidence = %s, proposal = %s "
    "WHERE id = %s AND state = 'unknown' AND {proposal} " + RETURNING_ALERTS + "), "
    "logged AS (INSERT INTO alert_events (alert_id, at, kind, detail) "
    f"SELECT id, {NOW}, 'evidence', %s FROM found) SELECT {ALERT_COLUMNS} FROM found"
)


class PostgresActivity(PostgresRecords, SharedActivity):
    keeps_second_read = "(evidence::jsonb ? 'recheck')"

    def note(self, alert_id: int, kind: str, detail: str) -> None:
        self.db.statement(
            f"INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (%s, {NOW}, %s, %s)",
            (alert_id, kind, detail),
            durable=False,
        )

    def record_evidence(self, alert_id: int, evidence: str, proposal: str, note: str) -> Record | None:
        row = self.db.one(_EVIDENCE.format(proposal="proposal IS NULL"), (evidence, proposal, alert_id, note))
        return Record(*row) if row else None

    def revise_evidence(self, alert_id: int, evidence: str, proposal: str, note: str, was: str) -> Record | None:
        row = self.db.one(_EVIDENCE.format(proposal="proposal = %s"), (evidence, proposal, alert_id, was, note))
        return Record(*row) if row else None

    def hourly_counts(self, since: float) -> list[tuple[int, str, int]]:
        rows = self.db.all(
            "SELECT (floor(received_at / 3600) * 3600)::BIGINT AS hour, state, count(*) FROM alerts "
            "WHERE received_at >= %s GROUP BY hour, state ORDER BY hour",
            (since,),
        )
        return [(int(hour), state, count) for hour, state, count in rows]
