"""After an ambiguous attempt: read the bot and its event history on OKX, compare them with the
snapshot taken just before the send, keep that evidence on the alert, propose what happened
(``evidence.propose``) and tell the operator; with ``RESOLVE_UNKNOWN=auto`` mark the cases that
leave no doubt, as the service's finding.

Every ``unknown`` alert gets its notification from here, with the proposal, at most
``settle`` + a few reads after its outcome; if this process dies first, another instance (or
the next start) finds the alert still without a proposal (``awaiting_evidence``) and does it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal

from .bots import BotWatch
from .clock import SYSTEM_CLOCK, Clock
from .evidence import gather
from .journal import ActionRefused, Journal, JournalUnavailable, Record
from .okx import BotSnapshot

log = logging.getLogger("webhook_app")

SERVICE = "the service, from OKX's records"
VERDICT_WORDS = {"executed": "executed", "not_executed": "not executed", "cant_tell": "can't tell"}
READ_TRIES = 4  # reads of the bot after the send, a few seconds apart, before settling for "can't tell"
SWEEP_EVERY = 30.0  # seconds between looks for unknown alerts left without a proposal (a dead instance's)
SWEEP_SINCE = 86_400.0  # ...finished within this many seconds
SWEEP_GRACE = 60.0  # ...and at least this long ago (plus the settle time): not one being read right now


class Investigator:
    def __init__(
        self,
        journal: Journal,
        bots: Mapping[str, BotWatch],
        *,
        settle: float = 3.0,
        auto: bool = False,
        on_done: Callable[[Record], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        """``clock``: the settle time before the reads, the pause between them, and the sweeps' pace."""
        self.journal = journal
        self.bots = bots  # account name -> its BotWatch: a bot is read with its own account's key
        self.settle = settle
        self.auto = auto
        self._on_done = on_done  # the notification, once the proposal is known
        self._clock = clock
        self._queue: queue.Queue[tuple[float, Record]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_sweep = 0.0
        self.investigated = 0

    def submit(self, record: Record) -> None:
        """An alert has just ended ``unknown``: look at OKX's records once they have settled."""
        self._queue.put((self._clock() + self.settle, record))
        self.start()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="investigator", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                due, record = self._queue.get(timeout=1.0)
            except queue.Empty:
                self._sweep()
                continue
            self._clock.wait(self._stop, max(due - self._clock(), 0.0))
            try:
                self.investigate(record)
            except Exception:
                log.exception("reading OKX's records for alert %s failed", record.id)
                self._tell(record)  # the unknown is never left untold

    def _sweep(self) -> None:
        if self._clock() - self._last_sweep < SWEEP_EVERY:
            return
        self._last_sweep = self._clock()
        try:
            now = self.journal.now()
            waiting = self.journal.awaiting_evidence(now - SWEEP_SINCE)
        except JournalUnavailable as exc:
            log.error("could not look for unknown alerts without a proposal: %s", exc)
            return
        for record in waiting:
            if record.finished_at is not None and record.finished_at <= now - self.settle - SWEEP_GRACE:
                self._queue.put((0.0, record))

    def investigate(self, record: Record) -> Record | None:
        """Read, compare, keep, propose, tell; the alert as recorded, or None when another instance did it."""
        before = _before(record)
        watch = self.bots.get(record.account)  # None: the account is no longer configured
        after = None
        for attempt in range(READ_TRIES if watch is not None else 0):
            after = watch.snapshot_now(record.algo_id)
            if after is not None:
                break
            self._clock.wait(self._stop, 1.0 + attempt)
        events = watch.events_now(record.algo_id) if after is not None else None
        request = record.request
        evidence = gather(
            record.action,
            Decimal(record.amount),
            request.get("allowReinvest") is True,
            before,
            after,
            events,  # None when unread: then the proposal is "can't tell"
        )
        ours = self._ours_in_window(record)
        if ours and evidence["proposal"] != "cant_tell":
            evidence["proposal"] = "cant_tell"
            evidence["reason"] = (
                f"alert {ours[0]} of ours changed this bot's margin in the same window, so the change cannot be "
                "told apart"
            )
        proposal, reason = evidence["proposal"], evidence["reason"]
        note = f"OKX's records: {VERDICT_WORDS[proposal]}: {reason}"
        recorded = self.journal.record_evidence(record.id, json.dumps(evidence), proposal, note)
        self.investigated += 1
        if recorded is None:
            return None  # already proposed (another instance), or no longer unknown
        log.warning("alert %s unknown: proposal %s: %s", record.id, VERDICT_WORDS[proposal], reason)
        if self.auto and proposal in ("executed", "not_executed"):
            try:
                recorded = self.journal.resolve(record.id, proposal, SERVICE)
                log.warning("alert %s marked %s by %s", record.id, VERDICT_WORDS[proposal], SERVICE)
            except ActionRefused:
                pass  # an operator marked it meanwhile: their finding stands
        self._tell(recorded)
        return recorded

    def _ours_in_window(self, record: Record) -> list[int]:
        """Other alerts of ours that may have moved this bot's margin inside the window: any later
        one already sent (alerts for one bot go one after another, so it went after this one), and
        an earlier one whose outcome is unknown too (it may have landed late)."""
        try:
            nearby = self.journal.recent(limit=20, algo_id=record.algo_id)
        except JournalUnavailable:
            return []
        start = (record.finished_at or record.received_at) - 60.0
        return [
            r.id
            for r in nearby
            if (r.id > record.id and r.first_sent_at is not None)
            or (r.id < record.id and r.state == "unknown" and (r.finished_at or 0.0) >= start)
        ]

    def _tell(self, record: Record) -> None:
        if self._on_done is None:
            return
        try:
            self._on_done(record)
        except Exception:
            log.exception("telling of alert %s's outcome failed", record.id)


def _before(record: Record) -> BotSnapshot | None:
    """The snapshot the sender took just before the attempt, kept with the claim's confirmation."""
    try:
        before = json.loads(record.evidence or "null")
        return BotSnapshot.from_json(before["before"]) if isinstance(before, dict) and before.get("before") else None
    except (ValueError, KeyError, TypeError):
        return None
