"""Between the journal and OKX: order, pacing, retries, deadlines and restart recovery.

One dispatcher thread takes queued alerts oldest first, waits for a slot under OKX's
rate limit, marks the alert ``sending`` in the journal, and hands it to a sender
thread. Resends happen only where OKX certainly did not act; anything after which
OKX may have acted ends as ``unknown``. The limiter lives in this process, which is
why the Procfile runs exactly one worker process (README: scaling).
"""
from __future__ import annotations

import collections
import heapq
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

from .journal import Journal, JournalUnavailable, Record
from .okx import MarginRequest, OkxClient, OkxClockSkew, OkxError, OkxNotExecuted, OkxOutcomeUnknown

log = logging.getLogger("webhook_app")

PRUNE_EVERY = 3600.0


class RateLimiter:
    """At most ``limit`` requests in any ``window`` seconds, as OKX counts them.

    OKX counts a request when it arrives, which is some time between our send and its
    reply. A request's slot is therefore held from the send until ``window`` after its
    reply came back (or it failed): whatever the network's jitter, no ``limit + 1``
    requests can arrive within one window."""

    class Slot:
        __slots__ = ("ended",)

        def __init__(self, ended: Optional[float] = None):
            self.ended = ended  # monotonic time the request's exchange ended; None while in flight

    def __init__(self, limit: int, window: float = 2.0, margin: float = 0.01,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window + margin
        self._clock = clock
        self._slots: collections.deque[RateLimiter.Slot] = collections.deque()
        self._lock = threading.Lock()

    def _busy(self, now: float) -> int:
        while self._slots and self._slots[0].ended is not None and self._slots[0].ended + self.window <= now:
            self._slots.popleft()
        return sum(1 for s in self._slots if s.ended is None or s.ended + self.window > now)

    def free(self) -> int:
        """How many requests may start now."""
        with self._lock:
            return max(self.limit - self._busy(self._clock()), 0)

    def opens_in(self) -> Optional[float]:
        """Seconds until a slot frees, 0 if one is free; None while only a reply can free one."""
        with self._lock:
            now = self._clock()
            if self._busy(now) < self.limit:
                return 0.0
            ends = [s.ended + self.window for s in self._slots if s.ended is not None]
            return max(min(ends) - now, 0.0) if ends else None

    def take(self) -> "RateLimiter.Slot":
        slot = RateLimiter.Slot()
        with self._lock:
            self._slots.append(slot)
        return slot

    def release(self, slot: "RateLimiter.Slot") -> None:
        """The request's exchange with OKX has ended (reply, error or never sent)."""
        with self._lock:
            slot.ended = self._clock()

    def hold_off(self, seconds: float) -> None:
        """OKX said we were over its limit (other clients share the account): start
        nothing for ``seconds``."""
        with self._lock:
            ended = self._clock() + seconds - self.window
            self._slots.extend(RateLimiter.Slot(ended) for _ in range(self.limit))

    def projected(self, ahead: int) -> float:
        """Roughly how many seconds from now a request queued behind ``ahead`` others starts."""
        with self._lock:
            position = self._busy(self._clock()) + ahead
        return (position // self.limit) * self.window


class Delivery:
    def __init__(self, journal: Journal, client: OkxClient, limiter: Optional[RateLimiter], *,
                 max_attempts: int = 4, senders: int = 20, retention: float = 30 * 86400,
                 base_backoff: float = 0.25, clock: Callable[[], float] = time.time):
        self.journal = journal
        self.client = client
        self.limiter = limiter
        self.max_attempts = max_attempts
        self.retention = retention
        self.base_backoff = base_backoff
        self._clock = clock
        self._queue: list[tuple[float, int, float]] = []  # (not_before, id, expires_at)
        self._cond = threading.Condition()
        self._done: dict[int, threading.Event] = {}
        self._senders = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="okx-sender")
        self._in_flight: set = set()
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self._start_lock = threading.Lock()
        self._last_prune = 0.0

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Recover what a previous process left, then start dispatching. Idempotent."""
        with self._start_lock:
            if self._thread is not None:
                return
            interrupted, queued = self.journal.recover(self._clock())
            for record in interrupted:
                log.warning("alert %s was being sent when the service stopped: now unknown, "
                            "not resent (check bot %s on OKX)", record.id, record.algo_id)
            for record in queued:
                self._push(record.id, record.expires_at, self._clock())
            if queued:
                log.info("recovered %d queued alert(s) from the journal", len(queued))
            self._thread = threading.Thread(target=self._dispatch, name="okx-dispatcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking alerts off the queue (they stay queued in the journal for the next
        start) and wait up to ``timeout`` for sends already under way."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        self._senders.shutdown(wait=False, cancel_futures=True)

    # -- web side ---------------------------------------------------------------------

    def submit(self, record: Record, wait: float = 0.0) -> Record:
        """Queue a journaled alert; wait up to ``wait`` seconds for its outcome, unless its
        turn under the rate limit comes later than that anyway (a burst's tail is answered
        at once, so it does not hold a web thread for nothing). Returns its latest record.

        A dry-run alert (journaled as ``dry_run``) is signed like a real one and goes no further."""
        if record.state == "dry_run":
            self.client.adjust_margin(_margin_request(record))
            return record
        self.start()
        event = threading.Event()
        with self._cond:
            ahead = len(self._queue)
            self._done[record.id] = event
            heapq.heappush(self._queue, (self._clock(), record.id, record.expires_at))
            self._cond.notify_all()
        turn_in = 0.0 if self.limiter is None else self.limiter.projected(ahead)
        if wait > 0 and turn_in < wait:
            event.wait(wait)
        with self._cond:
            self._done.pop(record.id, None)
        return self.journal.get(record.id) or record

    # -- dispatcher -------------------------------------------------------------------

    def _push(self, alert_id: int, expires_at: float, not_before: float) -> None:
        with self._cond:
            heapq.heappush(self._queue, (not_before, alert_id, expires_at))
            self._cond.notify_all()

    def _next_batch(self) -> Optional[list[tuple[float, int, float]]]:
        """Waits until alerts are due and the limit lets them go; pops as many as may start."""
        with self._cond:
            while not self._stopping:
                now = self._clock()
                timeout = 60.0
                if self._queue and self._queue[0][0] <= now:
                    free = self.limiter.free() if self.limiter is not None else len(self._queue)
                    if free > 0:
                        batch = []
                        while self._queue and self._queue[0][0] <= now and len(batch) < free:
                            batch.append(heapq.heappop(self._queue))
                        return batch
                    opens_in = self.limiter.opens_in()
                    timeout = 0.5 if opens_in is None else max(opens_in, 0.001)  # a reply notifies us
                elif self._queue:
                    timeout = self._queue[0][0] - now
                self._cond.wait(min(timeout, 60.0))
            return None

    def _dispatch(self) -> None:
        while True:
            self._maybe_prune()
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._dispatch_batch(batch)
            except JournalUnavailable as exc:
                # They stay queued in the journal; try again shortly, never send unrecorded.
                log.error("journal unavailable while dispatching: %s", exc)
                for _, alert_id, expires_at in batch:
                    self._push(alert_id, expires_at, self._clock() + 1.0)
            except Exception:  # keep the dispatcher alive whatever happens to one batch
                log.exception("dispatcher failed on alerts %s", [job[1] for job in batch])

    def _dispatch_batch(self, batch: list[tuple[float, int, float]]) -> None:
        now = self._clock()
        due = []
        for _, alert_id, expires_at in batch:
            if now > expires_at:
                self._expire(alert_id)
            else:
                due.append(alert_id)
        # One journal transaction (one fsync) marks the whole batch "sending" before any send.
        for record in self.journal.claim(due, now):
            slot = self.limiter.take() if self.limiter is not None else None
            future = self._senders.submit(self._send, record, slot)
            self._in_flight.add(future)
            future.add_done_callback(self._in_flight.discard)

    def _expire(self, alert_id: int) -> None:
        record = self.journal.get(alert_id)
        if record is None or record.state != "queued":
            return
        record = self.journal.finish(alert_id, "expired", now=self._clock(),
                                     detail="too old to send: it waited past its lag")
        log.warning("alert %s expired before it could be sent (bot %s, %s %s): not sent",
                    alert_id, record.algo_id, record.action, record.amount)
        self._signal(alert_id)

    # -- sender -----------------------------------------------------------------------

    def _send(self, record: Record, slot: Optional[RateLimiter.Slot]) -> None:
        started = time.monotonic()
        failure: Optional[OkxError] = None
        try:
            self.client.adjust_margin(_margin_request(record))
        except OkxError as exc:
            failure = exc
        except Exception:
            log.exception("unexpected error while sending alert %s", record.id)
            failure = OkxOutcomeUnknown("internal error while sending; check the bot on OKX")
        finally:
            self._release(slot)  # whatever happened, the exchange with OKX is over
        latency_ms = (time.monotonic() - started) * 1000
        if failure is None:
            self._finish(record, "ok", "0", "", None, latency_ms)
        elif isinstance(failure, OkxNotExecuted):
            self._not_executed(record, failure, latency_ms)
        else:
            self._finish(record, failure.state, *_describe(failure), latency_ms)

    def _release(self, slot: Optional[RateLimiter.Slot]) -> None:
        if slot is not None:
            self.limiter.release(slot)
            with self._cond:
                self._cond.notify_all()

    def _not_executed(self, record: Record, exc: OkxNotExecuted, latency_ms: float) -> None:
        attempts = record.attempts
        if isinstance(exc, OkxClockSkew):
            try:
                offset = self.client.sync_clock()
                log.warning("OKX said our clock is off (50102): offset now %.3f s", offset)
                delay = 0.0
            except OkxNotExecuted:
                delay = self._backoff(attempts)
        elif exc.retry_after:
            delay = exc.retry_after
            if self.limiter is not None:
                self.limiter.hold_off(exc.retry_after)
        else:
            delay = self._backoff(attempts)
        retry_at = self._clock() + delay
        code, message, detail = _describe(exc)
        if attempts < self.max_attempts and retry_at < record.expires_at:
            self.journal.requeue(record.id, code, message,
                                 f"attempt {attempts} not executed ({detail or message}); retrying in {delay:.2f} s")
            self._push(record.id, record.expires_at, retry_at)
            return
        detail = f"not executed: gave up after {attempts} attempt(s); last: {detail or message}"
        self._finish(record, "failed", code, message, detail, latency_ms)

    def _backoff(self, attempts: int) -> float:
        # Exponential with jitter, so many alerts retrying at once do not return together.
        ceiling = self.base_backoff * (2 ** max(attempts - 1, 0))
        return random.uniform(ceiling / 2, ceiling)

    def _finish(self, record: Record, state: str, code, message, detail, latency_ms: float) -> None:
        try:
            self.journal.finish(record.id, state, okx_code=code, okx_msg=message, detail=detail,
                                latency_ms=latency_ms, now=self._clock())
        except JournalUnavailable:
            # It stays "sending" in the journal, which reads as unknown at the next start.
            log.error("could not journal the outcome of alert %s: %s (OKX code %s)", record.id, state, code)
        self._signal(record.id)

    def _signal(self, alert_id: int) -> None:
        with self._cond:
            event = self._done.get(alert_id)
        if event is not None:
            event.set()

    def _maybe_prune(self) -> None:
        now = self._clock()
        if now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        try:
            removed = self.journal.prune(now - self.retention)
            if removed:
                log.info("pruned %d finished alert(s) older than the retention period", removed)
        except JournalUnavailable as exc:
            log.error("could not prune the journal: %s", exc)


def _describe(exc: OkxError) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(OKX code, OKX message, our detail): OKX's fields only when OKX said them."""
    if exc.code and not exc.code.startswith("HTTP"):
        return exc.code, exc.message, exc.hint or None
    return None, None, exc.message


def _margin_request(record: Record) -> MarginRequest:
    body = record.request
    return MarginRequest(algo_id=body["algoId"], type=body["type"], amt=body["amt"],
                         allow_reinvest=body.get("allowReinvest"))
