"""OKX's answers to the reads: (http status, JSON body) for an authentic request."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from tests.okx_stand_in.paths import (
    ACCOUNT_CONFIG_PATH,
    BOT_DETAILS_PATH,
    BOT_EVENTS_PATH,
    BOTS_PENDING_PATH,
    INSTRUMENTS_PATH,
    POSITIONS_PATH,
    SUB_ORDERS_PATH,
    TIME_PATH,
)

if TYPE_CHECKING:
    from tests.okx_stand_in.stand_in import OkxStandIn

Reply = tuple[int, dict]
CONTRACT_READS = (BOT_DETAILS_PATH, BOTS_PENDING_PATH, POSITIONS_PATH, SUB_ORDERS_PATH)  # need algoOrdType
ALGO_READS = (BOT_DETAILS_PATH, BOT_EVENTS_PATH, POSITIONS_PATH, SUB_ORDERS_PATH)  # need algoId
SUB_ORDER_STATES = {"live": "live", "partially_filled": "partially_filled", "filled": "filled"}
SUB_ORDER_STATES |= {"canceled": "canceled", "cancelled": "canceled"}  # EN docs vs CN docs and answers ⚠


def ok(data: list) -> Reply:
    return 200, {"code": "0", "msg": "", "data": data}


def refused(http: int, code: str, msg: str) -> Reply:
    return http, {"code": code, "msg": msg, "data": []}


def answer_read(okx: OkxStandIn, path: str, query: str) -> Reply:
    """The answer to an authentic read of ``path`` (one of the paths OKX serves here)."""
    params = {key: values[0] for key, values in parse_qs(query).items()}
    if path == TIME_PATH:
        return ok([{"ts": str(okx.now_ms())}])
    if path == ACCOUNT_CONFIG_PATH:
        account = {"uid": "44705892343619584", "mainUid": "44705892343619584", "acctLv": "2"}
        return ok([{**account, "perm": okx.perm, "ip": "", "label": "relay"}])
    if path == INSTRUMENTS_PATH:
        return _instruments(okx, params)
    if path in CONTRACT_READS:
        if "algoOrdType" not in params:
            return refused(400, "50014", "Parameter algoOrdType can not be empty")
        if params["algoOrdType"] != "contract":
            return refused(400, "51000", "Parameter algoOrdType error")
    if path in ALGO_READS and not params.get("algoId"):
        return refused(400, "50014", "Parameter algoId can not be empty")
    limit = params.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        return refused(400, "51000", "Parameter limit error")
    with okx._lock:
        reply = _bot_read(okx, path, params)
    if path == BOT_EVENTS_PATH:
        okx.events_read(params["algoId"])
    return reply


def _bot_read(okx: OkxStandIn, path: str, params: dict) -> Reply:
    if path == BOTS_PENDING_PATH:
        rows = [bot.okx_json(i) for i, bot in okx.bots.items() if bot.state != "stopped"]
        if not okx.pending_lists_exit_setting:
            rows = [{key: value for key, value in row.items() if key != "exitSettingParam"} for row in rows]
        return ok(rows)
    algo_id = params["algoId"]
    bot = okx.bots.find(algo_id)
    if bot is None:
        return refused(200, "51293", "Bot does not exist")
    if path == BOT_DETAILS_PATH:
        return ok([bot.okx_json(algo_id)])
    if path == POSITIONS_PATH:
        positions = bot.positions.values()
        return ok([p.okx_json(algo_id, okx.instruments[p.inst_id], bot.lever) for p in positions])
    if path == SUB_ORDERS_PATH:
        return _sub_orders(okx, algo_id, params)
    newest_first = [event.okx_json(algo_id) for event in reversed(bot.events)]
    return ok(newest_first[: int(params.get("limit", "100"))])


def _sub_orders(okx: OkxStandIn, algo_id: str, params: dict) -> Reply:
    """By ``state`` (which wins) or ``signalOrdId``; cTime within begin..end (inclusive); ordId
    before ``after`` / after ``before``; newest first, at most ``limit``."""
    bot = okx.bots[algo_id]
    if "state" in params:
        state = None if params["state"] in okx.refused_states else SUB_ORDER_STATES.get(params["state"])
        if state is None:
            return refused(400, "51000", "Parameter state error")
        orders = [order for order in bot.orders if order.state == state]
    elif params.get("signalOrdId"):
        orders = [order for order in bot.orders if order.cl_ord_id == params["signalOrdId"]]
    else:
        return refused(400, "50015", "Either parameter state or signalOrdId is required")
    bounds = {key: params[key] for key in ("begin", "end", "after", "before") if key in params}
    if not all(value.isdigit() for value in bounds.values()):
        return refused(400, "51000", f"Parameter {next(k for k, v in bounds.items() if not v.isdigit())} error")
    begin, end = int(bounds.get("begin", 0)), int(bounds.get("end", 1 << 62))
    after, before = int(bounds.get("after", 1 << 62)), int(bounds.get("before", 0))
    chosen = [
        order.okx_json(algo_id, okx.instruments[order.inst_id], bot.lever)
        for order in reversed(orders)
        if begin <= order.c_time_ms <= end and before < int(order.ord_id) < after
    ]
    return ok(chosen[: int(params.get("limit", "100"))])


def _instruments(okx: OkxStandIn, params: dict) -> Reply:
    """Public: only the SWAPs of ``okx.instruments`` are known."""
    if not params.get("instType"):
        return refused(400, "50014", "Parameter instType can not be empty")
    if params["instType"] not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
        return refused(400, "51000", "Parameter instType error")
    with okx._lock:
        listed = [inst for inst in okx.instruments.values() if params["instType"] == "SWAP"]
    if "instId" in params:
        listed = [inst for inst in listed if inst.inst_id == params["instId"]]
        if not listed:
            return refused(200, "51001", "Instrument ID, Instrument ID code or Spread ID doesn't exist.")
    return ok([inst.okx_json() for inst in listed])
