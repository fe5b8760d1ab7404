"""What both engines say in the same SQL, written once: statements that differ only in how a
parameter is marked (``Database.placeholder``) or in the engine's expression for now, the rule of
each bot's turn, and the store methods built on them. An engine's store of a job extends the
shared one and adds what its engine does its own way."""

from __future__ import annotations

import time

from webhook_app.journal.contracts import (
    Activity,
    AlertLog,
    AlertRecords,
    Database,
    NotificationLog,
    QueueClaims,
    RefusalStore,
)
from webhook_app.journal.records import (
    COLUMNS,
    REFUSAL_COLUMNS,
    Event,
    JournalUnavailable,
    PacedClaim,
    Record,
    Refusal,
    refusal_from_row,
)

ALERT_COLUMNS = ", ".join(COLUMNS)
SELECT_ALERTS = f"SELECT {ALERT_COLUMNS} FROM alerts"
RETURNING_ALERTS = f"RETURNING {ALERT_COLUMNS}"

# A claim given back unsent: as if never made (its attempt uncounted, its first send forgotten).
UNCLAIM = (
    "UPDATE alerts SET state = 'queued', attempts = attempts - 1, claimed_by = NULL, lease_until = NULL, "
    "first_sent_at = CASE WHEN attempts = 1 THEN NULL ELSE first_sent_at END"
)


def bots_turn(now: str) -> str:
    """Its bot's turn, for the row ``alerts`` at ``now`` (an SQL expression): no other alert for the
    bot is being sent, and no earlier one is queued inside its lag. (The PostgreSQL claim functions
    of the shipped migrations spell it in their own text, which never changes.)"""
    return (
        "NOT EXISTS (SELECT 1 FROM alerts b WHERE b.algo_id = alerts.algo_id AND b.id <> alerts.id "
        "AND b.state IN ('queued', 'sending') "
        f"AND (b.state = 'sending' OR (b.id < alerts.id AND b.expires_at >= {now})))"
    )


# Settling claims that no sender will finish (a lapsed lease, a claim whose answer was lost), in the
# order they run: ``where`` picks the claims, ``now`` is the engine's clock, ``detail`` a parameter.
def unknown_if_it_may_have_left(where: str, now: str, detail: str) -> str:
    """``unknown`` where the request may have left: ``sent_at`` set, or no lease to tell (an older
    release's claim). Never resent."""
    return (
        f"UPDATE alerts SET state = 'unknown', finished_at = {now}, detail = {detail}, lease_until = NULL "
        f"WHERE {where} AND (sent_at IS NOT NULL OR lease_until IS NULL) {RETURNING_ALERTS}"
    )


# Each statement judges "never left" itself, never by running after the one above: under READ
# COMMITTED a confirmation that judged its lease current may commit between them (held up behind a
# lock), and an UPDATE waiting on the row's lock re-reads the committed row. A row that the first
# statement missed and these now skip stays "sending" for the next look, which finds it unknown.
NEVER_LEFT = "sent_at IS NULL AND lease_until IS NOT NULL"


def expired_unsent(where: str, now: str, detail: str) -> str:
    """``expired`` when it certainly never left and its lag is over."""
    return (
        f"UPDATE alerts SET state = 'expired', finished_at = {now}, detail = {detail}, lease_until = NULL "
        f"WHERE {where} AND {NEVER_LEFT} AND expires_at < {now} {RETURNING_ALERTS}"
    )


def queued_again(where: str, detail: str) -> str:
    """Queued again when it certainly never left and its lag is not over."""
    return (
        f"UPDATE alerts SET state = 'queued', claimed_by = NULL, lease_until = NULL, detail = {detail} "
        f"WHERE {where} AND {NEVER_LEFT} {RETURNING_ALERTS}"
    )


class Store:
    """A job's store on one engine's database."""

    def __init__(self, db: Database):
        self.db = db

    def now(self) -> float:
        return self.db.now()


class SharedRecords(Store, AlertRecords):
    """Reading journaled alerts: the same statements on both engines."""

    def get(self, alert_id: int) -> Record | None:
        if not 0 <= alert_id < 2**63:  # beyond a 64-bit id: no such alert, not an error
            return None
        row = self.db.one(f"{SELECT_ALERTS} WHERE id = {self.db.placeholder}", (alert_id,))
        return Record(*row) if row else None

    def recent(self, limit=50, state=None, trader_id=None, algo_id=None, account=None) -> list[Record]:
        filters = [
            (c, v)
            for c, v in (("state", state), ("trader_id", trader_id), ("algo_id", algo_id), ("account", account))
            if v is not None
        ]
        p = self.db.placeholder
        where = " AND ".join(f"{column} = {p}" for column, _ in filters)
        rows = self.db.all(
            f"{SELECT_ALERTS} {'WHERE ' + where if where else ''} ORDER BY id DESC LIMIT {p}",
            (*[value for _, value in filters], limit),
        )
        return [Record(*row) for row in rows]


class SharedAlertLog(SharedRecords, AlertLog):
    def later_alerts(self, alert_id: int, dedup_key: str) -> list[Record]:
        p = self.db.placeholder
        rows = self.db.all(f"{SELECT_ALERTS} WHERE dedup_key = {p} AND id > {p} ORDER BY id", (dedup_key, alert_id))
        return [Record(*row) for row in rows]


class SharedActivity(SharedRecords, Activity):
    # The engine's test that an alert's evidence keeps a second read (its JSON has a "recheck" key).
    keeps_second_read: str

    def events(self, alert_id: int) -> list[Event]:
        rows = self.db.all(
            f"SELECT alert_id, at, kind, detail FROM alert_events WHERE alert_id = {self.db.placeholder} ORDER BY id",
            (alert_id,),
        )
        return [Event(*row) for row in rows]

    def awaiting_evidence(self, since: float, limit: int = 20) -> list[Record]:
        p = self.db.placeholder
        rows = self.db.all(
            f"{SELECT_ALERTS} WHERE state = 'unknown' AND proposal IS NULL "
            f"AND finished_at >= {p} ORDER BY finished_at, id LIMIT {p}",
            (since, limit),
        )
        return [Record(*row) for row in rows]

    def awaiting_second_read(self, since: float, before: float, limit: int = 20) -> list[Record]:
        p = self.db.placeholder
        rows = self.db.all(
            f"{SELECT_ALERTS} WHERE state = 'unknown' AND proposal = 'not_executed' "
            f"AND NOT {self.keeps_second_read} AND finished_at >= {p} AND finished_at <= {p} "
            f"ORDER BY finished_at, id LIMIT {p}",
            (since, before, limit),
        )
        return [Record(*row) for row in rows]


class SharedNotifications(Store, NotificationLog):
    """Which alerts were told: the same statements on both engines."""

    def untold(self, states: tuple[str, ...], since: float, before: float, limit: int = 50) -> list[Record]:
        if not states:
            return []
        p = self.db.placeholder
        rows = self.db.all(
            f"{SELECT_ALERTS} WHERE state IN ({', '.join([p] * len(states))}) AND told_at IS NULL "
            f"AND (state <> 'unknown' OR proposal IS NOT NULL) AND finished_at >= {p} AND finished_at <= {p} "
            f"ORDER BY finished_at, id LIMIT {p}",
            (*states, since, before, limit),
        )
        return [Record(*row) for row in rows]

    def told(self, alert_ids: list[int]) -> None:
        if not alert_ids:
            return
        p = self.db.placeholder
        self.db.statement(
            f"UPDATE alerts SET told_at = {p} WHERE id IN ({', '.join([p] * len(alert_ids))}) AND told_at IS NULL",
            (self.db.now(), *alert_ids),
            durable=False,
        )


class ClaimSteps(Store, QueueClaims):
    """``claim_paced`` and ``reply_outlook`` as separate steps, for a rate ledger that the journal's
    database does not hold (the process's memory)."""

    def claim_paced(
        self, instance, pacer, wanted, lease, account, now=None, read_pacer=None, actions=None
    ) -> PacedClaim:
        now = self.db.now() if now is None else now

        def next_in() -> float | None:  # asked only when nothing due is left unclaimed: the dispatcher sleeps
            upcoming = self.next_due_at()
            return upcoming - now if upcoming is not None and upcoming > now else None

        due = self.count_due(now, account=account, actions=actions)
        if not due:
            return PacedClaim(0, 0, [], next_in=next_in())
        slots = pacer.acquire(instance, min(due, wanted))
        records: list[Record] = []
        try:
            if slots:
                records = self.claim_due(instance, len(slots), now, lease, account=account, actions=actions)
        finally:  # whatever happened, slots without an alert were never used
            unused = slots[len(records) :]
            if unused:
                try:
                    pacer.cancel(unused)
                except JournalUnavailable:
                    pass  # they only over-count the budget, until the ledger ends them (safe)
        claims = list(zip(records, slots, strict=False))
        return PacedClaim(due, len(slots), claims, next_in=next_in() if len(records) >= due else None)

    def reply_outlook(self, record: Record, pacer, actions=None) -> tuple[Record, int, int]:
        row = self.db.one(f"{SELECT_ALERTS} WHERE id = {self.db.placeholder}", (record.id,))
        current = Record(*row) if row else record
        if current.state != "queued":
            return current, 0, 0
        ahead = self.count_due(before_id=record.id, in_turn=False, account=current.account, actions=actions)
        return current, ahead, pacer.busy()


class SharedRefusals(Store, RefusalStore):
    """The refusal log's reads and pruning: the same statements on both engines."""

    def refusals(self, limit: int = 50) -> list[Refusal]:
        rows = self.db.all(
            f"SELECT {', '.join(REFUSAL_COLUMNS)} FROM refused ORDER BY id DESC LIMIT {self.db.placeholder}", (limit,)
        )
        return [refusal_from_row(row) for row in rows]

    def refusal_rows(self) -> int:
        return self.db.one("SELECT count(*) FROM refused")[0]

    def prune_refusals(self, before: float) -> int:
        return self.db.statement(f"DELETE FROM refused WHERE at < {self.db.placeholder}", (before,))


class PrunedLockouts:
    """A lockout store's pruning, the same on both engines: after a recorded failure, rows that
    neither lock out nor count any more go, at most once every ``prune_every`` seconds (this
    host's clock), so a spray of addresses does not grow the table for ever. The engine's
    store gives ``db`` and ``prune(window)``."""

    prune_every = 60.0  # seconds

    def __init__(self, db):
        self.db = db
        self._pruned_at: float | None = None  # time.monotonic() of the last pruning

    def prune(self, window: float) -> int:
        raise NotImplementedError

    def prune_now_and_then(self, window: float) -> None:
        started = time.monotonic()
        if self._pruned_at is not None and started - self._pruned_at < self.prune_every:
            return
        self._pruned_at = started
        try:
            self.prune(window)
        except JournalUnavailable:
            pass  # the failure is counted; pruning waits for the next minute
