"""Notifications through Apprise (Telegram, Discord, Slack, email, ntfy, a JSON webhook, ...).

Sent from a background thread, never delaying a reply; at most one message per event kind per
``coalesce`` seconds (the ones in between are counted and summed up in the next); a message that
cannot be delivered is logged and changes nothing else. Messages carry no secret: they are built
from journal records, which hold none, and pass the log scrubber's secret check before leaving.

What waits here is in memory only: once Apprise delivered a message, the journal records that each
alert it names was told (``NotificationLog.told``), and ``tell_untold`` (the investigator's sweep) tells
again the unknown and failed alerts no delivered message named, such as those a killed instance held.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable

import apprise

from webhook_app.journal import JournalUnavailable, NotificationLog
from webhook_app.okx.margin.evidence import VERDICT_WORDS

log = logging.getLogger("webhook_app")

EVENTS = ("ok", "failed", "unknown", "rejected", "expired", "lockout", "readiness")
DEFAULT_EVENTS = frozenset(EVENTS) - {"ok"}
COALESCE_SECONDS = 10.0
TOLD_AGAIN = ("unknown", "failed")  # the outcomes told again when no delivered message named them
AGAIN = "Told again: no notification naming it was recorded as delivered (its instance may have stopped first)."

# Apprise's type per event kind: the colour and icon a trader's Telegram/Discord/Slack shows.
FAILURE, WARNING, SUCCESS = apprise.NotifyType.FAILURE, apprise.NotifyType.WARNING, apprise.NotifyType.SUCCESS
NOTIFY_TYPE = {kind: FAILURE for kind in EVENTS} | {"ok": SUCCESS}
_SEVERITY = (FAILURE, WARNING, SUCCESS, apprise.NotifyType.INFO)  # a summary takes its worst event's type
SEE_THE_DETAIL = " (see the detail)"

WHAT_TO_DO = {
    "ok": "Nothing to do.",
    "failed": "OKX did not act on it. TradingView may resend it; else adjust the margin by hand if still wanted.",
    "unknown": "OKX may have acted. Check the bot's margin on OKX before sending it again; it is never resent.",
    "rejected": "OKX refused it and did not act. Fix what OKX's message names{see_the_detail} before the next alert.",
    "expired": "It waited past its lag and was not sent. Check the service's pacing and OKX's rate limit.",
}


# The same for the actions that are not margin calls: what to check or do by hand is the bot's order.
WHAT_TO_DO_ORDER = {
    "failed": "OKX did not act on it. TradingView may resend it; else do it on OKX by hand if still wanted.",
    "unknown": "OKX may have acted. Check the bot's positions and orders on OKX before sending it again; "
    "it is never resent.",
}


def _what_to_do(record) -> str:
    texts = WHAT_TO_DO if record.action in ("add", "reduce") else {**WHAT_TO_DO, **WHAT_TO_DO_ORDER}
    return texts.get(record.state, "").format(see_the_detail=SEE_THE_DETAIL if record.detail else "")


def _proposal(record, page: str) -> str:
    """For an unknown alert whose bot was read again on OKX: the service's proposal and its reason
    (and the service's own finding, with RESOLVE_UNKNOWN=auto); ``page``, the alert's page, where
    it is confirmed."""
    proposal = getattr(record, "proposal", None)
    if record.state != "unknown" or not proposal:
        return ""
    reason = (record.evidence_data or {}).get("reason", "")
    words = VERDICT_WORDS.get(proposal, proposal)
    found = f"From OKX's records the service proposes: {words} ({reason})" if reason else f"Proposal: {words}"
    if record.resolution:
        return f"{found}. Marked {record.resolution.replace('_', ' ')} by the service"
    if proposal == "cant_tell":
        return found
    return f"{found}. Confirm it on the alert's page: {page} (one click)" if page else f"{found}. Confirm it on OKX"


def invalid_urls(urls: tuple[str, ...]) -> list[int]:
    """Positions (1-based) of the URLs Apprise does not understand (the URLs hold tokens: never echo them)."""
    return [i for i, url in enumerate(urls, 1) if not apprise.Apprise().add(url)]


class Notifier:
    def __init__(
        self,
        urls: tuple[str, ...],
        events: frozenset[str] = DEFAULT_EVENTS,
        coalesce: float = COALESCE_SECONDS,
        scrub: Callable[[str], str] = lambda text: text,
        show_account: bool = False,
        journal: NotificationLog | None = None,
        alert_page: Callable[[int], str] | None = None,
    ):
        """``show_account``: name each alert's OKX account in its messages (a service with several
        accounts); with one account the messages stay as they were. ``journal``: where
        a delivered message records the alerts it told, and ``tell_untold`` finds those it did not
        (None: nowhere, and nothing is told again). ``alert_page``: an alert's page's address
        (absolute with PUBLIC_URL), linked from each message about the alert; None: no page."""
        self.events = events
        self.show_account = show_account
        self.coalesce = coalesce
        self._scrub = scrub
        self._apprise = apprise.Apprise()
        for url in urls:
            self._apprise.add(url)
        self.enabled = bool(urls)
        self._journal = journal
        self._alert_page = alert_page
        self._queue: queue.Queue = queue.Queue(maxsize=10_000)
        self._last_sent: dict[str, float] = {}
        # kind -> (title, body, type, the alert ids it names) waiting for the window
        self._held: dict[str, list[tuple[str, str, str, tuple[int, ...]]]] = {}
        self._waiting: collections.Counter[int] = collections.Counter()  # alert ids in messages not yet delivered
        self._waiting_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self.delivered = 0
        self.undelivered = 0

    # -- events (called from request and sender threads; never block) --------------------------

    def alert_finished(self, record, again: bool = False) -> None:
        """``again``: no message naming it was recorded as delivered (``tell_untold``)."""
        if record.state not in self.events:
            return
        okx = f"OKX said {record.okx_code} {record.okx_msg or ''}".strip() if record.okx_code else "OKX said nothing"
        title = f"Alert {record.id} {record.state}: {self._bot(record)}, {record.summary}"
        what_to_do = _what_to_do(record)
        page = self._page(record)
        proposal = _proposal(record, page)
        link = f"The alert's page: {page}" if page and page not in proposal and record.state != "ok" else ""
        parts = [f"{title}.", f"{okx}.", record.detail or "", proposal, what_to_do, link, AGAIN if again else ""]
        body = " ".join(p if p.endswith(".") else p + "." for p in parts if p)
        self._put(record.state, title, body, ids=(record.id,))

    def tell_untold(self, since: float, before: float) -> list[int]:
        """Tell again the unknown and failed alerts (of our events) finished between ``since`` and
        ``before`` (the journal's clock) that no delivered message named, unless a message here is
        still on its way with them: those a killed instance held in memory. Another instance may tell
        one at the same time (both find it untold): told twice, never lost. Returns their ids."""
        if not self.enabled or self._journal is None:
            return []
        states = tuple(state for state in TOLD_AGAIN if state in self.events)
        try:
            untold = self._journal.untold(states, since, before)
        except JournalUnavailable as exc:
            log.error("could not look for alerts never told: %s", exc)
            return []
        again = [record for record in untold if not self.waiting(record.id)]
        for record in again:
            self.alert_finished(record, again=True)
        return [record.id for record in again]

    def waiting(self, alert_id: int) -> bool:
        """A message naming the alert waits here to be delivered."""
        with self._waiting_lock:
            return self._waiting[alert_id] > 0

    def late_answer(self, record, answer: str) -> None:
        """OKX answered a send whose claim another instance had already taken over: its state stands."""
        if "unknown" in self.events:
            title = f"Alert {record.id}: late answer from OKX after take-over ({self._bot(record)})"
            body = (
                f"{title}: {answer}. The journal keeps the state it had ({record.state}); compare with the bot on "
                f"OKX before acting on it.{self._page_sentence(record)}"
            )
            # The journal's state stands: worth a look, not a failure.
            self._put("unknown", title, body, WARNING, ids=(record.id,))

    def proposal_withdrawn(self, record, found: str) -> None:
        """The bot of an unknown alert moved after OKX's records proposed "not executed": that proposal
        no longer stands, and a resend may be a double."""
        if "unknown" in self.events:
            title = f"Alert {record.id}: the proposal 'not executed' is withdrawn ({self._bot(record)})"
            body = (
                f"{title}, {record.summary}: the bot was {found}. Do not send it again before "
                f"checking the bot's margin on OKX.{self._page_sentence(record)}"
            )
            self._put("unknown", title, body, WARNING, ids=(record.id,))

    def lockout(self, address: str, failures: int) -> None:
        if "lockout" in self.events:
            title = f"Address {address} locked out"
            body = (
                f"{title} after {failures} wrong secrets. If it is yours, the alert's message carries an old secret: "
                "fix it in TradingView. If not, someone is guessing: consider ALLOWED_SOURCES=tradingview."
            )
            self._put("lockout", title, body)

    def readiness_changed(self, ready: bool, failures: list[str]) -> None:
        if "readiness" in self.events and not ready:
            title = "Not ready to move money"
            self._put("readiness", title, f"{title}: " + "; ".join(failures))

    def _page(self, record) -> str:
        """The alert's page's address, or "" without the operator page."""
        return self._alert_page(record.id) if self._alert_page is not None else ""

    def _page_sentence(self, record) -> str:
        page = self._page(record)
        return f" The alert's page: {page}." if page else ""

    def _bot(self, record) -> str:
        """ "bot 123", or "account hedge, bot 123" where the service has several accounts."""
        return f"account {record.account}, bot {record.algo_id}" if self.show_account else f"bot {record.algo_id}"

    def _put(self, kind: str, title: str, body: str, notify_type: str | None = None, ids: tuple[int, ...] = ()) -> None:
        """``ids``: the alerts the message names (recorded as told once it is delivered)."""
        if not self.enabled:
            return
        self.start()
        self._count_waiting(ids, +1)
        try:
            self._queue.put_nowait((kind, self._scrub(title), self._scrub(body), notify_type or NOTIFY_TYPE[kind], ids))
        except queue.Full:
            self._count_waiting(ids, -1)
            self.undelivered += 1

    def _count_waiting(self, ids: tuple[int, ...], step: int) -> None:
        with self._waiting_lock:
            for alert_id in ids:  # one alert may be named twice in a summary (its outcome, a withdrawal)
                self._waiting[alert_id] += step
                if self._waiting[alert_id] <= 0:
                    del self._waiting[alert_id]

    # -- the background sender -------------------------------------------------------------------

    def start(self) -> None:
        """Start the sender, where there is anywhere to send to."""
        with self._start_lock:
            if self.enabled and self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sending (what waits is dropped: a sweep, another instance's or the next start's, tells
        its unknown and failed alerts again); wait up to ``timeout`` for a notification being delivered."""
        with self._start_lock:  # a thread being started by an event finishes starting first; none after
            self._stop.set()
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)  # wakes it
            except queue.Full:
                pass  # it wakes within a second anyway
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=self._next_flush())
            except queue.Empty:
                self._flush_due()
                continue
            if item is None:  # stop's wake-up
                continue
            kind, title, body, notify_type, ids = item
            now = time.monotonic()
            if now - self._last_sent.get(kind, -1e9) >= self.coalesce and not self._held.get(kind):
                self._last_sent[kind] = now
                self._deliver(title, body, notify_type, ids)
            else:
                self._held.setdefault(kind, []).append((title, body, notify_type, ids))
            self._flush_due()

    def _next_flush(self) -> float:
        if not any(self._held.values()):
            return 1.0
        ends = [self._last_sent[k] + self.coalesce for k, held in self._held.items() if held]
        return max(min(ends) - time.monotonic(), 0.01)

    def _flush_due(self) -> None:
        now = time.monotonic()
        for kind, held in list(self._held.items()):
            if held and now - self._last_sent.get(kind, -1e9) >= self.coalesce:
                self._held[kind] = []
                self._last_sent[kind] = now
                title = f"{len(held)} more {kind} event(s) in the last {self.coalesce:g} s"
                lines = "\n".join(body for _, body, _, _ in held[:20])
                # Beyond 20 in full, each by its title: every alert is still named once.
                rest = "\n".join(title for title, _, _, _ in held[20:])
                more = f"\n... and {len(held) - 20} more:\n{rest}" if len(held) > 20 else ""
                worst = min((t for _, _, t, _ in held), key=_SEVERITY.index)
                ids = tuple(alert_id for _, _, _, named in held for alert_id in named)
                self._deliver(title, f"{title}:\n{lines}{more}", worst, ids)

    def _deliver(self, title: str, body: str, notify_type: str, ids: tuple[int, ...]) -> None:
        try:
            ok = self._apprise.notify(title=title, body=body, notify_type=notify_type)
        except Exception:  # a notification must never take anything else down
            log.exception("notification could not be sent")
            ok = False
        if ok:
            self.delivered += 1
            self._record_told(ids)
        else:
            self.undelivered += 1
            log.warning("a notification could not be delivered (%s); nothing else is affected", title)
        self._count_waiting(ids, -1)

    def _record_told(self, ids: tuple[int, ...]) -> None:
        """Each alert the delivered message named was told; if the journal cannot say so, the sweep
        tells it again later (twice, never lost)."""
        if self._journal is None or not ids:
            return
        try:
            self._journal.told(sorted(set(ids)))
        except JournalUnavailable as exc:
            log.error("could not record that alerts %s were told: %s", ", ".join(map(str, sorted(set(ids)))), exc)
