"""What the journal stores and says, whatever the engine: alert records and their states,
timeline events, refused requests, claims, the journal's errors, and every detail text an
engine writes (defined once here; SQL that needs one takes it as a parameter, or is generated
from the constant)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal

from webhook_app.errors import Refused, not_sent
from webhook_app.journal.orders import alert_fields, summary
from webhook_app.okx.records import plain_decimal

FINAL_STATES = ("ok", "rejected", "unknown", "failed", "expired", "dry_run")
STATES = ("queued", "sending") + FINAL_STATES
# States whose amount counts against the daily cap: sent, about to be, or maybe executed.
CAP_STATES = ("queued", "sending", "ok", "unknown")
INTERRUPTED_DETAIL = "the instance sending it stopped while it was being sent; check the bot on OKX"
NEVER_SENT_DETAIL = "the instance that claimed it lost its claim before sending; back in the queue"
NEVER_SENT_EXPIRED_DETAIL = "the instance that claimed it lost its claim before sending; too old to send again"
EXPIRED_DETAIL = "too old to send: it waited past its lag; not sent"
UNCLAIMED_DETAIL = "back in the queue: the send never started"
# An alert whose account no instance has any more ({account} is replaced by its name, in SQL too).
UNROUTED_DETAIL = (
    "not sent: account {account} is not configured (OKX_ACCOUNTS) on any instance sending from this journal"
)
NOT_MARKABLE = "only an unknown alert without a finding can be marked"
# A claim's timeline entry, as PL/pgSQL's format() and Python's % both read it: PostgreSQL's shipped
# journal_claim (migrations 4 and 6) is generated from it, so changing it takes a new migration.
CLAIMED_DETAIL_FORMAT = "attempt %s, claimed by %s"
# ...and of a claim made as the alert was received, confirmed in the same write (sent at once).
CLAIMED_AT_ONCE_FORMAT = "attempt %s, claimed by %s at receipt and sent at once"
# An alert waits while an earlier alert for the same bot is being sent, or queued inside its lag
# (a retry waiting for its time): margin changes do not commute, so one bot's alerts go in order.


class JournalUnavailable(Exception):
    """The journal cannot be read or written; nothing may be sent (503)."""


class JournalInUse(JournalUnavailable):
    """Another process already sends from this journal, and the backend serves one only."""


class NoConnectionRoom(JournalUnavailable):
    """The database refused a connection for want of room: the connection budget's problem
    (DATABASE_MAX_CONNECTIONS), named with its numbers, not the URL's."""


class DailyCapExceeded(Refused):
    """The alert would take its bot and direction over the 24-hour cap (422)."""

    status, kind = 422, "over_daily_cap"

    def __init__(self, cap: Decimal, used: Decimal):
        remaining = max(cap - used, Decimal(0))
        problem = (
            f"would exceed MAX_AMOUNT_PER_DAY ({cap}) for this bot and direction; "
            f"{plain_decimal(remaining)} remains in the last 24 h"
        )
        super().__init__(problem, "amount", message=not_sent(problem), remaining=plain_decimal(remaining))
        self.remaining = remaining


@dataclasses.dataclass(frozen=True)
class Record:
    id: int
    received_at: float
    dedup_key: str
    algo_id: str
    action: str
    amount: str
    request_body: str
    expires_at: float
    state: str
    attempts: int = 0
    okx_code: str | None = None
    okx_msg: str | None = None
    detail: str | None = None
    secret_name: str | None = None
    first_sent_at: float | None = None
    finished_at: float | None = None
    latency_ms: float | None = None
    trader_id: str | None = None  # the alert's own "id" field, as the trader sent it
    claimed_by: str | None = None  # the instance that sent (or is sending) it
    not_before: float = 0.0  # a retry waits until then
    resolution: str | None = None  # an operator's finding on an unknown alert: executed | not_executed
    resent_from: int | None = None  # this alert is an operator's resend of that one
    resent_as: int | None = None  # this alert was sent again as that one
    lease_until: float | None = None  # the claim of the current attempt lapses then (journal clock)
    sent_at: float | None = None  # the current attempt was cleared to go on the wire then (journal clock)
    # What OKX's own records say about an unknown outcome: JSON text, opaque to the journal (the bot's
    # snapshot from before the send, then all of it once read), and the verdict proposed from it
    # (one of evidence.VERDICTS; None until OKX's records were read).
    evidence: str | None = None
    proposal: str | None = None
    # The OKX account (config ``OkxAccount.name``) whose key sends it; alerts journaled before
    # accounts existed, or by a release that does not know them, are "default".
    account: str = "default"
    # The short name of the OKX endpoint its request goes to (``okx.actions.endpoint_name``): alerts
    # journaled before the other actions, or by a release that does not know them, are margin calls.
    endpoint: str = "margin-balance"

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def request(self) -> dict:
        return json.loads(self.request_body)

    @property
    def summary(self) -> str:
        """What it asks of its bot, in one line ("add 10", "buy 2 contracts of BTC-USDT-SWAP at market")."""
        return summary(self.action, self.amount, self.request_body)

    @property
    def evidence_data(self) -> dict | None:
        """``evidence`` parsed: the bot before the send and, once read again, OKX's records and the proposal."""
        return None if self.evidence is None else json.loads(self.evidence)

    def to_json(self) -> dict:
        """The record for operators, times in ISO 8601 UTC: no secret is ever stored, so all of it may be shown."""
        out = dataclasses.asdict(self)
        out.pop("dedup_key")
        out.pop("not_before")
        out.pop("lease_until")
        out["sent_at"] = iso_time(out["sent_at"])
        out["request"] = json.loads(out.pop("request_body"))
        out["order"] = {"summary": self.summary, **_fields_or_none(self.action, out["request"])}
        out["evidence"] = self.evidence_data
        for name in ("received_at", "expires_at", "first_sent_at", "finished_at"):
            out[name] = iso_time(out[name])
        return out


def _fields_or_none(action: str, body) -> dict:
    try:
        return alert_fields(action, body)
    except (KeyError, TypeError, IndexError):  # a body this release does not know: its request says it all
        return {}


COLUMNS = tuple(f.name for f in dataclasses.fields(Record))
RESOLUTIONS = ("executed", "not_executed")


@dataclasses.dataclass(frozen=True)
class Event:
    """One step of an alert's timeline after it was received: claimed, an answer, its outcome, an action."""

    alert_id: int
    at: float
    kind: str
    detail: str

    def to_json(self) -> dict:
        return {"at": iso_time(self.at), "kind": self.kind, "detail": self.detail}


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A request to /webhook that left no alert: never the body, never a secret. ``count`` > 1
    stands for requests beyond the per-minute budget that were counted, not stored one by one."""

    at: float
    status: int
    kind: str
    message: str
    client: str | None = None
    errors: tuple = ()  # ({"field": ..., "message": ...}, ...)
    algo_id: str | None = None
    trader_id: str | None = None
    count: int = 1
    id: int | None = None

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["at"] = iso_time(self.at)
        out["errors"] = list(self.errors)
        return out


REFUSAL_COLUMNS = ("at", "status", "kind", "message", "client", "errors", "algo_id", "trader_id", "count", "id")


def refusal_row(refusal: Refusal) -> tuple:
    return (
        refusal.at,
        refusal.status,
        refusal.kind,
        refusal.message,
        refusal.client,
        json.dumps(list(refusal.errors)),
        refusal.algo_id,
        refusal.trader_id,
        refusal.count,
    )


def refusal_from_row(row) -> Refusal:
    values = dict(zip(REFUSAL_COLUMNS, row, strict=True))
    values["errors"] = tuple(json.loads(values["errors"] or "[]"))
    return Refusal(**values)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One attempt's claim on an alert: the fence every write after a send must pass. Another
    instance's take-over, or a later attempt, changes the alert's claim and fences this one out."""

    alert_id: int
    instance: str
    attempt: int

    @classmethod
    def of(cls, record: Record) -> Claim:
        return cls(record.id, record.claimed_by, record.attempts)


@dataclasses.dataclass(frozen=True)
class PacedClaim:
    """What one look at an account's queue found and took (``QueueClaims.claim_paced``)."""

    due: int  # its alerts due now in their bot's turn
    granted: int  # rate slots the budget gave for them
    claims: list[tuple[Record, object]]  # each alert claimed, with the slot its request goes on
    queued: int | None = None  # all its queued alerts, due or not, claimed ones included; None: not counted
    # Seconds until the next one in its bot's turn is due; None: none waits, or it was not asked (some due
    # alert is left unclaimed, so the dispatcher looks again soon anyway).
    next_in: float | None = None
    read_slots: dict[int, object] = dataclasses.field(default_factory=dict)  # alert id -> its bot read's slot


@dataclasses.dataclass(frozen=True)
class SendNow:
    """What a claim at receipt needs (``AlertLog.add_claimed``): the claimant and its lease, and the
    budgets its request and its bot read go on (``PostgresPacer``s; ``reads`` None: no read)."""

    instance: str
    lease: float
    pacer: object
    reads: object | None
    actions: tuple[str, ...]  # its endpoint's actions: what is "ahead of it in its queue"
    evidence: str | None = None  # kept with the confirmation (a sub-order's expTime)
    receipt: str | None = None  # names the request's claim, should the write's reply be lost


@dataclasses.dataclass(frozen=True)
class ClaimedAtOnce:
    """A claim made and confirmed as the alert was journaled: its slots, held by the caller from here."""

    slot: object
    read_slot: object | None


class ActionRefused(Refused):
    """An operator's action that the alert's state does not allow (409)."""

    status, kind = 409, "action_refused"


def claimed_detail(attempt: int, instance: str) -> str:
    return CLAIMED_DETAIL_FORMAT % (attempt, instance)


def retry_detail(okx_code: str | None, okx_msg: str | None, detail: str, not_before: float) -> str:
    return f"{answer_detail('not executed', okx_code, okx_msg, detail)}; due again {iso_time(not_before)}"


def marked_detail(resolution: str, by: str) -> str:
    return f"marked {resolution.replace('_', ' ')} by {by}"


def resend_details(original_id: int, resend_id: int, by: str) -> tuple[str, str]:
    """The original's timeline entry, and the resend's."""
    return f"sent again as alert {resend_id} by {by}", f"a resend of alert {original_id} by {by}"


def answer_detail(state: str, okx_code: str | None, okx_msg: str | None, detail: str | None) -> str:
    okx = f"OKX {okx_code}{': ' + okx_msg if okx_msg else ''}" if okx_code or okx_msg else "no answer from OKX"
    return f"{state}: {okx}" + (f"; {detail}" if detail else "")


def iso_time(epoch: float | None) -> str | None:
    """2026-11-24T12:00:00.123Z, or None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
