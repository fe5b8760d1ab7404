"""What OKX's answers mean for money: the error types (did OKX act?) and the codes every endpoint
shares. An action's own codes sit with the action (``okx/actions/<action>.py``); ``outcome_of``
reads a code against both, a sub-code (``51008_1000``) by its code, and ``answer_outcome`` reads
a whole answer: the items of ``data`` that carry their own ``sCode`` first."""

from __future__ import annotations

import copy


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


class OkxTargetReached(OkxError):
    """OKX did not act because what the request asks is already so: the bot already stopped or
    stopping, the sub-order no longer live, no position left to close. ``OkxClient.send`` answers
    it with an ``OkxAck`` (``already``): the alert's target is reached; it never leaves ``send``."""

    state = "ok"


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
    # A bulk answer's own codes: its items (``data[].sCode``) say what came of each, and decide when
    # they do; without a failed item, "1" did nothing and "2" did some part no item names.
    "1": (OkxRefused, 0.0),  # operation failed
    "2": (OkxOutcomeUnknown, 0.0),  # bulk operation partially succeeded
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


# The worse of two outcomes, when an answer's items differ: unknown over refused over not executed
# over already so.
_SEVERITY = ((OkxOutcomeUnknown, 3), (OkxRefused, 2), (OkxNotExecuted, 1), (OkxTargetReached, 0))


def answer_outcome(
    code: str, message: str, status: int, data: object, action_outcomes: dict
) -> tuple[type[OkxError], float, str, str] | None:
    """None when OKX's answer is a success; else (error type, seconds to wait first, the code and
    message it rests on). An item of ``data`` with an ``sCode`` other than "0" (cancel-sub-order's,
    stop-order-algo's) is judged by that code even when the answer's own code is "0": OKX said "0"
    to the call, not to that item. With several, the worst decides."""
    failed = [
        (str(item["sCode"]), str(item.get("sMsg", "")))
        for item in (data if isinstance(data, list) else [])
        if isinstance(item, dict) and item.get("sCode") not in (None, "", "0", 0)
    ]
    if failed:
        judged = [
            (*outcome_of(item_code, status, action_outcomes), item_code, item_message)
            for item_code, item_message in failed
        ]
        return max(judged, key=lambda outcome: _severity(outcome[0]))
    if code == "0":
        return None
    return (*outcome_of(code, status, action_outcomes), code, message)


def _severity(error: type[OkxError]) -> int:
    return next((rank for kind, rank in _SEVERITY if issubclass(error, kind)), 2)


def restated(error: OkxError, message: str) -> OkxError:
    """``error`` (same type, code, hint and wait) saying ``message`` instead."""
    changed = copy.copy(error)
    changed.message = message
    changed.args = (message,)
    return changed
