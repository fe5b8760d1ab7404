"""The times the delivery keeps, and the journal's clock that judges leases and due times."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from webhook_app.clock import Clock

SEND_BY = 3.0  # a claimed alert's request leaves within this many seconds of its claim, or not at all
LEASE_MARGIN = 5.0  # the lease outlasts the latest possible end of a request by this much


@dataclasses.dataclass
class Terms:
    """Shared by every part, so that one change (a test's shorter lease) reaches them all."""

    clock: Clock  # this host's elapsed time: send deadlines, timers, reply waits, write retries
    send_by: float  # seconds from a claim within which its request leaves, or never does
    # The journal's lease on a claim: the latest its request can still be under way, plus a margin;
    # only then may another instance take the alert over.
    lease: float


class JournalClock(Protocol):
    def now(self) -> float:
        """The journal's clock (the database's, where instances share one)."""
