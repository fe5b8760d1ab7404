"""What OKX's answers mean for money: the error types (did OKX act?) and the codes every endpoint
shares. An action's own codes sit with the action (``okx/margin/outcomes.py``); ``outcome_of``
reads a code against both, a sub-code (``51008_1000``) by its code."""

from __future__ import annotations


class OkxError(Exception):
    """OKX did not confirm the change. ``code``/``message`` are OKX's when it sent them."""

    state = "rejected"

    def __init__(self, message: str, code: str = "", hint: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


class OkxRefused(OkxError):
    """OKX refused the request; it did not act. Resending the same request cannot help."""


class OkxNotExecuted(OkxError):
    """OKX certainly did not act (busy, rate limit, unreachable): safe to try again."""

    state = "failed"

    def __init__(self, message: str, code: str = "", hint: str = "", retry_after: float = 0.0):
        super().__init__(message, code, hint)
        self.retry_after = retry_after


class OkxClockSkew(OkxNotExecuted):
    """50102: our timestamp was outside OKX's window; correct the clock offset, then retry."""


class OkxOutcomeUnknown(OkxError):
    """The request may have reached OKX and OKX may have acted: never resend automatically."""

    state = "unknown"


class OkxUnreachable(OkxNotExecuted):
    """The connection (to OKX, or to the proxy in front of it) could not be made: nothing was sent."""


class OkxSendTooLate(OkxNotExecuted):
    """The request was never sent: its claim was too old to send on (a pause, a slow journal)."""


# What each OKX code says about money: did OKX act? (reference.md; OKX's error-code pages.)
# The one table of OKX's answers; a code not listed is refused, unless it came with HTTP 5xx.
CLOCK_SKEW_CODE = "50102"


RATE_LIMIT_CODE = "50011"


CODE_OUTCOMES: dict[str, tuple[type[OkxError], float]] = {  # code -> (error, seconds to wait first)
    # Not executed: safe to send again after a pause.
    RATE_LIMIT_CODE: (OkxNotExecuted, 2.0),  # over 20 requests / 2 s: wait for the window
    "50013": (OkxNotExecuted, 0.0),  # systems busy
    "50001": (OkxNotExecuted, 0.0),  # service temporarily unavailable
    "50040": (OkxNotExecuted, 0.0),  # too frequent
    "51290": (OkxNotExecuted, 5.0),  # bot engine being upgraded: retry later
    CLOCK_SKEW_CODE: (OkxClockSkew, 0.0),  # timestamp outside OKX's window: fix the offset, then resend
    # Outcome unknown: OKX may have acted; never resend.
    "50004": (OkxOutcomeUnknown, 0.0),  # endpoint request timeout ("does not mean ... failed")
    "51149": (OkxOutcomeUnknown, 0.0),  # order timed out
    "50026": (OkxOutcomeUnknown, 0.0),  # system error
    "51054": (OkxOutcomeUnknown, 0.0),  # request timed out
    # Refused: OKX did not act, and the same request would be refused again.
    "51288": (OkxRefused, 0.0),  # bot is stopping
}


# Among the refusals (not listed above: refused by default), the codes by which OKX says it has no
# such bot: 51289 no such configuration, 51291 no such bot or stopped, 51293 no such bot. A read
# of the bot's details answered with one of them is an answer, "missing", not a failed read.
BOT_MISSING_CODES = ("51289", "51291", "51293")


def outcome_of(code: str, status: int, action_outcomes: dict) -> tuple[type[OkxError], float]:
    """(error type, seconds to wait first) for an OKX code other than "0": the action's own table
    first, then the common one; an unlisted code is a refusal, or unknown with a 5xx."""
    base = code.split("_", 1)[0]  # OKX's sub-codes, e.g. 51008_1000, mean what their code means
    for table in (action_outcomes, CODE_OUTCOMES):
        if code in table or base in table:
            return table.get(code) or table[base]
    return (OkxOutcomeUnknown if status >= 500 else OkxRefused), 0.0
