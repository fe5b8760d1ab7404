"""The alert's field types: each one parses a value as strictly as OKX needs it (decimals never
through float, never rounded; placeholders TradingView left unfilled named as such) and raises a
marshmallow ``ValidationError`` with the problem, never the value when it could be a secret."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from marshmallow import ValidationError, fields

from webhook_app.okx.records import plain_decimal, significant

MAX_SIGNIFICANT_DIGITS = 16
MAX_DECIMAL_PLACES = 16
MAX_AMOUNT_VALUE = Decimal(10) ** 12
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?\Z")
_ALGO_ID = re.compile(r"[0-9]{1,32}\Z")
# OKX_ACCOUNTS' names (each becomes part of OKX_<NAME>_* variables), in any case: names are
# case-insensitive, as actions are, and kept lowercase.
_ACCOUNT = re.compile(r"[A-Za-z0-9_]{1,32}\Z")
PLACEHOLDER = re.compile(r"\{\{.*?\}\}")
_EPOCH = re.compile(r"[0-9]{10}([0-9]{3})?\Z")  # Pine's str.tostring(timenow): ms (13 digits); or seconds (10)
# TradingView's {{timenow}} and any RFC 3339 time (JSON Schema's "date-time", what openapi.json says with
# this very pattern): seconds, a time zone, a fraction of any length; no leap second (Python has none).
ISO_TIME_PATTERN = (
    "^(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-5][0-9](\\.[0-9]{1,9})?"
    "([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_ISO_TIME = re.compile(ISO_TIME_PATTERN.replace("$", "\\Z"))
_FRACTION = re.compile(r"\.([0-9]+)")


class AlgoId(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("must be the bot's algo ID: digits, as a string or a whole number")
        text = str(value)
        if not _ALGO_ID.match(text):
            raise ValidationError("must be the bot's algo ID: 1 to 32 digits")
        return text


class Account(fields.Field):
    """The name of one of the service's OKX accounts (OKX_ACCOUNTS). A malformed value is never
    echoed (only an unfilled {{placeholder}} is named): a wrong paste here may be a secret."""

    MESSAGE = "must be the name of an OKX account of this service (OKX_ACCOUNTS): 1 to 32 letters, digits or _"

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError(self.MESSAGE)
        refuse_placeholder(value)
        if not _ACCOUNT.match(value):
            raise ValidationError(self.MESSAGE)
        return value.lower()


class PositiveDecimal(fields.Field):
    """A positive decimal from a string or a JSON number, never through float, returned as the plain
    decimal string OKX gets (trailing zeros dropped, never rounded). ``below``: an upper bound
    (exclusive) and why, for a figure that cannot reach it."""

    def __init__(self, *args, below: tuple[Decimal, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.below = below

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
        if self.below is not None and amount >= self.below[0]:
            raise ValidationError(self.below[1])
        return plain_decimal(exact)


class TraderId(fields.String):
    """The trader's own id for the alert: 1-128 characters, every placeholder filled in."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not 1 <= len(text) <= 128:
            raise ValidationError("must be 1 to 128 characters")
        refuse_placeholder(text)
        return text


def refuse_placeholder(text: str) -> None:
    """The alert was sent from a message TradingView did not fill in: say so, not just "invalid"."""
    if found := PLACEHOLDER.search(text):
        raise ValidationError(
            f"holds a TradingView placeholder that was not filled in, such as {found.group(0)}: the alert was sent "
            "from a message TradingView did not fill; check the alert's message"
        )


class StrictBoolean(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValidationError("must be true or false")


class Timestamp(fields.Field):
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
        refuse_placeholder(value)
        if _EPOCH.match(value):
            seconds, millis = divmod(int(value), 1000) if len(value) == 13 else (int(value), 0)
            return datetime.fromtimestamp(seconds, UTC) + timedelta(milliseconds=millis)  # exact, no float
        if not _ISO_TIME.match(value):
            raise ValidationError(self._what_is_missing(value))
        try:  # a date the calendar has, hours to 23, an offset under a day: Python checks what the pattern cannot
            # to microseconds, as Python keeps them (a longer fraction is cut, never rounded up)
            return datetime.fromisoformat(_FRACTION.sub(lambda m: "." + m.group(1)[:6], value.upper()))
        except ValueError:
            raise ValidationError(self.NOT_A_TIME) from None

    def _what_is_missing(self, value: str) -> str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return self.NOT_A_TIME
        if moment.tzinfo is None:
            return "must say its time zone, e.g. end with Z for UTC"
        return self.NOT_A_TIME + ", with a T and seconds"


class Choice(fields.Field):
    """One of ``options``, in any case (returned in lower case); the message lists them."""

    def __init__(self, options: tuple[str, ...], *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.options = options

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value.lower() in self.options:
            return value.lower()
        if isinstance(value, str):
            refuse_placeholder(value)
        raise ValidationError(f"must be {_one_of(self.options)}")


def _one_of(options: tuple[str, ...]) -> str:
    quoted = [f'"{option}"' for option in options]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


_INST_ID = re.compile(r"[A-Z0-9]+(-[A-Z0-9]+)+\Z")


class InstId(fields.Field):
    """An OKX instrument ID as OKX writes it: upper-case letters and digits in parts joined by "-"
    (BTC-USDT-SWAP). TradingView's own ticker ("BTCUSDT.P") is not one, and is refused saying so."""

    MESSAGE = "must be an OKX instrument ID such as BTC-USDT-SWAP (upper-case letters and digits joined by -)"

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError(self.MESSAGE)
        refuse_placeholder(value)
        if len(value) <= 64 and _INST_ID.match(value):
            return value
        if len(value) <= 64 and _INST_ID.match(value.upper()):
            raise ValidationError(self.MESSAGE + "; OKX's IDs are upper case")  # never echoed: a paste may be a secret
        raise ValidationError(self.MESSAGE + "; not TradingView's ticker (BTCUSDT.P)")
