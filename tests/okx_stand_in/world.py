"""What happens at OKX besides our requests, as tests script it: bots, markets, fills."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from tests.okx_stand_in.bots import Bot, Bots, Event
from tests.okx_stand_in.instruments import Instrument
from tests.okx_stand_in.orders import OPEN_STATES, SubOrder


class World:
    """The account's bots and the instruments' prices, for ``OkxStandIn`` (which sets ``bots``,
    ``instruments``, ``clock_offset`` and ``_lock``)."""

    bots: Bots
    instruments: dict[str, Instrument]
    clock_offset: float
    _lock: threading.RLock

    def now(self) -> float:
        return time.time() + self.clock_offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def add_bot(self, algo_id: str, state: str = "running", **fields) -> Bot:
        """A bot of this account; ``fields`` are ``Bot``'s (invest_amt=Decimal("50"), ...)."""
        now_ms = self.now_ms()
        fields.setdefault("u_time_ms", now_ms)
        fields.setdefault("c_time_ms", now_ms)
        bot = Bot(state=state, **fields)
        with self._lock:
            self.bots[algo_id] = bot
        return bot

    def bot(self, algo_id: str) -> Bot:
        """The bot OKX knows by ``algo_id`` (KeyError when none)."""
        with self._lock:
            bot = self.bots.find(algo_id)
        if bot is None:
            raise KeyError(f"OKX knows no bot {algo_id}")
        return bot

    def add_event(self, algo_id: str, event_type: str, message: str, status="success", alert_msg="", triggered=()):
        with self._lock:
            event = Event(event_type, status, self.now_ms(), message, alert_msg, list(triggered))
            self.bot(algo_id).events.append(event)

    def stop_bot(self, algo_id: str) -> None:
        """The user stops the bot in OKX's app: state stopped and a user_action event."""
        with self._lock:
            self.bot(algo_id).state = "stopped"
            self.bot(algo_id).u_time_ms = self.now_ms()
            self.add_event(algo_id, "user_action", "Bot stopped by user")

    def move_pnl(self, algo_id: str, delta: Decimal) -> None:
        """The market moves the bot's PnL: availBal and totalEq by ``delta``, no event."""
        with self._lock:
            bot = self.bot(algo_id)
            bot.avail_bal += delta
            bot.total_eq += delta
            bot.u_time_ms = self.now_ms()

    def trade(self, algo_id: str, margin: Decimal = Decimal("10"), alert_msg: str = '{"action":"ENTER_LONG"}') -> None:
        """A TradingView signal opens a position: ``margin`` moves from availBal to frozenBal
        (totalEq unchanged), with a signal_processing success event."""
        with self._lock:
            bot = self.bot(algo_id)
            bot.avail_bal -= margin
            bot.frozen_bal += margin
            bot.u_time_ms = self.now_ms()
            self.add_event(algo_id, "signal_processing", "Signal processed: order placed", alert_msg=alert_msg)

    def change_margin(self, algo_id: str, action: str, amt: Decimal, allow_reinvest: bool = False) -> None:
        """A margin change made out of band (e.g. in OKX's app): the change and a user_action event."""
        with self._lock:
            self._apply_margin(self.bot(algo_id), action, amt, allow_reinvest)
            self.add_event(algo_id, "user_action", f"Margin {'added' if action == 'add' else 'reduced'}: {amt}")

    def _apply_margin(self, bot: Bot, action: str, amt: Decimal, allow_reinvest: bool) -> None:
        sign = 1 if action == "add" else -1
        bot.avail_bal += sign * amt
        bot.total_eq += sign * amt
        if allow_reinvest:
            bot.invest_amt += sign * amt
        bot.u_time_ms = self.now_ms()

    # -- markets and fills ------------------------------------------------------------------

    def add_instrument(self, inst_id: str, ct_val="0.01", lot_sz="0.01", min_sz="0.01", tick_sz="0.1", last="100"):
        """A SWAP OKX lists (sizes and prices as strings, as OKX writes them)."""
        inst = Instrument(inst_id, *(Decimal(v) for v in (ct_val, lot_sz, min_sz, tick_sz, last)))
        with self._lock:
            self.instruments[inst_id] = inst
        return inst

    def set_price(self, inst_id: str, price: Decimal | str) -> None:
        """The instrument's last and mark price: where the next market order fills."""
        with self._lock:
            self.instruments[inst_id].last = Decimal(price)

    def order(self, algo_id: str, signal_ord_id: str) -> SubOrder:
        """The bot's sub-order whose clOrdId (signalOrdId) is ``signal_ord_id`` (KeyError when none)."""
        with self._lock:
            order = self.bot(algo_id).order(signal_ord_id)
        if order is None:
            raise KeyError(f"bot {algo_id} has no sub-order {signal_ord_id}")
        return order

    def fill_order(self, algo_id: str, signal_ord_id: str, sz=None, px=None) -> SubOrder:
        """The market fills ``sz`` (default: all that is left) of a live limit order at ``px``
        (default: its limit price); also one OKX is still cancelling."""
        with self._lock:
            order = self.order(algo_id, signal_ord_id)
            if order.state not in (*OPEN_STATES, "cancelling"):
                raise ValueError(f"sub-order {signal_ord_id} is {order.state}")
            sz = order.sz - order.acc_fill_sz if sz is None else Decimal(sz)
            price = Decimal(px) if px is not None else order.px
            self.bot(algo_id).fill(order, sz, price, self.instruments[order.inst_id], self.now_ms())
            return order

    def open_position(self, algo_id: str, inst_id: str, pos, avg_px=None) -> None:
        """The bot's net position in ``inst_id`` grows by ``pos`` contracts (< 0: sell) at ``avg_px``
        (default: the last price), as if filled out of band: no sub-order is listed."""
        with self._lock:
            inst, pos = self.instruments[inst_id], Decimal(pos)
            side = "buy" if pos > 0 else "sell"
            fill = SubOrder("", "", inst_id, side, "market", abs(pos), None)
            self.bot(algo_id).fill(fill, abs(pos), Decimal(avg_px or inst.last), inst, self.now_ms())
