"""After an ambiguous attempt: read the bot and its event history on OKX, compare them with the
snapshot taken just before the send, keep that evidence on the alert, propose what happened
(``evidence.propose``) and tell the operator; with ``RESOLVE_UNKNOWN=auto`` mark the cases that
leave no doubt, as the service's finding.

Every ``unknown`` alert gets its notification from here, with the proposal, at most
``settle`` + a few reads after its outcome (``WORKERS`` alerts are read at once); if this process
dies first, another instance (or the next start) finds the alert still without a proposal
(``awaiting_evidence``) and does it.

"Not executed" is the finding that invites a resend, and a request OKX handles late would make
that resend a double: the bot is read once more ``recheck_after`` later, and only if nothing has
moved does ``RESOLVE_UNKNOWN=auto`` mark it. If something has, the proposal "not executed" is
withdrawn: OKX's records are judged again from the snapshot before the send to this one (can't
tell, or executed when the move is exactly the request's), stored, and the operator is told.

What waits in memory (a first look, a second read, a notification) dies with the process: every
``sweep_every`` seconds a sweep finds in the journal what is overdue by ``sweep_grace`` and does it
(a first look, a second read late, a notification told again).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal

from webhook_app.clock import SYSTEM_CLOCK, Clock
from webhook_app.errors import Refused
from webhook_app.journal import ActionRefused, Activity, AlertRecords, JournalUnavailable, Record
from webhook_app.okx.actions import EXPIRING
from webhook_app.okx.margin.evidence import VERDICT_WORDS, gather
from webhook_app.okx.records import BotSnapshot
from webhook_app.workers.bots import BotWatch
from webhook_app.workers.order_findings import is_margin, judge_order

log = logging.getLogger("webhook_app")

SERVICE = "the service, from OKX's records"
READ_TRIES = 3  # reads of the bot after the send, 1 and 2 s apart, before settling for "can't tell"
WORKERS = 3  # alerts investigated at once: an outage of OKX's reads never queues the notifications for long
# Compared between the first read after the send and the recheck: any change, and the finding stands unmarked.
RECHECKED_FIELDS = ("state", "investAmt", "availBal", "frozenBal", "totalEq", "uTime")
SWEEP_EVERY = 30.0  # seconds between looks for what a dead instance left undone (UNKNOWN_SWEEP_SECONDS)
SWEEP_SINCE = 86_400.0  # ...for alerts finished within this many seconds


class ResendDoubt(Refused):
    """Why a resend of an alert settled "not executed" is refused until the operator insists (409).
    ``kind``: "bot_moved", or "cannot_confirm" (no reading to compare); ``moved``: {"field", "then",
    "now"} for each field that moved since the finding."""

    status = 409

    def __init__(self, kind: str, problem: str, moved: tuple[dict, ...] = ()):
        super().__init__(problem, moved=list(moved), insist=False)
        self.kind = kind
        self.moved = moved


class Investigator:
    """The first look at each unknown alert: read, compare, keep, propose, tell (with ``WORKERS``
    threads, and a sweep for what a dead instance left undone). A "not executed" proposal goes on
    to the ``SecondRead``; ``resend_doubt`` guards an operator's resend."""

    def __init__(
        self,
        activity: Activity,
        bots: Mapping[str, BotWatch],
        *,
        settle: float = 3.0,
        recheck_after: float = 30.0,
        auto: bool = False,
        on_done: Callable[[Record], None] | None = None,
        on_withdrawn: Callable[[Record, str], None] | None = None,
        tell_untold: Callable[[float, float], list[int]] | None = None,
        sweep_every: float = SWEEP_EVERY,
        sweep_grace: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        """``clock``: the settle time before the reads, the pause between them, and the sweeps' pace.
        ``on_withdrawn(alert, what the second read found)``: the notification that a "not executed"
        proposal was withdrawn. ``tell_untold(since, before)``: the notifier's, telling again the
        alerts finished in that window (journal clock) that no delivered message named. A sweep
        every ``sweep_every`` seconds does what is overdue by ``sweep_grace`` (2 x ``sweep_every``
        by default): a first look ``settle`` + grace after the outcome, a second read or a
        notification ``settle`` + ``recheck_after`` + grace after it."""
        self.activity = activity
        self.bots = bots  # account name -> its BotWatch: a bot is read with its own account's key
        self.settle = settle
        self._on_done = on_done  # the notification, once the proposal is known
        self._tell_untold = tell_untold
        self._clock = clock
        self._queue: queue.Queue[tuple[float, Record]] = queue.Queue()  # (due, alert) for a first look
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self.sweep_every = sweep_every
        self.sweep_grace = 2 * sweep_every if sweep_grace is None else sweep_grace
        self._last_sweep = 0.0
        self._sweep_lock = threading.Lock()  # one sweep at a time, whichever worker is idle
        self.investigated = 0
        self._findings = Findings(activity, auto)
        self._second_read = SecondRead(
            self._findings,
            activity,
            bots,
            recheck_after=recheck_after,
            on_withdrawn=on_withdrawn,
            clock=clock,
            stop=self._stop,
        )

    def submit(self, record: Record) -> None:
        """An alert has just ended ``unknown``: look at OKX's records once they have settled."""
        self._queue.put((self._clock() + self.settle, record))
        self.start()

    def start(self) -> None:
        with self._start_lock:
            if self._stop.is_set():  # a late alert's submit while stopping: left to the next start's sweep
                return
            while len(self._threads) < WORKERS:
                thread = threading.Thread(target=self._run, name=f"investigator-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            if len(self._threads) == WORKERS:
                thread = threading.Thread(target=self._second_read.run, name="investigator-recheck", daemon=True)
                self._threads.append(thread)
                thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading (an alert left unread is found by the next start's sweep, or another
        instance's); wait up to ``timeout`` for reads under way."""
        self._stop.set()
        for _ in range(WORKERS):  # wakes the threads waiting for work: nothing more comes
            self._queue.put((0.0, None))
        self._second_read.wake()
        with self._start_lock:  # every thread listed has started; none starts after this
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                due, record = self._queue.get(timeout=1.0)
            except queue.Empty:
                self._sweep()
                continue
            if record is None:  # stop's wake-up
                continue
            self._clock.wait(self._stop, max(due - self._clock(), 0.0))
            try:
                self.investigate(record)
            except Exception:
                log.exception("reading OKX's records for alert %s failed", record.id)
                self._tell(record)  # the unknown is never left untold

    def _sweep(self) -> None:
        with self._sweep_lock:
            if self._clock() - self._last_sweep < self.sweep_every:
                return
            self._last_sweep = self._clock()
            self.sweep()

    def sweep(self) -> None:
        """One look for what a dead instance (or this one, earlier) left undone: unknown alerts
        without a proposal, "not executed" proposals never read again, alerts never told."""
        try:
            now = self.activity.now()
            since = now - SWEEP_SINCE
            waiting = self.activity.awaiting_evidence(since)
            overdue = now - self.settle - self._second_read.recheck_after - self.sweep_grace
            unread = self.activity.awaiting_second_read(since, overdue)
        except JournalUnavailable as exc:
            log.error("could not look for unknown alerts left undone: %s", exc)
            return
        for record in waiting:
            if record.finished_at is not None and record.finished_at <= now - self.settle - self.sweep_grace:
                self._queue.put((0.0, record))
        for record in unread:
            self._second_read.put_late(record)
        if self._tell_untold is not None:
            try:
                self._tell_untold(since, overdue)
            except Exception:
                log.exception("telling again of alerts never told failed")

    def investigate(self, record: Record) -> Record | None:
        """Read, compare, keep, propose, tell; the alert as recorded, or None when another instance did it."""
        watch = self.bots.get(record.account)  # None: the account is no longer configured
        if is_margin(record):
            evidence = self._margin_evidence(record, watch)
        else:
            evidence = self._findings.judged_order(record, watch, self._clock, self._stop)
        proposal, reason = evidence["proposal"], evidence["reason"]
        note = f"OKX's records: {VERDICT_WORDS[proposal]}: {reason}"
        recorded = self.activity.record_evidence(record.id, json.dumps(evidence), proposal, note)
        self.investigated += 1
        if recorded is None:
            return None  # already proposed (another instance), or no longer unknown
        log.warning("alert %s unknown: proposal %s: %s", record.id, VERDICT_WORDS[proposal], reason)
        if self._findings.auto and (proposal == "executed" or (proposal == "not_executed" and not is_margin(record))):
            recorded = self._findings.mark(recorded, proposal)
        if proposal == "not_executed" and is_margin(record):  # read once more before anyone acts on it
            self._second_read.put(recorded, evidence)
        self._tell(recorded)
        return recorded

    def _margin_evidence(self, record: Record, watch: BotWatch | None) -> dict:
        """The bot read after the send (a few tries) against the snapshot before it, with its events."""
        after = None
        for attempt in range(READ_TRIES if watch is not None else 0):
            after = watch.snapshot_now(record.algo_id)
            if after is not None or attempt == READ_TRIES - 1:
                break
            self._clock.wait(self._stop, 1.0 + attempt)
        events = watch.events_now(record.algo_id) if after is not None else None
        return self._findings.judged(record, _before(record), after, events)  # events None (unread): "can't tell"

    def resend_doubt(self, record: Record) -> ResendDoubt | None:
        """Why an operator's resend of ``record`` should wait: ``resend_doubt``, read with its account's watch."""
        return resend_doubt(record, self.bots.get(record.account))

    def _tell(self, record: Record) -> None:
        if self._on_done is None:
            return
        try:
            self._on_done(record)
        except Exception:
            log.exception("telling of alert %s's outcome failed", record.id)


class Findings:
    """Judging OKX's records into a proposal, and marking the findings that leave no doubt (``auto``):
    the same for the first look and the second read."""

    def __init__(self, records: AlertRecords, auto: bool):
        self.records = records
        self.auto = auto

    def judged(self, record: Record, before, after, events) -> dict:
        """The evidence from these reads, "can't tell" where another alert of ours may explain it."""
        evidence = gather(
            record.action, Decimal(record.amount), record.request.get("allowReinvest") is True, before, after, events
        )
        ours = self._ours_in_window(record)
        if ours is None and evidence["proposal"] != "cant_tell":
            evidence["proposal"] = "cant_tell"
            evidence["reason"] = "the journal could not say whether another alert of ours moved this bot meanwhile"
        elif ours and evidence["proposal"] != "cant_tell":
            evidence["proposal"] = "cant_tell"
            evidence["reason"] = (
                f"alert {ours[0]} of ours changed this bot's margin in the same window, so the change cannot be "
                "told apart"
            )
        return evidence

    def judged_order(self, record: Record, watch: BotWatch | None, clock: Clock, stop: threading.Event) -> dict:
        """An action other than add/reduce: its own evidence; for one that states a target, "can't
        tell" where another alert of ours for the bot may have moved what it reads (a buy after a
        close: a position again). A sub-order is found by instrument, side and size, and its own
        rule already says "can't tell" when two in the window match."""
        if watch is None:
            evidence = {"proposal": "cant_tell", "reason": "its account is not configured, so the bot cannot be read"}
            return {**evidence, "recheck": {"needed": False}}
        evidence = judge_order(record, watch.client, clock, stop)
        if record.action in EXPIRING:  # matched by instrument, side and size: two candidates already can't tell
            return evidence
        ours = self._ours_in_window(record)
        if evidence["proposal"] != "cant_tell" and ours != []:
            evidence["proposal"] = "cant_tell"
            evidence["reason"] = (
                "the journal could not say whether another alert of ours moved this bot meanwhile"
                if ours is None
                else f"alert {ours[0]} of ours went to this bot in the same window, so its records cannot be told apart"
            )
        return evidence

    def mark(self, record: Record, finding: str) -> Record:
        try:
            marked = self.records.resolve(record.id, finding, SERVICE)
            log.warning("alert %s marked %s by %s", record.id, VERDICT_WORDS[finding], SERVICE)
            return marked
        except ActionRefused:
            return record  # an operator marked it meanwhile: their finding stands

    def _ours_in_window(self, record: Record) -> list[int] | None:
        """Other alerts of ours that may have moved this bot's margin inside the window: any later
        one already sent (alerts for one bot go one after another, so it went after this one), and
        an earlier one whose outcome is unknown too (it may have landed late). None: unknown."""
        try:
            nearby = self.records.recent(limit=20, algo_id=record.algo_id)
        except JournalUnavailable:
            return None
        start = (record.finished_at or record.received_at) - 60.0
        return [
            r.id
            for r in nearby
            if (r.id > record.id and r.first_sent_at is not None)
            or (r.id < record.id and r.state == "unknown" and (r.finished_at or 0.0) >= start)
        ]


class SecondRead:
    """A "not executed" proposal, read again ``recheck_after`` later (one thread: all are due the
    same time after they came): marked (auto) only if the bot has not moved since; withdrawn,
    judged again and told if it has. The reading is kept with the evidence ("recheck"), so the
    sweep finds the second reads that never ran or could not read the bot (``put_late``)."""

    def __init__(
        self,
        findings: Findings,
        activity: Activity,
        bots: Mapping[str, BotWatch],
        *,
        recheck_after: float,
        on_withdrawn: Callable[[Record, str], None] | None,
        clock: Clock,
        stop: threading.Event,
    ):
        self._findings = findings
        self.activity = activity
        self.bots = bots
        self.recheck_after = recheck_after
        self._on_withdrawn = on_withdrawn
        self._clock = clock
        self._stop = stop
        # (due, alert, its evidence, whether it is late: found by the sweep)
        self._rechecks: queue.Queue[tuple[float, Record, dict, bool]] = queue.Queue()
        self._queued: set[int] = set()  # the alerts in _rechecks or being read
        self._queued_lock = threading.Lock()

    def put(self, record: Record, evidence: dict) -> None:
        with self._queued_lock:
            self._queued.add(record.id)
        self._rechecks.put((self._clock() + self.recheck_after, record, evidence, False))

    def put_late(self, record: Record) -> None:
        """A second read the sweep found overdue (its process died first), at once, unless it
        waits here already."""
        with self._queued_lock:
            if record.id in self._queued:
                return
            self._queued.add(record.id)
        evidence = record.evidence_data
        self._rechecks.put((0.0, record, evidence if isinstance(evidence, dict) else {}, True))

    def wake(self) -> None:
        """Wakes ``run`` waiting for work (on a stop)."""
        self._rechecks.put((0.0, None, None, False))

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                due, record, evidence, late = self._rechecks.get(timeout=1.0)
            except queue.Empty:
                continue
            if record is None:  # stop's wake-up
                continue
            self._clock.wait(self._stop, max(due - self._clock(), 0.0))
            if self._stop.is_set():
                return
            try:
                self._recheck(record, evidence, late)
            except Exception:
                log.exception("reading alert %s's bot again failed", record.id)
            finally:
                with self._queued_lock:
                    self._queued.discard(record.id)

    def _recheck(self, record: Record, evidence: dict, late: bool) -> None:
        watch = self.bots.get(record.account)
        later = watch.snapshot_now(record.algo_id) if watch is not None else None
        read_again = (
            "read again late (no second read was recorded when it was due)"
            if late
            else f"read again after {self.recheck_after:.0f} s"
        )
        try:
            if later is None:
                detail = self._unread(record, evidence, read_again, late, gone=watch is None)
            elif moved := moved_fields(evidence.get("after") or {}, later):
                detail = self._withdraw(record, evidence, later, moved, watch, read_again)
            else:
                detail = f"{read_again}: nothing moved"
                if self._findings.auto:
                    self._findings.mark(record, "not_executed")
                kept = {**evidence, "recheck": {"snapshot": later.to_json(), "moved": []}}
                self.activity.revise_evidence(record.id, json.dumps(kept), "not_executed", detail, "not_executed")
            log.warning("alert %s: %s", record.id, detail)
        except JournalUnavailable as exc:
            log.error("alert %s: could not record the second read (%s)", record.id, exc)

    def _unread(self, record: Record, evidence: dict, read_again: str, late: bool, gone: bool) -> str:
        """No reading (no room in the reads' budget, OKX unreachable): left to the sweep, which tries
        again, unless the account is gone and nothing can ever read it: then kept as read."""
        if gone:
            detail = f"{read_again}: its account is not configured, so the bot cannot be read; not marked"
            unread = {**evidence, "recheck": {"snapshot": None, "moved": None}}
            self.activity.revise_evidence(record.id, json.dumps(unread), "not_executed", detail, "not_executed")
        else:
            detail = f"{read_again}: the bot could not be read; not marked; the sweep reads it again"
            if not late:  # the timeline says it once; the sweep's tries are in the log
                self.activity.note(record.id, "evidence", detail)
        return detail

    def _withdraw(
        self, record: Record, evidence: dict, later: BotSnapshot, moved: list[str], watch: BotWatch, read_again: str
    ) -> str:
        """The bot moved after "not executed" was proposed: judge again from before the send to now,
        store that in place of the withdrawn proposal, mark it (auto) if executed, and tell."""
        revised = self._findings.judged(record, _before(record), later, watch.events_now(record.algo_id))
        if revised["proposal"] == "not_executed":  # moved since the first read, though not since before the send
            revised["proposal"] = "cant_tell"
            revised["reason"] = f"{', '.join(moved)} moved after the first read showed nothing had"
        revised["withdrawn"] = {key: evidence.get(key) for key in ("proposal", "reason", "after", "window")}
        revised["recheck"] = {"snapshot": later.to_json(), "moved": moved}
        proposal, reason = revised["proposal"], revised["reason"]
        detail = (
            f"{read_again}: {', '.join(moved)} moved since; the proposal 'not executed' is in doubt and withdrawn; "
            f"OKX's records now: {VERDICT_WORDS[proposal]}: {reason}"
        )
        recorded = self.activity.revise_evidence(record.id, json.dumps(revised), proposal, detail, "not_executed")
        if recorded is None:
            return detail + " (not stored: the alert changed meanwhile)"
        if self._findings.auto and proposal == "executed" and recorded.resolution is None:
            recorded = self._findings.mark(recorded, proposal)
        if self._on_withdrawn is not None:
            try:
                self._on_withdrawn(recorded, detail)
            except Exception:
                log.exception("telling that alert %s's proposal was withdrawn failed", record.id)
        return detail


def resend_doubt(record: Record, watch: BotWatch | None) -> ResendDoubt | None:
    """For an alert settled "not executed" (by the service or an operator): the bot read now
    (within the reads' budget, by ``watch``, its account's) against the reading that finding rests
    on (the second read, else the one after the send, else the one before it). None: nothing moved,
    or not such an alert."""
    if record.resolution != "not_executed" or not is_margin(record):
        # Another action states a target (sent again, it changes nothing once there) or carried
        # expTime (past it, OKX never executes it): a resend never doubles it.
        return None
    then = _finding_snapshot(record)
    insist = "to send it anyway, resend it again insisting"
    if then is None:
        return ResendDoubt(
            "cannot_confirm",
            f"alert {record.id} was settled not executed, but no reading of its bot is kept to compare with now, "
            f"so nothing confirms OKX has not executed it since; nothing was sent: check the bot on OKX; {insist}",
        )
    now = watch.snapshot_now(record.algo_id) if watch is not None else None
    if now is None:
        return ResendDoubt(
            "cannot_confirm",
            f"alert {record.id} was settled not executed, but its bot could not be read on OKX now, so nothing "
            f"confirms OKX has not executed it since; nothing was sent: check the bot on OKX; {insist}",
        )
    current = now.to_json()
    moved = tuple({"field": f, "then": then.get(f), "now": current.get(f)} for f in moved_fields(then, now))
    if not moved:
        return None
    listed = ", ".join(f"{row['field']} {row['then']} -> {row['now']}" for row in moved)
    return ResendDoubt(
        "bot_moved",
        f"alert {record.id} was settled not executed, but its bot moved since that finding ({listed}): OKX may "
        f"have executed it late; nothing was sent: check the bot on OKX; {insist}",
        moved,
    )


def moved_fields(then: dict, now: BotSnapshot) -> list[str]:
    """RECHECKED_FIELDS that differ between a snapshot as stored (``to_json``) and one read now."""
    current = now.to_json()
    return [name for name in RECHECKED_FIELDS if current.get(name) != then.get(name)]


def _finding_snapshot(record: Record) -> dict | None:
    """The latest reading of the bot kept with the alert's evidence: the second read, the one after
    the send, or the one before it (as stored, ``BotSnapshot.to_json``)."""
    try:
        evidence = record.evidence_data
    except ValueError:
        return None
    if not isinstance(evidence, dict):
        return None
    recheck = evidence.get("recheck")
    for snapshot in (
        (recheck or {}).get("snapshot") if isinstance(recheck, dict) else None,
        evidence.get("after"),
        evidence.get("before"),
    ):
        if isinstance(snapshot, dict):
            return snapshot
    return None


def _before(record: Record) -> BotSnapshot | None:
    """The snapshot the sender took just before the attempt, kept with the claim's confirmation."""
    try:
        before = record.evidence_data
        return BotSnapshot.from_json(before["before"]) if isinstance(before, dict) and before.get("before") else None
    except (ValueError, KeyError, TypeError):
        return None
