"""The signed reads of a signal bot (``SignalReads``, mixed into ``OkxClient``): its details with
its TP/SL, the active bots, its event history, its sub-orders and its positions. Each raises an
``OkxError`` when the read fails; none ever changes anything at OKX."""

from __future__ import annotations

from webhook_app.okx.errors import BOT_MISSING_CODES, OkxError, OkxRefused
from webhook_app.okx.orders import CANCELED_SPELLINGS, BotDetails, BotPositions, Position, SubOrder
from webhook_app.okx.records import BotEvent, BotSnapshot, okx_ms, okx_text

BOT_DETAILS_PATH = "/api/v5/tradingBot/signal/orders-algo-details"
BOTS_PENDING_PATH = "/api/v5/tradingBot/signal/orders-algo-pending"
BOT_EVENTS_PATH = "/api/v5/tradingBot/signal/event-history"
POSITIONS_PATH = "/api/v5/tradingBot/signal/positions"
SUB_ORDERS_PATH = "/api/v5/tradingBot/signal/sub-orders"

PAGE = 100  # OKX's most rows per read
MAX_PAGES = 10  # of sub-orders in one state: more than 1000 cannot be one bot's doing in a window


class SignalReads:
    """For a class with ``get_signed(path, query, timeout) -> payload`` and ``okx_now()``."""

    def get_signed(self, path: str, query: dict | None = None, timeout: float | None = None) -> dict:
        raise NotImplementedError

    def okx_now(self) -> float:
        raise NotImplementedError

    def bot_details(self, algo_id: str, timeout: float | None = None) -> BotDetails:
        """The bot's details and TP/SL as OKX reports them now; state "missing" when OKX says it
        has no such bot (or no longer runs it: 51291)."""
        started = self.okx_now()
        try:
            payload = self.get_signed(BOT_DETAILS_PATH, {"algoOrdType": "contract", "algoId": algo_id}, timeout)
        except OkxError as exc:
            if exc.code in BOT_MISSING_CODES:
                return BotDetails.missing(algo_id, (started + self.okx_now()) / 2)
            raise
        read_at = (started + self.okx_now()) / 2
        bots = data_rows(payload, "the bot's details")
        if not bots:
            return BotDetails.missing(algo_id, read_at)
        return BotDetails.from_okx(bots[0], algo_id, read_at)

    def bot_snapshot(self, algo_id: str, timeout: float | None = None) -> BotSnapshot:
        """The bot's balances and state as OKX reports them now (``bot_details``' snapshot)."""
        return self.bot_details(algo_id, timeout).snapshot

    def running_bots(self, timeout: float | None = None) -> list[BotSnapshot]:
        """OKX's active signal bots (its first page of them: up to 100)."""
        return [details.snapshot for details in self.running_bot_details(timeout)]

    def running_bot_details(self, timeout: float | None = None) -> list[BotDetails]:
        """OKX's active signal bots with their TP/SL where the list gives it (its docs do not list
        the fields of its rows ⚠: ``exit_setting`` None where a row has no exitSettingParam)."""
        started = self.okx_now()
        payload = self.get_signed(BOTS_PENDING_PATH, {"algoOrdType": "contract"}, timeout)
        read_at = (started + self.okx_now()) / 2
        return [BotDetails.from_okx(bot, "", read_at) for bot in data_rows(payload, "the list of active bots")]

    def bot_events(self, algo_id: str, timeout: float | None = None, limit: int = 100) -> list[BotEvent]:
        """The bot's latest events, newest first as OKX lists them. An entry without a readable
        time raises an ``OkxError``: an event that cannot be placed in time must not be dropped."""
        payload = self.get_signed(BOT_EVENTS_PATH, {"algoId": algo_id, "limit": str(limit)}, timeout)
        events = []
        for row in data_rows(payload, "the bot's event history"):
            ctime_ms = okx_ms(row.get("eventCtime"))
            if ctime_ms is None:
                raise OkxError(f"OKX listed an event of bot {algo_id} without a readable eventCtime")
            events.append(
                BotEvent(
                    event_type=okx_text(row.get("eventType")),
                    event_status=okx_text(row.get("eventStatus")),
                    ctime_ms=ctime_ms,
                    message=okx_text(row.get("eventProcessMsg")),
                )
            )
        return events

    def positions(self, algo_id: str, timeout: float | None = None) -> list[Position]:
        """The bot's net positions, one per instrument (none when it holds nothing)."""
        return list(self.bot_positions(algo_id, timeout).positions)

    def bot_positions(self, algo_id: str, timeout: float | None = None) -> BotPositions:
        """The bot's net positions with when OKX reported them."""
        started = self.okx_now()
        payload = self.get_signed(POSITIONS_PATH, {"algoOrdType": "contract", "algoId": algo_id}, timeout)
        read_at = (started + self.okx_now()) / 2
        rows = data_rows(payload, "the bot's positions")
        return BotPositions(algo_id, tuple(Position.from_okx(row) for row in rows), read_at)

    def sub_orders(
        self,
        algo_id: str,
        state: str,
        inst_id: str | None = None,
        begin_ms: int | None = None,
        timeout: float | None = None,
    ) -> list[SubOrder]:
        """The bot's sub-orders in ``state`` (one of ``orders.SUB_ORDER_STATES``), newest first,
        created at or after ``begin_ms`` (OKX's cTime) when given, of ``inst_id`` when given.

        OKX's docs list no instId among the read's parameters, so it is not sent: the rows are
        filtered here. "canceled" is asked as spelt, then as "cancelled" if OKX refuses that."""
        if state in CANCELED_SPELLINGS:
            first, other = state, next(s for s in CANCELED_SPELLINGS if s != state)
            try:
                rows = self._sub_order_rows(algo_id, first, begin_ms, timeout)
            except OkxRefused:
                rows = self._sub_order_rows(algo_id, other, begin_ms, timeout)
        else:
            rows = self._sub_order_rows(algo_id, state, begin_ms, timeout)
        orders = [SubOrder.from_okx(row) for row in rows]
        return [order for order in orders if inst_id is None or order.inst_id == inst_id]

    def _sub_order_rows(self, algo_id: str, state: str, begin_ms: int | None, timeout: float | None) -> list[dict]:
        """Every page (``after`` the last row's ordId) until one comes back short."""
        query = {"algoOrdType": "contract", "algoId": algo_id, "state": state, "limit": str(PAGE)}
        if begin_ms is not None:
            query["begin"] = str(begin_ms)
        rows: list[dict] = []
        for _ in range(MAX_PAGES):
            page = data_rows(self.get_signed(SUB_ORDERS_PATH, query, timeout), "the bot's sub-orders")
            rows.extend(page)
            last = okx_text(page[-1].get("ordId")) if page else ""
            if len(page) < PAGE or not last:
                return rows
            query = {**query, "after": last}
        raise OkxError(f"OKX listed more than {PAGE * MAX_PAGES} {state} sub-orders of bot {algo_id}")


def data_rows(payload: dict, what: str) -> list[dict]:
    """OKX's ``data`` list, each row an object; an answer of another shape is a failed read."""
    data = payload.get("data")
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise OkxError(f"OKX's answer for {what} was not a list of objects")
    return data
