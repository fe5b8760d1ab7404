"""The bots as OKX sees them: read in the background for the page and for refusing alerts to a
stopped bot, and read on demand around a send for the evidence of an unknown outcome. The
background read keeps each bot's positions and TP/SL too, for the page (``TradingReadings``).

Reads are signed GETs on endpoints with their own OKX limit (20 per 2 s per User ID each), so
they never spend the margin calls' budget. We keep to that limit on each endpoint, shared by the
instances (``READS_PER_WINDOW``): at the margin calls' full rate every send can still be read
before it. A read that finds no room is skipped, never waited for: no read may hold up a send
or a reply.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from webhook_app.clock import SYSTEM_CLOCK, Clock
from webhook_app.okx.client import BOT_DETAILS_PATH, BOT_EVENTS_PATH, BOTS_PENDING_PATH, POSITIONS_PATH, OkxClient
from webhook_app.okx.errors import OkxError
from webhook_app.okx.orders import BotDetails
from webhook_app.okx.records import BotEvent, BotSnapshot
from webhook_app.workers.bot_trading import TradingReadings
from webhook_app.workers.pacing import MemoryPacer, Pacer

log = logging.getLogger("webhook_app")

READS_PER_WINDOW, READ_WINDOW = 20, 2.0  # OKX's limit for each read endpoint
NOT_SENDABLE = ("stopped", "stopping", "missing")  # OKX refuses a margin change for these (51291, 51288, 51293)
MAX_DETAIL_READS_PER_REFRESH = 5  # bots outside OKX's active list (or their TP/SL), read one by one
# Half the positions endpoint's budget at most in one refresh: the rest stays for the reads that
# settle a sent order's outcome. Bots are few; with more, the longest unread go first.
MAX_POSITION_READS_PER_REFRESH = READS_PER_WINDOW // 2


class BotWatch:
    def __init__(
        self,
        client: OkxClient | None,
        *,
        instance: str,
        known_ids: Callable[[], Iterable[str]],
        refresh_every: float = 30.0,
        max_age: float = 90.0,
        read_timeout: float = 2.0,
        pacer_for: Callable[[str], Pacer | None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        """``client`` None: dry-run without credentials, nothing is read. ``pacer_for(path)``: the
        shared budget for one endpoint (the journal's, across instances), or None for one in memory.
        ``clock``: the reads' ages, the refresh pace and the in-memory budgets."""
        self.client = client
        self.instance = instance
        self.known_ids = known_ids
        self.refresh_every = refresh_every
        self.max_age = max_age
        self.read_timeout = read_timeout
        self._clock = clock
        self._pacers = {
            path: (pacer_for(path) if pacer_for else None) or MemoryPacer(READS_PER_WINDOW, READ_WINDOW, clock=clock)
            for path in (BOT_DETAILS_PATH, BOTS_PENDING_PATH, BOT_EVENTS_PATH, POSITIONS_PATH)
        }
        self._latest: dict[str, tuple[BotSnapshot, float]] = {}  # algoId -> (snapshot, when read, our clock)
        self.trading = TradingReadings(clock)
        # A reading younger than this is fresh: a refresh right after another reads it not again.
        self._fresh = refresh_every / 2
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reads ------------------------------------------------------------------------------

    @property
    def details_pacer(self) -> Pacer:
        """The budget of reads of one bot (``snapshot_now``)."""
        return self._pacers[BOT_DETAILS_PATH]

    def snapshot_now(self, algo_id: str, timeout: float | None = None, slot=None) -> BotSnapshot | None:
        """The bot read now, or None when there is no room in the reads' budget or the read failed.
        ``slot``: one of ``details_pacer``'s, taken already; the caller ends it (else the read
        takes one and ends it)."""
        details = self._read(BOT_DETAILS_PATH, lambda t: self.client.bot_details(algo_id, timeout=t), timeout, slot)
        if details is None:
            return None
        self._keep([details])
        return details.snapshot

    def events_now(self, algo_id: str, timeout: float | None = None) -> list[BotEvent] | None:
        """The bot's event history (newest first), or None when it could not be read."""
        return self._read(BOT_EVENTS_PATH, lambda t: self.client.bot_events(algo_id, timeout=t), timeout)

    def refresh(self) -> None:
        """OKX's list of active bots (with their TP/SL where it gives them), then the known bots
        missing from it one by one (stopped or gone) and the TP/SL it did not give, then the
        positions of the bots not read lately."""
        running = self._read(BOTS_PENDING_PATH, lambda t: self.client.running_bot_details(timeout=t), None)
        if running is None:
            return
        listed = [details.snapshot.algo_id for details in running]
        with self._lock:
            seen = list(self._latest)  # a bot that left the active list has stopped, or is gone
        self._keep(running)
        watched = list(dict.fromkeys([*self.known_ids(), *seen, *listed]))
        unlisted = [a for a in watched if a not in listed]
        untold = [d.snapshot.algo_id for d in running if d.exit_setting is None]
        untold = [a for a in untold if not self.trading.exit_fresh(a, self._fresh)]
        for algo_id in [*unlisted, *untold][:MAX_DETAIL_READS_PER_REFRESH]:
            self.snapshot_now(algo_id)
        self._read_positions(watched)

    def _read_positions(self, watched: list[str]) -> None:
        """The positions of the watched bots OKX knows, those not read lately, within the budget:
        at the first read that finds no room the others wait for the next refresh."""
        with self._lock:
            known = [a for a in watched if a in self._latest and self._latest[a][0].state != "missing"]
        for algo_id in self.trading.positions_due(known, self._fresh, MAX_POSITION_READS_PER_REFRESH):
            if not self._positions_now(algo_id):
                return

    def _positions_now(self, algo_id: str) -> bool:
        """Read the bot's positions and keep them, or keep that the read failed; False when the
        budget had no room (nothing read)."""
        failures: list[OkxError] = []
        read = self._read(
            POSITIONS_PATH, lambda t: self.client.bot_positions(algo_id, timeout=t), None, None, failures.append
        )
        if read is not None:
            self.trading.keep_positions(read)
        elif failures:
            self.trading.positions_failed(algo_id, self.client.okx_now(), _words(failures[0]))
        return read is not None or bool(failures)

    def _read(self, path: str, read: Callable, timeout: float | None, slot=None, failed: Callable | None = None):
        if self.client is None:
            return None
        pacer = self._pacers[path]
        taken = None
        if slot is None:  # else the caller took it, and ends it
            try:
                slots = pacer.acquire(self.instance, 1)
            except Exception as exc:  # the shared ledger is unreachable: no read, never a wait
                log.warning("bot read skipped: the reads' rate ledger is unavailable (%s)", exc)
                return None
            if not slots:
                log.info("bot read skipped: %s is at its read budget", path.rsplit("/", 1)[-1])
                return None
            taken = slots[0]
        try:
            return read(timeout or self.read_timeout)
        except OkxError as exc:
            log.warning("could not read %s from OKX: %s %s", path.rsplit("/", 1)[-1], exc.code or "", exc)
            if failed is not None:
                failed(exc)
            return None
        finally:
            try:
                if taken is not None:
                    pacer.release(taken)
            except Exception as exc:
                log.warning("could not record the end of a bot read in the rate ledger: %s", exc)

    def _keep(self, read: list[BotDetails]) -> None:
        """The bots' states, and their TP/SL where the read gave them."""
        now = self._clock()
        with self._lock:
            for details in read:
                self._latest[details.snapshot.algo_id] = (details.snapshot, now)
        for details in read:
            if details.exit_setting is not None:
                self.trading.keep_exit(details.snapshot.algo_id, details.exit_setting, details.snapshot.read_at)

    # -- answers ----------------------------------------------------------------------------

    def refusal(self, algo_id: str) -> str | None:
        """Why an alert for this bot must not be sent, from a read no older than ``max_age``; None
        when the bot is sendable or its state is not known freshly (a failed read never blocks)."""
        with self._lock:
            latest = self._latest.get(algo_id)
        if latest is None:
            return None
        snapshot, read = latest
        age = self._clock() - read
        if age > self.max_age or snapshot.state not in NOT_SENDABLE:
            return None
        state = "does not know this bot" if snapshot.state == "missing" else f"reports this bot {snapshot.state}"
        return f"OKX {state} (read {age:.0f} s ago): start it on OKX, or fix algoId"

    def table(self) -> list[dict]:
        """Each known bot's latest state for /status and the page (known ones first, then any other read)."""
        now = self._clock()
        with self._lock:
            latest = dict(self._latest)
        rows = []
        for algo_id in dict.fromkeys([*self.known_ids(), *latest]):
            snapshot, read = latest.get(algo_id, (None, None))
            row = {"algoId": algo_id, "state": None, "instIds": [], "readAgo": None}
            if snapshot is not None:
                row.update(snapshot.to_json())
                row["readAgo"] = round(now - read, 1)
                row["fresh"] = now - read <= self.max_age
            row.update(self.trading.to_json(algo_id))
            rows.append(row)
        return rows

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self.client is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="bot-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading; wait up to ``timeout`` for a read under way."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:  # the reads' times are on OKX's clock: learn its offset before the first one
            self.client.sync_clock()
        except OkxError as exc:
            log.warning("could not read OKX's time before reading the bots: %s", exc)
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:
                log.exception("reading the bots' states failed")
            self._clock.wait(self._stop, self.refresh_every)


def _words(exc: OkxError) -> str:
    """A failed read as the page says it: OKX's code and message (never a credential: OKX's words
    or the network's)."""
    text = str(exc)
    return f"{exc.code} {text}" if exc.code and exc.code not in text else text


class BotWatches(dict):
    """Each OKX account's BotWatch by account name: the bots of one account are read with its key."""

    def table(self) -> list[dict]:
        """Every account's bots (the account named on each row when there are several)."""
        rows = []
        for name, watch in self.items():
            rows.extend({"account": name, **row} if len(self) > 1 else row for row in watch.table())
        return rows

    def refresh(self) -> None:
        for watch in self.values():
            watch.refresh()

    def start(self) -> None:
        for watch in self.values():
            watch.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every account's reads, within ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        for watch in self.values():
            watch.stop(timeout=max(deadline - time.monotonic(), 0.0))
