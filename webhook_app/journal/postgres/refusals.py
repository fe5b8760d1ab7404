"""The log of refused requests, on PostgreSQL."""

from __future__ import annotations

from webhook_app.journal.contracts import RefusalStore
from webhook_app.journal.postgres.database import PostgresDatabase
from webhook_app.journal.records import REFUSAL_COLUMNS, Refusal, refusal_from_row, refusal_row

_REFUSAL_SELECT = f"SELECT {', '.join(REFUSAL_COLUMNS)} FROM refused"


class PostgresRefusals(RefusalStore):
    def __init__(self, db: PostgresDatabase):
        self.db = db

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

        self.db.transaction(step, durable=False)

    def refusals(self, limit: int = 50) -> list[Refusal]:
        return [refusal_from_row(row) for row in self.db.all(f"{_REFUSAL_SELECT} ORDER BY id DESC LIMIT %s", (limit,))]

    def refusal_rows(self) -> int:
        return self.db.one("SELECT count(*) FROM refused")[0]

    def prune_refusals(self, before: float) -> int:
        return self.db.statement("DELETE FROM refused WHERE at < %s", (before,))
