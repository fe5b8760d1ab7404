"""The log of refused requests to /webhook: recorded from a background thread, so a flood of
junk never slows a valid alert, and bounded, so it never fills the database.

Per minute (and per instance) at most ``per_minute`` refusals are stored one by one; the rest
are counted, and each status's count is stored as one row when the minute ends. Rows older
than the retention are pruned. So the store holds at most about
``per_minute x 1440 x retention_days`` rows per instance, whatever arrives."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable

from webhook_app.journal import JournalUnavailable, Refusal, RefusalStore

log = logging.getLogger("webhook_app")
PRUNE_EVERY = 3600.0
GIVE_UP_AFTER = 3  # rows failing one after another, stored one by one: the journal itself is failing
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL and lone surrogates: no database stores them


class RefusalLog:
    def __init__(
        self,
        store: RefusalStore,
        per_minute: int = 60,
        retention_days: float = 7.0,
        clock: Callable[[], float] = time.time,
        flush_every: float = 1.0,
    ):
        self.store = store
        self.per_minute = per_minute
        self.retention = retention_days * 86400
        self.clock = clock
        self.flush_every = flush_every
        self._lock = threading.Lock()
        self._pending: list[Refusal] = []
        self._minute = 0  # the minute being counted, as epoch minutes
        self._stored = 0  # stored one by one in that minute
        self._over: dict[int, list] = {}  # status -> [count, last refusal] beyond the budget in that minute
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0
        self.counted = 0  # refusals counted beyond the budget (not stored one by one), since start

    def record(self, refusal: Refusal) -> None:
        """Take a refusal: memory only, never the database, never blocking."""
        with self._lock:
            minute = int(self.clock() // 60)
            if minute != self._minute:
                self._close_minute()
                self._minute, self._stored = minute, 0
            if self._stored < self.per_minute:
                self._stored += 1
                self._pending.append(refusal)
            else:
                self.counted += 1
                entry = self._over.setdefault(refusal.status, [0, refusal])
                entry[0] += 1
                entry[1] = refusal
        self.start()

    def _close_minute(self) -> None:
        """The counted refusals of the minute that ended become one row per status (lock held)."""
        for status, (count, last) in sorted(self._over.items()):
            self._pending.append(
                Refusal(
                    at=last.at,
                    status=status,
                    kind=last.kind,
                    message=f"{count} more refused request(s) in this minute, beyond the {self.per_minute} "
                    f"stored one by one; the last said: {last.message}",
                    client=last.client,
                    count=count,
                )
            )
        self._over = {}

    def flush(self, closing_minute: bool = False) -> None:
        with self._lock:
            minute = int(self.clock() // 60)
            if closing_minute or minute != self._minute:
                self._close_minute()
                if minute != self._minute:
                    self._minute, self._stored = minute, 0
            batch, self._pending = self._pending, []
        self._store([storable(refusal) for refusal in batch])
        now = self.clock()
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            try:
                removed = self.store.prune_refusals(now - self.retention)
                if removed:
                    log.info("pruned %d refused-request record(s) older than the retention", removed)
            except JournalUnavailable as exc:
                log.warning("could not prune refused requests: %s", exc)

    def _store(self, batch: list[Refusal]) -> None:
        """The batch in one write; if that fails, row by row, so one row that cannot be stored
        never costs the others (a journal that is down gives up after a few rows, not per row)."""
        try:
            self.store.add_refusals(batch)
            return
        except Exception as exc:
            if len(batch) == 1:
                log.warning("could not record 1 refused request: %s", _reason(exc))
                return
            log.warning(
                "could not record %d refused request(s) at once (%s); trying one by one", len(batch), _reason(exc)
            )
        failed_in_a_row = 0
        for position, refusal in enumerate(batch):
            try:
                self.store.add_refusals([refusal])
                failed_in_a_row = 0
            except Exception as exc:
                failed_in_a_row += 1
                log.warning("could not record 1 refused request (status %s): %s", refusal.status, _reason(exc))
                if failed_in_a_row >= GIVE_UP_AFTER and position + 1 < len(batch):
                    log.warning("gave up recording %d more refused request(s)", len(batch) - position - 1)
                    return

    def start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(target=self._run, name="refusal-log", daemon=True)
                    self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:  # a thread being started by a record() finishes starting first; none after
            self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush(closing_minute=True)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_every)
            try:
                self.flush()
            except Exception:  # never let the log of refusals take anything else down
                log.exception("the refused-request log failed")


def storable(refusal: Refusal) -> Refusal:
    """The refusal with NUL and lone surrogates in its text replaced (U+FFFD): no database stores them."""

    def clean(text):
        return _UNSTORABLE.sub("\ufffd", text) if isinstance(text, str) else text

    return dataclasses.replace(
        refusal,
        kind=clean(refusal.kind),
        message=clean(refusal.message),
        client=clean(refusal.client),
        algo_id=clean(refusal.algo_id),
        trader_id=clean(refusal.trader_id),
        errors=tuple({clean(k): clean(v) for k, v in e.items()} if isinstance(e, dict) else e for e in refusal.errors),
    )


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, JournalUnavailable) else f"{type(exc).__name__}: {exc}"
