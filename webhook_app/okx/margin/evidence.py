"""What OKX's own records say about an ``unknown`` margin request: evidence and a proposed verdict.

Pure functions, no I/O. The inputs are two snapshots of the bot (``BotSnapshot``, read from
OKX's orders-algo-details) taken before and after the ambiguous send, and the bot's event history.

The rule (conservative: it never guesses):

- The window runs from the "before" snapshot's read time to the "after" snapshot's, both on OKX's
  clock. An event is in the window when before.read_at * 1000 <= eventCtime <= after.read_at * 1000.
- No snapshot from before or from after the send, OKX knowing no such bot in either, two
  different bots, or any of availBal, investAmt, frozenBal, totalEq unknown in either: can't tell.
- The event history not read, or any event in the window other than a successful ``user_action``:
  can't tell. Such an event is never read as ours: it is shown as OKX gave it, and it rules out a
  verdict. OKX may list a margin change made through the API as a ``user_action`` event (its docs
  do not say), so the window may hold those, and only those, for the rule below.
- The bot's state changed in the window (e.g. running -> stopped): can't tell.
- Successful ``user_action`` events in the window (and no other): executed when the balances moved
  by exactly the request (investAmt with them only with allowReinvest) and uTime moved (or OKX gave
  no uTime in either snapshot): the event tells a margin change from PnL, with or without
  allowReinvest. Anything else, nothing moving included: can't tell (something happened that the
  balances do not show as asked).
- With d = +amount for "add" and -amount for "reduce":
  executed only for a request with allowReinvest, when investAmt, availBal and totalEq each moved
  by exactly d, frozenBal did not move, and uTime changed (or OKX gave no uTime in either
  snapshot). PnL moves availBal and totalEq together and never investAmt, so only investAmt moving
  with them tells a margin change from PnL. Without allowReinvest a margin change moves availBal and
  totalEq by d and nothing else, exactly as PnL of d would: that is "can't tell", saying so;
  not executed when availBal, investAmt, frozenBal and totalEq did not move and neither did uTime
  (or OKX gave no uTime in either snapshot).
- Anything else (PnL moving availBal and totalEq, a trade moving frozenBal, a second margin change,
  an update with no balance change): can't tell, with a reason naming what moved and by how much.

All arithmetic is exact (no rounding at any number of digits). Times in reasons are HH:MM:SS.s UTC.
"""

from __future__ import annotations

import dataclasses
import decimal
from datetime import UTC, datetime
from decimal import Decimal

from webhook_app.okx.records import BotEvent, BotSnapshot, decimal_text, okx_timestamp, plain_decimal

VERDICTS = ("executed", "not_executed", "cant_tell")
VERDICT_WORDS = {"executed": "executed", "not_executed": "not executed", "cant_tell": "can't tell"}
ACTIONS = ("add", "reduce")

# The compared fields in the order they are shown: (OKX's name, the snapshot's attribute).
_BALANCES = (
    ("availBal", "avail_bal"),
    ("investAmt", "invest_amt"),
    ("frozenBal", "frozen_bal"),
    ("totalEq", "total_eq"),
)


@dataclasses.dataclass(frozen=True)
class Proposal:
    verdict: str  # one of VERDICTS
    reason: str  # one sentence, e.g. "availBal and totalEq rose by 50 between 12:00:01.2 and 12:00:03.9 UTC; ..."


def changes(before: BotSnapshot, after: BotSnapshot) -> list[dict]:
    """One row per compared field (state, availBal, investAmt, frozenBal, totalEq, uTime):
    {"field", "before", "after", "delta"}; delta is a signed exact difference, None where a side
    is unknown or the field is not a number."""
    rows = [{"field": "state", "before": before.state, "after": after.state, "delta": None}]
    for name, attribute in _BALANCES:
        old, new = getattr(before, attribute), getattr(after, attribute)
        delta = None if old is None or new is None else signed(exact_difference(new, old))
        rows.append({"field": name, "before": decimal_text(old), "after": decimal_text(new), "delta": delta})
    old_ms, new_ms = before.u_time_ms, after.u_time_ms
    rows.append(
        {
            "field": "uTime",
            "before": None if old_ms is None else str(old_ms),
            "after": None if new_ms is None else str(new_ms),
            "delta": None if old_ms is None or new_ms is None else signed(Decimal(new_ms - old_ms)),
        }
    )
    return rows


def propose(
    action: str,
    amount: Decimal,
    allow_reinvest: bool,
    before: BotSnapshot | None,
    after: BotSnapshot | None,
    events: list[BotEvent] | None,
) -> Proposal:
    """The verdict the rule above gives, and its reason in one sentence. ``events`` None: the
    event history could not be read (can't tell). Raises ValueError for an action other than
    add/reduce or an amount that is not positive: those never reach OKX."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")
    if not (amount.is_finite() and amount > 0):
        raise ValueError(f"amount must be a positive decimal, not {amount}")
    asked = f"the request asked to {action} {plain_decimal(amount)}" + (" with allowReinvest" if allow_reinvest else "")

    def cant_tell(why: str) -> Proposal:
        return Proposal("cant_tell", why)

    if before is None:
        return cant_tell(f"no snapshot of the bot from before the send; {asked}")
    if after is None:
        return cant_tell(f"no snapshot of the bot from after the send; {asked}")
    window = f"between {clock_time(before.read_at)} and {clock_time(after.read_at)} UTC"
    for snapshot, when in ((before, "before"), (after, "after")):
        if snapshot.state == "missing":
            return cant_tell(f"OKX knew no bot {snapshot.algo_id} {when} the send; {asked}")
    if before.algo_id != after.algo_id:
        return cant_tell(f"the snapshots are of two bots ({before.algo_id} before, {after.algo_id} after); {asked}")
    for snapshot, when in ((before, "before"), (after, "after")):
        unknown = [name for name, attribute in _BALANCES if getattr(snapshot, attribute) is None]
        if unknown:
            return cant_tell(f"OKX's snapshot from {when} the send did not give {_listed(unknown)}; {asked}")
    if after.read_at < before.read_at:
        return cant_tell(f"the snapshot from after the send was read before the one from before it; {asked}")
    if events is None:
        return cant_tell(f"OKX's event history for the bot could not be read; {asked}")
    inside, _ = split_events(events, before, after)
    foreign = [event for event in inside if not may_be_api_margin_change(event)]
    if foreign:
        first = foreign[0]
        return cant_tell(
            f"OKX lists {len(inside)} event(s) of the bot {window} (the first not a successful user_action: "
            f"{first.event_type} {first.event_status} at {clock_time(first.ctime_ms / 1000)}), and such an event "
            f"is never read as ours; {asked}"
        )
    if before.state != after.state:
        return cant_tell(f"the bot's state changed from {before.state} to {after.state} {window}; {asked}")

    deltas = {
        name: exact_difference(getattr(after, attribute), getattr(before, attribute)) for name, attribute in _BALANCES
    }
    proposal = _judge(action, amount, allow_reinvest, before, after, deltas, window, asked, bool(inside))
    return _with_user_actions(proposal, inside) if inside else proposal


def _with_user_actions(proposal: Proposal, inside: list[BotEvent]) -> Proposal:
    """The proposal once the window holds successful user_action events only: they say so."""
    first_at = clock_time(inside[0].ctime_ms / 1000)
    listed = f"OKX lists {len(inside)} event(s) there, each a successful user_action (the first at {first_at})"
    if proposal.verdict == "executed":  # the balances moved by exactly the request, uTime with them
        return Proposal("executed", f"{proposal.reason}; {listed}, as it may list a margin change made through the API")
    return Proposal("cant_tell", f"{proposal.reason}; {listed}, which the balances do not show as asked")


def may_be_api_margin_change(event: BotEvent) -> bool:
    """OKX may list a margin change made through the API as a successful user_action event."""
    return event.event_type == "user_action" and event.event_status == "success"


def _judge(
    action: str,
    amount: Decimal,
    allow_reinvest: bool,
    before: BotSnapshot,
    after: BotSnapshot,
    deltas: dict[str, Decimal],
    window: str,
    asked: str,
    user_actions: bool = False,
) -> Proposal:
    """The verdict from the balances' and uTime's changes, once nothing else ruled one out.
    ``user_actions``: the window holds successful user_action events (and no other): they tell a
    margin change from PnL, and rule out "not executed"."""
    expected = amount if action == "add" else amount.copy_negate()  # copy_negate: exact at any length
    expected_invest = expected if allow_reinvest else Decimal(0)
    u_time_moved = before.u_time_ms != after.u_time_ms
    u_time_known = before.u_time_ms is not None and after.u_time_ms is not None
    u_time_absent = before.u_time_ms is None and after.u_time_ms is None
    balances_as_asked = (
        deltas["availBal"] == expected
        and deltas["totalEq"] == deltas["availBal"]
        and deltas["frozenBal"] == 0
        and deltas["investAmt"] == expected_invest
    )
    moved = [name for name in deltas if deltas[name] != 0]
    direction = "rose" if action == "add" else "fell"

    if balances_as_asked and ((u_time_moved and u_time_known) or u_time_absent):
        if not allow_reinvest and user_actions:
            return Proposal(
                "executed",
                f"availBal and totalEq {direction} by {plain_decimal(amount)} {window}; no other change; {asked}",
            )
        if not allow_reinvest:  # PnL of exactly the amount moves the very same two fields
            return Proposal(
                "cant_tell",
                f"availBal and totalEq {direction} by {plain_decimal(amount)} {window} and nothing else moved, "
                f"{asked}: PnL moves availBal and totalEq together just the same, so this change cannot be told "
                "from PnL (only investAmt, moving with a request with allowReinvest, can)",
            )
        return Proposal(
            "executed",
            f"availBal, totalEq and investAmt {direction} by {plain_decimal(amount)} {window}; no other change; "
            f"{asked}",
        )
    if not moved and not u_time_moved:
        return Proposal(
            "cant_tell" if user_actions else "not_executed",
            f"availBal, investAmt, frozenBal, totalEq and uTime did not change {window}; {asked}",
        )
    return Proposal("cant_tell", _unexplained(before, after, deltas, expected, allow_reinvest, window, asked))


def _unexplained(
    before: BotSnapshot,
    after: BotSnapshot,
    deltas: dict[str, Decimal],
    expected: Decimal,
    allow_reinvest: bool,
    window: str,
    asked: str,
) -> str:
    """Why the changes read neither as executed nor as not executed: what moved, by how much."""
    u_time_known = before.u_time_ms is not None and after.u_time_ms is not None
    u_time_absent = before.u_time_ms is None and after.u_time_ms is None
    moved = [name for name in deltas if deltas[name] != 0]
    if not u_time_known and not u_time_absent:
        u_time_note = "uTime was given in one snapshot only"
    elif before.u_time_ms != after.u_time_ms:
        u_time_note = f"uTime moved by {plain_decimal(Decimal(after.u_time_ms - before.u_time_ms) / 1000)} s"
    else:
        u_time_note = "uTime did not change"
    balances_as_asked = (
        deltas["availBal"] == expected
        and deltas["totalEq"] == expected
        and deltas["frozenBal"] == 0
        and deltas["investAmt"] == (expected if allow_reinvest else 0)
    )
    if balances_as_asked:
        what, why = f"the balances moved as asked but {u_time_note}", "OKX's records do not explain that"
    elif not moved:
        what, why = f"no balance moved but {u_time_note}", "OKX updated the bot without a balance change"
    else:
        what = ", ".join(f"{name} {_movement(deltas[name])}" for name in moved)
        if deltas["availBal"] == expected and deltas["totalEq"] == expected and deltas["frozenBal"] == 0:
            why = (
                "investAmt did not move with the margin, as allowReinvest would have it"
                if allow_reinvest
                else "investAmt moved, which the request without allowReinvest does not do"
            )
        else:
            why = "something else moved the bot's balance in the window"
    return f"{what} {window}, {asked}: {why}"


def gather(
    action: str,
    amount: Decimal,
    allow_reinvest: bool,
    before: BotSnapshot | None,
    after: BotSnapshot | None,
    events: list[BotEvent] | None,
) -> dict:
    """The evidence as stored and shown (JSON-ready): both snapshots, the window, the events in it
    (oldest first) and how many others were read, the changes, and the proposal with its reason.
    Without both snapshots there is no window: no event is shown and all are counted in otherEvents.
    ``events`` None (not read): "events" and "otherEvents" are null."""
    proposal = propose(action, amount, allow_reinvest, before, after, events)
    both = before is not None and after is not None
    if events is None:
        shown, others = None, None
    elif both:
        inside, outside = split_events(events, before, after)
        shown, others = [event.to_json() for event in inside], len(outside)
    else:
        shown, others = [], len(events)
    return {
        "before": None if before is None else before.to_json(),
        "after": None if after is None else after.to_json(),
        "window": {"from": okx_timestamp(before.read_at), "to": okx_timestamp(after.read_at)} if both else None,
        "events": shown,
        "otherEvents": others,
        "changes": changes(before, after) if both else [],
        "proposal": proposal.verdict,
        "reason": proposal.reason,
    }


def split_events(
    events: list[BotEvent], before: BotSnapshot, after: BotSnapshot
) -> tuple[list[BotEvent], list[BotEvent]]:
    """(the events in the window, oldest first; the others)."""
    start, end = before.read_at * 1000, after.read_at * 1000
    inside = sorted((e for e in events if start <= e.ctime_ms <= end), key=lambda e: e.ctime_ms)
    outside = [e for e in events if not start <= e.ctime_ms <= end]
    return inside, outside


def exact_difference(new: Decimal, old: Decimal) -> Decimal:
    """new - old with no rounding at any number of digits (the default context keeps 28)."""
    needed = max(new.adjusted(), old.adjusted()) - min(new.as_tuple().exponent, old.as_tuple().exponent) + 2
    context = decimal.Context(prec=max(needed, 1), traps=[decimal.Inexact, decimal.InvalidOperation])
    return context.subtract(new, old)


def signed(value: Decimal) -> str:
    """With a sign, no exponent, trailing zeros trimmed exactly: "+50", "-0.0001", "0"."""
    if value == 0:
        return "0"
    return ("-" if value < 0 else "+") + plain_decimal(value.copy_abs())  # copy_abs: abs() rounds at 28 digits


def clock_time(epoch_seconds: float) -> str:
    """HH:MM:SS.s (UTC), to the nearest tenth of a second."""
    tenths = round(epoch_seconds * 10)
    moment = datetime.fromtimestamp(tenths // 10, UTC)
    return f"{moment:%H:%M:%S}.{tenths % 10}"


def _movement(delta: Decimal) -> str:
    return f"{'rose' if delta > 0 else 'fell'} by {plain_decimal(delta.copy_abs())}"


def _listed(names: list[str]) -> str:
    """availBal / availBal and totalEq / availBal, totalEq and investAmt."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
