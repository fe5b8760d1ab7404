"""Between the journal and OKX: dispatching, within OKX's rate budget, and the reply deadline.

A dispatcher thread asks the journal for due alerts, takes as many slots of the rate budget
(``pacing``) as it may use, claims that many alerts (``sending``, durably, before any byte
leaves) and hands each to a sender thread. What an answer means (a final state, or a retry)
is ``outcomes``'s job; who else is alive is ``membership``'s. The queue is the journal's, so
with PostgreSQL any instance may send an alert that another one received.

A claim is a fenced lease. Its request leaves within ``send_by`` seconds of the claim (this
host's elapsed clock, which counts a suspension: ``clock.Clock``) and only after the journal
confirmed the claim is still current (same instance and attempt, lease not lapsed, alert not
past its lag, by the journal's clock); the lease outlasts ``send_by`` plus OKX's time-outs, so
a claim is only ever taken over once its request can no longer leave. Every write after a send
is conditional on the claim: an answer that comes back after a take-over is kept on the
timeline and notified, and changes nothing.

The parts, each importing only those below it:

- ``facade``: ``Delivery`` (start, stop, submit), which wires the others;
- ``at_once``: the road around the dispatcher for an alert that can go as it arrives (claimed and
  confirmed in the write that journals it, handed straight to a sender of its own);
- ``dispatcher``: the claim loop, handing each claim to a sender as an ``Attempt``; ``upkeep``:
  lapsed claims recovered, orphans freed, unroutable alerts failed, overdue ones expired, old
  ones pruned; ``replies``: a reply's wait for its alert's outcome;
- ``book``: the slot book, which claims (and slots) this process's senders hold;
- ``attempt``: one send, from the bot read before it to the fenced write of its outcome;
- ``slots``: a slot held by one attempt and ended once, and the ends tried again;
- ``board``: wake-ups, waiting replies and final states; ``lanes``: each account's client and
  pacers; ``terms``: the deadlines and the lease.
"""

from webhook_app.workers.delivery.at_once import AtOnce
from webhook_app.workers.delivery.facade import Delivery
from webhook_app.workers.delivery.lanes import Lane

__all__ = ["AtOnce", "Delivery", "Lane"]
