"""Is this service ready to move money? Checks the OKX key, region, clock and bots, and the
journal, each with a hint naming the setting to fix. ``flask --app webhook_app check`` runs
them once; ``/readyz`` answers from results refreshed in the background, so no visitor can
spend OKX's rate budget. The bots are read on the ledger the reads before sends use
(``BotReads``), within a share of it that leaves the sends' reads their room."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping

from webhook_app.clock import SYSTEM_CLOCK, Clock
from webhook_app.config import Config
from webhook_app.journal import AlertLog, JournalUnavailable
from webhook_app.okx.client import ACCOUNT_CONFIG_PATH, BOT_DETAILS_PATH, SERVER_TIME_PATH, OkxClient
from webhook_app.okx.errors import OkxError, OkxNotExecuted, OkxRefused, OkxUnreachable
from webhook_app.workers.bots import READ_WINDOW, READS_PER_WINDOW
from webhook_app.workers.pacing import MemoryPacer, Pacer

log = logging.getLogger("webhook_app")

MAX_CLOCK_OFFSET = 5.0  # seconds; OKX refuses beyond 30
REFRESH_EVERY = 55.0  # seconds: results are never older than a minute, OKX is asked once a minute at most
# Readiness reads a bot only while at least this share of the bot reads' budget stays free: the rest
# is the reads before sends'. Beyond it the reads wait for room (spread), for at most SPREAD_FOR seconds
# per account and round; a bot not read by then keeps its last answer.
READ_SHARE = 0.5
SPREAD_FOR = 20.0
BOT_HINTS = {  # formatted with the variable that lists the account's bots (ALLOWED_ALGO_IDS, OKX_<NAME>_ALGO_IDS)
    "51291": "the bot does not exist or has stopped: check {bots} and the bot on OKX",
    "51293": "the bot does not exist: check {bots} (the algo ID of a signal bot of this account)",
    "51289": "the bot's configuration does not exist: check {bots}",
}


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    account: str = ""  # the OKX account checked; "" for the journal

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}" + (f" -> {self.hint}" if self.hint else "")


class BotReads:
    """Readiness's reads of the bots, each on a slot of its account's bot-reads ledger (``pacers``:
    the one the reads before sends use, shared by the instances where the journal is). A read is
    taken only while ``READ_SHARE`` of that budget stays free; when it does not, the read waits
    for room until the round's deadline, and past it (or when the ledger cannot be asked, or OKX
    said it was busy) the bot keeps its last known answer: a skipped read never fails a bot."""

    def __init__(
        self,
        pacers: Mapping[str, Pacer] | None = None,
        instance: str = "readiness",
        clock: Clock = SYSTEM_CLOCK,
        spread_for: float = SPREAD_FOR,
    ):
        self.pacers = dict(pacers or {})
        self.instance, self.clock, self.spread_for = instance, clock, spread_for
        self.last: dict[tuple[str, str], Check] = {}  # (account, algoId) -> the last check that read the bot
        self.stopping = threading.Event()

    def deadline(self) -> float:
        """When a round of one account's reads stops waiting for room (this clock)."""
        return self.clock() + self.spread_for

    def check(self, client: OkxClient, account: str, algo_id: str, bots_variable: str, until: float) -> Check:
        """The bot's check from a read on the ledger, or its last answer when no read could be made."""
        taken = self._slot(account, until)
        if taken is None:
            return self._unread(account, algo_id, "the bot reads' rate budget was in use by sends")
        pacer, slot = taken
        try:
            check = _bot(client, algo_id, bots_variable)
        finally:
            try:
                pacer.release(slot)
            except Exception as exc:
                log.warning("could not record the end of a readiness bot read in the rate ledger: %s", exc)
        if check is None:
            return self._unread(account, algo_id, "OKX did not answer for the bot (its rate limit, or busy)")
        self.last[(account, algo_id)] = check
        return check

    def _slot(self, account: str, until: float):
        """(pacer, slot) once the account's ledger has room within the readiness share; None at ``until``."""
        pacer = self.pacers.get(account)
        if pacer is None:  # no ledger given (a dry run with a key): one of our own
            pacer = self.pacers[account] = MemoryPacer(READS_PER_WINDOW, READ_WINDOW, clock=self.clock)
        while True:
            try:
                if pacer.busy() + 1 <= pacer.limit * READ_SHARE and (slots := pacer.acquire(self.instance, 1)):
                    return pacer, slots[0]
            except Exception as exc:  # the shared ledger is unreachable: no read, never one beside it
                log.warning("readiness bot read skipped: the reads' rate ledger is unavailable (%s)", exc)
                return None
            left = until - self.clock()
            if left <= 0 or self.clock.wait(self.stopping, min(pacer.window / 10, left)):
                return None

    def _unread(self, account: str, algo_id: str, why: str) -> Check:
        last = self.last.get((account, algo_id))
        if last is not None:
            return dataclasses.replace(last, detail=f"{last.detail} (at the last read; not read again: {why})")
        return Check(f"bot {algo_id}", True, f"not read yet: {why}; it is read at a later check")


def run_checks(
    config: Config, clients: Mapping[str, OkxClient], journal: AlertLog, reads: BotReads | None = None
) -> list[Check]:
    """Each OKX account's checks (named after the account when there are several), then the journal's.
    ``reads``: the bots' reads and their ledgers (None: a ledger in memory, as for a one-off check)."""
    if not config.okx.has_credentials:  # a dry run without a key never talks to OKX
        return [
            Check("okx", True, "dry-run without OKX credentials: OKX is not contacted"),
            _journal(journal),
            _client_certs(config),
        ]
    reads = reads if reads is not None else BotReads()
    several = len(config.okx.accounts) > 1
    checks = []
    for account in config.okx.accounts:
        bots = sorted(account.algo_ids), account.variable("algo_ids")
        for check in _account_checks(clients[account.name], *bots, reads, account.name):
            name = f"{account.name} {check.name}" if several else check.name
            checks.append(dataclasses.replace(check, name=name, account=account.name))
    checks.append(_journal(journal))
    checks.append(_client_certs(config))
    return checks


def _account_checks(
    client: OkxClient, algo_ids: list[str], bots_variable: str, reads: BotReads, account: str
) -> list[Check]:
    clock = _clock(client)  # first: it also corrects the offset the signed reads below use
    key = _api_key(client)
    checks = [clock, key]
    until = reads.deadline()
    for algo_id in algo_ids:
        if key.ok:
            checks.append(reads.check(client, account, algo_id, bots_variable, until))
        elif key.detail.startswith(_KEY_NOT_CHECKED):  # OKX not reached, or busy: no verdict on the key
            checks.append(Check(f"bot {algo_id}", False, "not checked: the API key could not be checked", key.hint))
        else:  # it could only fail for the key's reason, and send the operator after the wrong setting
            checks.append(Check(f"bot {algo_id}", False, "not checked: the API key was refused", "fix the key first"))
    return checks


_KEY_NOT_CHECKED = ("could not reach OKX", "OKX did not check the key", "no usable answer from OKX")
_UNREACHABLE_HINT = "check OKX_BASE_URL and this server's network (HTTPS_PROXY if one is needed)"


def _clock(client: OkxClient) -> Check:
    try:
        offset = client.sync_clock()
    except OkxError:
        return Check(
            "okx_reachable",
            False,
            f"no answer from {client.base_url}{SERVER_TIME_PATH}",
            _UNREACHABLE_HINT,
        )
    if abs(offset) > MAX_CLOCK_OFFSET:
        return Check(
            "okx_reachable",
            False,
            f"reachable, but this server's clock is {offset:+.3f} s off OKX's",
            "fix this server's clock (NTP); OKX refuses requests more than 30 s off",
        )
    return Check("okx_reachable", True, f"reachable, clock offset {offset:+.3f} s")


def _api_key(client: OkxClient) -> Check:
    try:
        payload = client.get_signed(ACCOUNT_CONFIG_PATH)
    except OkxUnreachable:  # not an answer from OKX: nothing is known about the key
        return Check("api_key", False, f"could not reach OKX at {client.base_url}", _UNREACHABLE_HINT)
    except OkxNotExecuted as exc:  # busy, rate-limited, or something in front of OKX: not a verdict on the key
        detail = f"OKX did not check the key: {exc.code or ''} {exc.message}".strip()
        return Check("api_key", False, detail, exc.hint or "try again shortly")
    except OkxError as exc:
        hint = client.hint(exc.code) or "check the OKX API key settings"
        if not isinstance(exc, OkxRefused):  # OkxOutcomeUnknown: a 5xx or an unreadable answer
            return Check("api_key", False, f"no usable answer from OKX: {exc.code or ''} {exc.message}".strip(), hint)
        return Check("api_key", False, f"OKX refused the key: {exc.code or ''} {exc.message}".strip(), hint)
    data = payload.get("data")
    account = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    permissions = {p.strip() for p in str(account.get("perm", "")).split(",") if p.strip()}
    if "trade" not in permissions:
        return Check(
            "api_key",
            False,
            f"the key's permissions are {', '.join(sorted(permissions)) or 'unknown'}",
            "give the API key the Trade permission (margin-balance needs it)",
        )
    mode = "demo" if client.demo else "live"
    granted = ", ".join(sorted(permissions))
    return Check("api_key", True, f"key, signature and passphrase accepted ({mode}, permissions {granted})")


def _bot(client: OkxClient, algo_id: str, bots_variable: str) -> Check | None:
    """The bot's check from one read of it; None when OKX did not answer for it (50011, busy)."""
    name = f"bot {algo_id}"
    try:
        payload = client.get_signed(BOT_DETAILS_PATH, {"algoOrdType": "contract", "algoId": algo_id})
    except OkxUnreachable:
        return Check(name, False, f"could not reach OKX at {client.base_url}", _UNREACHABLE_HINT)
    except OkxNotExecuted:  # rate-limited or busy: no word on the bot, never "check ALGO_IDS"
        return None
    except OkxError as exc:
        return Check(
            name,
            False,
            f"OKX said {exc.code} {exc.message}".strip(),
            BOT_HINTS.get(exc.code, "check {bots}").format(bots=bots_variable),
        )
    data = payload.get("data")
    bot = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else None
    if bot is None:
        return Check(name, False, "OKX knows no such bot", BOT_HINTS["51293"].format(bots=bots_variable))
    if bot.get("state") != "running":
        return Check(
            name,
            False,
            f"the bot is {bot.get('state') or 'in an unknown state'}, not running",
            f"start the bot on OKX, or remove it from {bots_variable}",
        )
    return Check(name, True, "running")


def _journal(journal: AlertLog) -> Check:
    try:
        journal.prune(before=0.0)  # a write transaction that deletes nothing
    except JournalUnavailable as exc:
        return Check("journal", False, f"cannot write: {exc}", "check DATABASE_URL and the database's disk")
    return Check("journal", True, "writable")


def _client_certs(config: Config) -> Check:
    """Says whether TradingView's client certificate is required, and where it is checked (the
    settings were checked at start: this never fails)."""
    return Check("client_certificates", True, config.tls.describe())


class Readiness:
    """The latest results, refreshed by a background thread; never checked on a visitor's request."""

    def __init__(
        self,
        config: Config,
        clients: Mapping[str, OkxClient],
        journal: AlertLog,
        every: float = REFRESH_EVERY,
        on_change=None,
        reads: BotReads | None = None,
    ):
        """``reads``: the bots' reads on the ledger of the reads before sends (None: one in memory)."""
        self.config, self.clients, self.journal, self.every = config, clients, journal, every
        self.reads = reads if reads is not None else BotReads()
        self._on_change = on_change  # told (ready, failing lines) when readiness turns
        self.results: list[Check] | None = None
        self.checked_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="readiness", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the checks; wait up to ``timeout`` for one under way."""
        self._stop.set()
        self.reads.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def refresh(self) -> list[Check]:
        results = run_checks(self.config, self.clients, self.journal, self.reads)
        first = self.results is None
        was_ready = self.ready
        self.results, self.checked_at = results, time.time()
        if first or was_ready != self.ready:
            level = logging.INFO if self.ready else logging.WARNING
            log.log(level, "readiness: %s", "; ".join(check.line() for check in results))
            if self._on_change is not None:
                self._on_change(self.ready, [check.line() for check in results if not check.ok])
        return results

    @property
    def ready(self) -> bool:
        """The journal passes, and so does every check of at least one account: an account that
        fails is named in the results and its alerts fail, but it never takes the others down."""
        if not self.results:
            return False
        accounts: dict[str, bool] = {}
        for check in self.results:
            if not check.account and not check.ok:
                return False
            if check.account:
                accounts[check.account] = accounts.get(check.account, True) and check.ok
        return not accounts or any(accounts.values())

    def _loop(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception:
                log.exception("readiness check failed")
            if self._stop.wait(self.every):
                return
