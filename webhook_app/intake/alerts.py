"""Turns a TradingView alert body into an authenticated, validated ``MarginRequest``.

Order matters and is the contract: the body must parse (400), then carry the
right secret (401), then every field must be valid (422). Nothing here sends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validates_schema
from marshmallow.validate import OneOf, Range

from webhook_app.errors import Refused, not_sent
from webhook_app.okx.margin.request import MarginRequest
from webhook_app.okx.records import plain_decimal, significant

INVESTMENT_TYPES = ("base", "margin", "contract", "percentage_balance", "percentage_investment", "percentage_position")
REINVEST_TYPE = "percentage_investment"
ALIASES = (("action", "type"), ("amount", "amt"))  # (canonical, OKX's name)
MAX_SIGNIFICANT_DIGITS = 16
MAX_DECIMAL_PLACES = 16
MAX_AMOUNT_VALUE = Decimal(10) ** 12
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?\Z")
_ALGO_ID = re.compile(r"[0-9]{1,32}\Z")
_ACCOUNT = re.compile(r"[a-z0-9_]{1,32}\Z")  # OKX_ACCOUNTS' names: each becomes part of OKX_<NAME>_* variables
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")
_ANGLE_PLACEHOLDER = re.compile(r"\s*<[^<>]*>\s*\Z")  # README's "<WEBHOOK_SECRET>", left as it was
_EPOCH = re.compile(r"[0-9]{10}([0-9]{3})?\Z")  # Pine's str.tostring(timenow): ms (13 digits); or seconds (10)
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
    request: MarginRequest
    dedup_key: str
    alert_id: str | None = None
    timestamp: datetime | None = None
    max_lag: int | None = None
    investment_type: str | None = None
    account: str | None = None  # the OKX account it names; None: the service chooses (intake's ``route``)

    @property
    def amount(self) -> Decimal:
        return Decimal(self.request.amt)


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
        if _ANGLE_PLACEHOLDER.match(given) or _PLACEHOLDER.search(given):  # never echoed: it may be near the real one
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
    """Validate the fields and map them to the OKX request; raises ``InvalidAlert``. ``secrets``:
    values no echoed field (``ECHOED_FIELDS``) may hold, refused without showing them."""
    secrets = tuple(secrets)
    errors = [
        {"field": field, "message": PASTED_SECRET.format(field=field)}
        for field in ECHOED_FIELDS
        if isinstance(payload.get(field), str) and holds_secret(payload[field], secrets)
    ]
    try:
        data = _SCHEMA.load(payload)
    except ValidationError as exc:
        pasted = {error["field"] for error in errors}
        raise InvalidAlert([*errors, *(e for e in _flatten(exc.messages) if e["field"] not in pasted)]) from None
    if errors:
        raise InvalidAlert(errors)
    allow = data.get("allow_reinvest")
    request = MarginRequest(
        algo_id=data["algo_id"],
        type=data["action"],
        amt=data["amount"],
        # Sent only to percentage_investment bots, the only ones OKX applies it to.
        allow_reinvest=allow if data.get("investment_type") == REINVEST_TYPE else None,
    )
    return Alert(
        request=request,
        dedup_key=dedup_key(payload, request.algo_id, data.get("alert_id")),
        alert_id=data.get("alert_id"),
        timestamp=data.get("timestamp"),
        max_lag=data.get("max_lag"),
        investment_type=data.get("investment_type"),
        account=data.get("account"),
    )


def dedup_key(payload: dict, algo_id: str, alert_id: str | None) -> str:
    """The alert's own ``id`` for its bot when given (two bots may both use "Long"), else a
    fingerprint of the alert without its secret."""
    if alert_id is not None:
        return f"id:{algo_id}:{alert_id}"
    unsigned = {k: v for k, v in payload.items() if k != "secret"}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), default=str)
    return "fp:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


class _AlgoId(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("must be the bot's algo ID: digits, as a string or a whole number")
        text = str(value)
        if not _ALGO_ID.match(text):
            raise ValidationError("must be the bot's algo ID: 1 to 32 digits")
        return text


class _Account(fields.Field):
    """The name of one of the service's OKX accounts (OKX_ACCOUNTS). A malformed value is never
    echoed (only an unfilled {{placeholder}} is named): a wrong paste here may be a secret."""

    MESSAGE = (
        "must be the name of an OKX account of this service (OKX_ACCOUNTS): 1 to 32 lowercase letters, digits or _"
    )

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError(self.MESSAGE)
        _refuse_placeholder(value)
        if not _ACCOUNT.match(value):
            hint = " (names are lowercase)" if _ACCOUNT.match(value.lower()) else ""
            raise ValidationError(self.MESSAGE + hint)
        return value


class _Action(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or value.lower() not in ("add", "reduce"):
            raise ValidationError('must be "add" or "reduce"')
        return value.lower()


class _Amount(fields.Field):
    """A positive decimal from a string or a JSON number, never through float."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
            raise ValidationError("must be a positive decimal number such as 10 or 2.5")
        if isinstance(value, str):
            if "," in value:
                raise ValidationError("must not contain thousands separators or commas: use 1000.5")
            if not _PLAIN_DECIMAL.match(value):
                raise ValidationError(
                    "must be a plain positive decimal such as 10 or 2.5 (no sign, spaces, exponent or placeholders)"
                )
            value = Decimal(value)
        amount = Decimal(value)
        if not amount.is_finite():
            raise ValidationError("must be a finite number")
        if amount <= 0:
            raise ValidationError("must be greater than zero")
        if amount >= MAX_AMOUNT_VALUE:
            raise ValidationError(f"must be less than {MAX_AMOUNT_VALUE:,.0f}")
        exact = significant(amount)  # refused below if too precise: never rounded
        if len(exact.as_tuple().digits) > MAX_SIGNIFICANT_DIGITS:
            raise ValidationError(f"must have at most {MAX_SIGNIFICANT_DIGITS} significant digits")
        if -exact.as_tuple().exponent > MAX_DECIMAL_PLACES:
            raise ValidationError(f"must have at most {MAX_DECIMAL_PLACES} decimal places")
        return plain_decimal(exact)


class _TraderId(fields.String):
    """The trader's own id for the alert: 1-128 characters, every placeholder filled in."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not 1 <= len(text) <= 128:
            raise ValidationError("must be 1 to 128 characters")
        _refuse_placeholder(text)
        return text


def _refuse_placeholder(text: str) -> None:
    """The alert was sent from a message TradingView did not fill in: say so, not just "invalid"."""
    if found := _PLACEHOLDER.search(text):
        raise ValidationError(
            f"holds a TradingView placeholder that was not filled in, such as {found.group(0)}: the alert was sent "
            "from a message TradingView did not fill; check the alert's message"
        )


class _StrictBoolean(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValidationError("must be true or false")


class _Timestamp(fields.Field):
    """TradingView's {{timenow}} (2019-08-27T09:56:05Z), fractions and UTC offsets allowed; or
    Pine's str.tostring(timenow), epoch milliseconds (13 digits), or epoch seconds (10 digits),
    as a string or a whole JSON number."""

    NOT_A_TIME = (
        "must be an ISO 8601 time such as 2019-08-27T09:56:05Z, or epoch milliseconds (13 digits, as Pine's "
        "str.tostring(timenow) gives) or epoch seconds (10 digits)"
    )

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or len(value) > 40:
            raise ValidationError(self.NOT_A_TIME)
        _refuse_placeholder(value)
        if _EPOCH.match(value):
            seconds, millis = divmod(int(value), 1000) if len(value) == 13 else (int(value), 0)
            return datetime.fromtimestamp(seconds, UTC) + timedelta(milliseconds=millis)  # exact, no float
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(self.NOT_A_TIME) from None
        if moment.tzinfo is None:
            raise ValidationError("must say its time zone, e.g. end with Z for UTC")
        return moment


class AlertSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # a trader's own fields (ticker, close, ...) are ignored, never forwarded

    algo_id = _AlgoId(data_key="algoId", required=True)
    action = _Action(data_key="action", required=True)
    amount = _Amount(data_key="amount", required=True)
    investment_type = fields.String(data_key="investmentType", validate=OneOf(INVESTMENT_TYPES))
    allow_reinvest = _StrictBoolean(data_key="allowReinvest")
    alert_id = _TraderId(data_key="id")
    timestamp = _Timestamp(data_key="timestamp")
    max_lag = fields.Integer(data_key="maxLag", strict=True, validate=Range(min=1, max=3600))
    account = _Account(data_key="account")

    @pre_load
    def resolve_aliases(self, data, **kwargs):
        data = dict(data)
        for canonical, alias in ALIASES:
            if alias not in data:
                continue
            value = data.pop(alias)
            if canonical in data and not _same_value(data[canonical], value):
                raise ValidationError(
                    f'"{alias}" is another name for "{canonical}" and the two differ; send one of them',
                    field_name=canonical,
                )
            data.setdefault(canonical, value)
        return data

    @validates_schema
    def reinvest_only_for_percentage_investment(self, data, **kwargs):
        if data.get("allow_reinvest") is True and data.get("investment_type") != REINVEST_TYPE:
            raise ValidationError(
                'true is only allowed with "investmentType": "percentage_investment"; OKX applies '
                "allowReinvest only to such bots, so this alert would not do what it says",
                field_name="allowReinvest",
            )


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
