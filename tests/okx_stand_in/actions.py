"""What OKX does when it acts on each signal-bot action, and what it answers."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

from tests.okx_stand_in.bots import Bot
from tests.okx_stand_in.instruments import Instrument
from tests.okx_stand_in.orders import OPEN_STATES, SubOrder
from tests.okx_stand_in.paths import (
    AMEND_TPSL_PATH,
    CANCEL_SUB_ORDER_PATH,
    CLOSE_POSITION_PATH,
    MARGIN_PATH,
    SET_INSTRUMENTS_PATH,
    STOP_BOTS_PATH,
    SUB_ORDER_PATH,
)

if TYPE_CHECKING:
    from tests.okx_stand_in.stand_in import OkxStandIn

FIRST_ORD_ID, FIRST_SIGNAL_ORD_ID = 632302662351958016, 632302662327996418  # as in OKX's examples


@dataclasses.dataclass
class Call:
    """One request to an action, as OKX acts on it (at once, or later after a fault)."""

    path: str
    request: dict | list  # the JSON body (a list for stop-order-algo)
    arrived: float  # time.time() at arrival, as the journal's received_at
    exp_time_ms: int | None = None  # the expTime header, honoured on sub-order only (as OKX documents)

    @property
    def algo_id(self) -> str:
        return (self.request[0] if isinstance(self.request, list) else self.request)["algoId"]


class Execution(NamedTuple):
    """An action OKX carried out: when its request arrived (time.time()), where, and its body."""

    arrived: float
    path: str
    body: dict | list


@dataclasses.dataclass
class Answer:
    code: str
    msg: str = ""
    data: list = dataclasses.field(default_factory=list)

    def okx_json(self) -> dict:
        return {"code": self.code, "msg": self.msg, "data": self.data}


NOT_RUNNING = Answer("51291", "This Bot does not exist or has been stopped")
FAILED, PARTLY = "Operation failed.", "Bulk operation partially succeeded."
NO_POSITION_TO_REDUCE = (
    "51169",
    "Order failed because you don't have any positions in this direction for this contract to reduce or close.",
)
REDUCE_SAME_DIRECTION = (
    "51170",
    "Failed to place order. A reduce-only order can't be the same trading direction as your existing positions.",
)


class Actions:
    """Acts on calls under the stand-in's lock; each call that changed something at OKX is
    recorded in ``executions`` (a margin change in ``executed`` too)."""

    def __init__(self, okx: OkxStandIn):
        self.okx = okx
        self._ids = itertools.count()
        self._act: dict[str, Callable[[Call], Answer]] = {
            MARGIN_PATH: self._margin,
            SUB_ORDER_PATH: self._sub_order,
            CANCEL_SUB_ORDER_PATH: self._cancel_sub_order,
            CLOSE_POSITION_PATH: self._close_position,
            AMEND_TPSL_PATH: self._amend_tpsl,
            STOP_BOTS_PATH: self._stop_bots,
            SET_INSTRUMENTS_PATH: self._set_instruments,
        }

    def act(self, call: Call) -> Answer:
        with self.okx._lock:
            return self._act[call.path](call)

    @staticmethod
    def accepted(call: Call) -> Answer:
        """OKX's answer when it takes ``call`` on (e.g. before it acts on it late)."""
        request = call.request
        if call.path == SUB_ORDER_PATH:
            return Answer("0")  # OKX documents data [] and no order id
        if call.path == CANCEL_SUB_ORDER_PATH:
            return Answer("0", "", [{"signalOrdId": request["signalOrdId"], "sCode": "0", "sMsg": ""}])
        if call.path == STOP_BOTS_PATH:
            return Answer("0", "", [_stop_item(item["algoId"], "0", "") for item in request])
        return Answer("0", "", [{"algoId": request["algoId"]}])

    def _done(self, call: Call) -> Answer:
        self.okx.executions.append(Execution(call.arrived, call.path, call.request))
        return self.accepted(call)

    def _running(self, algo_id: str) -> Bot | None:
        bot = self.okx.bots.find(algo_id)
        return bot if bot is not None and bot.state == "running" else None

    def _later(self, seconds: float, change: Callable[[], None]) -> None:
        """``change`` at OKX ``seconds`` from now (at once when 0)."""
        if seconds <= 0:
            return change()

        def locked():
            with self.okx._lock:
                change()

        timer = threading.Timer(seconds, locked)
        timer.daemon = True
        timer.start()

    # -- the actions ----------------------------------------------------------------------

    def _margin(self, call: Call) -> Answer:
        request = call.request
        amt, action = Decimal(request["amt"]), request["type"]
        bot = self._running(request["algoId"])
        if bot is None:
            return Answer("51291", "Bot does not exist or stopped")
        if action == "reduce" and amt > bot.avail_bal:
            return Answer("51008", "Order failed. Insufficient USDT balance in account.")
        self.okx._apply_margin(bot, action, amt, request.get("allowReinvest", False))
        if self.okx.events_for_margin:
            done = "added" if action == "add" else "reduced"
            self.okx.add_event(request["algoId"], "user_action", f"Margin {done} via API: {amt}")
        self.okx.executed.append(request)
        return self._done(call)

    def _sub_order(self, call: Call) -> Answer:
        if call.exp_time_ms is not None and self.okx.now_ms() > call.exp_time_ms:
            return Answer("50037", "Order expired.")  # never executed after its expTime
        request = call.request
        bot = self._running(request["algoId"])
        inst = self.okx.instruments.get(request["instId"])
        if bot is None:
            return NOT_RUNNING
        if inst is None:
            return Answer("51001", "Instrument ID, Instrument ID code or Spread ID doesn't exist.")
        if inst.inst_id not in bot.inst_ids:
            return Answer("51287", "This bot doesn't support current instrument")
        sz, side = Decimal(request["sz"]), request["side"]
        px = Decimal(request["px"]) if "px" in request else None
        refusal = inst.size_refusal(sz) or self._order_refusal(bot, inst, request, sz, px)
        if refusal:
            return Answer(*refusal)
        self._place(request["algoId"], bot, inst, side, sz, px, request.get("reduceOnly", False))
        return self._done(call)

    @staticmethod
    def _order_refusal(bot: Bot, inst: Instrument, request: dict, sz: Decimal, px: Decimal | None):
        """OKX's refusal of an order the bot cannot place: (code, msg) or None."""
        side, pos = request["side"], bot.position(inst.inst_id).pos
        if request.get("reduceOnly", False):
            if not pos:
                return NO_POSITION_TO_REDUCE
            if (pos > 0) == (side == "buy"):
                return REDUCE_SAME_DIRECTION
            return None
        if bot.margin_needed(inst, sz if side == "buy" else -sz, px or inst.last) > bot.avail_bal:
            return "51008", "Order failed. Insufficient USDT margin in account"
        return None

    def _place(self, algo_id, bot, inst, side, sz, px, reduce_only, event=True) -> SubOrder:
        """A sub-order in the bot's book: a market one fills at once at ``inst.last`` (what a
        reduce-only one cannot fill is canceled); a limit one stays live until the test fills it."""
        n, now_ms = next(self._ids), self.okx.now_ms()
        ord_type = "market" if px is None else "limit"
        ids = str(FIRST_ORD_ID + n), f"O{FIRST_SIGNAL_ORD_ID + n}"
        order = SubOrder(*ids, inst.inst_id, side, ord_type, sz, px, reduce_only, c_time_ms=now_ms, u_time_ms=now_ms)
        bot.orders.append(order)
        if px is None:
            bot.fill(order, sz, inst.last, inst, now_ms)
            if order.state == "partially_filled":
                order.state = "canceled"
        if event:
            message = f"Placed {inst.inst_id} {side} {order.ord_type} order via API"
            self.okx.add_event(algo_id, "signal_processing", message, triggered=[order.cl_ord_id])
        return order

    def _cancel_sub_order(self, call: Call) -> Answer:
        """Acceptance only: the order is cancelling, and canceled ``cancel_delay`` seconds later."""
        request = call.request
        bot = self._running(request["algoId"])
        if bot is None:
            return NOT_RUNNING
        signal_ord_id = request["signalOrdId"]
        order = bot.order(signal_ord_id)
        if order is None or order.inst_id != request["instId"]:
            return _not_canceled(signal_ord_id, "51603", "Order does not exist.")
        if order.state == "cancelling":
            return _not_canceled(
                signal_ord_id, "51410", "Cancellation failed as the order is already under cancelling status."
            )
        if order.state not in OPEN_STATES:
            return _not_canceled(
                signal_ord_id,
                "51400",
                "Order cancellation failed as the order has been filled, canceled or does not exist.",
            )
        order.state, order.u_time_ms = "cancelling", self.okx.now_ms()

        def canceled():
            if order.state == "cancelling":  # unless it filled meanwhile
                order.state, order.u_time_ms = "canceled", self.okx.now_ms()

        self._later(self.okx.cancel_delay, canceled)
        return self._done(call)

    def _close_position(self, call: Call) -> Answer:
        """The whole position of instId, closed at market. With none, ``close_without_position``
        says what OKX answers: "51058", or "0" with nothing done (OKX's docs are silent ⚠)."""
        request = call.request
        bot = self._running(request["algoId"])
        inst = self.okx.instruments.get(request["instId"])
        if bot is None:
            return NOT_RUNNING
        if inst is None:
            return Answer("51001", "Instrument ID, Instrument ID code or Spread ID doesn't exist.")
        pos = bot.position(inst.inst_id).pos
        if not pos:
            if self.okx.close_without_position == "0":
                return self.accepted(call)
            return Answer("51058", "No available position for this algo order")
        self._place(request["algoId"], bot, inst, "sell" if pos > 0 else "buy", abs(pos), None, True)
        return self._done(call)

    def _amend_tpsl(self, call: Call) -> Answer:
        """The exit setting replaced as sent; a percentage left out or "" is unset (⚠ inferred)."""
        request = call.request
        bot = self._running(request["algoId"])
        if bot is None:
            return NOT_RUNNING
        setting = request["exitSettingParam"]
        bot.exit_setting = {key: setting.get(key, "") for key in ("tpSlType", "tpPct", "slPct")}
        bot.u_time_ms = self.okx.now_ms()
        return self._done(call)

    def _set_instruments(self, call: Call) -> Answer:
        request = call.request
        bot = self._running(request["algoId"])
        if bot is None:
            return NOT_RUNNING
        inst_ids = list(self.okx.instruments) if request["includeAll"] else request["instIds"]
        if any(inst_id not in self.okx.instruments for inst_id in inst_ids):
            return Answer("51287", "This bot doesn't support current instrument")
        bot.inst_ids, bot.u_time_ms = list(inst_ids), self.okx.now_ms()
        return self._done(call)

    def _stop_bots(self, call: Call) -> Answer:
        """Each bot stopping, then stopped ``stop_delay`` seconds later; one sCode per bot."""
        items = [self._stop(item["algoId"]) for item in call.request]
        stopped = sum(item["sCode"] == "0" for item in items)
        if stopped:
            self.okx.executions.append(Execution(call.arrived, call.path, call.request))
        if stopped == len(items):
            return Answer("0", "", items)
        return Answer("1" if not stopped else "2", FAILED if not stopped else PARTLY, items)

    def _stop(self, algo_id: str) -> dict:
        bot = self.okx.bots.find(algo_id)
        if bot is None or bot.state == "stopped":
            return _stop_item(algo_id, "51291", NOT_RUNNING.msg)
        if bot.state == "stopping":
            return _stop_item(algo_id, "51288", "Bot is currently stopping. Do not make multiple attempts to stop.")
        bot.state, bot.u_time_ms = "stopping", self.okx.now_ms()
        self._later(self.okx.stop_delay, lambda: self._finish_stop(algo_id, bot))
        return _stop_item(algo_id, "0", "")

    def _finish_stop(self, algo_id: str, bot: Bot) -> None:
        """The bot stopped: its open orders canceled and, with ``close_on_stop`` (OKX's docs are
        silent ⚠), its positions closed at market."""
        for order in bot.orders:
            if order.state in (*OPEN_STATES, "cancelling"):
                order.state, order.u_time_ms = "canceled", self.okx.now_ms()
        if self.okx.close_on_stop:
            for position in list(bot.positions.values()):
                inst = self.okx.instruments[position.inst_id]
                side = "sell" if position.pos > 0 else "buy"
                self._place(algo_id, bot, inst, side, abs(position.pos), None, True, event=False)
        bot.state, bot.u_time_ms = "stopped", self.okx.now_ms()
        self.okx.add_event(algo_id, "user_action", "Bot stopped via API")


def _stop_item(algo_id: str, code: str, msg: str) -> dict:
    return {"algoId": algo_id, "sCode": code, "sMsg": msg, "algoClOrdId": ""}


def _not_canceled(signal_ord_id: str, code: str, msg: str) -> Answer:
    return Answer("1", FAILED, [{"signalOrdId": signal_ord_id, "sCode": code, "sMsg": msg}])
