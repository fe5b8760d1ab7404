"""The proposal for an ``unknown`` margin request, from two snapshots of the bot and its events.

Each case starts from one "before" snapshot and makes the "after" with the change under test.
"""

import dataclasses
import decimal
import json
from decimal import Decimal

import pytest

from webhook_app.okx.margin.evidence import VERDICTS, Proposal, changes, gather, propose
from webhook_app.okx.records import BotEvent, BotSnapshot

ALGO_ID = "581628185981813760"
# 2026-11-23 12:00:01.25 and 12:00:03.875 UTC: exact in binary, so the window's ends are exact in ms.
BEFORE_AT = 1795435201.25
AFTER_AT = 1795435203.875
START_MS, END_MS = 1795435201250, 1795435203875
U_TIME_BEFORE = 1795435000000  # OKX last touched the bot a few minutes earlier
U_TIME_AFTER = 1795435202500  # ... and again during the window


def before(**fields) -> BotSnapshot:
    """A running bot as read just before the send; ``fields`` replace the snapshot's."""
    snapshot = BotSnapshot(
        algo_id=ALGO_ID,
        state="running",
        inst_ids=("BTC-USDT-SWAP",),
        invest_amt=Decimal("100"),
        avail_bal=Decimal("40"),
        frozen_bal=Decimal("0"),
        total_eq=Decimal("140"),
        u_time_ms=U_TIME_BEFORE,
        read_at=BEFORE_AT,
    )
    return dataclasses.replace(snapshot, **fields)


def after(snapshot: BotSnapshot | None = None, touched: bool = True, **deltas: str) -> BotSnapshot:
    """``snapshot`` (default: ``before()``) read again after the send, with each balance in
    ``deltas`` moved by that signed amount, and uTime moved when ``touched``."""
    snapshot = snapshot or before()
    with decimal.localcontext(prec=200):  # exact: the default context rounds at 28 digits
        moved = {name: getattr(snapshot, name) + Decimal(delta) for name, delta in deltas.items()}
    u_time = U_TIME_AFTER if touched else snapshot.u_time_ms
    return dataclasses.replace(snapshot, read_at=AFTER_AT, u_time_ms=u_time, **moved)


def event(ctime_ms: int, event_type: str = "signal_processing") -> BotEvent:
    return BotEvent(event_type, "success", ctime_ms, "ENTER_LONG: order placed")


ADDED_50 = {"avail_bal": "50", "total_eq": "50"}
API_EVENTS = "event(s) there, each a successful user_action"  # OKX may list an API margin change so
REINVESTED_50 = {**ADDED_50, "invest_amt": "50"}  # an add with allowReinvest: investAmt moves with the margin
PNL_TOO = "PnL moves availBal and totalEq together just the same"
WINDOW = "between 12:00:01.2 and 12:00:03.9 UTC"

CASES = [
    # (id, action, amount, allowReinvest, before, after, events, verdict, words in the reason)
    (
        "an add's numbers without allowReinvest are PnL's too",
        "add", "50", False, before(), after(**ADDED_50), [],
        "cant_tell", ["availBal and totalEq rose by 50", WINDOW, "the request asked to add 50", PNL_TOO],
    ),
    (
        "executed add, allowReinvest",
        "add", "50", True, before(), after(**REINVESTED_50), [],
        "executed", ["availBal, totalEq and investAmt rose by 50", WINDOW, "no other change",
                     "asked to add 50 with allowReinvest"],
    ),
    (
        "a reduce's numbers without allowReinvest are PnL's too",
        "reduce", "12.5", False, before(), after(avail_bal="-12.5", total_eq="-12.5"), [],
        "cant_tell", ["availBal and totalEq fell by 12.5", WINDOW, "the request asked to reduce 12.5", PNL_TOO],
    ),
    (
        "PnL of exactly the amount, nothing executed",  # the case: auto must not mark it executed
        "add", "10", False, before(), after(avail_bal="10", total_eq="10"), [],
        "cant_tell", ["rose by 10", PNL_TOO],
    ),
    (
        "executed reduce, allowReinvest",
        "reduce", "10", True, before(), after(avail_bal="-10", total_eq="-10", invest_amt="-10"), [],
        "executed", ["fell by 10", "investAmt"],
    ),
    (
        "executed add, OKX gives no uTime",
        "add", "50", True, before(u_time_ms=None), after(before(u_time_ms=None), touched=False, **REINVESTED_50), [],
        "executed", ["rose by 50"],
    ),
    (
        "not executed",
        "add", "50", False, before(), after(touched=False), [],
        "not_executed", ["did not change", WINDOW, "the request asked to add 50"],
    ),
    (
        "not executed reduce, allowReinvest",
        "reduce", "50", True, before(), after(touched=False), [],
        "not_executed", ["availBal, investAmt, frozenBal, totalEq and uTime did not change", "reduce 50"],
    ),
    (
        "not executed, OKX gives no uTime",
        "add", "50", False, before(u_time_ms=None), after(before(u_time_ms=None), touched=False), [],
        "not_executed", ["did not change"],
    ),
    (
        "PnL moved an executed add",
        "add", "50", False, before(), after(avail_bal="46.5", total_eq="46.5"), [],
        "cant_tell", ["availBal rose by 46.5", "totalEq rose by 46.5", WINDOW, "asked to add 50", "something else"],
    ),
    (
        "PnL moved a not-executed add",
        "add", "50", False, before(), after(touched=False, avail_bal="-3.5", total_eq="-3.5"), [],
        "cant_tell", ["availBal fell by 3.5", "totalEq fell by 3.5", "asked to add 50"],
    ),
    (
        "PnL moved a not-executed add, uTime too",
        "add", "50", False, before(), after(avail_bal="-3.5", total_eq="-3.5"), [],
        "cant_tell", ["availBal fell by 3.5"],
    ),
    (
        "PnL moved totalEq only",
        "add", "50", False, before(), after(avail_bal="50", total_eq="48"), [],
        "cant_tell", ["availBal rose by 50", "totalEq rose by 48"],
    ),
    (
        "a second change: twice the amount",
        "add", "50", False, before(), after(avail_bal="100", total_eq="100"), [],
        "cant_tell", ["availBal rose by 100", "asked to add 50", "something else"],
    ),
    (
        "a trade moved frozenBal",
        "add", "50", False, before(), after(avail_bal="30", total_eq="50", frozen_bal="20"), [],
        "cant_tell", ["availBal rose by 30", "frozenBal rose by 20"],
    ),
    (
        "a trade, the add's numbers otherwise exact",
        "add", "50", False, before(), after(**ADDED_50, frozen_bal="0.01"), [],
        "cant_tell", ["frozenBal rose by 0.01"],
    ),
    (
        "an event in the window",
        "add", "50", False, before(), after(**ADDED_50), [event(START_MS + 1000)],
        "cant_tell", ["1 event(s)", WINDOW, "signal_processing success at 12:00:02.2", "never read as ours"],
    ),
    (
        "an event at the window's start",
        "add", "50", False, before(), after(touched=False), [event(START_MS, "user_action")],
        "cant_tell", ["1 event(s)", "user_action"],
    ),
    # OKX may list a margin change made through the API as a user_action event (issue 23).
    (
        "an API margin change listed as a user_action event, allowReinvest",
        "add", "50", True, before(), after(**REINVESTED_50), [event(START_MS + 1000, "user_action")],
        "executed", ["availBal, totalEq and investAmt rose by 50", WINDOW, f"1 {API_EVENTS}",
                     "asked to add 50 with allowReinvest"],
    ),
    (
        "an API margin change listed as a user_action event tells it from PnL",
        "reduce", "12.5", False, before(), after(avail_bal="-12.5", total_eq="-12.5"),
        [event(START_MS + 1000, "user_action")],
        "executed", ["availBal and totalEq fell by 12.5", f"1 {API_EVENTS}", "asked to reduce 12.5"],
    ),
    (
        "two user_action events, balances as asked",
        "add", "50", True, before(), after(**REINVESTED_50),
        [event(START_MS + 1000, "user_action"), event(START_MS + 1500, "user_action")],
        "executed", [f"2 {API_EVENTS}"],
    ),
    (
        "a user_action event beside another kind",
        "add", "50", True, before(), after(**REINVESTED_50),
        [event(START_MS + 1000, "user_action"), event(START_MS + 1500, "system_action")],
        "cant_tell", ["2 event(s)", "system_action success at 12:00:02.8", "never read as ours"],
    ),
    (
        "a user_action event that failed",
        "add", "50", True, before(), after(**REINVESTED_50),
        [BotEvent("user_action", "failure", START_MS + 1000, "Margin add failed")],
        "cant_tell", ["1 event(s)", "user_action failure", "never read as ours"],
    ),
    (
        "a user_action event, the balances moved otherwise",
        "add", "50", True, before(), after(avail_bal="46.5", total_eq="46.5", invest_amt="50"),
        [event(START_MS + 1000, "user_action")],
        "cant_tell", ["availBal rose by 46.5", f"1 {API_EVENTS}"],
    ),
    (
        "a user_action event, balances as asked, uTime did not move",
        "add", "50", True, before(), after(touched=False, **REINVESTED_50), [event(START_MS + 1000, "user_action")],
        "cant_tell", ["moved as asked", "uTime did not change", f"1 {API_EVENTS}"],
    ),
    (
        "a user_action event, the bot stopped",
        "add", "50", True, before(), dataclasses.replace(after(**REINVESTED_50), state="stopped"),
        [event(START_MS + 1000, "user_action")],
        "cant_tell", ["state changed from running to stopped"],
    ),
    (
        "an event at the window's end",
        "add", "50", False, before(), after(touched=False), [event(END_MS)],
        "cant_tell", ["1 event(s)"],
    ),
    (
        "events just outside the window do not matter",
        "add", "50", True, before(), after(**REINVESTED_50), [event(END_MS + 1), event(START_MS - 1)],
        "executed", ["rose by 50"],
    ),
    (
        "the event history was not read",
        "add", "50", False, before(), after(**ADDED_50), None,
        "cant_tell", ["event history", "could not be read"],
    ),
    (
        "no snapshot from before",
        "add", "50", False, None, after(**ADDED_50), [],
        "cant_tell", ["no snapshot of the bot from before the send", "asked to add 50"],
    ),
    (
        "no snapshot from after",
        "add", "50", False, before(), None, [],
        "cant_tell", ["no snapshot of the bot from after the send"],
    ),
    (
        "OKX knew no such bot before",
        "add", "50", False, BotSnapshot.missing(ALGO_ID, BEFORE_AT), after(**ADDED_50), [],
        "cant_tell", [f"OKX knew no bot {ALGO_ID} before the send"],
    ),
    (
        "OKX knew no such bot after",
        "add", "50", False, before(), BotSnapshot.missing(ALGO_ID, AFTER_AT), [],
        "cant_tell", [f"OKX knew no bot {ALGO_ID} after the send"],
    ),
    (
        "two different bots",
        "add", "50", False, before(), after(before(algo_id="2"), **ADDED_50), [],
        "cant_tell", ["two bots"],
    ),
    (
        "availBal unknown before",
        "add", "50", False, before(avail_bal=None), after(**ADDED_50), [],
        "cant_tell", ["from before the send did not give availBal"],
    ),
    (
        "totalEq and frozenBal unknown after",
        "add", "50", False, before(), dataclasses.replace(after(), total_eq=None, frozen_bal=None), [],
        "cant_tell", ["from after the send did not give frozenBal and totalEq"],
    ),
    (
        "the bot stopped in between",
        "add", "50", False, before(), dataclasses.replace(after(touched=False), state="stopped"), [],
        "cant_tell", ["state changed from running to stopped", WINDOW],
    ),
    (
        "allowReinvest asked, investAmt did not move",
        "add", "50", True, before(), after(**ADDED_50), [],
        "cant_tell", ["availBal rose by 50", "with allowReinvest", "investAmt did not move"],
    ),
    (
        "investAmt moved without allowReinvest",
        "add", "50", False, before(), after(**ADDED_50, invest_amt="50"), [],
        "cant_tell", ["investAmt rose by 50", "without allowReinvest"],
    ),
    (
        "uTime moved, nothing else",
        "add", "50", False, before(), after(), [],
        "cant_tell", ["no balance moved", "uTime moved by 202.5 s"],
    ),
    (
        "balances as asked, uTime did not move",
        "add", "50", False, before(), after(touched=False, **ADDED_50), [],
        "cant_tell", ["moved as asked", "uTime did not change"],
    ),
    (
        "uTime given in one snapshot only",
        "add", "50", False, before(u_time_ms=None), after(before(u_time_ms=None), **ADDED_50), [],
        "cant_tell", ["uTime was given in one snapshot only"],
    ),
    (
        "29 significant digits, executed",
        "add", "12345678901234567890.123456789", True,
        before(avail_bal=Decimal("1000.0000000001"), total_eq=Decimal("1100.0000000001")),
        after(
            before(avail_bal=Decimal("1000.0000000001"), total_eq=Decimal("1100.0000000001")),
            avail_bal="12345678901234567890.123456789", total_eq="12345678901234567890.123456789",
            invest_amt="12345678901234567890.123456789",
        ),
        [],
        "executed", ["rose by 12345678901234567890.123456789", "asked to add 12345678901234567890.123456789"],
    ),
    (
        "29 significant digits, off by 1E-10",
        "add", "12345678901234567890.123456789", False,
        before(avail_bal=Decimal("1000.0000000001"), total_eq=Decimal("1100.0000000001")),
        after(
            before(avail_bal=Decimal("1000.0000000001"), total_eq=Decimal("1100.0000000001")),
            avail_bal="12345678901234567890.1234567891", total_eq="12345678901234567890.1234567891",
        ),
        [],
        "cant_tell", ["availBal rose by 12345678901234567890.1234567891"],
    ),
    (
        "29 significant digits, executed reduce",
        "reduce", "12345678901234567890.123456789", True,
        before(
            avail_bal=Decimal("20000000000000000000.5"), total_eq=Decimal("20000000000000000100.5"),
            invest_amt=Decimal("20000000000000000000.5"),
        ),
        after(
            before(
                avail_bal=Decimal("20000000000000000000.5"), total_eq=Decimal("20000000000000000100.5"),
                invest_amt=Decimal("20000000000000000000.5"),
            ),
            avail_bal="-12345678901234567890.123456789", total_eq="-12345678901234567890.123456789",
            invest_amt="-12345678901234567890.123456789",
        ),
        [],
        "executed", ["fell by 12345678901234567890.123456789"],
    ),
    (
        "a tiny reduce from a large balance",
        "reduce", "0.000000000000000000001", True,
        before(avail_bal=Decimal("98765432109876543210"), total_eq=Decimal("98765432109876543210")),
        after(
            before(avail_bal=Decimal("98765432109876543210"), total_eq=Decimal("98765432109876543210")),
            avail_bal="-0.000000000000000000001", total_eq="-0.000000000000000000001",
            invest_amt="-0.000000000000000000001",
        ),
        [],
        "executed", ["fell by 0.000000000000000000001"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    "action, amount, allow_reinvest, before_send, after_send, events, verdict, words",
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_proposal(action, amount, allow_reinvest, before_send, after_send, events, verdict, words):
    proposal = propose(action, Decimal(amount), allow_reinvest, before_send, after_send, events)
    assert proposal.verdict == verdict, proposal.reason
    for word in words:
        assert word in proposal.reason
    assert proposal.verdict in VERDICTS
    assert ". " not in proposal.reason and "\n" not in proposal.reason  # one sentence


def test_the_window_is_the_snapshots_read_times_not_the_events_order():
    """OKX lists events newest first; the one in the window is found wherever it is in the list."""
    events = [event(END_MS + 5000), event(END_MS - 1), event(START_MS - 5000)]
    assert propose("add", Decimal(50), False, before(), after(**ADDED_50), events).verdict == "cant_tell"


def test_snapshots_read_out_of_order_tell_nothing():
    late_before = before(read_at=AFTER_AT + 1)
    assert propose("add", Decimal(50), False, late_before, after(**ADDED_50), []).verdict == "cant_tell"


@pytest.mark.parametrize("action, amount", [("close", "50"), ("add", "0"), ("reduce", "-5"), ("add", "NaN")])
def test_a_request_that_never_reaches_okx_is_not_judged(action, amount):
    with pytest.raises(ValueError):
        propose(action, Decimal(amount), False, before(), after(), [])


# -- changes -----------------------------------------------------------------------------


def test_changes_list_every_field_in_a_fixed_order_with_signed_deltas():
    assert changes(before(), after(**ADDED_50)) == [
        {"field": "state", "before": "running", "after": "running", "delta": None},
        {"field": "availBal", "before": "40", "after": "90", "delta": "+50"},
        {"field": "investAmt", "before": "100", "after": "100", "delta": "0"},
        {"field": "frozenBal", "before": "0", "after": "0", "delta": "0"},
        {"field": "totalEq", "before": "140", "after": "190", "delta": "+50"},
        {"field": "uTime", "before": str(U_TIME_BEFORE), "after": str(U_TIME_AFTER), "delta": "+202500"},
    ]


@pytest.mark.parametrize(
    "old, new, delta",
    [
        ("40", "90", "+50"),
        ("1.50000", "1.40000", "-0.1"),
        ("0.0001", "0", "-0.0001"),
        ("1E+2", "150", "+50"),
        ("12345678901234567890.123456789", "12345678901234567890.123456790", "+0.000000001"),
        ("1E-30", "12345678901234567890", "+12345678901234567889.999999999999999999999999999999"),
        ("7.000", "7", "0"),
    ],
)  # fmt: skip
def test_a_delta_is_exact_with_a_sign_and_no_exponent(old, new, delta):
    rows = changes(before(avail_bal=Decimal(old)), before(avail_bal=Decimal(new)))
    assert rows[1]["delta"] == delta


def test_an_unknown_side_has_no_delta():
    rows = changes(BotSnapshot.missing(ALGO_ID, BEFORE_AT), after())
    assert rows[0] == {"field": "state", "before": "missing", "after": "running", "delta": None}
    assert all(row["before"] is None and row["delta"] is None for row in rows[1:])


# -- gather: the evidence as stored --------------------------------------------------------


def test_the_evidence_round_trips_through_json():
    events = [event(END_MS + 10), event(START_MS + 2000, "user_action"), event(START_MS + 100), event(START_MS - 10)]
    evidence = gather("add", Decimal(50), False, before(), after(**ADDED_50), events)
    stored = json.loads(json.dumps(evidence))
    assert stored == evidence
    assert BotSnapshot.from_json(stored["before"]) == before()
    assert BotSnapshot.from_json(stored["after"]) == after(**ADDED_50)
    assert stored["window"] == {"from": "2026-11-23T12:00:01.250Z", "to": "2026-11-23T12:00:03.875Z"}
    assert [BotEvent.from_json(e) for e in stored["events"]] == [
        event(START_MS + 100),
        event(START_MS + 2000, "user_action"),
    ]
    assert stored["otherEvents"] == 2
    assert stored["changes"] == changes(before(), after(**ADDED_50))
    assert stored["proposal"] == "cant_tell"
    assert "2 event(s)" in stored["reason"]


def test_the_evidence_of_an_executed_add():
    evidence = gather("add", Decimal(50), True, before(), after(**REINVESTED_50), [event(START_MS - 60_000)])
    assert (evidence["proposal"], evidence["events"], evidence["otherEvents"]) == ("executed", [], 1)
    assert evidence["reason"] == propose("add", Decimal(50), True, before(), after(**REINVESTED_50), []).reason


def test_without_a_snapshot_there_is_no_window():
    evidence = json.loads(json.dumps(gather("add", Decimal(50), False, None, after(), [event(START_MS + 100)])))
    assert evidence["before"] is None and evidence["window"] is None and evidence["changes"] == []
    assert (evidence["events"], evidence["otherEvents"]) == ([], 1)
    assert evidence["proposal"] == "cant_tell"
    assert BotSnapshot.from_json(evidence["after"]) == after()


def test_events_not_read_are_null_not_an_empty_list():
    evidence = gather("add", Decimal(50), False, before(), after(**ADDED_50), None)
    assert (evidence["events"], evidence["otherEvents"], evidence["proposal"]) == (None, None, "cant_tell")


def test_a_proposal_is_a_verdict_and_a_reason():
    assert [field.name for field in dataclasses.fields(Proposal)] == ["verdict", "reason"]
    assert VERDICTS == ("executed", "not_executed", "cant_tell")
