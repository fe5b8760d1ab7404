"""The journal's contract: records, states, errors and the interface every backend implements.

Every valid alert is written here before anything is sent, and its state follows it:
queued -> sending -> ok | rejected | unknown | failed, queued -> expired, and dry_run for
alerts that were never meant to leave; sending -> queued (a retry, or a claim that lapsed
before its request left) and sending -> expired (such a claim, too old to send again). The
queue itself lives here (``claim_due``), so several instances on one database share it; an
alert is claimed by exactly one instance. Each alert names the OKX account that sends it, and
the queue can be taken one account at a time (``claim_due(account=...)``), so a burst to one
account never holds up another's; duplicates, the daily cap and each bot's order are kept per
bot, and a bot belongs to one account.

Backends: ``sqlite.py`` (one process; the default, no setup) and ``postgres.py`` (any
number of instances on one database). ``open_journal`` picks one from ``DATABASE_URL``.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from ..okx import plain_decimal

FINAL_STATES = ("ok", "rejected", "unknown", "failed", "expired", "dry_run")
STATES = ("queued", "sending") + FINAL_STATES
# States whose amount counts against the daily cap: sent, about to be, or maybe executed.
CAP_STATES = ("queued", "sending", "ok", "unknown")
INTERRUPTED_DETAIL = "the instance sending it stopped while it was being sent; check the bot on OKX"
NEVER_SENT_DETAIL = "the instance that claimed it lost its claim before sending; back in the queue"
NEVER_SENT_EXPIRED_DETAIL = "the instance that claimed it lost its claim before sending; too old to send again"
# An alert waits while an earlier alert for the same bot is being sent, or queued inside its lag
# (a retry waiting for its time): margin changes do not commute, so one bot's alerts go in order.


class JournalUnavailable(Exception):
    """The journal cannot be read or written; nothing may be sent (503)."""


class JournalInUse(JournalUnavailable):
    """Another process already sends from this journal, and the backend serves one only."""


class DailyCapExceeded(Exception):
    """The alert would take its bot and direction over the 24-hour cap (422)."""

    def __init__(self, cap: Decimal, used: Decimal):
        remaining = max(cap - used, Decimal(0))
        super().__init__(
            f"would exceed MAX_AMOUNT_PER_DAY ({cap}) for this bot and direction; "
            f"{plain_decimal(remaining)} remains in the last 24 h"
        )
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

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def request(self) -> dict:
        return json.loads(self.request_body)

    def to_json(self) -> dict:
        """The record for operators, times in ISO 8601 UTC: no secret is ever stored, so all of it may be shown."""
        out = dataclasses.asdict(self)
        out.pop("dedup_key")
        out.pop("not_before")
        out.pop("lease_until")
        out["sent_at"] = iso_time(out["sent_at"])
        out["request"] = json.loads(out.pop("request_body"))
        out["evidence"] = None if self.evidence is None else json.loads(self.evidence)
        for name in ("received_at", "expires_at", "first_sent_at", "finished_at"):
            out[name] = iso_time(out[name])
        return out


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


class ActionRefused(Exception):
    """An operator's action that the alert's state does not allow (409)."""


def claimed_detail(attempt: int, instance: str) -> str:
    return f"attempt {attempt}, claimed by {instance}"


def answer_detail(state: str, okx_code: str | None, okx_msg: str | None, detail: str | None) -> str:
    okx = f"OKX {okx_code}{': ' + okx_msg if okx_msg else ''}" if okx_code or okx_msg else "no answer from OKX"
    return f"{state}: {okx}" + (f"; {detail}" if detail else "")


def iso_time(epoch: float | None) -> str | None:
    """2026-11-24T12:00:00.123Z, or None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Journal(abc.ABC):
    """What the web and delivery layers may ask of storage, whatever the engine.

    Times are epoch seconds from ``now()``: the database's clock where instances share one."""

    shared: bool = False  # True when several processes may send from it at once
    poll_interval: float = 1.0  # how often a dispatcher looks for work others may have queued

    # -- alerts ---------------------------------------------------------------------------

    @abc.abstractmethod
    def add(
        self,
        *,
        dedup_key: str,
        dedup_since: float,
        algo_id: str,
        action: str,
        amount: str,
        request_body: str,
        expires_at: float,
        state: str = "queued",
        secret_name: str | None = None,
        daily_cap: Decimal | None = None,
        trader_id: str | None = None,
        now: float | None = None,
        cap_states: tuple[str, ...] = CAP_STATES,
        account: str = "default",
    ) -> tuple[Record, bool]:
        """Insert a new alert unless one with the same key was journaled since ``dedup_since``
        (alerts that ended ``failed`` were never executed and do not count), or unless it
        would take its bot and direction over ``daily_cap`` in the last 24 h
        (``DailyCapExceeded``). Atomic against every other writer. Returns (record, created)
        once the insert is durable; ``record`` is the earlier alert when not created. The cap
        sums alerts in ``cap_states`` (dry-run adds its own alerts, so a cap can be tried).
        ``account`` is stored with the alert; duplicates and the cap stay keyed by the dedup key and
        the bot alone (an OKX algoId belongs to one account)."""

    @abc.abstractmethod
    def get(self, alert_id: int) -> Record | None: ...

    @abc.abstractmethod
    def recent(
        self,
        limit: int = 50,
        state: str | None = None,
        trader_id: str | None = None,
        algo_id: str | None = None,
        account: str | None = None,
    ) -> list[Record]:
        """Newest first, optionally one state, one trader id, one bot and/or one account."""

    @abc.abstractmethod
    def count_due(
        self,
        now: float | None = None,
        before_id: int | None = None,
        in_turn: bool = True,
        account: str | None = None,
    ) -> int:
        """Queued alerts whose time has come (``not_before`` passed, not yet expired) and, with
        ``in_turn``, no other alert for their bot in the way (see ``claim_due``); or only those
        ahead of alert ``before_id``. ``account``: None counts every account's, a name only that
        account's."""

    @abc.abstractmethod
    def next_due_at(self) -> float | None:
        """When the earliest queued alert that nothing else holds up may go; None when every queued
        alert waits behind one being sent (its outcome wakes the dispatcher) or none is queued."""

    @abc.abstractmethod
    def claim_due(
        self, instance: str, limit: int, now: float, lease: float = 30.0, account: str | None = None
    ) -> list[Record]:
        """queued -> sending for up to ``limit`` due alerts, oldest first, marked claimed by
        ``instance`` with a lease of ``lease`` seconds (the journal's clock), in one durable
        transaction before any is sent. No two instances ever claim the same alert, and an alert
        is never claimed while another for its bot is sending or an earlier one is queued inside
        its lag. ``account``: None claims any account's alerts (as before accounts existed), a
        name only that account's, leaving every other account's queued; claims for different
        accounts do not wait for each other (beyond the moment a claim for any account takes)."""

    @abc.abstractmethod
    def confirm_send(self, claim: Claim, evidence: str | None = None) -> bool:
        """Immediately before the request goes on the wire: True, and ``sent_at`` recorded
        durably, only while the claim is current (same instance and attempt, still sending,
        lease not lapsed, alert not past ``expires_at``, all by the journal's clock). The same
        single write stores ``evidence`` (the bot's snapshot taken before this attempt, as JSON
        text; NULL when None): no round trip more before the send."""

    @abc.abstractmethod
    def expire_overdue(self, now: float) -> list[Record]:
        """queued alerts past ``expires_at`` -> expired (never sent late); returns them."""

    @abc.abstractmethod
    def unclaim(self, claims: list[Claim]) -> None:
        """sending -> queued for claims whose request never left, while each is still current (same
        instance and attempt): as if never claimed. A claim taken over since changes nothing."""

    @abc.abstractmethod
    def requeue(
        self,
        alert_id: int,
        okx_code: str | None,
        okx_msg: str | None,
        detail: str,
        not_before: float,
        claim: Claim | None = None,
    ) -> bool:
        """sending -> queued after OKX certainly did not act; due again at ``not_before``. With
        ``claim``, only while the alert is still sending on that claim (same instance and attempt;
        a lapsed lease that nobody took over yet still counts); False when it was fenced out."""

    @abc.abstractmethod
    def finish(
        self,
        alert_id: int,
        state: str,
        *,
        okx_code: str | None = None,
        okx_msg: str | None = None,
        detail: str | None = None,
        latency_ms: float | None = None,
        now: float | None = None,
        claim: Claim | None = None,
    ) -> Record | None:
        """The alert's final state. With ``claim``, only while the alert is still sending on that
        claim (None when it was taken over: the state recovery set stands)."""

    @abc.abstractmethod
    def record_evidence(self, alert_id: int, evidence: str, proposal: str, note: str) -> Record | None:
        """OKX's records on an ``unknown`` alert and the verdict proposed from them, with a timeline
        entry of kind 'evidence' (detail ``note``), in one transaction. Only once, and only while the
        alert is unknown: None when it is not, or already has a proposal (another instance got there
        first; its evidence stands)."""

    @abc.abstractmethod
    def awaiting_evidence(self, since: float, limit: int = 20) -> list[Record]:
        """``unknown`` alerts without a proposal that finished at or after ``since``, oldest first."""

    @abc.abstractmethod
    def note(self, alert_id: int, kind: str, detail: str) -> None:
        """A timeline entry that changes nothing else (a late answer after a take-over, say)."""

    @abc.abstractmethod
    def prune(self, before: float) -> int:
        """Delete finished alerts received before ``before`` and their timelines; queued and sending ones stay."""

    # -- what operators see and do -----------------------------------------------------------

    @abc.abstractmethod
    def events(self, alert_id: int) -> list[Event]:
        """The alert's timeline after it was received, oldest first (claims, answers, outcome, actions)."""

    @abc.abstractmethod
    def resolve(self, alert_id: int, resolution: str, by: str) -> Record:
        """An operator's finding on an ``unknown`` alert (one of RESOLUTIONS), once; ``ActionRefused`` otherwise."""

    @abc.abstractmethod
    def later_alerts(self, alert_id: int, dedup_key: str) -> list[Record]:
        """Alerts journaled after ``alert_id`` with this dedup key, oldest first: copies of it, and resends."""

    @abc.abstractmethod
    def link_resend(self, original_id: int, resend_id: int, by: str) -> None:
        """Record that ``resend_id`` is an operator's resend of ``original_id``, on both timelines."""

    @abc.abstractmethod
    def hourly_counts(self, since: float) -> list[tuple[int, str, int]]:
        """(hour as epoch seconds, state, alerts received in it) since ``since``."""

    @abc.abstractmethod
    def add_refusals(self, refusals: list[Refusal]) -> None:
        """Store refused requests (not durable: losing the last few in a crash is acceptable)."""

    @abc.abstractmethod
    def refusals(self, limit: int = 50) -> list[Refusal]:
        """Newest first."""

    @abc.abstractmethod
    def refusal_rows(self) -> int:
        """How many refusal rows are stored (each may stand for several requests)."""

    @abc.abstractmethod
    def prune_refusals(self, before: float) -> int: ...

    @abc.abstractmethod
    def start_session(self, sid: str, client: str | None) -> None:
        """An operator logged in; sessions that ended or began more than a day ago are dropped."""

    @abc.abstractmethod
    def end_session(self, sid: str) -> None:
        """An operator logged out: the session's cookie is worthless from now on, wherever it is."""

    @abc.abstractmethod
    def session_active(self, sid: str, max_age: float) -> bool:
        """The session was started less than ``max_age`` seconds ago and has not ended."""

    # -- instances ------------------------------------------------------------------------

    @abc.abstractmethod
    def now(self) -> float:
        """The journal's clock."""

    @abc.abstractmethod
    def register(self, instance: str) -> None:
        """This instance will send from the journal (``JournalInUse`` if the backend cannot share)."""

    @abc.abstractmethod
    def heartbeat(self, instance: str) -> None: ...

    @abc.abstractmethod
    def deregister(self, instance: str) -> None:
        """A clean stop: this instance claims nothing more; its queued alerts are others' to send."""

    @abc.abstractmethod
    def recover(self, instance: str, dead_after: float, lease: float = 30.0) -> list[Record]:
        """Alerts left ``sending`` whose claim lapsed: its lease ran out by the journal's clock (or,
        on SQLite, its claimant is another process, which the sender lock says is gone; or, for a
        claim without a lease, made by an earlier release, its claimant stopped heartbeating).
        ``unknown`` when the request may have left (``sent_at`` set, or no lease to tell), never
        resent; queued again when it certainly did not (``expired`` if too old). Returns the
        changed records. A current claim is never touched. ``lease``: the longest a dead
        instance's request may still be under way (its rate slot counts until then)."""

    # -- small shared state -----------------------------------------------------------------

    def stored_secret(self, name: str, make: Callable[[], str]) -> str | None:
        """A generated secret kept in the journal, made once by whichever instance comes first;
        None where the backend keeps none (SQLite keeps it in a file beside the journal)."""
        return None

    def pacer(self, account: str, limit: int, window: float):
        """OKX's rate budget shared by every instance on this journal (a ``pacing.Pacer``), or
        None where one process sends and keeps it in memory."""
        return None

    def lockout_store(self):
        """Wrong-secret counts shared by every instance, or None: kept in process memory."""
        return None

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...


def open_journal(url: str) -> Journal:
    """The backend for ``DATABASE_URL``: sqlite:///PATH, or postgres(ql)://..."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteJournal

        return SqliteJournal(url[len("sqlite:///") :])
    if url.startswith(("postgres://", "postgresql://")):
        from .postgres import PostgresJournal

        return PostgresJournal(url)
    raise JournalUnavailable("DATABASE_URL must be sqlite:///PATH, postgres://… or postgresql://…")
