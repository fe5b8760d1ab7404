"""The OKX paths the stand-in serves, and what it knows about each."""

MARGIN_PATH = "/api/v5/tradingBot/signal/margin-balance"
SUB_ORDER_PATH = "/api/v5/tradingBot/signal/sub-order"
CANCEL_SUB_ORDER_PATH = "/api/v5/tradingBot/signal/cancel-sub-order"
CLOSE_POSITION_PATH = "/api/v5/tradingBot/signal/close-position"
AMEND_TPSL_PATH = "/api/v5/tradingBot/signal/amendTPSL"
STOP_BOTS_PATH = "/api/v5/tradingBot/signal/stop-order-algo"
SET_INSTRUMENTS_PATH = "/api/v5/tradingBot/signal/set-instruments"
# Every signal-bot action: each plays the scripted faults and has its own 20-per-2-s limit.
ACTION_PATHS = (
    MARGIN_PATH,
    SUB_ORDER_PATH,
    CANCEL_SUB_ORDER_PATH,
    CLOSE_POSITION_PATH,
    AMEND_TPSL_PATH,
    STOP_BOTS_PATH,
    SET_INSTRUMENTS_PATH,
)

TIME_PATH = "/api/v5/public/time"
INSTRUMENTS_PATH = "/api/v5/public/instruments"
PUBLIC_PATHS = (TIME_PATH, INSTRUMENTS_PATH)  # unsigned
ACCOUNT_CONFIG_PATH = "/api/v5/account/config"
BOT_DETAILS_PATH = "/api/v5/tradingBot/signal/orders-algo-details"
BOTS_PENDING_PATH = "/api/v5/tradingBot/signal/orders-algo-pending"
BOT_EVENTS_PATH = "/api/v5/tradingBot/signal/event-history"
POSITIONS_PATH = "/api/v5/tradingBot/signal/positions"
SUB_ORDERS_PATH = "/api/v5/tradingBot/signal/sub-orders"
# The signed reads; each has its own limit at OKX (20 per 2 s per User ID), apart from the actions'.
BOT_READ_PATHS = (BOT_DETAILS_PATH, BOTS_PENDING_PATH, BOT_EVENTS_PATH)
ORDER_READ_PATHS = (POSITIONS_PATH, SUB_ORDERS_PATH)
SIGNED_READ_PATHS = (ACCOUNT_CONFIG_PATH, *BOT_READ_PATHS, *ORDER_READ_PATHS)

STATS_PATH = "/_stand_in/stats"
ARRIVALS_PATH = "/_stand_in/arrivals"  # when each action's request line was read, for latency benchmarks
DEFAULT_BOT = "581628185981813760"
