"""Between the journal and OKX: dispatching, within OKX's rate budget, and the reply deadline.

A dispatcher thread asks the journal for due alerts, takes as many slots of the rate budget
(``pacing``) as it may use, claims that many alerts (``sending``, durably, before any byte
leaves) and hands each to a sender thread. What an answer means (a final state, or a retry)
is ``outcomes``'s job; who else is alive is ``membership``'s. The queue is the journal's, so
with PostgreSQL any instance may send an alert that another one received.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .journal import Journal, JournalUnavailable, Record
from .membership import Membership
from .okx import MarginRequest, OkxClient, OkxError, OkxNotExecuted, OkxOutcomeUnknown
from .outcomes import OutcomePolicy
from .pacing import Pacer

log = logging.getLogger("webhook_app")

PRUNE_EVERY = 3600.0
EXPIRE_EVERY = 0.5  # seconds between sweeps that mark overdue queued alerts expired


class Delivery:
    def __init__(
        self,
        journal: Journal,
        client: OkxClient,
        pacer: Pacer | None,
        policy: OutcomePolicy,
        membership: Membership,
        *,
        senders: int = 20,
        retention: float = 30 * 86400,
        on_final: Callable[[Record], None] | None = None,
    ):
        self.journal = journal
        self.client = client
        self.pacer = pacer  # None in dry-run: nothing is ever sent
        self.policy = policy
        self.membership = membership
        self.retention = retention
        self.senders = senders
        self._on_final = on_final  # told of every alert that reaches its final state (notifications)
        self._pool = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="okx-sender")
        self._cond = threading.Condition()
        self._woken = False
        self._done: dict[int, threading.Event] = {}
        self._in_flight: dict = {}  # sender future -> alert id
        self._thread: threading.Thread | None = None
        self._started = False
        self._stopping = False
        self._start_lock = threading.Lock()
        self._dispatching = threading.Lock()  # taking slots and claiming, as one step for this process
        self._last_prune = 0.0
        self._last_expiry = 0.0

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
            self._started = True
            if self.pacer is None:
                waiting = self.journal.count_due(self.journal.now())
                if waiting:
                    log.warning(
                        "%d queued alert(s) in the journal wait for live mode: in dry-run nothing is sent; "
                        "they are sent, or expire, at the first live start",
                        waiting,
                    )
                return
            self._thread = threading.Thread(target=self._dispatch, name="okx-dispatcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming (queued alerts stay in the journal, for the others or the next start),
        put back any claimed send that had not started, wait up to ``timeout`` for sends under
        way, and leave the instances."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        not_started = [alert_id for future, alert_id in list(self._in_flight.items()) if future.cancel()]
        if not_started:
            try:
                self.journal.unclaim(not_started)
                log.info("stopping: claimed alerts %s had not been sent yet and are queued again", not_started)
            except JournalUnavailable as exc:
                log.error("stopping: alerts %s were never sent but could not be queued again (%s)", not_started, exc)
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
            self.client.adjust_margin(_margin_request(record))
            return record
        self.start()
        event = threading.Event()
        with self._cond:
            self._done[record.id] = event
        self._wake()
        try:
            # The journal first: the alert was due from its commit on, so a dispatcher may already
            # have claimed or even sent it, before ``event`` was registered (that signal went to nobody).
            # Under the dispatch lock: between taking slots and claiming, a slot would count
            # against an alert that is about to be sent.
            with self._dispatching:
                current = self.journal.get(record.id) or record
                if current.final or wait <= 0 or self.pacer is None:
                    return current
                if current.state == "queued":  # its turn under the rate limit: answer at once if it is far off
                    ahead = self.journal.count_due(before_id=record.id)
                    if self.pacer.projected(ahead) >= wait:
                        return current
            latest = self._wait_final(record.id, event, time.monotonic() + wait)
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

    def _wait_final(self, alert_id: int, event: threading.Event, deadline: float) -> Record | None:
        # Sent here, the event says so. Sent by another instance (PostgreSQL), only the journal
        # knows: look there until it is final, or until it turns out to be ours after all.
        step = self.journal.poll_interval if self.journal.shared else None
        while (remaining := deadline - time.monotonic()) > 0:
            if event.wait(remaining if step is None else min(step, remaining)):
                return None
            if step is not None:
                latest = self.journal.get(alert_id)
                if latest is not None and latest.final:
                    return latest
                if latest is not None and latest.claimed_by == self.instance:
                    step = None  # ours: the event will say when it is done
        return None

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
                    self._cond.wait(pause)
                self._woken = False
                if self._stopping:
                    return

    def _dispatch_once(self) -> float:
        """Claims and starts what may go now; returns how long to wait before looking again."""
        poll = self.journal.poll_interval
        now = self.journal.now()
        self._maybe_prune(now)
        if now - self._last_expiry >= EXPIRE_EVERY:  # an alert is never claimed late anyway (claim_due checks)
            self._last_expiry = now
            for record in self.journal.expire_overdue(now):
                self._finished(record)
        due = self.journal.count_due(now)
        if not due:
            upcoming = self.journal.next_due_at()
            return poll if upcoming is None else min(max(upcoming - now, 0.001), poll)
        with self._dispatching:
            slots = self.pacer.acquire(self.instance, min(due, self.senders))
            if not slots:
                opens_in = self.pacer.opens_in()  # a reply here wakes us sooner
                return poll if opens_in is None else min(max(opens_in, 0.001), poll)
            records = self.journal.claim_due(self.instance, len(slots), now)
            self.pacer.cancel(slots[len(records) :])  # another instance was quicker to some
        for record, slot in zip(records, slots, strict=False):
            future = self._pool.submit(self._send, record, slot)
            self._in_flight[future] = record.id
            future.add_done_callback(self._sent)
        return 0.0

    def _sent(self, future) -> None:
        alert_id = self._in_flight.pop(future, None)
        if not future.cancelled() and future.exception() is not None:
            # Never swallowed by the pool: the alert may be stuck in "sending" (unknown once we are gone).
            log.error("sender failed on alert %s", alert_id, exc_info=future.exception())

    # -- sender -----------------------------------------------------------------------

    def _send(self, record: Record, slot) -> None:
        started = time.monotonic()
        failure: OkxError | None = None
        try:
            ack = self.client.adjust_margin(_margin_request(record))
            if ack.dry_run:  # nothing was sent, so OKX said nothing: it must not read as "ok"
                self.pacer.cancel([slot])
                slot = None
                self.journal.unclaim([record.id])
                log.warning("alert %s was not sent: the OKX client is in dry-run; it stays queued", record.id)
                return
        except OkxError as exc:
            failure = exc
        except Exception:
            log.exception("unexpected error while sending alert %s", record.id)
            failure = OkxOutcomeUnknown("internal error while sending; check the bot on OKX")
        finally:
            self._release(slot)  # whatever happened, the exchange with OKX is over
        latency_ms = (time.monotonic() - started) * 1000
        # The journal's clock, read only when a retry needs a time.
        now = self.journal.now() if isinstance(failure, OkxNotExecuted) else 0.0
        outcome = self.policy.judge(failure, record.attempts, record.expires_at, now)
        if outcome.hold_off:
            self.pacer.hold_off(outcome.hold_off)
        if outcome.state is None:
            self.journal.requeue(record.id, outcome.okx_code, outcome.okx_msg, outcome.detail, outcome.retry_at)
            self._wake()
            return
        try:
            record = self.journal.finish(
                record.id,
                outcome.state,
                okx_code=outcome.okx_code,
                okx_msg=outcome.okx_msg,
                detail=outcome.detail,
                latency_ms=latency_ms,
            )
            self._finished(record)
        except JournalUnavailable:
            # It stays "sending" in the journal, which reads as unknown once this instance is gone.
            log.error(
                "could not journal the outcome of alert %s: %s (OKX code %s)",
                record.id,
                outcome.state,
                outcome.okx_code,
            )
            self._signal(record.id)  # the reply reads what the journal has

    def _release(self, slot) -> None:
        if slot is None:
            return
        try:
            self.pacer.release(slot)
        except JournalUnavailable as exc:
            log.error("could not record the end of a request in the pacing ledger: %s", exc)
        self._wake()

    def _finished(self, record: Record) -> None:
        log_outcome(record)
        self._signal(record.id)
        if self._on_final is not None:
            try:
                self._on_final(record)
            except Exception:
                log.exception("telling of alert %s's outcome failed", record.id)

    def _signal(self, alert_id: int) -> None:
        with self._cond:
            event = self._done.get(alert_id)
        if event is not None:
            event.set()

    def _maybe_prune(self, now: float) -> None:
        if now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        try:
            removed = self.journal.prune(now - self.retention)
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
