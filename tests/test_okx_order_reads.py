"""The client's signed reads of a bot's trading (the ``Reader`` the evidence uses), against the
stand-in: positions, sub-orders (every page, by state, instrument and time) and the TP/SL."""

from decimal import Decimal

import pytest

from tests.bot_orders import BOT, BTC, ETH, bot_order, client_of
from tests.okx_stand_in import POSITIONS_PATH, SUB_ORDERS_PATH, OkxStandIn
from webhook_app.okx.errors import OkxRefused
from webhook_app.okx.orders import ExitSetting


@pytest.fixture
def client(okx):
    okx_client = client_of(okx)
    yield okx_client
    okx_client.close()


def test_positions_are_exact_with_their_side(okx, client):
    okx.bot(BOT).inst_ids.append(ETH)
    okx.open_position(BOT, BTC, "0.3", avg_px="61000.5")
    okx.open_position(BOT, ETH, "-2")
    positions = {position.inst_id: position for position in client.positions(BOT)}
    assert (positions[BTC].pos, positions[BTC].avg_px, positions[BTC].side) == (
        Decimal("0.3"),
        Decimal("61000.5"),
        "long",
    )
    assert (positions[ETH].pos, positions[ETH].side) == (Decimal("-2"), "short")
    assert positions[BTC].row["posSide"] == "net"  # OKX's row kept as it came
    assert "algoOrdType=contract" in okx.requests_to(POSITIONS_PATH)[0].path


def test_positions_of_a_bot_okx_does_not_know_is_a_failed_read(okx, client):
    okx.bots.pop(BOT)
    with pytest.raises(OkxRefused) as raised:
        client.positions(BOT)
    assert raised.value.code == "51293"


@pytest.fixture
def busy_okx():
    """A stand-in whose actions' limit lets a test place a few hundred orders at once."""
    stand_in = OkxStandIn(rate_limit=1000).start()
    yield stand_in
    stand_in.stop()


def test_sub_orders_are_read_page_after_page(busy_okx):
    okx, client = busy_okx, client_of(busy_okx)
    okx.bot(BOT).avail_bal = Decimal("100000")
    for n in range(205):
        client.send(bot_order("buy", ordType="limit", px=str(50000 + n), sz="0.01"), exp_time_ms=okx.now_ms() + 30_000)
    live = client.sub_orders(BOT, "live")
    assert len(live) == 205 and len({order.cl_ord_id for order in live}) == 205
    pages = okx.requests_to(SUB_ORDERS_PATH)
    assert len(pages) == 3 and "after=" not in pages[0].path and all("after=" in page.path for page in pages[1:])
    assert live[0].sz == Decimal("0.01") and live[0].state == "live" and live[0].cl_ord_id.startswith("O")
    client.close()


def test_sub_orders_by_instrument_and_time(okx, client):
    okx.bot(BOT).inst_ids.append(ETH)
    client.send(bot_order("buy", ordType="limit", px="59000", sz="0.1"), exp_time_ms=okx.now_ms() + 30_000)
    okx.clock_offset += 5.0
    client.sync_clock()
    begin_ms = okx.now_ms()
    client.send(bot_order("sell", ordType="limit", px="61000", sz="0.2"), exp_time_ms=okx.now_ms() + 30_000)
    client.send(bot_order("buy", ordType="limit", px="3000", sz="1", instId=ETH), exp_time_ms=okx.now_ms() + 30_000)
    assert [o.side for o in client.sub_orders(BOT, "live", BTC)] == ["sell", "buy"]  # newest first
    assert [(o.side, o.sz) for o in client.sub_orders(BOT, "live", BTC, begin_ms)] == [("sell", Decimal("0.2"))]
    assert [o.inst_id for o in client.sub_orders(BOT, "live")] == [ETH, BTC, BTC]
    assert f"begin={begin_ms}" in okx.requests_to(SUB_ORDERS_PATH)[1].path


@pytest.mark.parametrize("asked, refused", [("canceled", {"canceled"}), ("cancelled", {"cancelled"})])
def test_canceled_is_asked_in_the_other_spelling_when_okx_refuses_one(okx, client, asked, refused):
    okx.open_position(BOT, BTC, "0.1")
    client.send(bot_order("sell", sz="0.3", reduceOnly=True), exp_time_ms=okx.now_ms() + 30_000)  # 0.2 canceled
    okx.refused_states = refused
    assert [o.state for o in client.sub_orders(BOT, asked)] == ["canceled"]
    other = ({"canceled", "cancelled"} - {asked}).pop()
    assert [r.path.split("state=")[1].split("&")[0] for r in okx.requests_to(SUB_ORDERS_PATH)] == [asked, other]


def test_bot_details_give_the_tp_sl_as_okx_wrote_it(okx, client):
    details = client.bot_details(BOT)
    assert details.exit_setting == ExitSetting("", "", "") and details.snapshot.state == "running"
    okx.bot(BOT).exit_setting = {"tpSlType": "price", "tpPct": "0.10", "slPct": ""}
    assert client.bot_details(BOT).exit_setting.to_json() == {"tpSlType": "price", "tpPct": "0.10", "slPct": ""}
    okx.bots.pop(BOT)
    gone = client.bot_details(BOT)
    assert gone.snapshot.state == "missing" and gone.exit_setting is None
