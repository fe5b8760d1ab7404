"""What each action of an alert takes besides the fields every alert has, and the ``BotOrder`` it
makes: one schema per kind of action (margin, sub-order, instrument, TP/SL, none), with the rules
between its fields, and the body of OKX's request built from them (OKX's names, numbers as strings)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validates_schema
from marshmallow.validate import OneOf

from webhook_app.intake.fields import Choice, InstId, PositiveDecimal, StrictBoolean
from webhook_app.okx.actions import ACTIONS, BotOrder
from webhook_app.okx.margin.request import MarginRequest

MARGIN_ACTIONS = ("add", "reduce")
SUB_ORDER_ACTIONS = ("buy", "sell")
INVESTMENT_TYPES = ("base", "margin", "contract", "percentage_balance", "percentage_investment", "percentage_position")
REINVEST_TYPE = "percentage_investment"
ORDER_TYPES = ("market", "limit")
SIZE_UNITS = ("contracts", "base")  # base: coin units (BTC), as TradingView's {{strategy.order.contracts}}
TPSL_TYPES = ("pnl", "price")
# A stop-loss is a fraction of the position's value or of its margin: at 1 (100 %) or more it would never trigger.
_SL_BOUND = (1, "is a fraction (0.05 is 5 %): a stop-loss of 1 (100 %) or more never triggers; OKX's unit")


class MarginFields(Schema):
    """add, reduce: today's fields. Any other field is ignored, as it always was."""

    class Meta:
        unknown = EXCLUDE

    amount = PositiveDecimal(data_key="amount", required=True)
    investment_type = fields.String(data_key="investmentType", validate=OneOf(INVESTMENT_TYPES))
    allow_reinvest = StrictBoolean(data_key="allowReinvest")

    @validates_schema
    def reinvest_only_for_percentage_investment(self, data, **kwargs):
        if data.get("allow_reinvest") is True and data.get("investment_type") != REINVEST_TYPE:
            raise ValidationError(
                'true is only allowed with "investmentType": "percentage_investment"; OKX applies '
                "allowReinvest only to such bots, so this alert would not do what it says",
                field_name="allowReinvest",
            )


class SubOrderFields(Schema):
    """buy, sell: one sub-order of the bot."""

    class Meta:
        unknown = EXCLUDE

    inst_id = InstId(data_key="instId", required=True)
    size = PositiveDecimal(data_key="size", required=True)
    order_type = Choice(ORDER_TYPES, data_key="orderType", load_default="market")
    price = PositiveDecimal(data_key="price")
    reduce_only = StrictBoolean(data_key="reduceOnly", load_default=False)
    size_in = Choice(SIZE_UNITS, data_key="sizeIn", load_default="contracts")

    @validates_schema
    def price_only_with_limit(self, data, **kwargs):
        if data.get("order_type") == "limit" and "price" not in data:
            raise ValidationError('is required with "orderType": "limit"', field_name="price")
        if data.get("order_type") == "market" and "price" in data:
            raise ValidationError(
                'is only for "orderType": "limit"; a market order takes no price (send "orderType": "limit" '
                "to buy or sell at this price)",
                field_name="price",
            )


class InstrumentFields(Schema):
    """close (the whole position of the instrument, at market) and cancel (its live sub-orders)."""

    class Meta:
        unknown = EXCLUDE

    inst_id = InstId(data_key="instId", required=True)


class TpslFields(Schema):
    """tpsl: the bot's take-profit and stop-loss, as fractions (OKX's names and units)."""

    class Meta:
        unknown = EXCLUDE

    tp_sl_type = Choice(TPSL_TYPES, data_key="tpSlType", required=True)
    tp_pct = PositiveDecimal(data_key="tpPct")
    sl_pct = PositiveDecimal(data_key="slPct", below=_SL_BOUND)

    @validates_schema
    def one_of_the_two(self, data, **kwargs):
        if "tp_pct" not in data and "sl_pct" not in data:
            raise ValidationError('needs "tpPct", "slPct" or both: a fraction such as "0.05" (5 %)', field_name="tpPct")


class NoFields(Schema):
    """stop: the bot itself, nothing more."""

    class Meta:
        unknown = EXCLUDE


SCHEMAS = {
    **dict.fromkeys(MARGIN_ACTIONS, MarginFields()),
    **dict.fromkeys(SUB_ORDER_ACTIONS, SubOrderFields()),
    "close": InstrumentFields(),
    "cancel": InstrumentFields(),
    "tpsl": TpslFields(),
    "stop": NoFields(),
}
assert set(SCHEMAS) == set(ACTIONS)


def _takers() -> dict[str, tuple[str, ...]]:
    """Each action field's name -> the actions that take it, in ACTIONS' order."""
    takers: dict[str, list[str]] = {}
    for action in ACTIONS:
        for field in SCHEMAS[action].fields.values():
            takers.setdefault(field.data_key, []).append(action)
    return {name: tuple(actions) for name, actions in takers.items()}


TAKERS = _takers()


def foreign_fields(action: str, payload: dict) -> list[dict]:
    """Another action's fields on an alert of ``action``, each refused: a ``size`` on ``close``
    reads as a partial close, which close-position never does. add and reduce ignore them, as any
    field of the trader's own, as they always did."""
    if action in MARGIN_ACTIONS:
        return []
    return [
        {
            "field": name,
            "message": f'is not a field of action "{action}" (only {", ".join(TAKERS[name])} take it); '
            "remove it: this alert would not do what it seems to say",
        }
        for name in payload
        if name in TAKERS and action not in TAKERS[name]
    ]


def bot_order(action: str, algo_id: str, data: dict) -> BotOrder:
    """The order for OKX from an alert's valid fields (``data``: the action's schema's output). A
    sub-order's ``sz`` is the alert's size as given: coin units until ``sizing`` converts it."""
    if action in MARGIN_ACTIONS:
        request = MarginRequest(
            algo_id=algo_id,
            type=action,
            amt=data["amount"],
            # Sent only to percentage_investment bots, the only ones OKX applies it to.
            allow_reinvest=data.get("allow_reinvest") if data.get("investment_type") == REINVEST_TYPE else None,
        )
        return BotOrder(action, request.body())
    if action in SUB_ORDER_ACTIONS:
        body = {"instId": data["inst_id"], "algoId": algo_id, "side": action, "ordType": data["order_type"]}
        body["sz"] = data["size"]
        if "price" in data:
            body["px"] = data["price"]
        body["reduceOnly"] = data["reduce_only"]  # always said, as a JSON boolean: false is OKX's default
        return BotOrder(action, body)
    if action in ("close", "cancel"):
        return BotOrder(action, {"algoId": algo_id, "instId": data["inst_id"]})
    if action == "tpsl":
        exit_setting = {"tpSlType": data["tp_sl_type"]}
        exit_setting.update(
            {name: data[key] for name, key in (("tpPct", "tp_pct"), ("slPct", "sl_pct")) if key in data}
        )
        return BotOrder(action, {"algoId": algo_id, "exitSettingParam": exit_setting})
    return BotOrder(action, [{"algoId": algo_id}])  # stop: a JSON array, as OKX's docs give it


def order_amount(order: BotOrder) -> str:
    """What the journal's ``amount`` holds: the margin of add and reduce, the contracts of a
    sub-order, "" for the others."""
    if order.action in MARGIN_ACTIONS:
        return order.body["amt"]
    if order.action in SUB_ORDER_ACTIONS:
        return order.body["sz"]
    return ""
