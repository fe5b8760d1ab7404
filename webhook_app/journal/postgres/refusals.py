"""The log of refused requests, on PostgreSQL."""

from __future__ import annotations

from webhook_app.journal.records import Refusal, refusal_row
from webhook_app.journal.shared import SharedRefusals


class PostgresRefusals(SharedRefusals):
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
