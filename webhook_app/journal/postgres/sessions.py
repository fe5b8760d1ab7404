"""Operator sessions, on PostgreSQL (the database's clock)."""

from __future__ import annotations

from webhook_app.journal.contracts import SessionStore
from webhook_app.journal.postgres.sql import NOW
from webhook_app.journal.shared import Store


class PostgresSessions(Store, SessionStore):
    def start_session(self, sid: str, client: str | None) -> None:
        def step(conn):
            conn.execute(f"DELETE FROM admin_sessions WHERE started_at < {NOW} - 86400 OR ended_at IS NOT NULL")
            conn.execute(f"INSERT INTO admin_sessions (sid, client, started_at) VALUES (%s, %s, {NOW})", (sid, client))

        self.db.transaction(step)

    def end_session(self, sid: str) -> None:
        self.db.statement(f"UPDATE admin_sessions SET ended_at = {NOW} WHERE sid = %s", (sid,))

    def session_active(self, sid: str, max_age: float) -> bool:
        row = self.db.one(
            f"SELECT 1 FROM admin_sessions WHERE sid = %s AND ended_at IS NULL AND started_at > {NOW} - %s",
            (sid, max_age),
        )
        return row is not None
