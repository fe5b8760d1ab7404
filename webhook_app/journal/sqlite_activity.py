"""What operators see and do, on SQLite: timelines, findings, resends, the hourly chart and
the log of refused requests. A mixin of ``SqliteJournal``, which gives it ``_transaction``."""

from __future__ import annotations

import time

from . import COLUMNS, RESOLUTIONS, ActionRefused, Event, Record, Refusal, refusal_from_row, refusal_row

_REFUSAL_SELECT = "SELECT at, status, kind, message, client, errors, algo_id, trader_id, count, id FROM refused"


class SqliteActivity:
    def events(self, alert_id: int) -> list[Event]:
        rows = self._transaction(
            lambda db: db.execute(
                "SELECT alert_id, at, kind, detail FROM alert_events WHERE alert_id = ? ORDER BY id", (alert_id,)
            ).fetchall(),
            write=False,
        )
        return [Event(*row) for row in rows]

    def resolve(self, alert_id: int, resolution: str, by: str) -> Record:
        assert resolution in RESOLUTIONS, resolution
        now = time.time()

        def step(db):
            row = db.execute(
                "UPDATE alerts SET resolution = ? WHERE id = ? AND state = 'unknown' AND resolution IS NULL "
                f"RETURNING {', '.join(COLUMNS)}",
                (resolution, alert_id),
            ).fetchone()
            if row is None:
                raise ActionRefused("only an unknown alert without a finding can be marked")
            detail = f"marked {resolution.replace('_', ' ')} by {by}"
            db.execute(
                "INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (?, ?, 'marked', ?)",
                (alert_id, now, detail),
            )
            return Record(*row)

        return self._transaction(step)

    def record_evidence(self, alert_id: int, evidence: str, proposal: str, note: str) -> Record | None:
        now = time.time()

        def step(db):
            row = db.execute(
                "UPDATE alerts SET evidence = ?, proposal = ? WHERE id = ? AND state = 'unknown' AND proposal IS NULL "
                f"RETURNING {', '.join(COLUMNS)}",
                (evidence, proposal, alert_id),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (?, ?, 'evidence', ?)",
                (alert_id, now, note),
            )
            return Record(*row)

        return self._transaction(step)

    def awaiting_evidence(self, since: float, limit: int = 20) -> list[Record]:
        rows = self._transaction(
            lambda db: db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM alerts WHERE state = 'unknown' AND proposal IS NULL "
                "AND finished_at >= ? ORDER BY finished_at, id LIMIT ?",
                (since, limit),
            ).fetchall(),
            write=False,
        )
        return [Record(*row) for row in rows]

    def link_resend(self, original_id: int, resend_id: int, by: str) -> None:
        now = time.time()

        def step(db):
            db.execute("UPDATE alerts SET resent_as = ? WHERE id = ?", (resend_id, original_id))
            db.execute("UPDATE alerts SET resent_from = ? WHERE id = ?", (original_id, resend_id))
            db.executemany(
                "INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (?, ?, 'resent', ?)",
                [
                    (original_id, now, f"sent again as alert {resend_id} by {by}"),
                    (resend_id, now, f"a resend of alert {original_id} by {by}"),
                ],
            )

        self._transaction(step)

    def later_alerts(self, alert_id: int, dedup_key: str) -> list[Record]:
        """Alerts journaled after ``alert_id`` with this dedup key, oldest first: copies of it, and resends."""
        rows = self._transaction(
            lambda db: db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM alerts WHERE dedup_key = ? AND id > ? ORDER BY id",
                (dedup_key, alert_id),
            ).fetchall(),
            write=False,
        )
        return [Record(*row) for row in rows]

    def hourly_counts(self, since: float) -> list[tuple[int, str, int]]:
        rows = self._transaction(
            lambda db: db.execute(
                "SELECT CAST(received_at / 3600 AS INTEGER) * 3600 AS hour, state, count(*) FROM alerts "
                "WHERE received_at >= ? GROUP BY hour, state ORDER BY hour",
                (since,),
            ).fetchall(),
            write=False,
        )
        return [(int(hour), state, count) for hour, state, count in rows]

    def add_refusals(self, refusals: list[Refusal]) -> None:
        if refusals:
            self._transaction(
                lambda db: db.executemany(
                    "INSERT INTO refused (at, status, kind, message, client, errors, algo_id, trader_id, count) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [refusal_row(r) for r in refusals],
                ),
                durable=False,
            )

    def refusals(self, limit: int = 50) -> list[Refusal]:
        rows = self._transaction(
            lambda db: db.execute(f"{_REFUSAL_SELECT} ORDER BY id DESC LIMIT ?", (limit,)).fetchall(), write=False
        )
        return [refusal_from_row(row) for row in rows]

    def refusal_rows(self) -> int:
        return self._transaction(lambda db: db.execute("SELECT count(*) FROM refused").fetchone()[0], write=False)

    def prune_refusals(self, before: float) -> int:
        return self._transaction(lambda db: db.execute("DELETE FROM refused WHERE at < ?", (before,)).rowcount)

    def start_session(self, sid: str, client: str | None) -> None:
        now = time.time()

        def step(db):
            db.execute("DELETE FROM admin_sessions WHERE started_at < ? OR ended_at IS NOT NULL", (now - 86400,))
            db.execute("INSERT INTO admin_sessions (sid, client, started_at) VALUES (?, ?, ?)", (sid, client, now))

        self._transaction(step)

    def end_session(self, sid: str) -> None:
        self._transaction(
            lambda db: db.execute("UPDATE admin_sessions SET ended_at = ? WHERE sid = ?", (time.time(), sid))
        )

    def session_active(self, sid: str, max_age: float) -> bool:
        row = self._transaction(
            lambda db: db.execute(
                "SELECT 1 FROM admin_sessions WHERE sid = ? AND ended_at IS NULL AND started_at > ?",
                (sid, time.time() - max_age),
            ).fetchone(),
            write=False,
        )
        return row is not None
