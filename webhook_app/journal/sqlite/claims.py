"""The queue's claims on SQLite: one process sends from a file, and each claim is one write
transaction, so claims are already one after another, each a moment long. OKX's rate budget is
in the process's memory: ``claim_paced`` takes its slots as a separate step."""

from __future__ import annotations

from webhook_app.journal.records import UNCLAIMED_DETAIL, Claim, Record, claimed_detail
from webhook_app.journal.shared import RETURNING_ALERTS, UNCLAIM, ClaimSteps, bots_turn
from webhook_app.journal.sqlite.sql import CLAIMED, fence, log_events, no_slot

_QUEUED_AND_DUE = "state = 'queued' AND not_before <= :now AND expires_at >= :now"
_DUE = f"{_QUEUED_AND_DUE} AND {bots_turn(':now')}"
# One account's alerts, or (no account named) every account's.
_OF_ACCOUNT = "(:account IS NULL OR account = :account)"
# One endpoint's actions (",add,reduce,": SQLite binds no arrays), or (NULL) every action.
_OF_ACTIONS = "(:actions IS NULL OR instr(:actions, ',' || action || ',') > 0)"


def _actions(actions: tuple[str, ...] | None) -> str | None:
    return None if actions is None else "," + ",".join(actions) + ","


class SqliteClaims(ClaimSteps):
    def count_due(
        self,
        now: float | None = None,
        before_id: int | None = None,
        in_turn: bool = True,
        account: str | None = None,
        actions: tuple[str, ...] | None = None,
    ) -> int:
        now = self.db.now() if now is None else now
        due = _DUE if in_turn else _QUEUED_AND_DUE
        return self.db.one(
            f"SELECT count(*) FROM alerts WHERE {due} AND {_OF_ACCOUNT} AND {_OF_ACTIONS} AND id < :before",
            {
                "now": now,
                "before": 2**63 - 1 if before_id is None else before_id,
                "account": account,
                "actions": _actions(actions),
            },
        )[0]

    def next_due_at(self) -> float | None:
        # Alerts waiting behind one that is being sent have no time of their own: its outcome wakes them.
        return self.db.one(
            f"SELECT min(not_before) FROM alerts WHERE state = 'queued' AND expires_at >= :now AND {bots_turn(':now')}",
            {"now": self.db.now()},
        )[0]

    def claim_due(
        self,
        instance: str,
        limit: int,
        now: float,
        lease: float = 30.0,
        account: str | None = None,
        actions: tuple[str, ...] | None = None,
    ) -> list[Record]:
        def step(db):
            # ``now`` was read before the claim: an alert received since then still never shows
            # a send that started before it arrived.
            rows = db.execute(
                "UPDATE alerts SET state = 'sending', attempts = attempts + 1, claimed_by = :instance, "
                "first_sent_at = COALESCE(first_sent_at, MAX(:now, received_at)), sent_at = NULL, "
                "lease_until = :lease_until "
                f"WHERE id IN (SELECT id FROM alerts WHERE {_DUE} AND {_OF_ACCOUNT} AND {_OF_ACTIONS} "
                "ORDER BY id LIMIT :limit) "
                f"{RETURNING_ALERTS}",
                {
                    "instance": instance,
                    "now": now,
                    "limit": limit,
                    "lease_until": self.db.now() + lease,
                    "account": account,
                    "actions": _actions(actions),
                },
            ).fetchall()
            records = sorted((Record(*row) for row in rows), key=lambda r: r.id)
            log_events(db, [(r.id, now, "claimed", claimed_detail(r.attempts, instance)) for r in records])
            return records

        return self.db.transaction(step) if limit > 0 else []

    def confirm_send(self, claim: Claim, evidence: str | None = None, read_slot=None) -> bool:
        no_slot(read_slot)

        # Durable: once this says yes the request may leave, and a crash must not forget that it may have.
        def step(db):
            return db.execute(
                "UPDATE alerts SET sent_at = :now, evidence = :evidence "
                f"WHERE {CLAIMED} AND lease_until > :now AND expires_at >= :now",
                {"now": self.db.now(), "evidence": evidence, **fence(claim)},
            ).rowcount

        return self.db.transaction(step) == 1

    def unclaim(self, claims: list[Claim]) -> None:
        def step(db):
            undone = [
                claim.alert_id for claim in claims if db.execute(f"{UNCLAIM} WHERE {CLAIMED}", fence(claim)).rowcount
            ]
            now = self.db.now()
            log_events(db, [(i, now, "unclaimed", UNCLAIMED_DETAIL) for i in undone])

        self.db.transaction(step)
