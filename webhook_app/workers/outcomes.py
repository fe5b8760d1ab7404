"""What becomes of an alert after one attempt: OKX's answer (``okx.CODE_OUTCOMES`` has
already turned it into an error type) -> a final state, or a retry and when.

Resends happen only where OKX certainly did not act (``OkxNotExecuted``), with exponential
backoff and jitter, up to ``max_attempts`` and never past the alert's lag. Everything after
which OKX may have acted is final. No I/O here but re-reading OKX's clock on 50102.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable

from webhook_app.okx.errors import RATE_LIMIT_CODE, OkxClockSkew, OkxError, OkxNotExecuted

log = logging.getLogger("webhook_app")


@dataclasses.dataclass(frozen=True)
class Outcome:
    state: str | None  # the final state, or None: send again at ``retry_at``
    okx_code: str | None = None
    okx_msg: str | None = None
    detail: str | None = None
    retry_at: float = 0.0
    hold_off: float = 0.0  # OKX said the account is over its limit: pause every send this long


OK = Outcome("ok", "0", "")  # clears the message an earlier attempt left


class OutcomePolicy:
    def __init__(
        self, max_attempts: int = 4, base_backoff: float = 0.25, sync_clock: Callable[[], float] | None = None
    ):
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self.sync_clock = sync_clock

    def judge(self, failure: OkxError | None, attempts: int, expires_at: float, now: float) -> Outcome:
        """The outcome of attempt number ``attempts`` (1 for the first), which failed with ``failure`` or not."""
        if failure is None:
            return OK
        code, message, detail = describe(failure)
        if not isinstance(failure, OkxNotExecuted):
            return Outcome(failure.state, code, message, detail)
        delay, hold_off = self._delay(failure, attempts)
        retry_at = now + delay
        if attempts < self.max_attempts and retry_at < expires_at:
            why = detail or message
            return Outcome(
                None,
                code,
                message,
                f"attempt {attempts} not executed ({why}); retrying in {delay:.2f} s",
                retry_at,
                hold_off,
            )
        return Outcome(
            "failed",
            code,
            message,
            f"not executed: gave up after {attempts} attempt(s); last: {detail or message}",
            hold_off=hold_off,
        )

    def _delay(self, failure: OkxNotExecuted, attempts: int) -> tuple[float, float]:
        if isinstance(failure, OkxClockSkew) and self.sync_clock is not None:
            try:
                offset = self.sync_clock()
                log.warning("OKX said our clock is off (50102): offset now %.3f s", offset)
                return 0.0, 0.0
            except OkxNotExecuted:
                return self.backoff(attempts), 0.0
        if failure.retry_after:
            # 50011 is about the whole account: nothing of ours may go until the window passes.
            return failure.retry_after, failure.retry_after if failure.code == RATE_LIMIT_CODE else 0.0
        return self.backoff(attempts), 0.0

    def backoff(self, attempts: int) -> float:
        # Exponential with jitter, so many alerts retrying at once do not return together.
        ceiling = self.base_backoff * (2 ** max(attempts - 1, 0))
        return random.uniform(ceiling / 2, ceiling)


def describe(exc: OkxError) -> tuple[str | None, str | None, str | None]:
    """(OKX code, OKX message, our detail): OKX's fields only when OKX said them."""
    if exc.code and not exc.code.startswith("HTTP"):
        return exc.code, exc.message, exc.hint or None
    return None, None, exc.message
