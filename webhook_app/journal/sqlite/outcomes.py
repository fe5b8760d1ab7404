"""What came of a sent alert, on SQLite: each write fenced by the claim, one write transaction each."""

from __future__ import annotations

from webhook_app.journal.contracts import QueueOutcomes
from webhook_app.journal.records import FINAL_STATES, answer_detail, retry_detail
from webhook_app.journal.shared import Store
from webhook_app.journal.sqlite.sql import CLAIMED, fence, log_events, no_slot, read_alert


class SqliteOutcomes(Store, QueueOutcomes):
    def requeue(self, alert_id: int, okx_code, okx_msg, detail: str, not_before: float, claim=None, slot=None) -> bool:
        no_slot(slot)
        # Durable: losing it would leave the alert "sending", to be called unknown although OKX did not act.
        where = f"AND {CLAIMED}" if claim is not None else "AND id = :id AND state = 'sending'"

        def step(db):
            changed = db.execute(
                "UPDATE alerts SET state = 'queued', okx_code = :code, okx_msg = :msg, detail = :detail, "
                f"not_before = :not_before, lease_until = NULL WHERE 1 {where}",
                {
                    "code": okx_code,
                    "msg": okx_msg,
                    "detail": detail,
                    "not_before": not_before,
                    **(fence(claim) if claim is not None else {"id": alert_id}),
                },
            ).rowcount
            if changed:
                retry = retry_detail(okx_code, okx_msg, detail, not_before)
                log_events(db, [(alert_id, self.db.now(), "retry", retry)])
            return changed == 1

        return self.db.transaction(step)

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
        no_slot(slot)
        now = self.db.now() if now is None else now
        where = f"AND {CLAIMED}" if claim is not None else "AND id = :id"

        def step(db):
            changed = db.execute(
                "UPDATE alerts SET state = :state, okx_code = COALESCE(:code, okx_code), "
                "okx_msg = COALESCE(:msg, okx_msg), detail = :detail, latency_ms = COALESCE(:latency, latency_ms), "
                f"evidence = COALESCE(:evidence, evidence), finished_at = :now, lease_until = NULL WHERE 1 {where}",
                {
                    "state": state,
                    "code": okx_code,
                    "msg": okx_msg,
                    "detail": detail,
                    "latency": latency_ms,
                    "evidence": evidence,
                    "now": now,
                    **(fence(claim) if claim is not None else {"id": alert_id}),
                },
            ).rowcount
            if not changed:
                return None
            record = read_alert(db, alert_id)
            log_events(db, [(alert_id, now, state, answer_detail(state, okx_code, okx_msg, detail))])
            return record

        # No fsync: an outcome lost in a power cut leaves the alert "sending", which reads as
        # unknown at the next start; never resent.
        return self.db.transaction(step, durable=False)
