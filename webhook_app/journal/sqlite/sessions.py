"""Operator sessions, on SQLite."""

from __future__ import annotations

from webhook_app.journal.contracts import SessionStore
from webhook_app.journal.shared import Store


class SqliteSessions(Store, SessionStore):
    def start_session(self, sid: str, client: str | None) -> None:
        now = self.db.now()

        def step(db):
            db.execute("DELETE FROM admin_sessions WHERE started_at < ? OR ended_at IS NOT NULL", (now - 86400,))
            db.execute("INSERT INTO admin_sessions (sid, client, started_at) VALUES (?, ?, ?)", (sid, client, now))

        self.db.transaction(step)

    def end_session(self, sid: str) -> None:
        self.db.statement("UPDATE admin_sessions SET ended_at = ? WHERE sid = ?", (self.db.now(), sid))

    def session_active(self, sid: str, max_age: float) -> bool:
        row = self.db.one(
            "SELECT 1 FROM admin_sessions WHERE sid = ? AND ended_at IS NULL AND started_at > ?",
            (sid, self.db.now() - max_age),
        )
        return row is not None
