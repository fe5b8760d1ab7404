"""The log of refused requests, on SQLite."""

from __future__ import annotations

from ..contracts import RefusalStore
from ..records import REFUSAL_COLUMNS, Refusal, refusal_from_row, refusal_row
from .database import SqliteDatabase

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
        rows = self.db.transaction(
            lambda db: db.execute(f"{_REFUSAL_SELECT} ORDER BY id DESC LIMIT ?", (limit,)).fetchall(), write=False
        )
        return [refusal_from_row(row) for row in rows]

    def refusal_rows(self) -> int:
        return self.db.transaction(lambda db: db.execute("SELECT count(*) FROM refused").fetchone()[0], write=False)

    def prune_refusals(self, before: float) -> int:
        return self.db.transaction(lambda db: db.execute("DELETE FROM refused WHERE at < ?", (before,)).rowcount)
