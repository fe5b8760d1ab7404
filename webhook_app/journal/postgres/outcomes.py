"""What came of a sent alert, on PostgreSQL: each write fenced by the claim, and closing the
request's rate slot in the same statement (a late answer still ends its request)."""

from __future__ import annotations

from webhook_app.journal.contracts import QueueOutcomes
from webhook_app.journal.postgres.sql import CLAIMED, CLOSE_SLOTS, NOW, slot_ids
from webhook_app.journal.records import FINAL_STATES, Claim, Record, answer_detail, retry_detail
from webhook_app.journal.shared import ALERT_COLUMNS, RETURNING_ALERTS, Store


class PostgresOutcomes(Store, QueueOutcomes):
    def requeue(self, alert_id: int, okx_code, okx_msg, detail: str, not_before: float, claim=None, slot=None) -> bool:
        retry = retry_detail(okx_code, okx_msg, detail, not_before)
        fence, fence_params = _fence(alert_id, claim)
        return bool(
            self.db.statement(
                f"WITH {CLOSE_SLOTS}, requeued AS (UPDATE alerts SET state = 'queued', okx_code = %s, okx_msg = %s, "
                f"detail = %s, not_before = %s, lease_until = NULL WHERE {fence} RETURNING id) "
                f"INSERT INTO alert_events (alert_id, at, kind, detail) SELECT id, {NOW}, 'retry', %s FROM requeued",
                (slot_ids(slot), okx_code, okx_msg, detail, not_before, *fence_params, retry),
            )
        )

    def finish(
        self,
        alert_id,
        state,
        *,
        okx_code=None,
        okx_msg=None,
        detail=None,
        latency_ms=None,
        now=None,
        claim=None,
        slot=None,
        evidence=None,
    ):
        assert state in FINAL_STATES, state
        fence, fence_params = _fence(alert_id, claim)
        if claim is None:
            fence = "id = %s"
        row = self.db.transaction(
            lambda conn: conn.execute(
                f"WITH {CLOSE_SLOTS}, done AS (UPDATE alerts SET state = %s, okx_code = COALESCE(%s, okx_code), "
                "okx_msg = COALESCE(%s, okx_msg), detail = %s, latency_ms = COALESCE(%s, latency_ms), "
                f"evidence = COALESCE(%s, evidence), finished_at = COALESCE(%s, {NOW}), lease_until = NULL "
                f"WHERE {fence} {RETURNING_ALERTS}), "
                "logged AS (INSERT INTO alert_events (alert_id, at, kind, detail) "
                f"SELECT id, finished_at, %s, %s FROM done) SELECT {ALERT_COLUMNS} FROM done",
                (
                    slot_ids(slot),
                    state,
                    okx_code,
                    okx_msg,
                    detail,
                    latency_ms,
                    evidence,
                    now,
                    *fence_params,
                    state,
                    answer_detail(state, okx_code, okx_msg, detail),
                ),
            ).fetchone(),
            atomic=False,
            durable=False,
        )
        return Record(*row) if row else None


def _fence(alert_id: int, claim: Claim | None) -> tuple[str, tuple]:
    """The WHERE clause that makes a write conditional on a claim (or on the alert still sending)."""
    if claim is None:
        return "id = %s AND state = 'sending'", (alert_id,)
    return CLAIMED, (claim.alert_id, claim.instance, claim.attempt)
