"""The log of refused requests, on SQLite."""

from __future__ import annotations

from webhook_app.journal.contracts import RefusalStore
from webhook_app.journal.records import REFUSAL_COLUMNS, Refusal, refusal_from_row, refusal_row
from webhook_app.journal.sqlite.database import SqliteDatabase

_REFUSAL_SELECT = f"SELECT {', '.join(REFUSAL_COLUMNS)} FROM refused"


class SqliteRefusals(RefusalStore):
    def __init__(self, db: SqliteDatabase):
        self.db = db

    def add_refusals(self, refusals: list[Refusal]) -> None:
        if refusals:
            self.db.transaction(
                lambda db: db.executemany(
                    "INSERT INTO refused (at, status, kind, message, client, errors, algo_id, trader_id, count) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [refusal_row(r) for r in refusals],
                ),
                durable=False,
            )

    def refusals(self, limit: int = 50) -> list[Refusal]:
        rows = self.db.all(f"{_REFUSAL_SELECT} ORDER BY id DESC LIMIT ?", (limit,))
        return [refusal_from_row(row) for row in rows]

    def refusal_rows(self) -> int:
        return self.db.one("SELECT count(*) FROM refused")[0]

    def prune_refusals(self, before: float) -> int:
        return self.db.statement("DELETE FROM refused WHERE at < ?", (before,))
