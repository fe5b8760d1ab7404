"""This instance among the others sending from one journal: it registers, heartbeats, and
takes over from instances that died without stopping.

A dead instance's alerts in ``sending`` become ``unknown`` (OKX may have acted; never
resent); its queued alerts need nothing, since the queue is the journal's and any live
instance claims them. An instance still heartbeating is never touched.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from .journal import Journal, JournalUnavailable

log = logging.getLogger("webhook_app")

HEARTBEAT_EVERY = 3.0  # seconds
DEAD_AFTER = 15.0  # seconds without a heartbeat: dead. A survivor takes over within ~18 s.


def new_instance_id() -> str:
    dyno = os.environ.get("DYNO")  # Heroku's name for it, when there is one, helps an operator
    return f"{dyno or socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Membership:
    def __init__(
        self,
        journal: Journal,
        instance: str | None = None,
        heartbeat_every: float = HEARTBEAT_EVERY,
        dead_after: float = DEAD_AFTER,
    ):
        self.journal = journal
        self.instance = instance or new_instance_id()
        self.heartbeat_every = heartbeat_every
        self.dead_after = dead_after
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def join(self) -> None:
        """Register (``JournalInUse`` where the backend serves one sender), take over from the
        dead, and keep heartbeating in the background."""
        self.journal.register(self.instance)
        self.take_over()
        if self.journal.shared:
            self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
            self._thread.start()

    def take_over(self) -> None:
        for record in self.journal.recover(self.instance, self.dead_after):
            log.warning(
                "alert %s was being sent by %s, which stopped before it finished: now unknown, not resent "
                "(check bot %s on OKX)",
                record.id,
                record.claimed_by or "an earlier process",
                record.algo_id,
            )

    def leave(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(2)
        try:
            self.journal.deregister(self.instance)
        except JournalUnavailable as exc:
            log.error("could not deregister instance %s: %s (the others will find it dead)", self.instance, exc)

    def _beat(self) -> None:
        while not self._stopping.wait(self.heartbeat_every):
            try:
                self.journal.heartbeat(self.instance)
                self.take_over()
            except JournalUnavailable as exc:
                log.error("heartbeat failed: %s", exc)
            except Exception:
                log.exception("heartbeat failed")
