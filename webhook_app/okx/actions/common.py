"""What every action's module shares: what its request needs of the client (``Sender``), what its
evidence reads (``Reader``), the window of an ambiguous send (``SentWindow``) and what OKX's
records say of it (``Finding``)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Protocol

from webhook_app.okx.actions import BotOrder
from webhook_app.okx.errors import OkxError, OkxTargetReached
from webhook_app.okx.margin.evidence import VERDICTS, clock_time
from webhook_app.okx.margin.request import acknowledged_algo_id
from webhook_app.okx.orders import BotDetails, Position, SubOrder
from webhook_app.okx.records import BotEvent, BotSnapshot, OkxAck

# Called with an endpoint's path before each request a send makes (see ``OkxClient.send``).
Pace = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Finding:
    """What OKX's records say of an ambiguous send: ``verdict`` one of "executed", "not_executed"
    (for an action stating a target: not reached, so it may be sent again), "cant_tell" (the reads
    failed, or they allow two readings); ``reason`` one sentence; ``evidence`` the reads as OKX
    gave them, with the proposal and its reason, as JSON text."""

    verdict: str
    reason: str
    evidence: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")


@dataclasses.dataclass(frozen=True)
class SentWindow:
    """When an ambiguous request may have reached OKX, on OKX's clock (epoch ms, our clock plus
    the client's offset: ``OkxClient.okx_now``): from just before it left to when its answer was
    given up on. ``exp_time_ms``: a sub-order's expTime header, after which OKX never acts on it.
    ``before``: for add/reduce, the bot as read just before the send."""

    started_ms: int
    ended_ms: int
    exp_time_ms: int | None = None
    before: BotSnapshot | None = None

    def to_json(self) -> dict:
        return {"startedMs": str(self.started_ms), "endedMs": str(self.ended_ms), "expTime": _ms(self.exp_time_ms)}

    def words(self, end_ms: int | None = None) -> str:
        """'between 12:00:01.2 and 12:00:03.9 UTC'."""
        end = self.ended_ms if end_ms is None else end_ms
        return f"between {clock_time(self.started_ms / 1000)} and {clock_time(end / 1000)} UTC"


class Reader(Protocol):
    """The signed reads an action's evidence needs (``OkxClient`` is one); each raises an
    ``OkxError`` when the read fails."""

    def okx_now(self) -> float: ...

    def bot_details(self, algo_id: str) -> BotDetails: ...

    def bot_events(self, algo_id: str) -> list[BotEvent]: ...

    def sub_orders(
        self, algo_id: str, state: str, inst_id: str | None = None, begin_ms: int | None = None
    ) -> list[SubOrder]: ...

    def positions(self, algo_id: str) -> list[Position]: ...


class Sender(Reader, Protocol):
    """What an action's request needs of the client: a signed POST, sent only before ``send_by``,
    whose answer is read against ``outcomes`` (``OkxClient.post_signed``), and the reads."""

    def post_signed(
        self, path: str, body: bytes, outcomes: dict, send_by: float | None = None, headers: dict | None = None
    ) -> dict: ...


def single_post(
    sender: Sender, order: BotOrder, outcomes: dict, send_by: float | None, pace: Pace | None, headers=None
) -> OkxAck:
    """The request of an action that is one POST of ``order``'s body."""
    if pace is not None:
        pace(order.path)
    try:
        payload = sender.post_signed(order.path, order.body_bytes(), outcomes, send_by, headers)
    except OkxTargetReached as exc:
        return OkxAck(order.algo_id, already=f"{exc.code}: {exc.message}")
    return OkxAck(acknowledged_algo_id(payload, order.algo_id))


def finding(verdict: str, reason: str, order: BotOrder, window: SentWindow | None, **reads) -> Finding:
    """A ``Finding`` whose evidence holds the request, the window, ``reads`` (JSON-ready) and the proposal."""
    evidence = {
        "action": order.action,
        "request": order.body,
        "window": None if window is None else window.to_json(),
        **reads,
        "proposal": verdict,
        "reason": reason,
    }
    return Finding(verdict, reason, json.dumps(evidence))


def failed_read(what: str, exc: OkxError) -> str:
    """'OKX's positions could not be read (could not reach ...)'."""
    detail = f"{exc.code} {exc.message}".strip() if exc.code else exc.message
    return f"{what} could not be read ({detail})"


def _ms(value: int | None) -> str | None:
    return None if value is None else str(value)
