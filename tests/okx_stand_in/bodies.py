"""What OKX refuses in an action's JSON body before acting on it: (http, code, msg) or None."""

from __future__ import annotations

import json
import re

from tests.okx_stand_in.paths import (
    AMEND_TPSL_PATH,
    CANCEL_SUB_ORDER_PATH,
    CLOSE_POSITION_PATH,
    MARGIN_PATH,
    SET_INSTRUMENTS_PATH,
    STOP_BOTS_PATH,
    SUB_ORDER_PATH,
)

AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?\Z")
MAX_BOTS_PER_STOP = 10
Problem = tuple[int, str, str] | None


def body_problem(path: str, body: bytes) -> Problem:
    """OKX's refusal of a malformed body for the action at ``path``, or None."""
    try:
        data = json.loads(body)
    except ValueError:
        return (400, "51000", "Body is not JSON") if path == MARGIN_PATH else (400, "50002", "JSON syntax error")
    if path == MARGIN_PATH:
        problem = _margin_problem(data)
        return (400, "51000", problem) if problem else None
    if path == STOP_BOTS_PATH:
        return _stop_problem(data)
    if not isinstance(data, dict):
        return 400, "51000", "Body is not an object"
    return _CHECKS[path](data)


def _margin_problem(data) -> str | None:
    if not isinstance(data, dict):
        return "Body is not an object"
    allowed = {"algoId": str, "type": str, "amt": str, "allowReinvest": bool}
    for key, value in data.items():
        if key not in allowed:
            return f"Parameter {key} error"
        if type(value) is not allowed[key]:
            return f"Parameter {key} error"
    for key in ("algoId", "type", "amt"):
        if key not in data:
            return f"Parameter {key} can not be empty"
    if not data["algoId"].isdigit() or data["type"] not in ("add", "reduce") or not AMOUNT.match(data["amt"]):
        return "Parameter error"
    return None


def _fields(data: dict, types: dict[str, type], required: tuple[str, ...]) -> Problem:
    """Only the documented fields, each of its documented JSON type, the required ones present."""
    for key, value in data.items():
        if key not in types or type(value) is not types[key]:
            return 400, "51000", f"Parameter {key} error"
    for key in required:
        if key not in data or data[key] == "":
            return 400, "50014", f"Parameter {key} can not be empty"
    if "algoId" in data and not data["algoId"].isdigit():
        return 400, "51000", "Parameter algoId error"
    return None


def _error(name: str) -> Problem:
    return 400, "51000", f"Parameter {name} error"


def _sub_order_problem(data: dict) -> Problem:
    types = {"instId": str, "algoId": str, "side": str, "ordType": str, "sz": str, "px": str, "reduceOnly": bool}
    problem = _fields(data, types, ("instId", "algoId", "side", "ordType", "sz"))
    if problem:
        return problem
    if data["side"] not in ("buy", "sell"):
        return _error("side")
    if data["ordType"] not in ("market", "limit"):
        return _error("ordType")
    if not AMOUNT.match(data["sz"]) or not float(data["sz"]):
        return _error("sz")
    if data["ordType"] == "limit":  # px is required for a limit order and only applicable to one
        if not AMOUNT.match(data.get("px", "")) or not float(data["px"]):
            return _error("px")
    elif "px" in data:
        return _error("px")
    return None


def _amend_problem(data: dict) -> Problem:
    problem = _fields(data, {"algoId": str, "exitSettingParam": dict}, ("algoId", "exitSettingParam"))
    if problem:
        return problem
    setting = data["exitSettingParam"]
    for key, value in setting.items():
        if key not in ("tpSlType", "tpPct", "slPct") or not isinstance(value, str):
            return _error(key)
    if setting.get("tpSlType") not in ("pnl", "price"):
        return _error("tpSlType")
    for key in ("tpPct", "slPct"):  # percentages as decimal fractions ("0.01"); "" clears ⚠
        if setting.get(key, "") and not AMOUNT.match(setting[key]):
            return _error(key)
    return None


def _set_instruments_problem(data: dict) -> Problem:
    types = {"algoId": str, "instIds": list, "includeAll": bool}
    problem = _fields(data, types, ("algoId", "instIds", "includeAll"))
    if problem:
        return problem
    if not all(isinstance(inst_id, str) and inst_id for inst_id in data["instIds"]):
        return _error("instIds")
    if not data["instIds"] and not data["includeAll"]:
        return 400, "50014", "Parameter instIds can not be empty"
    return None


def _stop_problem(data) -> Problem:
    """The body is a JSON array of {"algoId"}, at most 10 of them."""
    if not isinstance(data, list) or not data:
        return _error("algoId")
    if len(data) > MAX_BOTS_PER_STOP:
        return 200, "50025", f"Parameter algoId count exceeds the limit {MAX_BOTS_PER_STOP}."
    for item in data:
        problem = _fields(item, {"algoId": str}, ("algoId",)) if isinstance(item, dict) else _error("algoId")
        if problem:
            return problem
    return None


_CHECKS = {
    SUB_ORDER_PATH: _sub_order_problem,
    CANCEL_SUB_ORDER_PATH: lambda data: _fields(
        data, {"algoId": str, "instId": str, "signalOrdId": str}, ("algoId", "instId", "signalOrdId")
    ),
    CLOSE_POSITION_PATH: lambda data: _fields(data, {"algoId": str, "instId": str}, ("algoId", "instId")),
    AMEND_TPSL_PATH: _amend_problem,
    SET_INSTRUMENTS_PATH: _set_instruments_problem,
}
