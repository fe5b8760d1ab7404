"""This instance among the others sending from one journal: it registers and heartbeats.

Heartbeats say which instances are alive, so that a dead one's rate slots are closed. Its
claims on alerts are fenced leases that lapse on their own (``delivery``), whoever is alive.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from webhook_app.clock import SYSTEM_CLOCK, Clock
from webhook_app.journal import Instances, JournalUnavailable

log = logging.getLogger("webhook_app")

HEARTBEAT_EVERY = 3.0  # seconds
DEAD_AFTER = 15.0  # seconds without a heartbeat: dead (its rate slots close)


def new_instance_id() -> str:
    dyno = os.environ.get("DYNO")  # Heroku's name for it, when there is one, helps an operator
    return f"{dyno or socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Membership:
    def __init__(
        self,
        instances: Instances,
        instance: str | None = None,
        heartbeat_every: float = HEARTBEAT_EVERY,
        dead_after: float = DEAD_AFTER,
        clock: Clock = SYSTEM_CLOCK,
    ):
        """``clock``: the heartbeats' pace (how long without one makes an instance dead is the journal's judgement)."""
        self.instances = instances
        self.clock = clock
        self.instance = instance or new_instance_id()
        self.heartbeat_every = heartbeat_every
        self.dead_after = dead_after
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def join(self) -> None:
        """Register (``JournalInUse`` where the backend serves one sender) and keep heartbeating in
        the background. Taking over lapsed claims is delivery's job: it knows what to tell."""
        self.instances.register(self.instance)
        if self.instances.shared:
            self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
            self._thread.start()

    def leave(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(2)
        try:
            self.instances.deregister(self.instance)
        except JournalUnavailable as exc:
            log.error("could not deregister instance %s: %s (the others will find it dead)", self.instance, exc)

    def _beat(self) -> None:
        while not self.clock.wait(self._stopping, self.heartbeat_every):
            try:
                self.instances.heartbeat(self.instance)
            except JournalUnavailable as exc:
                log.error("heartbeat failed: %s", exc)
            except Exception:
                log.exception("heartbeat failed")
