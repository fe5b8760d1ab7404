"""Between the journal and OKX: dispatching, within OKX's rate budget, and the reply deadline.

A dispatcher thread asks the journal for due alerts, takes as many slots of the rate budget
(``pacing``) as it may use, claims that many alerts (``sending``, durably, before any byte
leaves) and hands each to a sender thread. What an answer means (a final state, or a retry)
is ``outcomes``'s job; who else is alive is ``membership``'s. The queue is the journal's, so
with PostgreSQL any instance may send an alert that another one received.

A claim is a fenced lease. Its request leaves within ``send_by`` seconds of the claim (this
host's elapsed clock, which counts a suspension: ``clock.Clock``) and only after the journal
confirmed the claim is still current (same instance and attempt, lease not lapsed, alert not
past its lag, by the journal's clock); the
lease outlasts ``send_by`` plus OKX's time-outs, so a claim is only ever taken over once its
request can no longer leave. Every write after a send is conditional on the claim: an answer
that comes back after a take-over is kept on the timeline and notified, and changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from webhook_app.clock import SYSTEM_CLOCK, Clock
from webhook_app.journal import INTERRUPTED_DETAIL, Claim, Journal, JournalUnavailable, Record, answer_detail
from webhook_app.okx.client import MarginRequest, OkxClient, OkxError, OkxNotExecuted, OkxOutcomeUnknown
from webhook_app.workers.membership import Membership
from webhook_app.workers.outcomes import OutcomePolicy
from webhook_app.workers.pacing import Pacer

log = logging.getLogger("webhook_app")

PRUNE_EVERY = 3600.0
EXPIRE_EVERY = 0.5  # seconds between sweeps that mark overdue queued alerts expired
RECOVER_EVERY = 1.0  # seconds between looks for lapsed claims (a dead instance's, or a stuck sender's)
# Seconds between looks for claims of ours that no sender holds (a claim whose reply was lost, an unclaim
# that failed: their alerts are queued again and their rate slots given back; at once after a failed
# claim), and for queued alerts under an account no instance has (failed at once).
UPKEEP_EVERY = 2.0
SEND_BY = 3.0  # a claimed alert's request leaves within this many seconds of its claim, or not at all
LEASE_MARGIN = 5.0  # the lease outlasts the latest possible end of a request by this much
WRITE_RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0, 4.0)  # a journal write after a send, tried again
# The bot's read before a send: at most MAX_BEFORE_READ seconds, skipped with less than MIN_BEFORE_READ
# left, and always leaving BEFORE_READ_SPARE of SEND_BY for the confirmation and the send itself.
MAX_BEFORE_READ, MIN_BEFORE_READ, BEFORE_READ_SPARE = 1.0, 0.2, 1.0


class _Unwritten(Exception):
    """A journal write after a send failed every retry: the lease's lapse hands the alert to recovery."""


@dataclasses.dataclass(frozen=True)
class Lane:
    """One OKX account's road to OKX: its signed client, its rate budget (OKX counts per User ID,
    so each account has its own; None in dry-run: nothing is sent) and how to read its bots."""

    client: OkxClient
    pacer: Pacer | None
    # The bot read just before each send, ``read_bot(algo_id, timeout, slot)`` (a ``BotSnapshot`` or
    # None; ``slot`` None: it takes its own): the "before" of the evidence if the outcome turns out
    # unknown, kept with the send's confirmation at no extra round trip.
    read_bot: Callable[..., object | None] | None = None
    # That read's budget: where the journal holds it, the claim takes the read's slot and the
    # confirmation ends it (``read_bot(..., slot=)``), no round trip of their own.
    read_pacer: Pacer | None = None


class Delivery:
    def __init__(
        self,
        journal: Journal,
        lanes: Mapping[str, Lane],
        policy: OutcomePolicy,
        membership: Membership,
        *,
        senders: int = 20,
        retention: float = 30 * 86400,
        on_final: Callable[[Record], None] | None = None,
        on_late: Callable[[Record, str], None] | None = None,
        send_by: float = SEND_BY,
        lease_margin: float = LEASE_MARGIN,
        clock: Clock = SYSTEM_CLOCK,
    ):
        """``lanes``: account name -> its ``Lane``; an alert goes by its account's lane only, and
        each account's alerts are claimed against its own budget, so a burst to one never slows another.
        ``clock``: this host's elapsed time, for the send deadlines, the recovery timer, the reply
        waits and the write retries (the journal's clock stays the judge of leases and due times)."""
        self.journal = journal
        self.clock = clock
        self.lanes = dict(lanes)
        first = next(iter(self.lanes.values()))
        self.client = first.client  # the first account's: dry-run signing, and its time-outs
        self.pacer = first.pacer  # the first account's budget (the only one, with one account)
        self.policy = policy
        self.membership = membership
        self.retention = retention
        self.senders = senders
        self._on_final = on_final  # told of every alert that reaches its final state (notifications)
        self._on_late = on_late  # told of an answer that came after its claim was taken over
        self.send_by = send_by
        # The latest a request can still be under way after its claim, plus a margin: only then may
        # another instance take the alert over.
        self.lease_margin = lease_margin
        self.lease = send_by + max(sum(lane.client.timeout) for lane in self.lanes.values()) + lease_margin
        self._unsettled: list[tuple[str, Pacer, object]] = []  # pacing writes that failed, tried again later
        self._last_recovery = 0.0
        self._last_upkeep: float | None = None  # this host's clock, at the last look for orphans and unrouted alerts
        self._orphans_suspected = False  # a claim failed: it may have committed with its reply lost
        self._pool = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="okx-sender")
        self._cond = threading.Condition()
        self._woken = False
        self._done: dict[int, threading.Event] = {}  # alerts whose reply waits: set when there is news
        self._finals: dict[int, Record] = {}  # ...and the final record, as the write that made it returned
        self._in_flight: dict = {}  # sender future -> (claim, lane, rate slot, bot read's slot)
        self._lane_turn = 0  # which account's lane is served first in this round (each in turn)
        self._thread: threading.Thread | None = None
        self._started = False
        self._stopping = False
        self._start_lock = threading.Lock()
        self._dispatching = threading.Lock()  # taking slots and claiming, as one step for this process
        self._last_prune: float | None = None  # this host's clock, at the last pruning
        self._last_expiry: float | None = None  # ...and the last sweep for expired alerts
        # Per account, the queued alerts left unclaimed at its last look (None: not known, so a finish
        # always wakes the dispatcher); and how many alerts were finished, to tell a look that raced one.
        self._backlog: dict[str, int | None] = dict.fromkeys(self.lanes)
        self._finishes = 0

    @property
    def instance(self) -> str:
        return self.membership.instance

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Join the instances sending from the journal, then start dispatching. Idempotent.
        In dry-run, queued live alerts are left queued: they wait for live mode."""
        with self._start_lock:
            if self._started:
                return
            self.membership.join()
            self._recover()
            if self.pacer is None:
                try:
                    waiting = self.journal.count_due(self.journal.now(), in_turn=False)
                except JournalUnavailable:
                    waiting = 0
                if waiting:
                    log.warning(
                        "%d queued alert(s) in the journal wait for live mode: in dry-run nothing is sent; "
                        "they are sent, or expire, at the first live start",
                        waiting,
                    )
            # In dry-run too: it prunes the journal (and sends nothing, having no pacer).
            self._thread = threading.Thread(target=self._dispatch, name="okx-dispatcher", daemon=True)
            self._thread.start()
            self._started = True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming (queued alerts stay in the journal, for the others or the next start),
        put back any claimed send that had not started, wait up to ``timeout`` for sends under
        way, and leave the instances."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        not_started = [sending for future, sending in list(self._in_flight.items()) if future.cancel()]
        if not_started:
            claims = [claim for claim, _, _, _ in not_started]
            ids = [claim.alert_id for claim in claims]
            for _, lane, slot, read_slot in not_started:
                self._cancel(lane.pacer, [slot])
                if read_slot is not None:
                    self._cancel(lane.read_pacer, [read_slot])
            try:
                self.journal.unclaim(claims)
                log.info("stopping: claimed alerts %s had not been sent yet and are queued again", ids)
            except JournalUnavailable as exc:
                log.error(
                    "stopping: alerts %s were never sent; their claims lapse and they are queued again (%s)", ids, exc
                )
        # The host's own seconds, whatever ``clock``: a bound on shutting this process down.
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        self._pool.shutdown(wait=False)
        if self._started:
            self.membership.leave()

    # -- web side ---------------------------------------------------------------------

    def submit(self, record: Record, wait: float = 0.0) -> Record:
        """A journaled alert is due: wake the dispatcher, and wait up to ``wait`` seconds for its
        outcome, whichever instance sends it, unless its turn under the rate limit comes later
        than that anyway (a burst's tail is answered at once). Returns its latest record.

        A dry-run alert (journaled as ``dry_run``) is signed like a real one and goes no further."""
        if record.state == "dry_run":
            self._lane(record).client.adjust_margin(_margin_request(record))
            return record
        self.start()
        event = threading.Event()
        with self._cond:
            self._done[record.id] = event
        self._wake()
        try:
            # The journal first: the alert was due from its commit on, so a dispatcher may already
            # have claimed or even sent it, before ``event`` was registered (that signal went to nobody).
            # Under the dispatch lock where slots are taken before the claim (a ledger outside the
            # journal): in between, a slot would count against an alert about to be sent.
            pacer = self._lane(record).pacer
            with contextlib.nullcontext() if pacer is None or pacer.shares_journal else self._dispatching:
                if wait <= 0 or pacer is None:
                    return self.journal.get(record.id) or record
                # Its turn under the rate limit, while queued: answer at once if it is far off.
                current, ahead, busy = self.journal.reply_outlook(record, pacer)
                if current.final or (current.state == "queued" and pacer.projected(ahead, busy) >= wait):
                    return current
            latest = self._wait_final(record.id, event, self.clock() + wait)
            if latest is None and event.is_set():
                with self._cond:
                    latest = self._finals.get(record.id)  # no read needed: the outcome's write returned it
            return latest or self.journal.get(record.id) or current
        except JournalUnavailable as exc:
            # It is journaled and queued, and will be sent: the reply must not say otherwise.
            log.error(
                "could not follow alert %s for its reply (%s); answering with its state at receipt", record.id, exc
            )
            return record
        finally:
            with self._cond:
                self._done.pop(record.id, None)
                self._finals.pop(record.id, None)

    def _wait_final(self, alert_id: int, event: threading.Event, deadline: float) -> Record | None:
        # Sent here, the event says so. Sent by another instance (PostgreSQL), only the journal
        # knows: look there until it is final, or until it turns out to be ours after all.
        step = self.journal.poll_interval if self.journal.shared else None
        while (remaining := deadline - self.clock()) > 0:
            if self.clock.wait(event, remaining if step is None else min(step, remaining)):
                return None
            if step is not None:
                latest = self.journal.get(alert_id)
                if latest is not None and latest.final:
                    return latest
                if latest is not None and latest.claimed_by == self.instance:
                    step = None  # ours: the event will say when it is done
        return None

    def _lane(self, record: Record) -> Lane:
        """The lane of the alert's account (the first one's for an account no longer configured:
        such an alert is never claimed but failed (``_fail_unrouted``); only a dry-run one is signed)."""
        return self.lanes.get(record.account) or next(iter(self.lanes.values()))

    def _wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    # -- dispatcher -------------------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            try:
                pause = self._dispatch_once()
            except JournalUnavailable as exc:  # nothing is claimed unrecorded; look again shortly
                log.error("journal unavailable while dispatching: %s", exc)
                pause = 1.0
            except Exception:  # keep the dispatcher alive whatever happens
                log.exception("dispatcher failed")
                pause = 1.0
            with self._cond:
                if self._stopping:
                    return
                if not self._woken and pause > 0:
                    self.clock.wait(self._cond, pause)
                self._woken = False
                if self._stopping:
                    return

    def _dispatch_once(self) -> float:
        """Claims and starts what may go now; returns how long to wait before looking again."""
        poll = self.journal.poll_interval
        self._maybe_prune()
        if self.pacer is None:  # dry-run: nothing to send
            return 60.0
        self._settle()
        if self._orphans_suspected or self._last_upkeep is None or self.clock() - self._last_upkeep >= UPKEEP_EVERY:
            self._last_upkeep = self.clock()
            self._free_orphans()
            self._fail_unrouted()
        if self.clock() - self._last_recovery >= RECOVER_EVERY:
            self._recover()
        if self._last_expiry is None or self.clock() - self._last_expiry >= EXPIRE_EVERY:
            self._last_expiry = self.clock()  # an alert is never claimed late anyway (the claim checks)
            for record in self.journal.expire_overdue(self.journal.now()):
                self._finished(record)
        # Each account in turn goes first, so that none waits behind another's burst.
        names = list(self.lanes)
        self._lane_turn = (self._lane_turn + 1) % len(names)
        return min(self._dispatch_lane(name, poll) for name in names[self._lane_turn :] + names[: self._lane_turn])

    def _dispatch_lane(self, account: str, poll: float) -> float:
        """Claims and starts what one account may send now; returns how long until it needs to look
        again (a finish, a retry or a new alert wakes the dispatcher sooner)."""
        lane = self.lanes[account]
        finishes = self._finishes
        with self._dispatching:
            # Read before the slots and the claim: the local deadline then ends before the lease the
            # journal grants, and before the others would close the slots of an instance taken for
            # dead (at their start + the lease) had this one been paused between taking and claiming.
            send_by = self.clock() + self.send_by
            try:
                taken = self.journal.claim_paced(
                    self.instance, lane.pacer, self.senders, self.lease, account, read_pacer=lane.read_pacer
                )
            except Exception:
                # It may have committed with its reply lost: alerts claimed and slots taken that no
                # sender of ours holds. The next round asks the journal for them and gives them back.
                self._orphans_suspected = True
                raise
        # What is still queued beside what was just claimed: when nothing, a finish wakes no one. A
        # finish during the look may have made one of them due after the look counted: look again.
        self._backlog[account] = None if taken.queued is None else taken.queued - len(taken.claims)
        raced = self._finishes != finishes and self._backlog[account] != 0
        for record, slot in taken.claims:
            read_slot = taken.read_slots.get(record.id)
            future = self._pool.submit(self._send, record, lane, slot, send_by, read_slot)
            self._in_flight[future] = (Claim.of(record), lane, slot, read_slot)
            future.add_done_callback(self._sent)
        if taken.due and not taken.granted:  # the budget is spent
            opens_in = lane.pacer.opens_in()  # a reply here wakes us sooner
            return poll if opens_in is None else min(max(opens_in, 0.001), poll)
        if raced:
            return 0.0
        if taken.due > len(taken.claims):
            # Due but not claimed: more than the senders took (look again at once), or another
            # instance (or a sweep) holds them for a moment.
            return 0.0 if taken.claims else min(poll, 0.05)
        # Everything due is under way: sleep until the next retry is due, at the poll's pace at most
        # (other instances queue alerts too). Alerts behind one being sent have no time of their
        # own: its outcome wakes us.
        return poll if taken.next_in is None or taken.next_in <= 0 else min(taken.next_in, poll)

    def _recover(self) -> None:
        """Claims that lapsed (a dead or paused instance's, or a sender of ours that never came back):
        unknown if the request may have left (logged with its final state and notified), else queued again."""
        self._last_recovery = self.clock()
        try:
            records = self.journal.recover(self.instance, self.membership.dead_after, self.lease)
        except JournalUnavailable as exc:
            log.error("could not look for lapsed claims: %s", exc)
            return
        for record in records:
            if record.final:
                log.warning(
                    "alert %s was being sent by %s, whose claim lapsed before it finished: now %s, not resent "
                    "(check bot %s on OKX)",
                    record.id,
                    record.claimed_by or "an earlier process",
                    record.state,
                    record.algo_id,
                )
                self._finished(record)
            else:
                log.warning("alert %s: its claimant lost its claim before sending it: queued again", record.id)
        if records:
            self._wake()

    def _fail_unrouted(self) -> None:
        """Queued alerts under an account no longer configured (here, or on any instance) can never
        be sent: failed at once, naming the account, logged and notified, so that they hold their
        bot up no longer (they used to wait out their lag, up to an hour)."""
        try:
            records = self.journal.fail_unrouted(self.instance, list(self.lanes))
        except JournalUnavailable as exc:
            log.error("could not look for alerts under an account no longer configured: %s", exc)
            return
        for record in records:
            self._finished(record)

    def _free_orphans(self) -> None:
        """Claims of ours that none of our senders holds (a claim whose reply was lost): their alerts
        are queued again (or expired) and their rate slots given back, long before their lease
        lapses or the ledger's 90-second rule ends the slots. Run by the dispatcher thread only, the
        one that hands claims to senders, so ``_in_flight`` holds every claim of ours being worked on."""
        live = [claim for claim, _, _, _ in list(self._in_flight.values())]
        try:
            records = self.journal.free_orphans(self.instance, live)
        except JournalUnavailable as exc:
            log.error("could not look for claims of ours that no sender holds (looked for again shortly): %s", exc)
            return
        self._orphans_suspected = False
        for record in records:
            if record.final:
                self._finished(record)
            else:
                log.warning(
                    "alert %s: claimed by this instance (attempt %s) but never handed to a sender (the claim's "
                    "reply was lost): queued again, its rate slots given back",
                    record.id,
                    record.attempts,
                )
        if records:
            self._wake()

    def _sent(self, future) -> None:
        claim, _, _, _ = self._in_flight.pop(future, (None, None, None, None))
        alert_id = claim.alert_id if claim else None
        if not future.cancelled() and future.exception() is not None:
            # Never swallowed by the pool: the alert may be left "sending" until its lease lapses and recovery takes it.
            log.error("sender failed on alert %s", alert_id, exc_info=future.exception())

    # -- sender -----------------------------------------------------------------------

    def _send(self, record: Record, lane: Lane, slot, send_by: float, read_slot=None) -> None:
        """``read_slot``: the bot read's slot, taken with the claim (None: the read takes its own)."""
        claim = Claim.of(record)
        started = self.clock()
        failure: OkxError | None = None
        answered = False  # OKX answered, or may have: the outcome is written next
        try:
            evidence = self._snapshot_before(lane, record.algo_id, send_by, read_slot)
            if not self._cleared(claim, send_by, evidence, lane, read_slot):
                self._cancel(lane.pacer, [slot])
                slot = None
                return
            # The client checks the deadline on the host's elapsed clock (boot time), as late as it can.
            ack = lane.client.adjust_margin(_margin_request(record), send_by=self.clock.host_deadline(send_by))
            if ack.dry_run:  # nothing was sent, so OKX said nothing: it must not read as "ok"
                self._cancel(lane.pacer, [slot])
                slot = None
                self._write(lambda: self.journal.unclaim([claim]), started)
                log.warning("alert %s was not sent: the OKX client is in dry-run; it stays queued", record.id)
                return
            answered = True
        except OkxError as exc:
            failure, answered = exc, True
        except _Unwritten:
            return
        except Exception:
            log.exception("unexpected error while sending alert %s", record.id)
            failure, answered = OkxOutcomeUnknown("internal error while sending; check the bot on OKX"), True
        finally:
            # Whatever happened, the exchange with OKX is over. A ledger in the journal's database
            # has the slot closed by the outcome's write below instead (one round trip fewer): it
            # closes a moment later, which only over-counts OKX's budget.
            if not (answered and lane.pacer.shares_journal):
                self._release(lane.pacer, slot)
                slot = None
        latency_ms = (self.clock() - started) * 1000
        try:
            self._record_outcome(record, lane, claim, failure, latency_ms, started, slot)
            slot = None  # the write ran, fenced out or not: it closed the slot
        except _Unwritten as exc:
            # It stays "sending"; when its lease lapses, recovery (on any live instance) makes it unknown.
            log.error(
                "could not journal the outcome of alert %s (%s): recovery takes it when its claim lapses",
                record.id,
                exc,
            )
            self._signal(record.id)  # the reply reads what the journal has
        finally:
            self._release(lane.pacer, slot)  # the write that was to close it never ran

    def _snapshot_before(self, lane: Lane, algo_id: str, send_by: float, read_slot=None) -> str | None:
        """The bot as OKX shows it now, as evidence text; None when it cannot be read in time
        (the read never takes the send past its deadline: it keeps BEFORE_READ_SPARE for the rest)."""
        time_left = send_by - self.clock() - BEFORE_READ_SPARE
        if lane.read_bot is None or time_left < MIN_BEFORE_READ:
            return None
        try:
            snapshot = lane.read_bot(algo_id, min(time_left, MAX_BEFORE_READ), read_slot)
            return json.dumps({"before": snapshot.to_json()}) if snapshot is not None else None
        except Exception:  # nothing has been sent yet: a bug here must not read as an unknown outcome
            log.exception("reading bot %s before a send failed; sending without its snapshot", algo_id)
            return None

    def _cleared(self, claim: Claim, send_by: float, evidence: str | None, lane: Lane, read_slot=None) -> bool:
        """May the request leave now? Only inside the local deadline and with the journal's word
        that the claim is current; otherwise it is not sent (and never will be on this claim).
        ``read_slot`` ends with the journal's word, or here when the journal was not asked."""
        if self.clock() < send_by:
            try:
                confirmed = self.journal.confirm_send(claim, evidence, read_slot=read_slot)
                read_slot = None  # the confirmation's write ended it, whatever its answer
                if confirmed:
                    return True
                log.warning(
                    "alert %s was not sent: attempt %s's claim by %s had lapsed or been taken over",
                    claim.alert_id,
                    claim.attempt,
                    claim.instance,
                )
                self._note(
                    claim.alert_id,
                    "not sent",
                    f"attempt {claim.attempt} by {claim.instance} not sent: its claim had lapsed",
                )
                return False
            except JournalUnavailable as exc:
                log.error("alert %s not sent: its claim could not be confirmed (%s)", claim.alert_id, exc)
        else:
            log.warning(
                "alert %s not sent: held up %.1f s past its claim's deadline",
                claim.alert_id,
                self.clock() - send_by,
            )
        self._release(lane.read_pacer, read_slot)  # the journal was not asked (None: nothing to end)
        # Never sent: back in the queue while the claim is still ours (else recovery does it at the lapse).
        try:
            self.journal.unclaim([claim])
        except JournalUnavailable as exc:
            log.error(
                "alert %s: could not put it back in the queue (%s); recovery will when its claim lapses",
                claim.alert_id,
                exc,
            )
        self._wake()
        return False

    def _record_outcome(
        self,
        record: Record,
        lane: Lane,
        claim: Claim,
        failure: OkxError | None,
        latency_ms: float,
        started: float,
        slot=None,
    ) -> None:
        """Writes OKX's answer, fenced by the claim; ``slot``, when given, is closed by the same write."""
        # The journal's clock, read only when a retry needs a time.
        now = self._write(self.journal.now, started) if isinstance(failure, OkxNotExecuted) else 0.0
        outcome = self.policy.judge(failure, record.attempts, record.expires_at, now)
        answer = answer_detail(outcome.state or "not executed", outcome.okx_code, outcome.okx_msg, outcome.detail)
        if outcome.state is None:
            current = self._write(
                lambda: self.journal.requeue(
                    record.id,
                    outcome.okx_code,
                    outcome.okx_msg,
                    outcome.detail,
                    outcome.retry_at,
                    claim=claim,
                    slot=slot,
                ),
                started,
            )
            if current or self._fenced_out(record, claim, "queued", answer):
                self._hold_off(lane.pacer, outcome.hold_off)
            self._wake()
            return
        done = self._write(
            lambda: self.journal.finish(
                record.id,
                outcome.state,
                okx_code=outcome.okx_code,
                okx_msg=outcome.okx_msg,
                detail=outcome.detail,
                latency_ms=latency_ms,
                claim=claim,
                slot=slot,
            ),
            started,
        )
        done = done or self._fenced_out(record, claim, outcome.state, answer)
        if done is None:
            return
        self._finished(done)
        self._hold_off(lane.pacer, outcome.hold_off)

    def _fenced_out(self, record: Record, claim: Claim, state: str, answer: str) -> Record | None:
        """A write after a send was fenced out. If it was only a retry of our own write that had
        committed (its reply lost), the journal shows our claim in the state we wrote: return it.
        Otherwise the claim was taken over: OKX's answer is late, kept and told, never overwriting
        the survivor's state; None."""
        try:
            latest = self.journal.get(claim.alert_id)
        except JournalUnavailable:
            latest = None
        if latest and latest.state == state and Claim.of(latest) == claim and latest.detail != INTERRUPTED_DETAIL:
            return latest
        text = f"late answer from OKX after take-over: {answer}"
        log.warning("alert %s: %s; its state stays %s", record.id, text, latest.state if latest else "?")
        self._note(record.id, "late answer", text)
        if self._on_late is not None:
            try:
                self._on_late(latest or record, text)
            except Exception:
                log.exception("telling of alert %s's late answer failed", record.id)
        return None

    def _hold_off(self, pacer: Pacer, seconds: float) -> None:
        if not seconds:
            return
        try:
            pacer.hold_off(seconds)
        except JournalUnavailable as exc:
            log.error("could not record OKX's %.1f s hold-off in the pacing ledger: %s", seconds, exc)

    def _write(self, step: Callable, started: float):
        """A journal write after a send, tried again while the claim may still be current."""
        give_up = started + self.lease
        for delay in (*WRITE_RETRY_DELAYS, None):
            try:
                return step()
            except JournalUnavailable as exc:
                if delay is None or self.clock() + delay >= give_up:
                    raise _Unwritten(str(exc)) from None
                log.warning("journal write failed (%s); trying again in %.2f s", exc, delay)
                self.clock.sleep(delay)

    def _note(self, alert_id: int, kind: str, detail: str) -> None:
        try:
            self.journal.note(alert_id, kind, detail)
        except JournalUnavailable as exc:
            log.error("could not add to alert %s's timeline (%s): %s", alert_id, exc, detail)

    def _release(self, pacer: Pacer, slot) -> None:
        if slot is None:
            return
        try:
            pacer.release(slot)
        except JournalUnavailable as exc:
            log.error("could not record the end of a request in the pacing ledger (tried again later): %s", exc)
            self._unsettled.append(("release", pacer, slot))
        self._wake()

    def _cancel(self, pacer: Pacer, slots: list) -> None:
        if not slots:
            return
        try:
            pacer.cancel(slots)
        except JournalUnavailable as exc:
            log.error("could not give back unused rate slots (tried again later): %s", exc)
            self._unsettled.append(("cancel", pacer, slots))

    def _settle(self) -> None:
        """Pacing writes that failed earlier: a slot is given back on every path, sooner or later."""
        while self._unsettled:
            kind, pacer, slot = self._unsettled[0]
            try:
                pacer.release(slot) if kind == "release" else pacer.cancel(slot)
            except JournalUnavailable:
                return
            self._unsettled.pop(0)

    def _finished(self, record: Record) -> None:
        log_outcome(record)
        self._finishes += 1
        self._signal(record.id, record)
        if any(backlog is None or backlog > 0 for backlog in self._backlog.values()):
            self._wake()  # the next alert for its bot may go now
        if self._on_final is not None:
            try:
                self._on_final(record)
            except Exception:
                log.exception("telling of alert %s's outcome failed", record.id)

    def _signal(self, alert_id: int, final: Record | None = None) -> None:
        with self._cond:
            event = self._done.get(alert_id)
            if event is not None and final is not None:
                self._finals[alert_id] = final
        if event is not None:
            event.set()

    def _maybe_prune(self) -> None:
        if self._last_prune is not None and self.clock() - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = self.clock()
        try:
            removed = self.journal.prune(self.journal.now() - self.retention)
            if removed:
                log.info("pruned %d finished alert(s) older than the retention period", removed)
        except JournalUnavailable as exc:
            log.error("could not prune the journal: %s", exc)


def log_outcome(record: Record) -> None:
    """One line per alert as it reaches its final state; WARNING unless OKX executed it."""
    level = logging.INFO if record.state in ("ok", "dry_run") else logging.WARNING
    log.log(
        level,
        "alert %s final state=%s algoId=%s action=%s amount=%s attempts=%s okx_code=%s okx_msg=%s "
        "latency_ms=%s detail=%s instance=%s",
        record.id,
        record.state,
        record.algo_id,
        record.action,
        record.amount,
        record.attempts,
        record.okx_code or "-",
        record.okx_msg or "-",
        "-" if record.latency_ms is None else f"{record.latency_ms:.1f}",
        record.detail or "-",
        record.claimed_by or "-",
    )


def _margin_request(record: Record) -> MarginRequest:
    body = record.request
    return MarginRequest(
        algo_id=body["algoId"], type=body["type"], amt=body["amt"], allow_reinvest=body.get("allowReinvest")
    )
