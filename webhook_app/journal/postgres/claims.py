"""The queue's claims on PostgreSQL: due alerts taken with FOR UPDATE SKIP LOCKED (one claimant
each), fenced leases on the database's clock (``journal_claim``, ``confirm_send``). The rate ledger
is in the same database (``instances.PostgresPacer``): a claim takes its slots in the same
statement (``claim_paced``)."""

from __future__ import annotations

from webhook_app.journal.postgres.instances import BUSY_SLOTS, PostgresPacer
from webhook_app.journal.postgres.sql import CLAIMED, CLOSE_SLOTS, NOW, slot_ids
from webhook_app.journal.records import COLUMNS, UNCLAIMED_DETAIL, Claim, PacedClaim, Record
from webhook_app.journal.shared import ALERT_COLUMNS, UNCLAIM, ClaimSteps, bots_turn

_CLAIM_PACED = (
    f"SELECT due, queued, next_in, granted, slot, read_slot, {', '.join(f'(alert).{c}' for c in COLUMNS)} "
    "FROM journal_claim_paced(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::text[])"
)
# Every statement below that judges a bot's turn reads the clock once, as ``clock.t``.
_BOTS_TURN = bots_turn("clock.t")
_OF_ACCOUNT = "(%s::text IS NULL OR account = %s)"
_OF_ACTIONS = "(%s::text[] IS NULL OR action = ANY(%s::text[]))"


def _array(actions: tuple[str, ...] | None) -> list[str] | None:
    return None if actions is None else list(actions)


class PostgresClaims(ClaimSteps):
    def count_due(
        self,
        now: float | None = None,
        before_id: int | None = None,
        in_turn: bool = True,
        account: str | None = None,
        actions: tuple[str, ...] | None = None,
    ) -> int:
        return self.db.one(
            f"SELECT count(*) FROM alerts, (SELECT COALESCE(%s, {NOW}) AS t) clock WHERE state = 'queued' "
            f"AND not_before <= clock.t AND expires_at >= clock.t AND id < %s AND {_OF_ACCOUNT} AND {_OF_ACTIONS} "
            f"{'AND ' + _BOTS_TURN if in_turn else ''}",
            (now, 2**63 - 1 if before_id is None else before_id, account, account, _array(actions), _array(actions)),
        )[0]

    def next_due_at(self) -> float | None:
        # Alerts waiting behind one that is being sent have no time of their own: its outcome wakes them.
        return self.db.one(
            f"SELECT min(not_before) FROM alerts, (SELECT {NOW} AS t) clock WHERE state = 'queued' "
            f"AND expires_at >= clock.t AND {_BOTS_TURN}"
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
        if limit <= 0:
            return []
        # journal_claim (migrations 6 and 11): the claim and its timeline entries, one statement, one round trip.
        rows = self.db.all(
            f"SELECT {ALERT_COLUMNS} FROM journal_claim(%s, %s, %s, %s, %s, %s::text[])",
            (instance, limit, now, lease, account, _array(actions)),
        )
        return sorted((Record(*row) for row in rows), key=lambda r: r.id)

    def claim_paced(
        self, instance, pacer, wanted, lease, account, now=None, read_pacer=None, actions=None
    ) -> PacedClaim:
        for ledger in (pacer, read_pacer):
            if isinstance(ledger, PostgresPacer) and ledger.db is not self.db:
                # Its ``shares_journal`` would have writes end its slots in the wrong database.
                raise ValueError("a PostgreSQL rate ledger is only used with the journal that made it")
        if not isinstance(pacer, PostgresPacer):
            return super().claim_paced(instance, pacer, wanted, lease, account, now, read_pacer, actions)
        reads = read_pacer if isinstance(read_pacer, PostgresPacer) else None
        # journal_claim_paced (migration 8): count, slots, claims, unused slots back and the bot reads'
        # slots, one round trip. Durable, as every claim: a claim a crash forgot would be made again
        # with the same instance and attempt, and a sender of the forgotten one, still waiting to
        # confirm, would pass the new claim's fence (two sends).
        params = (instance, wanted, now, lease, account, pacer.account, pacer.limit, pacer.window)
        params += (reads.account, reads.limit, reads.window) if reads else (None, None, None)
        params += (_array(actions),)
        rows = self.db.all(_CLAIM_PACED, params)
        due, queued, next_in, granted = rows[0][:4]
        claimed = [(Record(*row[6:]), row[4], row[5]) for row in rows if row[4] is not None]
        claimed.sort(key=lambda c: c[0].id)
        return PacedClaim(
            due,
            granted,
            [(record, slot) for record, slot, _ in claimed],
            queued=queued,
            next_in=next_in,
            read_slots={record.id: read for record, _, read in claimed if read is not None},
        )

    def reply_outlook(self, record: Record, pacer, actions=None) -> tuple[Record, int, int]:
        if not isinstance(pacer, PostgresPacer):
            return super().reply_outlook(record, pacer, actions)
        # The alert, what is ahead of it and the ledger's slots in use: one statement, one round trip.
        row = self.db.one(
            f"SELECT {', '.join('a.' + c for c in COLUMNS)}, "
            f"(SELECT count(*) FROM alerts q, (SELECT {NOW} AS t) clock WHERE a.state = 'queued' "
            "AND q.state = 'queued' AND q.not_before <= clock.t AND q.expires_at >= clock.t AND q.id < a.id "
            "AND q.account = a.account AND (%s::text[] IS NULL OR q.action = ANY(%s::text[]))), "
            f"({BUSY_SLOTS}) FROM alerts a WHERE a.id = %s",
            (_array(actions), _array(actions), pacer.account, pacer.window, record.id),
        )
        if row is None:
            return record, 0, 0
        current, ahead, busy = Record(*row[:-2]), row[-2], row[-1]
        return (current, ahead, busy) if current.state == "queued" else (current, 0, 0)

    def confirm_send(self, claim: Claim, evidence: str | None = None, read_slot=None) -> bool:
        # Durable: once this says yes the request may leave, and a crash must not forget that it may have.
        return bool(
            self.db.statement(
                f"WITH {CLOSE_SLOTS} UPDATE alerts SET sent_at = {NOW}, evidence = %s "
                f"WHERE {CLAIMED} AND lease_until > {NOW} AND expires_at >= {NOW}",
                (slot_ids(read_slot), evidence, claim.alert_id, claim.instance, claim.attempt),
            )
        )

    def unclaim(self, claims: list[Claim]) -> None:
        for claim in claims:
            self.db.statement(
                f"WITH undone AS ({UNCLAIM} WHERE {CLAIMED} RETURNING id) "
                f"INSERT INTO alert_events (alert_id, at, kind, detail) SELECT id, {NOW}, 'unclaimed', %s FROM undone",
                (claim.alert_id, claim.instance, claim.attempt, UNCLAIMED_DETAIL),
            )
