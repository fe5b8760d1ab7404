"""A stand-in for OKX's REST API on 127.0.0.1, checking what OKX checks.

It verifies the key, passphrase, timestamp format and freshness, the signature over the exact
body bytes, the content type, the demo header and each action's body; it enforces each
endpoint's own 20-requests-per-2-seconds limit per key (``max_in_any_window(path)``); and it
plays scripted faults on every signal-bot action (``play(path, ...)``; ``play(...)`` alone
scripts margin-balance). ``executions`` lists every action OKX carried out, ``executed`` the
margin bodies: the figure that must never count an alert twice.

It keeps the account's signal bots (``bots``: one ``Bot`` per algoId) with the fields OKX
documents: balances, net positions per instrument, sub-orders (``O…`` clOrdId = signalOrdId),
TP/SL and event history (an algoId a test never mentioned is a running bot with the default
fields, until the test removes it or clears ``bots``: see ``Bots``), and the SWAPs it lists
(``instruments``). Actions: margin-balance, sub-order (lot size, reduce-only, funds, the expTime
header), cancel-sub-order, close-position, amendTPSL, stop-order-algo, set-instruments. Reads:
orders-algo-details, -pending, event-history, positions, sub-orders, account config, and the
public time and instruments (``failing_reads`` fails a read by path). Tests script the world
between two requests with ``move_pnl``, ``trade``, ``change_margin``, ``stop_bot``,
``set_price``, ``fill_order``, ``open_position``, and inside a request's handling with ``Meanwhile``.

Modules: ``stand_in`` (the server, checks, scripts, records), ``handler`` (HTTP and the faults
played), ``faults``, ``actions`` (what OKX does and answers), ``bodies`` (malformed bodies),
``reads``, ``bots``, ``orders``, ``instruments``, ``world`` (scripting the bots and markets),
``limits``, ``paths``.
"""

from tests.okx_stand_in.actions import Answer, Call, Execution
from tests.okx_stand_in.bots import Bot, Bots, Event
from tests.okx_stand_in.faults import (
    AFTER_FIRST_LOOK,
    LATEST_FIRST_LOOK,
    Drop,
    DropUnexecuted,
    Hold,
    Meanwhile,
    OkxReply,
    Queued,
    RawReply,
    Slow,
)
from tests.okx_stand_in.handler import Received
from tests.okx_stand_in.instruments import Instrument
from tests.okx_stand_in.orders import Position, SubOrder
from tests.okx_stand_in.paths import (
    ACCOUNT_CONFIG_PATH,
    ACTION_PATHS,
    AMEND_TPSL_PATH,
    ARRIVALS_PATH,
    BOT_DETAILS_PATH,
    BOT_EVENTS_PATH,
    BOT_READ_PATHS,
    BOTS_PENDING_PATH,
    CANCEL_SUB_ORDER_PATH,
    CLOSE_POSITION_PATH,
    DEFAULT_BOT,
    INSTRUMENTS_PATH,
    MARGIN_PATH,
    ORDER_READ_PATHS,
    POSITIONS_PATH,
    SET_INSTRUMENTS_PATH,
    STATS_PATH,
    STOP_BOTS_PATH,
    SUB_ORDER_PATH,
    SUB_ORDERS_PATH,
    TIME_PATH,
)
from tests.okx_stand_in.stand_in import OkxStandIn

__all__ = [
    "LATEST_FIRST_LOOK",
    "AFTER_FIRST_LOOK",
    "ACCOUNT_CONFIG_PATH",
    "ACTION_PATHS",
    "AMEND_TPSL_PATH",
    "ARRIVALS_PATH",
    "BOT_DETAILS_PATH",
    "BOT_EVENTS_PATH",
    "BOT_READ_PATHS",
    "BOTS_PENDING_PATH",
    "CANCEL_SUB_ORDER_PATH",
    "CLOSE_POSITION_PATH",
    "DEFAULT_BOT",
    "INSTRUMENTS_PATH",
    "MARGIN_PATH",
    "ORDER_READ_PATHS",
    "POSITIONS_PATH",
    "SET_INSTRUMENTS_PATH",
    "STATS_PATH",
    "STOP_BOTS_PATH",
    "SUB_ORDER_PATH",
    "SUB_ORDERS_PATH",
    "TIME_PATH",
    "Answer",
    "Bot",
    "Bots",
    "Call",
    "Drop",
    "DropUnexecuted",
    "Event",
    "Execution",
    "Hold",
    "Instrument",
    "Meanwhile",
    "OkxReply",
    "OkxStandIn",
    "Position",
    "Queued",
    "RawReply",
    "Received",
    "Slow",
    "SubOrder",
    "main",
]


REHEARSAL_PORT = 8100
DEFAULT_BOT_INSTRUMENT = "BTC-USDT-SWAP"  # bots.Bot's instrument unless a test gives another


def main() -> None:
    """Serve the stand-in in its own process, on 127.0.0.1 only: python -m tests.okx_stand_in
    [--port P] [--rate-limit N]. It says how to point the service at it: a rehearsal of the live path
    (keys, signatures, pacing, OKX's answers) that moves no money."""
    import argparse

    parser = argparse.ArgumentParser(description="A stand-in for OKX on 127.0.0.1, for a rehearsal or a benchmark.")
    parser.add_argument("--port", type=int, default=REHEARSAL_PORT)
    parser.add_argument("--rate-limit", type=int, default=20)
    args = parser.parse_args()
    stand_in = OkxStandIn(rate_limit=args.rate_limit, port=args.port)
    print(rehearsal_settings(stand_in), flush=True)
    stand_in._server.serve_forever(poll_interval=0.05)


def rehearsal_settings(stand_in: OkxStandIn) -> str:
    """What the service needs to send to this stand-in, as lines of a .env file."""
    return "\n".join(
        [
            f"A stand-in for OKX at {stand_in.base_url}: it checks keys, signatures and pacing as OKX does,",
            f"and keeps its own pretend signal bots (any algoId is a running {DEFAULT_BOT_INSTRUMENT} bot).",
            "Nothing leaves this machine and no money moves. Point the service at it (in .env, or before",
            "the gunicorn command), then send it an alert; Ctrl-C stops it.",
            "",
            f"OKX_BASE_URL={stand_in.base_url}",
            f"OKX_API_KEY={stand_in.api_key}",
            f"OKX_API_SECRET={stand_in.secret_key}",
            f"OKX_API_PASSPHRASE={stand_in.passphrase}",
            "",
        ]
    )
