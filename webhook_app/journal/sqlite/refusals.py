"""The log of refused requests, on SQLite."""

from __future__ import annotations

from webhook_app.journal.records import Refusal, refusal_row
from webhook_app.journal.shared import SharedRefusals


class SqliteRefusals(SharedRefusals):
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
