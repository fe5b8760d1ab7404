"""One ``Attempt`` of each signal-bot action other than margin's, against the stand-in (the fake
journal of ``test_attempt``): what reaches OKX, and what an ambiguous answer becomes. An action
that states a target is settled at once by reading OKX: reached is ``ok``, not reached goes
again (inside the lag), unreadable stays ``unknown``; a sub-order carries expTime and its
ambiguous answer stays ``unknown`` for the investigator."""

import json
import time

import pytest

from tests.bot_orders import BOT, BTC, bot_order
from tests.okx_stand_in import Drop, DropUnexecuted
from tests.test_attempt import ME, FakeJournal, LedgerPacer, SteppingClock
from webhook_app.journal import Record
from webhook_app.okx.client import OkxClient
from webhook_app.workers.delivery.attempt import Attempt, Desk
from webhook_app.workers.delivery.board import Board
from webhook_app.workers.delivery.lanes import Lane
from webhook_app.workers.delivery.slots import SlotLedger
from webhook_app.workers.delivery.terms import Terms
from webhook_app.workers.outcomes import OutcomePolicy


def run_attempt(okx, action: str, pacer=None, **changes) -> FakeJournal:
    """A claimed alert of ``action`` (the builder's valid order, ``changes`` applied), attempted once."""
    order = bot_order(action, **changes)
    now = time.time()
    record = Record(
        id=9,
        received_at=now,
        dedup_key="fp:9",
        algo_id=BOT,
        action=action,
        amount=order.body.get("sz", "") if isinstance(order.body, dict) else "",
        request_body=json.dumps(order.body, separators=(",", ":")),
        expires_at=now + 600,
        state="sending",
        attempts=1,
        claimed_by=ME,
    )
    journal = FakeJournal(record)
    pacer = pacer or LedgerPacer()
    client = OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase, read_timeout=2.0)
    clock = SteppingClock()
    board = Board([("default", "sub-order")])
    desk = Desk(journal, journal, journal, OutcomePolicy(), board, SlotLedger(board), Terms(clock, 3.0, 19.0))
    (slot,) = pacer.acquire(ME, 1)
    Attempt(desk, record, Lane(client, pacer), clock() + 3.0, slot).run()
    return journal


def test_a_buy_reaches_okx_as_its_sub_order_with_exp_time_at_the_send_deadline(okx):
    journal = run_attempt(okx, "buy")
    (sent,) = okx.requests_to("/api/v5/tradingBot/signal/sub-order")
    assert json.loads(sent.body) == bot_order("buy").body
    exp_time = int(sent.headers["expTime"])
    assert 0 < exp_time - okx.now_ms() <= 3000  # the send deadline, on OKX's clock
    assert journal.record.state == "ok" and len(okx.executions_of("/api/v5/tradingBot/signal/sub-order")) == 1
    assert json.loads(journal.confirmed_evidence[-1])["expTime"] == str(exp_time)  # kept for the investigator


def test_a_buy_whose_answer_is_lost_is_unknown_for_the_investigator(okx):
    okx.play("/api/v5/tradingBot/signal/sub-order", Drop())
    assert run_attempt(okx, "buy").record.state == "unknown"


@pytest.mark.parametrize(
    ("behaviour", "state", "words", "executions"),
    [
        (Drop(), "ok", "its records show it done: the bot holds no position in BTC-USDT-SWAP", 1),
        (DropUnexecuted(), "queued", "its records show nothing done (the bot still holds", 0),
    ],
    ids=["closed", "still-open"],
)
def test_a_close_whose_answer_is_lost_is_settled_at_once_from_okx(okx, behaviour, state, words, executions):
    okx.open_position(BOT, BTC, "0.3")
    okx.play("/api/v5/tradingBot/signal/close-position", behaviour)
    journal = run_attempt(okx, "close")
    assert journal.record.state == state and words in journal.record.detail, journal.record.detail
    assert len(okx.executions_of("/api/v5/tradingBot/signal/close-position")) == executions
    print(f"settled at once: {state}")


def test_a_close_whose_answer_is_lost_and_whose_bot_cannot_be_read_stays_unknown(okx):
    okx.open_position(BOT, BTC, "0.3")
    okx.play("/api/v5/tradingBot/signal/close-position", Drop())
    okx.ip_allowed = False  # the reads are refused
    try:
        assert run_attempt(okx, "close").record.state == "unknown"
    finally:
        okx.ip_allowed = True


def test_a_stop_of_a_stopped_bot_is_ok_saying_it_was_already_so(okx):
    run_attempt(okx, "stop")
    journal = run_attempt(okx, "stop")
    assert journal.record.state == "ok" and "already so: 51291" in journal.record.detail, journal.record.detail


def pending_orders(okx, count: int) -> list[str]:
    """``count`` live limit orders of the bot in BTC, placed as OKX would have them."""
    client = OkxClient(okx.base_url, okx.api_key, okx.secret_key, okx.passphrase)
    for n in range(count):
        order = bot_order("buy", ordType="limit", px=f"5900{n}", sz="0.1")
        client.send(order, exp_time_ms=okx.now_ms() + 30_000)
    return [order.cl_ord_id for order in okx.bot(BOT).orders]


def test_a_cancel_spends_one_slot_of_its_endpoints_budget_per_sub_order_it_cancels(okx):
    pending = pending_orders(okx, 3)
    pacer = LedgerPacer()  # 5 slots a window; the claim holds one
    journal = run_attempt(okx, "cancel", pacer=pacer)
    assert journal.record.state == "ok"
    cancelled = [
        json.loads(r.body)["signalOrdId"] for r in okx.requests_to("/api/v5/tradingBot/signal/cancel-sub-order")
    ]
    assert sorted(cancelled) == sorted(pending)
    assert len(pacer.released) == 2  # the two further POSTs' slots, given back once the send was over


def test_a_cancel_whose_budget_is_spent_sends_no_more_and_goes_again_for_the_rest(okx):
    pending_orders(okx, 3)
    pacer = LedgerPacer()
    pacer.acquire(ME, 3)  # other sends hold 3 of the 5: room for the claim's and one more
    journal = run_attempt(okx, "cancel", pacer=pacer)
    assert journal.record.state == "queued" and "send deadline" in journal.record.detail, journal.record.detail
    assert len(okx.requests_to("/api/v5/tradingBot/signal/cancel-sub-order")) == 2
