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
from .okx import (MarginRequest, OkxClient, OkxClockSkew, OkxError, OkxNotExecuted,
                  OkxOutcomeUnknown)

log = logging.getLogger("webhook_app")

PRUNE_EVERY = 3600.0


class RateLimiter:
    """At most ``limit`` slots in any ``window`` seconds. Slots are handed out in call order;
    ``margin`` keeps network jitter from squeezing two windows' worth into one at OKX."""

    def __init__(self, limit: int, window: float = 2.0, margin: float = 0.05,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self.margin = margin
        self._clock = clock
        self._slots: collections.deque[float] = collections.deque(maxlen=limit)
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Book the next free slot; returns the monotonic time at which it opens."""
        with self._lock:
            slot = self._clock()
            if len(self._slots) == self.limit:
                slot = max(slot, self._slots[0] + self.window + self.margin)
            if self._slots:
                slot = max(slot, self._slots[-1])
            self._slots.append(slot)
            return slot

    def hold_off(self, seconds: float) -> None:
        """OKX said we were over its limit (other clients share the account): book nothing
        for ``seconds``."""
        with self._lock:
            until = self._clock() + seconds
            self._slots.extend([until - self.window - self.margin] * self.limit)


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

    def submit(self, record: Record) -> None:
        self.start()
        with self._cond:
            self._done.setdefault(record.id, threading.Event())
        self._push(record.id, record.expires_at, self._clock())

    def wait(self, alert_id: int, timeout: float) -> Optional[Record]:
        """The alert's record once it is final, or its current record after ``timeout``."""
        with self._cond:
            event = self._done.get(alert_id)
        if event is not None:
            event.wait(max(0.0, timeout))
            with self._cond:  # one waiter per alert: done with it either way
                self._done.pop(alert_id, None)
        return self.journal.get(alert_id)

    # -- dispatcher -------------------------------------------------------------------

    def _push(self, alert_id: int, expires_at: float, not_before: float) -> None:
        with self._cond:
            heapq.heappush(self._queue, (not_before, alert_id, expires_at))
            self._cond.notify_all()

    def _next_job(self) -> Optional[tuple[float, int, float]]:
        with self._cond:
            while not self._stopping:
                if self._queue:
                    wait = self._queue[0][0] - self._clock()
                    if wait <= 0:
                        return heapq.heappop(self._queue)
                else:
                    wait = 60.0
                self._cond.wait(min(wait, 60.0))
            return None

    def _dispatch(self) -> None:
        while True:
            self._maybe_prune()
            job = self._next_job()
            if job is None:
                return
            try:
                self._dispatch_one(*job)
            except JournalUnavailable as exc:
                # The alert stays queued in the journal; retry shortly, never send unrecorded.
                log.error("journal unavailable while dispatching alert %s: %s", job[1], exc)
                self._push(job[1], job[2], self._clock() + 1.0)
            except Exception:  # keep the dispatcher alive whatever happens to one alert
                log.exception("dispatcher failed on alert %s", job[1])

    def _dispatch_one(self, _not_before: float, alert_id: int, expires_at: float) -> None:
        if self.limiter is not None:
            slot = self.limiter.reserve()
            delay = slot - time.monotonic()
            if self._clock() + max(delay, 0.0) > expires_at:
                self._expire(alert_id)
                return
            if delay > 0 and self._sleep(delay):
                self._push(alert_id, expires_at, self._clock())  # stopping: leave it queued
                return
        elif self._clock() > expires_at:
            self._expire(alert_id)
            return
        if not self.journal.claim(alert_id, self._clock()):
            return  # no longer queued (finished elsewhere)
        record = self.journal.get(alert_id)
        future = self._senders.submit(self._send, record)
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)

    def _sleep(self, seconds: float) -> bool:
        """Sleep, waking early if asked to stop; True when stopping."""
        with self._cond:
            end = time.monotonic() + seconds
            while not self._stopping and time.monotonic() < end:
                self._cond.wait(end - time.monotonic())
            return self._stopping

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

    def _send(self, record: Record) -> None:
        body = record.request
        request = MarginRequest(algo_id=body["algoId"], type=body["type"], amt=body["amt"],
                                allow_reinvest=body.get("allowReinvest"))
        started = time.monotonic()
        try:
            ack = self.client.adjust_margin(request)
        except OkxNotExecuted as exc:
            self._not_executed(record, exc, (time.monotonic() - started) * 1000)
            return
        except OkxError as exc:
            self._finish(record, exc.state, *_describe(exc), started)
            return
        except Exception:
            log.exception("unexpected error while sending alert %s", record.id)
            self._finish(record, "unknown", None, None, "internal error while sending; check the bot on OKX",
                         started)
            return
        self._finish(record, "dry_run" if ack.dry_run else "ok", None if ack.dry_run else "0", "", None,
                     started)

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
        self._finish(record, "failed", code, message, detail, None, latency_ms)

    def _backoff(self, attempts: int) -> float:
        # Exponential with jitter, so many alerts retrying at once do not return together.
        ceiling = self.base_backoff * (2 ** max(attempts - 1, 0))
        return random.uniform(ceiling / 2, ceiling)

    def _finish(self, record: Record, state: str, code, message, detail, started,
                latency_ms: Optional[float] = None) -> None:
        if started is not None:
            latency_ms = (time.monotonic() - started) * 1000
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
