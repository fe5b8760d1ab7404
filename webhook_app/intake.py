"""Taking an alert in: the checks that need the journal, the journal itself, then delivery.
One road for TradingView's alerts and for an operator's resend, so a resend meets every
check of what an alert may do (allowlists, MAX_AMOUNT, the daily cap, duplicates, pacing)
like any other alert; only TradingView's own checks (a timestamp, its age) are not its."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from .alerts import Alert, load_alert
from .config import Config
from .delivery import Delivery
from .journal import ActionRefused, Journal, Record
from .protection import Protection


class DuplicateAlert(Exception):
    """The alert repeats one already journaled (409)."""

    def __init__(self, original: Record):
        super().__init__(f"duplicate of alert {original.id}")
        self.original = original


class Intake:
    def __init__(
        self,
        config: Config,
        protection: Protection,
        journal: Journal,
        delivery: Delivery,
        clock: Callable[[], float] | None = None,
    ):
        self.config = config
        self.protection = protection
        self.journal = journal
        self.delivery = delivery
        self.clock = clock  # when alerts are received; None: the journal's clock

    def accept(self, alert: Alert, *, secret_name: str | None, deadline: float) -> Record:
        """Check, journal and submit a valid, authenticated alert; wait for its outcome until
        ``deadline`` (time.monotonic()). ``DuplicateAlert`` when it repeats a journaled one."""
        # One clock for the alert's age and its duplicate window: a copy fresh enough to pass was
        # received no earlier than FUTURE_TOLERANCE before its timestamp on the very clock that
        # duplicate_since looks back on, so a later copy always finds it.
        now = self._now()
        self.protection.check_alert(alert, now)
        return self._journal(alert, secret_name, deadline, self.protection.duplicate_since(alert, now), now)

    def _journal(self, alert: Alert, secret_name: str | None, deadline: float, dedup_since: float, now: float):
        config, req = self.config, alert.request
        reference = alert.timestamp.timestamp() if alert.timestamp else now
        record, created = self.journal.add(
            dedup_key=alert.dedup_key,
            dedup_since=dedup_since,
            algo_id=req.algo_id,
            action=req.type,
            amount=req.amt,
            request_body=req.body_bytes().decode(),
            expires_at=reference + (alert.max_lag or config.max_lag),
            state="dry_run" if config.dry_run else "queued",
            secret_name=secret_name,
            daily_cap=config.max_amount_per_day,
            trader_id=alert.alert_id,
            now=now,
        )
        if not created:
            raise DuplicateAlert(record)
        return self.delivery.submit(record, wait=deadline - time.monotonic())

    def resend(self, original_id: int, *, by: str) -> Record:
        """Send a ``failed`` alert, or one an operator marked not executed, again: a new alert,
        linked to the original (before it is sent), sent at most once per original. Returns the
        new alert without waiting for its outcome."""
        original = self._get(original_id)
        if original.resent_as is not None:
            raise ActionRefused(f"alert {original_id} was already sent again as alert {original.resent_as}")
        if not (original.state == "failed" or original.resolution == "not_executed"):
            raise ActionRefused(
                f"alert {original_id} is {original.state}: only a failed alert, or one marked not executed, "
                "can be sent again"
            )
        request = original.request
        payload = {"algoId": request["algoId"], "type": request["type"], "amt": request["amt"]}
        if "allowReinvest" in request:  # only ever sent to percentage_investment bots
            payload.update(allowReinvest=request["allowReinvest"], investmentType="percentage_investment")
        if original.trader_id is not None:
            payload["id"] = original.trader_id
        # Keyed by the original: two operators pressing "send again" at once make one alert.
        alert = dataclasses.replace(load_alert(payload), dedup_key=f"resend:{original_id}")
        self.protection.check_request(alert)  # with the settings in force now
        now = self._now()
        since = self.protection.duplicate_since(alert, now)
        try:
            record = self._journal(alert, f"resend by {by}"[:100], time.monotonic(), since, now)
        except DuplicateAlert as exc:
            raise ActionRefused(f"alert {original_id} was already sent again as alert {exc.original.id}") from None
        self.journal.link_resend(original_id, record.id, by)
        return self.journal.get(record.id) or record

    def _now(self) -> float:
        """When alerts are received: the journal's clock, so instances on one database agree (tests move their own)."""
        return self.clock() if self.clock else self.journal.now()

    def mark(self, alert_id: int, resolution: str, *, by: str) -> Record:
        """An operator's finding (one of ``RESOLUTIONS``) on an ``unknown`` alert, after checking the bot on OKX."""
        self._get(alert_id)
        return self.journal.resolve(alert_id, resolution, by)

    def _get(self, alert_id: int) -> Record:
        record = self.journal.get(alert_id)
        if record is None:
            raise NoSuchAlert(alert_id)
        return record


class NoSuchAlert(LookupError):
    """No alert with that id (404)."""

    def __init__(self, alert_id: int):
        super().__init__(f"no alert {alert_id}")
