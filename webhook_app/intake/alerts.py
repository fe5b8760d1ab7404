"""Turns a TradingView alert body into an authenticated, validated ``Alert``: what it asks of
which bot (a ``BotOrder``), and how it is told from a repeat.

Order matters and is the contract: the body must parse (400), then carry the
right secret (401), then every field must be valid (422). Nothing here sends. The fields
every alert has are here (``AlertSchema``); each action's own are in ``orders``."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from marshmallow import EXCLUDE, Schema, ValidationError, fields
from marshmallow.validate import Range

from webhook_app.errors import Refused, not_sent
from webhook_app.intake.fields import PLACEHOLDER, Account, AlgoId, Choice, Timestamp, TraderId
from webhook_app.intake.orders import (
    MARGIN_ACTIONS,
    SCHEMAS,
    SUB_ORDER_ACTIONS,
    TAKERS,
    bot_order,
    foreign_fields,
    order_amount,
)
from webhook_app.okx.actions import ACTIONS, BotOrder

# (canonical, another name for it): OKX's names (type, amt, sz, ordType, px) and TradingView's wording.
ALIASES = (
    ("action", "type"),
    ("amount", "amt"),
    ("instId", "instrument"),
    ("size", "sz"),
    ("orderType", "ordType"),
    ("price", "px"),
)
_ANGLE_PLACEHOLDER = re.compile(r"\s*<[^<>]*>\s*\Z")  # README's "<WEBHOOK_SECRET>", left as it was
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL and lone surrogates: no database stores them


class InvalidBody(Refused):
    """The body is not a JSON object, or holds text no database can store (400). ``field``
    names where: "body" for the whole of it, else the path to the bad value ("meta.note")."""

    status, kind = 400, "invalid_body"

    def __init__(self, problem: str, field: str = "body"):
        super().__init__(problem, field, message=problem if field == "body" else f"{field}: {problem}")


class Unauthorized(Refused):
    """The secret is missing, not a string, or wrong (401)."""

    status, kind = 401, "unauthorized"

    def __init__(self, problem: str):
        super().__init__(problem, "secret")


class InvalidAlert(Refused):
    """One or more fields are invalid (422). ``errors`` is [{"field", "message"}]."""

    status, kind = 422, "invalid"

    def __init__(self, errors: list[dict]):
        super().__init__(
            "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            message=not_sent("the alert has invalid fields"),
            errors=errors,
        )


@dataclasses.dataclass(frozen=True)
class Alert:
    """A valid alert: what it asks of its bot (``order``), and how a repeat of it is told."""

    order: BotOrder
    dedup_key: str
    alert_id: str | None = None
    timestamp: datetime | None = None
    max_lag: int | None = None
    investment_type: str | None = None
    account: str | None = None  # the OKX account it names; None: the service chooses (intake's ``route``)
    # "base": the sub-order's sz is still in coin units (BTC), converted to contracts by ``sizing``.
    size_in: str = "contracts"

    @property
    def action(self) -> str:
        return self.order.action

    @property
    def algo_id(self) -> str:
        return self.order.algo_id

    @property
    def amount(self) -> str:
        """The journal's ``amount``: add's or reduce's margin, a sub-order's size, "" for the others."""
        return order_amount(self.order)

    @property
    def margin(self) -> Decimal | None:
        """The margin an add or reduce moves; None for the other actions."""
        return Decimal(self.order.body["amt"]) if self.action in MARGIN_ACTIONS else None

    @property
    def size(self) -> Decimal | None:
        """A buy's or sell's size in contracts; None for the other actions, or while in coin units."""
        if self.action not in SUB_ORDER_ACTIONS or self.size_in != "contracts":
            return None
        return Decimal(self.order.body["sz"])


ALERT_BODY_HINT = "check the alert message for unquoted placeholders or a trailing comma"


def parse_body(raw: bytes, what: str = "the alert message", hint: str = ALERT_BODY_HINT) -> dict:
    """JSON object from the raw body, whatever the Content-Type. Numbers stay exact (Decimal).
    The one parser of every JSON body (the operator's too: ``what`` and ``hint`` say what to send):
    empty, not JSON, nested too deep for the parser, or not an object is ``InvalidBody`` (400)."""
    if not raw.strip():
        raise InvalidBody(f"the body is empty; send {what} as JSON")
    try:
        # parse_constant turns NaN/Infinity into Decimals that the amount check refuses (422).
        text = raw.decode("utf-8")
        payload = json.loads(text, parse_float=Decimal, parse_constant=Decimal)
    except RecursionError:
        raise InvalidBody(f"the body is JSON nested too deeply to read; send {what} as a flat JSON object") from None
    except (UnicodeDecodeError, ValueError):
        raise InvalidBody(f"the body is not valid JSON ({hint})") from None
    if not isinstance(payload, dict):
        raise InvalidBody("the body must be a JSON object")
    if "\\u" in text:  # only a \u escape can make a lone surrogate or a NUL (raw ones do not parse)
        _refuse_unstorable_text(payload)
    return payload


def _refuse_unstorable_text(payload: dict) -> None:
    """Raise ``InvalidBody`` naming a key or string, at any depth, that holds a lone
    surrogate or NUL: no database stores them (SQLite and PostgreSQL refuse the whole write),
    so they are refused here, before the secret is checked, and never echoed."""
    stack = [("", payload)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if (found := _UNSTORABLE.search(key)) is not None:
                    raise InvalidBody(f"has a key that {_unstorable(found.group())}", field=path or "body")
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, str) and (found := _UNSTORABLE.search(value)) is not None:
            raise InvalidBody(_unstorable(found.group()), field=path)


UNSTORABLE_FILTER = "must not contain a NUL character or a lone surrogate (\\ud800-\\udfff): no alert holds one"


def unstorable(text: str) -> bool:
    """Whether ``text`` holds a NUL or a lone surrogate, which no database stores or compares
    (PostgreSQL refuses the whole statement): a filter holding one is refused, never looked up."""
    return _UNSTORABLE.search(text) is not None


def _unstorable(char: str) -> str:
    escape = f"\\u{ord(char):04x}"
    if char == "\0":
        return f"contains a NUL character ({escape}); remove it from the alert message"
    return (
        f"contains a lone surrogate ({escape}); a \\ud800-\\udfff escape must be one half of a pair: "
        "send the character itself, or both halves"
    )


def verify_secret(payload: dict, accepted: Sequence[tuple[str, str]]) -> str:
    """Name of the accepted secret the payload carries; raises ``Unauthorized`` otherwise."""
    given = payload.get("secret")
    if given is None:
        raise Unauthorized("secret is missing")
    if not isinstance(given, str):
        raise Unauthorized("secret must be a string")
    # Compare bytes: compare_digest raises TypeError on non-ASCII str. surrogatepass keeps
    # lone surrogates (legal in JSON escapes) from raising instead of failing to match.
    given_bytes = given.encode("utf-8", "surrogatepass")
    matched = None
    for name, value in accepted:  # check all of them: timing must not say which one matched
        if hmac.compare_digest(given_bytes, value.encode("utf-8")) and matched is None:
            matched = name
    if matched is None:
        if _ANGLE_PLACEHOLDER.match(given) or PLACEHOLDER.search(given):  # never echoed: it may be near the real one
            raise Unauthorized(
                "secret is wrong: it is still a placeholder (such as <WEBHOOK_SECRET>); replace it with the real "
                "secret, your WEBHOOK_SECRET, in the alert's message"
            )
        raise Unauthorized("secret is wrong")
    return matched


# The alert's text fields that replies, pages and the refusal log show back: one holding a secret is refused.
# (``account`` is never shown unless it names an account, and no account's name may be a secret.)
ECHOED_FIELDS = ("id",)
PASTED_SECRET = (
    "holds a secret of this service (a webhook secret, an OKX API key, secret or passphrase, the admin token, ...): "
    "it is never an alert's {field}; remove it from the alert message (the value is not shown)"
)


def holds_secret(text: str, secrets: Iterable[str]) -> bool:
    """Whether ``text`` is, or contains, one of ``secrets``: a value pasted into the wrong field."""
    return any(secret and secret in text for secret in secrets)


def load_alert(payload: dict, secrets: Iterable[str] = ()) -> Alert:
    """Validate the fields and map them to the OKX request; raises ``InvalidAlert`` naming every
    bad field: those every alert has, then its action's own. ``secrets``: values no echoed field
    (``ECHOED_FIELDS``) may hold, refused without showing them."""
    data, action_data = _valid_fields(payload, tuple(secrets))
    action = data["action"]
    order = bot_order(action, data["algo_id"], action_data)
    size_in = action_data.get("size_in", "contracts")
    return Alert(
        order=order,
        dedup_key=dedup_key(payload, order, data.get("alert_id"), size_in),
        alert_id=data.get("alert_id"),
        timestamp=data.get("timestamp"),
        max_lag=data.get("max_lag"),
        investment_type=action_data.get("investment_type"),
        account=data.get("account"),
        size_in=size_in,
    )


def _valid_fields(payload: dict, secrets: tuple[str, ...]) -> tuple[dict, dict]:
    """The common fields and the action's own, loaded; ``InvalidAlert`` naming every problem."""
    pasted = [
        {"field": field, "message": PASTED_SECRET.format(field=field)}
        for field in ECHOED_FIELDS
        if isinstance(payload.get(field), str) and holds_secret(payload[field], secrets)
    ]
    given, conflicts = _resolve_aliases(payload)
    if conflicts:
        raise InvalidAlert([*pasted, *conflicts])
    problems, data, action_data = [], {}, {}
    try:
        data = _SCHEMA.load(given)
    except ValidationError as exc:
        problems += _flatten(exc.messages)
    action = _valid_action(given)
    if action is not None:
        try:
            action_data = SCHEMAS[action].load(given)
        except ValidationError as exc:
            problems += _flatten(exc.messages)
        problems += foreign_fields(action, given)
    shown = {error["field"] for error in pasted}  # a field holding a secret is named once, for that
    if pasted or problems:
        raise InvalidAlert([*pasted, *(e for e in problems if e["field"] not in shown)])
    return data, action_data


def _valid_action(given: dict) -> str | None:
    """The action whose fields to check: the alert's, when it is one, so that they are checked
    even when a common field is bad (every problem is named at once). Without a valid action, an
    alert that carries no other action's field is checked as a margin call, as it always was."""
    action = given.get("action")
    if isinstance(action, str) and action.lower() in ACTIONS:
        return action.lower()
    others = {name for name, takers in TAKERS.items() if not set(takers) & set(MARGIN_ACTIONS)}
    return None if others & set(given) else "add"


def dedup_key(payload: dict, order: BotOrder, alert_id: str | None, size_in: str = "contracts") -> str:
    """The alert's own ``id`` for its bot when given (two bots may both use "Long"), else a
    fingerprint of the alert without its secret (every field: two different orders never match).

    For add and reduce the ``id`` alone, as it always was (an id stays taken for ID_WINDOW). For
    the other actions the id together with the action and its order: a strategy's "buy" and
    "add" fired on one bar may well share ``{{ticker}}-{{timenow}}``, and must both go."""
    body, algo_id = order.body, order.algo_id
    if alert_id is not None:
        if order.action in MARGIN_ACTIONS:
            return f"id:{algo_id}:{alert_id}"
        made = json.dumps({"order": body, "sizeIn": size_in}, sort_keys=True, separators=(",", ":"))
        return f"id:{algo_id}:{alert_id}:{order.action}:{hashlib.sha256(made.encode()).hexdigest()}"
    unsigned = {k: v for k, v in payload.items() if k != "secret"}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), default=str)
    return "fp:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _resolve_aliases(payload: dict) -> tuple[dict, list[dict]]:
    """The payload with each field under its canonical name (``ALIASES``), and a problem for each
    field given under two names that differ."""
    given, conflicts = dict(payload), []
    for canonical, alias in ALIASES:
        if alias not in given:
            continue
        value = given.pop(alias)
        if canonical in given and not _same_value(given[canonical], value):
            conflicts.append(
                {
                    "field": canonical,
                    "message": f'"{alias}" is another name for "{canonical}" and the two differ; send one of them',
                }
            )
        given.setdefault(canonical, value)
    return given, conflicts


class AlertSchema(Schema):
    """The fields every alert has, whatever its action."""

    class Meta:
        unknown = EXCLUDE  # a trader's own fields (ticker, close, ...) are ignored, never forwarded

    algo_id = AlgoId(data_key="algoId", required=True)
    action = Choice(ACTIONS, data_key="action", required=True)
    alert_id = TraderId(data_key="id")
    timestamp = Timestamp(data_key="timestamp")
    max_lag = fields.Integer(data_key="maxLag", strict=True, validate=Range(min=1, max=3600))
    account = Account(data_key="account")


_SCHEMA = AlertSchema()


def _same_value(a, b) -> bool:
    """Whether two spellings of one field mean the same: "10" and 10, "ADD" and "add"."""
    if a == b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower():
        return True
    try:
        return Decimal(str(a)) == Decimal(str(b))
    except (ArithmeticError, ValueError):
        return False


def _flatten(messages, prefix: str = "") -> list[dict]:
    errors = []
    items = messages.items() if isinstance(messages, dict) else [("", messages)]
    for field, problems in items:
        name = "body" if field == "_schema" else f"{prefix}{field}"
        if isinstance(problems, dict):
            errors.extend(_flatten(problems, prefix=f"{name}."))
        else:
            for problem in problems if isinstance(problems, list) else [problems]:
                errors.append({"field": name, "message": str(problem)})
    return errors
