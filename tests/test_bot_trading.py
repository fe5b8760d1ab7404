"""Each watched bot's positions and TP/SL as OKX last reported them: read in the background by the
BotWatch within the reads' budget, kept with the time they were read, and shown in /status and on
the operator page's bot list. Against the loopback stand-in (positions opened in its model, TP/SL
set through amendTPSL)."""

import json
import re
from datetime import datetime
from pathlib import Path

import jsonschema_rs
import pytest

from tests.bot_orders import BOT, BTC, ETH, bot_order, client_of
from tests.conftest import ADMIN_TOKEN
from tests.okx_stand_in import BOT_DETAILS_PATH, POSITIONS_PATH
from tests.test_admin import logged_in
from webhook_app.clock import ManualClock
from webhook_app.workers.bots import READ_WINDOW, READS_PER_WINDOW, BotWatch
from webhook_app.workers.pacing import MemoryPacer

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REFRESH = 30.0
TPSL = {"tpSlType": "pnl", "tpPct": "0.05", "slPct": "0.02"}
UNSET = {"tpSlType": "", "tpPct": "", "slPct": ""}
UNAVAILABLE = (503, "50001", "Service temporarily unavailable")


@pytest.fixture
def client(okx):
    okx_client = client_of(okx)
    yield okx_client
    okx_client.close()


@pytest.fixture
def clock():
    return ManualClock()


def watch_of(client, clock, known=(BOT,), pacers=None) -> BotWatch:
    """A BotWatch of ``known`` bots on ``clock``; ``pacers``: path -> a shared budget."""
    pacers = pacers or {}
    return BotWatch(
        client,
        instance="t",
        known_ids=lambda: list(known),
        refresh_every=REFRESH,
        pacer_for=pacers.get,
        clock=clock,
    )


def row_of(watch: BotWatch, algo_id: str = BOT) -> dict:
    return next(row for row in watch.table() if row["algoId"] == algo_id)


def okx_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def trading(okx, client) -> None:
    """The bot holds a long BTC and a short ETH position; its TP/SL is set through amendTPSL."""
    okx.bot(BOT).inst_ids.append(ETH)
    okx.open_position(BOT, BTC, "0.3", avg_px="60000.5")
    okx.open_position(BOT, ETH, "-2", avg_px="3000.25")
    client.send(bot_order("tpsl", **TPSL))


# -- the watch ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pending_lists_tpsl", [True, False], ids=["tpsl-in-active-list", "tpsl-from-details"])
def test_the_watch_keeps_each_bots_positions_and_tpsl_with_when_okx_reported_them(
    okx, client, clock, pending_lists_tpsl
):
    okx.pending_lists_exit_setting = pending_lists_tpsl  # OKX's docs do not say ⚠: both ways
    trading(okx, client)
    watch = watch_of(client, clock)
    before = okx.now()
    watch.refresh()
    row = row_of(watch)
    positions, tpsl = row["positions"], row["tpsl"]
    assert [{k: p[k] for k in ("instId", "side", "pos", "avgPx")} for p in positions["open"]] == [
        {"instId": BTC, "side": "long", "pos": "0.3", "avgPx": "60000.5"},
        {"instId": ETH, "side": "short", "pos": "-2", "avgPx": "3000.25"},
    ]
    assert all(p["uTime"].isdigit() for p in positions["open"])
    assert before - 1 <= okx_time(positions["readAt"]) <= okx.now() + 1 and positions["readAgo"] == 0
    assert positions["failed"] is None
    assert {k: tpsl[k] for k in TPSL} == TPSL and tpsl["readAgo"] == 0
    assert before - 1 <= okx_time(tpsl["readAt"]) <= okx.now() + 1
    # TP/SL missing from the active list is read from the bot's details (once).
    assert len(okx.reads(BOT_DETAILS_PATH)) == (0 if pending_lists_tpsl else 1)

    clock.advance(12.5)
    assert row_of(watch)["positions"]["readAgo"] == 12.5 and row_of(watch)["tpsl"]["readAgo"] == 12.5


def test_a_bot_without_position_or_tpsl_is_read_as_holding_none(okx, client, clock):
    watch = watch_of(client, clock)
    watch.refresh()
    row = row_of(watch)
    assert row["positions"]["open"] == [] and row["positions"]["readAt"]
    assert {k: row["tpsl"][k] for k in TPSL} == UNSET


def test_before_any_read_positions_and_tpsl_are_null(okx, client, clock):
    okx.right_region = False  # every signed read refused (50119)
    watch = watch_of(client, clock)
    watch.refresh()
    assert (row_of(watch)["positions"], row_of(watch)["tpsl"]) == (None, None)
    assert okx.reads(POSITIONS_PATH) == []  # the active list failed: nothing more is read


def test_a_bots_positions_read_lately_are_not_read_again(okx, client, clock):
    watch = watch_of(client, clock)
    watch.refresh()
    watch.refresh()  # e.g. another caller's refresh right after the background one
    assert len(okx.reads(POSITIONS_PATH)) == 1
    clock.advance(REFRESH)
    watch.refresh()
    assert len(okx.reads(POSITIONS_PATH)) == 2


def test_positions_are_not_read_for_a_bot_okx_does_not_know(okx, client, clock):
    okx.bots.pop(BOT)
    watch = watch_of(client, clock)
    watch.refresh()
    assert row_of(watch)["state"] == "missing" and row_of(watch)["positions"] is None
    assert okx.reads(POSITIONS_PATH) == []


def test_the_positions_reads_take_only_what_is_left_of_their_shared_budget(okx, client, clock):
    bots = [str(700 + n) for n in range(12)]
    for bot in bots:
        okx.add_bot(bot)
    positions_budget = MemoryPacer(READS_PER_WINDOW, READ_WINDOW, clock=clock)
    taken = positions_budget.acquire("other-instance", READS_PER_WINDOW - 3)  # another instance's reads
    assert len(taken) == READS_PER_WINDOW - 3
    watch = watch_of(client, clock, known=bots, pacers={POSITIONS_PATH: positions_budget})
    watch.refresh()
    assert len(okx.reads(POSITIONS_PATH)) == 3  # the rest skipped, never waited for
    assert sum(row_of(watch, bot)["positions"] is not None for bot in bots) == 3
    assert okx.read_limited[POSITIONS_PATH] == 0


def test_many_bots_positions_are_read_a_share_per_refresh_the_unread_first(okx, client, clock):
    bots = [str(700 + n) for n in range(25)]
    for bot in bots:
        okx.add_bot(bot)
    watch = watch_of(client, clock, known=bots)
    watch.refresh()
    first = {bot for bot in bots if row_of(watch, bot)["positions"] is not None}
    assert len(first) == READS_PER_WINDOW // 2  # half the endpoint's budget: room for the evidence's reads
    clock.advance(REFRESH)
    watch.refresh()
    second = {bot for bot in bots if row_of(watch, bot)["positions"] is not None} - first
    assert len(second) == READS_PER_WINDOW // 2  # those never read before the ones read a refresh ago
    assert okx.max_in_any_window(POSITIONS_PATH) <= READS_PER_WINDOW and okx.read_limited[POSITIONS_PATH] == 0


def test_a_failed_positions_read_keeps_the_last_reading_and_says_when_it_was_read(okx, client, clock):
    okx.open_position(BOT, BTC, "0.3", avg_px="60000.5")
    watch = watch_of(client, clock)
    watch.refresh()
    read = row_of(watch)["positions"]

    okx.open_position(BOT, BTC, "0.2", avg_px="61000")  # what the failed read would have shown
    okx.failing_reads[POSITIONS_PATH] = UNAVAILABLE
    clock.advance(REFRESH + 5)
    watch.refresh()
    kept = row_of(watch)["positions"]
    assert (kept["open"], kept["readAt"]) == (read["open"], read["readAt"])  # the last reading, as it was
    assert kept["readAgo"] == REFRESH + 5
    assert kept["failed"]["ago"] == 0 and "50001" in kept["failed"]["error"]
    assert okx_time(kept["failed"]["at"]) >= okx_time(read["readAt"])

    del okx.failing_reads[POSITIONS_PATH]
    clock.advance(REFRESH)
    watch.refresh()
    again = row_of(watch)["positions"]
    assert again["failed"] is None and [p["pos"] for p in again["open"]] == ["0.5"]


# -- /status and the page -----------------------------------------------------------------------


OPENAPI = Path(__file__).resolve().parents[1] / "webhook_app" / "surfaces" / "openapi.json"


def status_bot(app, algo_id: str = BOT) -> dict:
    """The bot's row in /status, whose whole body must match the contract (openapi.json)."""
    body = app.test_client().get("/status", headers=BEARER).json
    schema = json.loads(OPENAPI.read_text())["paths"]["/status"]["get"]["responses"]["200"]["content"]
    schema = schema["application/json"]["schema"]
    jsonschema_rs.validate(schema, body)
    bot = next(bot for bot in body["service"]["bots"] if bot["algoId"] == algo_id)
    documented = schema["properties"]["service"]["properties"]["bots"]["items"]["properties"]
    assert set(bot) <= set(documented), set(bot) - set(documented)  # every field documented
    return bot


def bot_list_row(app, algo_id: str = BOT) -> str:
    browser = app.test_client()
    logged_in(browser)
    panel = browser.get("/admin/live").text.split('id="bots"')[1].split("</section>")[0]
    return re.search(rf'<tr data-bot="{algo_id}">(.*?)</tr>', panel, re.S).group(1)


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def cells(app, algo_id: str = BOT) -> tuple[str, str]:
    """The text of the bot's Positions and TP/SL cells on the page's bot list."""
    row = bot_list_row(app, algo_id)
    return tuple(
        text_of(re.search(rf'<td[^>]* class="{name}"[^>]*>(.*?)</td>', row, re.S).group(1))
        for name in ("positions", "tpsl")
    )


def test_status_json_gives_each_bots_positions_and_tpsl_as_okx_last_reported_them(make_app, okx, client, database_url):
    """On SQLite and on PostgreSQL, where the positions' budget is the ledger the instances share."""
    trading(okx, client)  # before the app: its own first refresh may come before the test's
    app = make_app(database_url=database_url)
    app.extensions["webhook"].bots.refresh()
    bot = status_bot(app)
    assert [(p["instId"], p["side"], p["pos"], p["avgPx"]) for p in bot["positions"]["open"]] == [
        (BTC, "long", "0.3", "60000.5"),
        (ETH, "short", "-2", "3000.25"),
    ]
    assert bot["positions"]["readAt"].endswith("Z") and bot["positions"]["readAgo"] >= 0
    assert {k: bot["tpsl"][k] for k in TPSL} == TPSL and bot["tpsl"]["readAt"].endswith("Z")


def test_the_pages_bot_list_shows_positions_and_tpsl_with_when_they_were_read(make_app, okx, client):
    trading(okx, client)
    app = make_app()
    app.extensions["webhook"].bots.refresh()
    positions, tpsl = cells(app)
    assert re.fullmatch(r"long 0.3 BTC-USDT-SWAP @ 60000.5 short 2 ETH-USDT-SWAP @ 3000.25 read \d+ s ago", positions)
    assert re.fullmatch(r"TP 5% / SL 2% \(pnl\) read \d+ s ago", tpsl)


@pytest.mark.parametrize(
    "setting, shown",
    [
        (UNSET, "none"),
        ({"tpSlType": "price", "tpPct": "0.125", "slPct": ""}, "TP 12.5% (price)"),
        ({"tpSlType": "pnl", "tpPct": "", "slPct": "0.3"}, "SL 30% (pnl)"),
        ({"tpSlType": "pnl", "tpPct": "1.5", "slPct": "0.00001"}, "TP 150% / SL 0.001% (pnl)"),
    ],
    ids=["none", "tp-only", "sl-only", "exact"],
)
def test_the_page_says_tpsl_in_percent_exactly_or_none(make_app, okx, setting, shown):
    okx.bot(BOT).exit_setting = dict(setting)
    app = make_app()
    app.extensions["webhook"].bots.refresh()
    assert cells(app)[1].startswith(shown + " read ")


def test_the_page_says_no_position_and_a_failed_read_with_the_reading_it_keeps(make_app, okx, clock):
    app = make_app(local_clock=clock)
    app.extensions["webhook"].bots.refresh()
    assert cells(app)[0].startswith("no position read ")

    okx.failing_reads[POSITIONS_PATH] = UNAVAILABLE
    clock.advance(REFRESH)  # a refresh period on: the reading is due
    app.extensions["webhook"].bots.refresh()
    shown = cells(app)[0]
    assert re.fullmatch(r"no position read \d+ s ago last read failed \d+ s ago 50001 .+", shown), shown
    assert "50001" in status_bot(app)["positions"]["failed"]["error"]
