"""The journal's contracts, one per job, and the ``Journal`` that composes them.

Each engine implements every contract in a store of its own, built on the engine's one
database object (``Database``). A caller takes the contract of the job it asks for (the refusal
log a ``RefusalStore``, membership ``Instances``); ``Journal`` is all of them at once, forwarding
each method to the store that does the job: what the wiring opens and hands to each. Times are
epoch seconds from the engine's clock: the database's where instances share one."""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from decimal import Decimal

from webhook_app.journal.records import CAP_STATES, Claim, ClaimedAtOnce, Event, PacedClaim, Record, Refusal, SendNow


class Database(abc.ABC):
    """One engine's database: its connection (or pools), migrations and clock. Each store of the
    engine runs its statements through it: one statement by ``one``, ``all`` or ``statement``,
    several in one transaction by the engine's own ``transaction(step, ...)`` (whose options
    differ: SQLite chooses the write lock, PostgreSQL whether to BEGIN at all)."""

    placeholder: str  # how the engine's statements mark a positional parameter: "?" or "%s"

    @abc.abstractmethod
    def one(self, sql: str, params=()) -> tuple | None:
        """The first row of a read."""

    @abc.abstractmethod
    def all(self, sql: str, params=()) -> list[tuple]:
        """Every row of a read."""

    @abc.abstractmethod
    def statement(self, sql: str, params=(), durable: bool = True) -> int:
        """One write, committed (without waiting for the disk when not ``durable``); how many rows it changed."""

    @abc.abstractmethod
    def now(self) -> float:
        """The journal's clock."""

    found_version: int = 0  # the schema's version when this process opened it, before migrating

    def connection_warning(self) -> str | None:
        """Why the formation's connections cannot fit the server's limits, or None (SQLite: none)."""
        return None

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...


class JournalJob(abc.ABC):
    """What every job's contract answers besides its own methods: the journal's clock."""

    @abc.abstractmethod
    def now(self) -> float:
        """The journal's clock."""


class AlertRecords(JournalJob):
    """Journaled alerts as they are, and the finding that settles an ``unknown`` one: what the
    intake and the investigator both ask."""

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
    def resolve(self, alert_id: int, resolution: str, by: str) -> Record:
        """An operator's finding on an ``unknown`` alert (one of RESOLUTIONS), once; ``ActionRefused`` otherwise."""


class AlertLog(AlertRecords):
    """Where every valid alert is written before anything is sent, and what the intake asks after:
    its copies and resends; finished alerts pruned."""

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
        endpoint: str = "margin-balance",
    ) -> tuple[Record, bool]:
        """Insert a new alert unless one with the same key was journaled since ``dedup_since``
        (alerts that ended ``failed`` were never executed and do not count), or unless it
        would take its bot and direction over ``daily_cap`` in the last 24 h
        (``DailyCapExceeded``). Atomic against every other writer. Returns (record, created)
        once the insert is durable; ``record`` is the earlier alert when not created. The cap
        sums alerts in ``cap_states`` (dry-run adds its own alerts, so a cap can be tried).
        ``account`` is stored with the alert; duplicates and the cap stay keyed by the dedup key and
        the bot alone (an OKX algoId belongs to one account). ``endpoint``: the short name of the
        OKX endpoint its request goes to ("margin-balance", "sub-order"...), stored with it."""

    def add_claimed(self, send_now: SendNow | None, **fields) -> tuple[Record, bool, ClaimedAtOnce | None]:
        """``add``, and in the same durable write, when the alert can go at once (its bot's turn,
        nothing due ahead of it in its queue, a slot free in ``send_now.pacer``), its claim by
        ``send_now.instance`` confirmed: the request may leave at once. The third item says it was
        (the record is then ``sending``); None: it is queued for the dispatcher. An engine whose
        budget is not in its database never claims at receipt."""
        return (*self.add(**fields), None)

    def unclaim_at_receipt(self, receipt: str, instance: str) -> Record | None:
        """Put back in the queue the claim ``add_claimed`` made for the request named ``receipt``,
        when that write's reply was lost (so no sender ever had it): the alert, queued; None when
        there was no such claim (the write never committed)."""
        return None

    @abc.abstractmethod
    def later_alerts(self, alert_id: int, dedup_key: str) -> list[Record]:
        """Alerts journaled after ``alert_id`` with this dedup key, oldest first: copies of it, and resends."""

    @abc.abstractmethod
    def link_resend(self, original_id: int, resend_id: int, by: str) -> None:
        """Record that ``resend_id`` is an operator's resend of ``original_id``, on both timelines."""

    @abc.abstractmethod
    def prune(self, before: float) -> int:
        """Delete finished alerts received before ``before`` and their timelines; queued and sending ones stay."""


class Activity(AlertRecords):
    """Each alert's timeline and what the investigator and operators find about it."""

    @abc.abstractmethod
    def note(self, alert_id: int, kind: str, detail: str) -> None:
        """A timeline entry that changes nothing else (a late answer after a take-over, say)."""

    @abc.abstractmethod
    def events(self, alert_id: int) -> list[Event]:
        """The alert's timeline after it was received, oldest first (claims, answers, outcome, actions)."""

    @abc.abstractmethod
    def record_evidence(self, alert_id: int, evidence: str, proposal: str, note: str) -> Record | None:
        """OKX's records on an ``unknown`` alert and the verdict proposed from them, with a timeline
        entry of kind 'evidence' (detail ``note``), in one transaction. Only once, and only while the
        alert is unknown: None when it is not, or already has a proposal (another instance got there
        first; its evidence stands)."""

    @abc.abstractmethod
    def revise_evidence(self, alert_id: int, evidence: str, proposal: str, note: str, was: str) -> Record | None:
        """OKX's records read again (the second read of a "not executed" finding): the evidence and
        proposal replaced, with a timeline entry of kind 'evidence' (detail ``note``), in one
        transaction; only while the alert is unknown and its proposal is still ``was``. An
        operator's or the service's finding stays as it is. None when nothing was changed."""

    @abc.abstractmethod
    def awaiting_evidence(self, since: float, limit: int = 20) -> list[Record]:
        """``unknown`` alerts without a proposal that finished at or after ``since``, oldest first."""

    @abc.abstractmethod
    def awaiting_second_read(self, since: float, before: float, limit: int = 20) -> list[Record]:
        """``unknown`` alerts proposed "not executed" whose evidence keeps no second read (no
        "recheck"), that finished between ``since`` and ``before``, oldest first; marked or not (a
        late execution withdraws the proposal whoever settled the alert)."""

    @abc.abstractmethod
    def hourly_counts(self, since: float) -> list[tuple[int, str, int]]:
        """(hour as epoch seconds, state, alerts received in it) since ``since``."""


class NotificationLog(JournalJob):
    """Which finished alerts a delivered notification named, so that those it never did (a
    notification lost with its process) are told again, and no other."""

    @abc.abstractmethod
    def untold(self, states: tuple[str, ...], since: float, before: float, limit: int = 50) -> list[Record]:
        """Alerts in ``states`` that finished between ``since`` and ``before`` and that no delivered
        notification named (``told``), oldest first; an ``unknown`` one only once it has a proposal
        (its first look tells it)."""

    @abc.abstractmethod
    def told(self, alert_ids: list[int]) -> None:
        """A delivered notification named these alerts: recorded, so that none is told again (not
        durable: one lost in a crash is told twice)."""


class QueueClaims(JournalJob):
    """The queue's claims: what is due in its bot's turn, claimed by one instance for a lease,
    confirmed right before its request leaves, or given back unsent."""

    @abc.abstractmethod
    def count_due(
        self,
        now: float | None = None,
        before_id: int | None = None,
        in_turn: bool = True,
        account: str | None = None,
        actions: tuple[str, ...] | None = None,
    ) -> int:
        """Queued alerts whose time has come (``not_before`` passed, not yet expired) and, with
        ``in_turn``, no other alert for their bot in the way (see ``claim_due``); or only those
        ahead of alert ``before_id``. ``account``: None counts every account's, a name only that
        account's; ``actions``: only alerts of those actions (one OKX endpoint's), None every one."""

    @abc.abstractmethod
    def next_due_at(self) -> float | None:
        """When the earliest queued alert that nothing else holds up may go; None when every queued
        alert waits behind one being sent (its outcome wakes the dispatcher) or none is queued."""

    @abc.abstractmethod
    def claim_due(
        self,
        instance: str,
        limit: int,
        now: float,
        lease: float = 30.0,
        account: str | None = None,
        actions: tuple[str, ...] | None = None,
    ) -> list[Record]:
        """queued -> sending for up to ``limit`` due alerts, oldest first, marked claimed by
        ``instance`` with a lease of ``lease`` seconds (the journal's clock), in one durable
        transaction before any is sent. No two instances ever claim the same alert, and an alert
        is never claimed while another for its bot is sending or an earlier one is queued inside
        its lag. ``account``: None claims any account's alerts (as before accounts existed), a
        name only that account's, leaving every other account's queued; claims for different
        accounts do not wait for each other (beyond the moment a claim for any account takes).
        ``actions``: only alerts of those actions (one endpoint's budget); a bot's turn still waits
        for its alerts of every action."""

    @abc.abstractmethod
    def claim_paced(
        self,
        instance: str,
        pacer,
        wanted: int,
        lease: float,
        account: str,
        now: float | None = None,
        read_pacer=None,
        actions: tuple[str, ...] | None = None,
    ) -> PacedClaim:
        """One look at ``account``'s queue for the dispatcher: count what is due in turn, take up to
        ``wanted`` of those in slots of ``pacer``'s budget, claim that many (``claim_due``) and give
        back the slots no alert took. ``now``: the journal's clock (None: read by the engine). As
        separate steps (``shared.ClaimSteps``); an engine whose database also holds the rate ledger
        (``pacer.shares_journal``) does it all in one statement, and there also takes a slot of
        ``read_pacer`` (the bot reads' budget) for each claimed alert's read before its send (in
        ``read_slots``; the separate steps take none: the read takes its own). ``actions``: one
        endpoint's (``pacer`` is that endpoint's budget), None every action."""

    @abc.abstractmethod
    def reply_outlook(self, record: Record, pacer, actions: tuple[str, ...] | None = None) -> tuple[Record, int, int]:
        """For a reply that waits on an alert: the alert as it is now; while it is queued, how many
        of its account's due alerts (of ``actions``: its endpoint's) are ahead of it (their bot's
        turn come or not: each takes a slot first) and the slots ``pacer`` has in use (0 and 0
        otherwise). Up to three reads; one statement where the journal's database holds the ledger."""

    @abc.abstractmethod
    def confirm_send(self, claim: Claim, evidence: str | None = None, read_slot: object | None = None) -> bool:
        """Immediately before the request goes on the wire: True, and ``sent_at`` recorded
        durably, only while the claim is current (same instance and attempt, still sending,
        lease not lapsed, alert not past ``expires_at``, all by the journal's clock). The same
        single write stores ``evidence`` (the bot's snapshot taken before this attempt, as JSON
        text; NULL when None) and ends ``read_slot`` (that read's slot from ``claim_paced``),
        current claim or not: no round trip more before the send."""

    @abc.abstractmethod
    def unclaim(self, claims: list[Claim]) -> None:
        """sending -> queued for claims whose request never left, while each is still current (same
        instance and attempt): as if never claimed. A claim taken over since changes nothing."""


class QueueOutcomes(JournalJob):
    """What came of a sent alert, each write fenced by its claim."""

    @abc.abstractmethod
    def requeue(
        self,
        alert_id: int,
        okx_code: str | None,
        okx_msg: str | None,
        detail: str,
        not_before: float,
        claim: Claim | None = None,
        slot: object | None = None,
    ) -> bool:
        """sending -> queued after OKX certainly did not act; due again at ``not_before``. With
        ``claim``, only while the alert is still sending on that claim (same instance and attempt;
        a lapsed lease that nobody took over yet still counts); False when it was fenced out.
        ``slot``: the request's rate slot (or a tuple: with a claim at receipt's bot read's), when the
        journal's database holds the ledger (``Pacer.shares_journal``): closed by the same write, fenced out or not."""

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
        slot: object | None = None,
        evidence: str | None = None,
    ) -> Record | None:
        """The alert's final state. With ``claim``, only while the alert is still sending on that
        claim (None when it was taken over: the state recovery set stands). ``slot``: as for
        ``requeue``. ``evidence``: kept with it in place of what the confirmation kept (a claim at
        receipt reads its bot after the confirmation, and keeps the snapshot with the outcome)."""


class QueueUpkeep(JournalJob):
    """What keeps the queue moving besides the sends: expiry, lapsed claims settled, alerts no
    instance can send failed, lost claims given back."""

    @abc.abstractmethod
    def expire_overdue(self, now: float) -> list[Record]:
        """queued alerts past ``expires_at`` -> expired (never sent late); returns them."""

    @abc.abstractmethod
    def recover(self, instance: str, dead_after: float, lease: float = 30.0) -> list[Record]:
        """Alerts left ``sending`` whose claim lapsed: its lease ran out by the journal's clock (or,
        on SQLite, its claimant is another process, which the sender lock says is gone; or, for a
        claim without a lease, made by an earlier release, its claimant stopped heartbeating).
        ``unknown`` when the request may have left (``sent_at`` set, or no lease to tell), never
        resent; queued again when it certainly did not (``expired`` if too old). Returns the
        changed records. A current claim is never touched. ``lease``: the longest a dead
        instance's request may still be under way (its rate slot counts until then)."""

    @abc.abstractmethod
    def fail_unrouted(self, instance: str, accounts: list[str]) -> list[Record]:
        """Queued alerts under an account that ``accounts`` (``instance``'s) lacks, and so does every
        other instance that may send from the journal (where several may: each one's accounts are
        recorded by this call, and one that has not said yet may send any), end ``failed`` at once
        with a detail naming the account: nothing may ever send them, and they must hold their bot
        up no longer. Returns them."""

    @abc.abstractmethod
    def free_orphans(self, instance: str, live: list[Claim]) -> list[Record]:
        """``instance``'s claims that none of its senders holds (``live``: the claims they work on),
        such as those of a claim whose reply never reached the claimant (its statement committed,
        the answer was lost). An alert whose request never left (no ``sent_at``) is queued again,
        or ``expired`` past its lag; its attempt stays counted, so the lost claim can never be
        confirmed and no request ever leaves on it. One whose request may have left is left to
        ``recover`` at its lease's end. Where the journal holds the rate ledger, the slots that
        carry such a claim are given back: removed when the request never left, ended now otherwise
        (no sender holds them: their exchange is over). Returns the changed records. Only the
        claimant may ask, from the one thread that hands claims to its senders."""


class SendingQueue(AlertRecords, QueueClaims, QueueOutcomes):
    """What the dispatcher, the senders and the replies ask of the queue: claims, their outcomes and
    the alert as it is now. No method of its own."""


class AlertQueue(AlertLog, QueueClaims, QueueOutcomes, QueueUpkeep):
    """The queue's jobs together: no method of its own (each part of the delivery takes the one it uses)."""


class RefusalStore(abc.ABC):
    """The log of requests to /webhook that left no alert."""

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


class SessionStore(abc.ABC):
    """Operator sessions, so a logout ends a cookie everywhere."""

    @abc.abstractmethod
    def start_session(self, sid: str, client: str | None) -> None:
        """An operator logged in; sessions that ended or began more than a day ago are dropped."""

    @abc.abstractmethod
    def end_session(self, sid: str) -> None:
        """An operator logged out: the session's cookie is worthless from now on, wherever it is."""

    @abc.abstractmethod
    def session_active(self, sid: str, max_age: float) -> bool:
        """The session was started less than ``max_age`` seconds ago and has not ended."""


class Instances(abc.ABC):
    """The instances sending from the journal and what they share: OKX's rate ledger, the
    wrong-secret lockouts, a generated secret."""

    shared: bool = False  # True when several processes may send from the journal at once

    @abc.abstractmethod
    def register(self, instance: str) -> None:
        """This instance will send from the journal (``JournalInUse`` if the backend cannot share)."""

    @abc.abstractmethod
    def heartbeat(self, instance: str) -> None: ...

    @abc.abstractmethod
    def deregister(self, instance: str) -> None:
        """A clean stop: this instance claims nothing more; its queued alerts are others' to send."""

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

    def close(self) -> None:
        """Let go of what the instance holds beside the database (a lock, a connection of its own)."""
        return None


def _forwarding(contract: type, store: str) -> Callable[[type], type]:
    """A class decorator: every public method of ``contract`` becomes one that asks ``self.<store>``."""

    def decorate(cls: type) -> type:
        for name, method in vars(contract).items():
            if name.startswith("_") or not callable(method) or name in vars(cls):
                continue  # not a job's method, or one the class answers itself (close)

            def forward(self, *args, _name=name, **kwargs):
                return getattr(getattr(self, store), _name)(*args, **kwargs)

            forward = functools.wraps(method)(forward)
            forward.__isabstractmethod__ = False  # wraps copied the contract's flag
            setattr(cls, name, forward)
        return abc.update_abstractmethods(cls)

    return decorate


@_forwarding(AlertRecords, "alerts")
@_forwarding(AlertLog, "alerts")
@_forwarding(Activity, "activity")
@_forwarding(NotificationLog, "notifications")
@_forwarding(QueueClaims, "claims")
@_forwarding(QueueOutcomes, "outcomes")
@_forwarding(QueueUpkeep, "upkeep")
@_forwarding(RefusalStore, "refusal_log")
@_forwarding(SessionStore, "sessions")
@_forwarding(Instances, "instances")
class Journal(AlertQueue, Activity, NotificationLog, RefusalStore, SessionStore, Instances):
    """Every job's store, on one database, whatever the engine: what the wiring opens."""

    poll_interval: float = 1.0  # how often a dispatcher looks for work others may have queued

    def __init__(
        self,
        database: Database,
        *,
        alerts: AlertLog,
        activity: Activity,
        notifications: NotificationLog,
        claims: QueueClaims,
        outcomes: QueueOutcomes,
        upkeep: QueueUpkeep,
        refusal_log: RefusalStore,
        sessions: SessionStore,
        instances: Instances,
    ):
        self.database = database
        self.alerts = alerts
        self.activity = activity
        self.notifications = notifications
        self.claims = claims
        self.outcomes = outcomes
        self.upkeep = upkeep
        self.refusal_log = refusal_log
        self.sessions = sessions
        self.instances = instances

    @property
    def shared(self) -> bool:
        return self.instances.shared

    def now(self) -> float:
        """The journal's clock."""
        return self.database.now()

    def schema_version(self) -> int:
        return self.database.schema_version()

    def connection_warning(self) -> str | None:
        """Why two web instances, a release phase and a command cannot all connect, or None."""
        return self.database.connection_warning()

    @property
    def found_version(self) -> int:
        """The schema's version when this process opened the journal, before it migrated it."""
        return self.database.found_version

    def close(self) -> None:
        self.database.close()
        self.instances.close()
