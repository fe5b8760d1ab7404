"""Taking an alert in: ``Intake.receive`` runs a webhook request's whole pipeline (its sender,
its body, its secret, its fields) up to ``accept``: the checks that need the journal, the journal
itself, then delivery. It knows nothing of HTTP: it returns a ``Receipt`` or raises the typed
error that ``web`` turns into the reply.

One road for TradingView's alerts and for an operator's resend, so a resend meets every
check of what an alert may do (allowlists, MAX_AMOUNT, the daily cap, duplicates, pacing)
like any other alert; only TradingView's own checks (a timestamp, its age) are not its.
Both are routed to one of the service's OKX accounts (``Intake.route``) before anything else
is decided about them: the bot's state, the journal, the send are all that account's."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping

from webhook_app.config import Config, OkxAccount
from webhook_app.errors import Refused, not_sent
from webhook_app.intake.alerts import Alert, Unauthorized, holds_secret, load_alert, parse_body, verify_secret
from webhook_app.intake.client_cert import ClientCertCheck, ForbiddenClientCert, Presented
from webhook_app.intake.protection import Protection, Sender
from webhook_app.intake.sizing import ContractSizes, in_contracts
from webhook_app.journal import CAP_STATES, ActionRefused, AlertLog, JournalUnavailable, Record
from webhook_app.journal.orders import alert_fields
from webhook_app.workers.bots import BotWatch
from webhook_app.workers.delivery import AtOnce, Delivery
from webhook_app.workers.notify import Notifier

log = logging.getLogger("webhook_app")

# A later alert in one of these carries the same alert as an earlier one: sent, about to be,
# or maybe executed (an unknown one, unless an operator found it not executed).
CARRYING_STATES = ("ok", "queued", "sending", "unknown")
# In dry-run the daily cap counts dry-run alerts too, so it can be tried before money moves (and a
# live service never counts the dry-run alerts of an earlier trial).
DRY_RUN_CAP_STATES = (*CAP_STATES, "dry_run")


class DuplicateAlert(Refused):
    """The alert repeats one already journaled (409): the reply names the original, its state, and
    whether its ``id`` or its fields (``fingerprint``) matched."""

    status, kind = 409, "duplicate"

    def __init__(self, original: Record):
        if original.dedup_key.startswith("id:"):
            matched = "id"
            message = (
                f'this bot already received an alert with "id" {original.trader_id!r} '
                f"(ids stay taken for ID_WINDOW); it was not sent again"
            )
        else:
            matched = "fingerprint"
            message = (
                "this alert repeats one already received with the same fields "
                "(a resend or a replay); it was not sent again"
            )
        super().__init__(
            f"duplicate of alert {original.id}",
            message=message,
            id=original.id,
            state=original.state,
            matched=matched,
        )
        self.original = original


class BotNotSendable(Refused):
    """A fresh read from OKX says the alert's bot is stopped or gone (422): OKX would refuse it."""

    status, kind = 422, "bot_not_running"

    def __init__(self, reason: str):
        super().__init__(reason, "algoId", message=not_sent(reason))


class AccountRefused(Refused):
    """The alert cannot go to any one of the service's OKX accounts (422): it names none of them,
    names none where several could take it, or names another than its bot's. Nothing is
    journaled or sent. ``field`` is the alert's field at fault ("account")."""

    status, kind = 422, "account_refused"

    def __init__(self, field: str, problem: str):
        super().__init__(
            f"{field}: {problem}",
            field,
            message=not_sent(f"{field}: {problem}"),
            errors=[{"field": field, "message": problem}],
        )


@dataclasses.dataclass
class Receipt:
    """What is known of one webhook request, filled in as ``Intake.receive`` goes, so that the
    request's log line and refusal record can say it whether it was accepted or refused."""

    client: str | None = None  # the sender's address (after the trusted proxies)
    # The parsed body, once it parsed. It holds the secret as sent (right or wrong, so the scrubber may
    # not know it): never in the receipt's repr, so no log line of a receipt can carry it.
    payload: object = dataclasses.field(default=None, repr=False)
    secret_name: str | None = None  # which accepted secret it carried, once verified
    algo_id: str | None = None  # the alert's bot, action and amount, once its fields are valid
    action: str | None = None
    amount: str | None = None  # as OKX gets it (a plain decimal string)
    record: Record | None = None  # the journaled alert: set only when it was accepted


class Intake:
    def __init__(
        self,
        config: Config,
        protection: Protection,
        alerts: AlertLog,
        delivery: Delivery,
        clock: Callable[[], float] | None = None,
        bots: Mapping[str, BotWatch] | None = None,
        notifier: Notifier | None = None,
        instruments: Mapping[str, ContractSizes] | None = None,
    ):
        """``bots``: each account's watch of its bots (account name -> BotWatch); None: not read (dry-run).
        ``notifier``: told when a sender is locked out for wrong secrets. ``instruments``: each
        account's reader of OKX's swaps (account name -> ``ContractSizes``), for sizes in coin units."""
        self.config = config
        self.notifier = notifier
        self.protection = protection
        self.alerts = alerts
        self.delivery = delivery
        self.bots = bots  # OKX's latest word on each bot's state, per account
        self.client_certs = ClientCertCheck(config.tls)  # TRADINGVIEW_CLIENT_CERT's check of the peer
        self.instruments = instruments or {}
        self.clock = clock  # when alerts are received; None: the journal's clock
        # What no field shown back (the alert's id, its account) may hold: every secret, and the OKX keys.
        self.secrets = (*config.secret_values, *(account.api_key for account in config.okx.accounts if account.api_key))

    def receive(
        self,
        raw_body: bytes | Callable[[], bytes],
        sender: Sender,
        *,
        started: float | None = None,
        receipt: Receipt | None = None,
        certificate: Presented | None = None,
    ) -> Receipt:
        """Take one webhook request in: its sender's source and lockout, its client certificate, its
        body, its secret, its fields, then ``accept``. Returns the ``Receipt`` with the journaled
        record; a refusal raises its typed error (``Forbidden``, ``LockedOut``,
        ``ForbiddenClientCert``, ``InvalidBody``, ``Unauthorized``,
        ``InvalidAlert``, ``StaleAlert``, ``AccountRefused``, ``BotNotSendable``, ``InstrumentsRefused``,
        ``DailyCapExceeded``, ``DuplicateAlert``, ``JournalUnavailable``...).

        ``raw_body``: the body, or a function that reads it: read only once the sender may send.
        ``started``: when the request arrived (time.monotonic()), the reply deadline's start; now
        when not given. ``receipt``: filled in place of a new one, so that a caller still learns,
        when the request is refused, what was read of it before. ``certificate``: what the peer
        presented (``client_certs.presented``), judged when TRADINGVIEW_CLIENT_CERT=require."""
        receipt = receipt if receipt is not None else Receipt()
        started = time.monotonic() if started is None else started
        config, protection = self.config, self.protection
        receipt.client = sender.address
        protection.check_source(sender.address)  # before the body is even read
        protection.lockout.check(sender.lockout_key)
        try:
            self.client_certs.check(certificate)  # before the body is read, like the source
            payload = receipt.payload = parse_body(raw_body() if callable(raw_body) else raw_body)
            receipt.secret_name = verify_secret(payload, config.webhook.accepted)
        except (ForbiddenClientCert, Unauthorized):  # a wrong certificate counts like a wrong secret
            self._count_failure(sender)
            raise
        alert = load_alert(payload, self.secrets)
        receipt.algo_id, receipt.action, receipt.amount = alert.algo_id, alert.action, alert.amount
        receipt.record = self.accept(
            alert, secret_name=receipt.secret_name, deadline=started + config.delivery.reply_deadline
        )
        receipt.amount = receipt.record.amount  # a size given in coin units, as the contracts it was sent as
        return receipt

    def _count_failure(self, sender: Sender) -> None:
        """A wrong secret or client certificate counts against its sender; at the threshold the
        sender is locked out, logged and notified."""
        threshold = self.config.protection.lockout_threshold
        if self.protection.lockout.failure(sender.lockout_key):
            log.warning("locked out %s after %d wrong secrets or certificates", sender.lockout_key, threshold)
            if self.notifier is not None:
                self.notifier.lockout(sender.lockout_key, threshold)

    def accept(self, alert: Alert, *, secret_name: str | None, deadline: float) -> Record:
        """Check, journal and submit a valid, authenticated alert; wait for its outcome until
        ``deadline`` (time.monotonic()). ``DuplicateAlert`` when it repeats a journaled one."""
        # One clock for the alert's age and its duplicate window: a copy fresh enough to pass was
        # received no earlier than FUTURE_TOLERANCE before its timestamp on the very clock that
        # duplicate_since looks back on, so a later copy always finds it.
        now = self._now()
        self.protection.check_alert(alert, now)
        return self._journal(alert, secret_name, deadline, self.protection.duplicate_since(alert, now), now)

    def route(self, alert: Alert) -> OkxAccount:
        """The OKX account the alert goes to; ``AccountRefused`` when there is no one account for it."""
        return self._route(alert.account, alert.algo_id)

    def _route(self, name: str | None, algo_id: str) -> OkxAccount:
        """With one account, ``name`` may be omitted or must name it. With several, ``name`` picks
        one, else the bot's listing under exactly one account's OKX_<NAME>_ALGO_IDS does. Named or
        not, a bot listed under one account never goes to another: its algoId is that account's."""
        accounts = self.config.okx.accounts
        names = ", ".join(account.name for account in accounts)
        # The configuration refuses a bot listed under two accounts, so there is at most one owner.
        owner = next((account for account in accounts if algo_id in account.algo_ids), None)
        if name is None:
            if len(accounts) == 1:
                return accounts[0]
            if owner is not None:
                return owner
            raise AccountRefused(
                "account",
                f"required: this service sends to several OKX accounts ({names}) and bot {algo_id} "
                "is not listed under any one of them",
            )
        account = self.config.okx.account(name)
        if account is None:
            raise AccountRefused("account", f"{self._no_account(name)} (accounts: {names})")
        if owner is not None and owner.name != account.name:
            raise AccountRefused(
                "account",
                f"algoId {algo_id} belongs to account {owner.name} ({owner.variable('algo_ids')}), not {account.name}",
            )
        return account

    def _no_account(self, name: str) -> str:
        """That no account has the name, showing it unless it holds a secret pasted into the wrong field."""
        if holds_secret(name, self.secrets):
            return "no account by that name"
        return f"no account named {name!r}"

    def _journal(self, alert: Alert, secret_name: str | None, deadline: float, dedup_since: float, now: float):
        config = self.config
        account = self.route(alert)  # first: the bot's state and the journal's record are the account's
        watch = self.bots.get(account.name) if self.bots is not None else None
        refusal = watch.refusal(alert.algo_id) if watch is not None else None
        if refusal is not None:
            raise BotNotSendable(refusal)
        alert = self._in_contracts(alert, account)
        reference = alert.timestamp.timestamp() if alert.timestamp else now
        margin = alert.margin is not None  # MAX_AMOUNT_PER_DAY counts add's and reduce's margin only
        fields = dict(
            dedup_key=alert.dedup_key,
            dedup_since=dedup_since,
            algo_id=alert.algo_id,
            action=alert.action,
            amount=alert.amount,
            request_body=alert.order.body_bytes().decode(),
            expires_at=reference + (alert.max_lag or config.delivery.max_lag),
            state="dry_run" if config.okx.dry_run else "queued",
            secret_name=secret_name,
            daily_cap=config.protection.max_amount_per_day if margin else None,
            cap_states=DRY_RUN_CAP_STATES if config.okx.dry_run else CAP_STATES,
            trader_id=alert.alert_id,
            now=now,
            account=account.name,
            endpoint=alert.order.endpoint,
        )
        if config.okx.dry_run:
            at_once = None
        else:
            at_once = self.delivery.at_once(account.name, alert.order.endpoint, alert.action)
        with at_once or contextlib.nullcontext():  # only around the write and the hand-over
            # Sent at once when it can go now (claimed and confirmed in the same write), else queued.
            try:
                record, created, claimed = self.alerts.add_claimed(at_once and at_once.send_now, **fields)
            except JournalUnavailable:
                record = at_once and self._put_back_at_receipt(at_once)
                if record is None:
                    raise  # not written (or the journal cannot say): TradingView sends it again
                created, claimed = True, None
            sending = at_once.start(record, claimed) if claimed is not None else None
        if not created:
            raise DuplicateAlert(record)
        return self.delivery.submit(record, deadline - time.monotonic(), sending)

    def _put_back_at_receipt(self, at_once: AtOnce) -> Record | None:
        """The write that was to claim the alert at once failed, its reply maybe lost after its commit:
        a claim it made, which no sender ever had, goes back in the queue (else its lease's lapse would
        leave a request that never left as unknown). The queued alert; None when nothing was written."""
        try:
            return self.alerts.unclaim_at_receipt(at_once.send_now.receipt, at_once.send_now.instance)
        except JournalUnavailable as exc:
            log.error("could not look for a claim whose write's reply was lost (%s): its lease settles it", exc)
            return None

    def _in_contracts(self, alert: Alert, account: OkxAccount) -> Alert:
        """The alert with a size given in coin units turned into contracts, by the figures of its
        account's OKX site, and held to MAX_SIZE (``InstrumentsRefused`` 503 when they cannot be read)."""
        if alert.size_in != "contracts":
            alert = in_contracts(alert, self.instruments[account.name])
        self.protection.check_size(alert)
        return alert

    def resend(self, original_id: int, *, by: str) -> Record:
        """Send a ``failed`` alert, or one an operator marked not executed, again: a new alert,
        linked to the original (before it is sent), sent at most once per original. Returns the
        new alert without waiting for its outcome."""
        original = self._get(original_id)
        refusal, since = self._resend_check(original)
        if refusal is not None:
            raise ActionRefused(refusal)
        # The alert as it was sent (a size in contracts, as OKX got it), by the alert's own names.
        payload = {"algoId": original.algo_id, "action": original.action}
        payload.update(alert_fields(original.action, original.request))
        if original.trader_id is not None:
            payload["id"] = original.trader_id
        payload["account"] = original.account  # sent again to the account it was meant for, or refused
        # The original's key: the journal's duplicate check, atomic with the insert, then lets one
        # of a resend, another operator's resend and TradingView's copy of the same alert through.
        alert = dataclasses.replace(load_alert(payload), dedup_key=original.dedup_key)
        self.protection.check_request(alert)  # with the settings in force now
        try:
            record = self._journal(alert, f"resend by {by}"[:100], time.monotonic(), since, self._now())
        except DuplicateAlert as exc:
            raise ActionRefused(_carried(exc.original)) from None
        self.alerts.link_resend(original_id, record.id, by)
        return self.alerts.get(record.id) or record

    def resend_refusal(self, original: Record) -> str | None:
        """Why ``original`` may not be sent again (the message a resend is refused with), or None."""
        refusal = self._resend_check(original)[0]
        if refusal is None:
            try:  # its account may since have left OKX_ACCOUNTS, or its bot moved to another account
                self._route(original.account, original.algo_id)
            except AccountRefused as exc:
                return str(exc)
        return refusal

    def _resend_check(self, original: Record) -> tuple[str | None, float]:
        """Why ``original`` may not be sent again, or None; and from when on (journal time) an
        alert with its key makes a resend of it a duplicate."""
        if original.resent_as is not None:
            return f"alert {original.id} was already sent again as alert {original.resent_as}", 0.0
        if not (original.state == "failed" or original.resolution == "not_executed"):
            return (
                f"alert {original.id} is {original.state}: only a failed alert, or one marked not executed, "
                "can be sent again"
            ), 0.0
        # A later alert with its key, received while that key would have made it a duplicate of
        # this one, is the same alert: TradingView's resend after the 503, or the trader's same id.
        later = self.alerts.later_alerts(original.id, original.dedup_key)
        until = original.received_at + self.protection.duplicate_window(original.dedup_key)
        for record in later:
            if record.received_at <= until and record.state in CARRYING_STATES and record.resolution != "not_executed":
                return _carried(record), 0.0
        # Each alert with its key so far was judged just now; any newer one (a copy arriving at
        # this moment) makes the resend a duplicate, in the journal's own atomic check.
        return None, math.nextafter(max([original.received_at, *(r.received_at for r in later)]), math.inf)

    def _now(self) -> float:
        """When alerts are received: the journal's clock, so instances on one database agree (tests move their own)."""
        return self.clock() if self.clock else self.alerts.now()

    def mark(self, alert_id: int, resolution: str, *, by: str) -> Record:
        """An operator's finding (one of ``RESOLUTIONS``) on an ``unknown`` alert, after checking the bot on OKX."""
        self._get(alert_id)
        return self.alerts.resolve(alert_id, resolution, by)

    def _get(self, alert_id: int) -> Record:
        record = self.alerts.get(alert_id)
        if record is None:
            raise NoSuchAlert(alert_id)
        return record


def _carried(record: Record) -> str:
    state = record.state + (", marked executed" if record.resolution == "executed" else "")
    return f"alert {record.id} already carries this alert ({state}): not sent again"


class NoSuchAlert(Refused):
    """No alert with that id (404)."""

    status, kind = 404, "not_found"

    def __init__(self, alert_id: int):
        super().__init__(f"no alert {alert_id}")
