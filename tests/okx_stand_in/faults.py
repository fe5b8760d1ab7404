"""Scripted behaviours, consumed one per request to an action (see ``OkxStandIn.play``)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.okx_stand_in.stand_in import OkxStandIn


# As a fault's ``late``: OKX acts right after it answers the bot's next event-history read, which
# the service makes in its first look at an ambiguous answer (its read of the bot's details comes
# first): that look finds nothing moved, and only a second read can see the execution.
AFTER_FIRST_LOOK = -1.0
LATEST_FIRST_LOOK = 8.0  # seconds: OKX acts by then even if no look came (the looking instance died)


@dataclasses.dataclass
class OkxReply:
    """OKX answers with this code (not executed, unless code is "0"), and ``data`` when given."""

    code: str
    msg: str = "scripted"
    http: int = 200
    data: object = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RawReply:
    """An answer without an OKX body, e.g. a 502 from a proxy. ``executed``: did OKX act first?
    ``late``: OKX acts that many seconds after the answer instead (an ``executed`` request only)."""

    http: int
    text: str = "<html>Bad Gateway</html>"
    executed: bool = True
    late: float = 0.0


@dataclasses.dataclass
class Slow:
    """OKX acts, then answers after ``seconds``; with ``late``, it acts that many seconds after
    its answer instead."""

    seconds: float
    late: float = 0.0


@dataclasses.dataclass
class Queued:
    """The request waits ``seconds`` in OKX before it is acted on, then OKX answers: a sub-order
    whose expTime passed meanwhile is refused 50037 and never executed."""

    seconds: float


@dataclasses.dataclass
class Drop:
    """OKX acts, then the connection drops without a reply; with ``late``, it acts that many
    seconds after the drop instead (a sub-order's expTime is checked again then)."""

    late: float = 0.0


@dataclasses.dataclass
class Hold:
    """OKX acts (unless ``answer`` is a refusal), then holds its answer until ``release`` is set:
    a test can freeze the sender while the answer is on its way. ``peer_port`` is the sender's
    local port, to find which process sent it."""

    answer: OkxReply | None = None
    arrived: threading.Event = dataclasses.field(default_factory=threading.Event)
    release: threading.Event = dataclasses.field(default_factory=threading.Event)
    peer_port: int = 0


@dataclasses.dataclass
class DropUnexecuted:
    """The connection drops after the request arrived and before OKX acted: not executed, but the
    sender cannot tell it from ``Drop``."""


@dataclasses.dataclass
class Meanwhile:
    """``behaviour`` as usual (None: OKX acts and answers), and ``change(stand_in, algo_id)``
    applied while the request is handled: after OKX executed it or not, before the reply (or
    the dropped connection). E.g. ``Meanwhile(Drop(), lambda s, bot: s.move_pnl(bot, Decimal("-3.5")))``."""

    behaviour: object
    change: Callable[[OkxStandIn, str], None]
