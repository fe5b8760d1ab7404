"""Each watched bot's trading as OKX last reported it: its open positions and its TP/SL, each with
when OKX reported it, and the last failed read of its positions. Kept by the BotWatch, shown by
/status and the operator page; a failed read never erases a reading, it is said beside it."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable

from webhook_app.clock import Clock
from webhook_app.okx.orders import BotPositions, ExitSetting
from webhook_app.okx.records import okx_timestamp


@dataclasses.dataclass(frozen=True)
class Reading:
    """What OKX reported (``BotPositions`` or ``ExitSetting``), ``read_at`` on OKX's clock (epoch
    seconds), ``kept_at`` on ours (for its age)."""

    value: BotPositions | ExitSetting
    read_at: float
    kept_at: float


@dataclasses.dataclass(frozen=True)
class Failure:
    """A read that failed: when (OKX's clock, and ours) and OKX's or the network's words."""

    at: float
    kept_at: float
    error: str


class TradingReadings:
    """The latest positions and TP/SL reading of each bot, thread-safe."""

    def __init__(self, clock: Clock):
        self._clock = clock
        self._positions: dict[str, Reading] = {}
        self._failures: dict[str, Failure] = {}  # the positions read failed since the reading kept
        self._exits: dict[str, Reading] = {}
        self._lock = threading.Lock()

    def keep_positions(self, reading: BotPositions) -> None:
        with self._lock:
            self._positions[reading.algo_id] = Reading(reading, reading.read_at, self._clock())
            self._failures.pop(reading.algo_id, None)

    def positions_failed(self, algo_id: str, at: float, error: str) -> None:
        """The read failed at ``at`` (OKX's clock): the last reading stays, said to be that old."""
        with self._lock:
            self._failures[algo_id] = Failure(at, self._clock(), error)

    def keep_exit(self, algo_id: str, exit_setting: ExitSetting, read_at: float) -> None:
        with self._lock:
            self._exits[algo_id] = Reading(exit_setting, read_at, self._clock())

    def exit_fresh(self, algo_id: str, max_age: float) -> bool:
        """Its TP/SL was read less than ``max_age`` seconds ago."""
        with self._lock:
            reading = self._exits.get(algo_id)
        return reading is not None and self._clock() - reading.kept_at < max_age

    def positions_due(self, algo_ids: Iterable[str], max_age: float, most: int) -> list[str]:
        """Up to ``most`` of ``algo_ids`` whose positions were last tried ``max_age`` seconds ago or
        more, the never tried first, then the longest ago (a bot that keeps failing takes its turn,
        never the others')."""
        now = self._clock()
        with self._lock:
            tried = {algo_id: self._last_try(algo_id) for algo_id in dict.fromkeys(algo_ids)}
        due = [algo_id for algo_id, at in tried.items() if at is None or now - at >= max_age]
        due.sort(key=lambda algo_id: -1.0 if tried[algo_id] is None else tried[algo_id])  # stable: given order
        return due[:most]

    def _last_try(self, algo_id: str) -> float | None:
        times = [kept.kept_at for kept in (self._positions.get(algo_id), self._failures.get(algo_id)) if kept]
        return max(times, default=None)

    def to_json(self, algo_id: str) -> dict:
        """``positions``: null until a read was tried, else ``open`` (null until one succeeded),
        ``readAt`` (OKX's clock), ``readAgo`` (seconds) and ``failed`` (the read tried since, when it
        failed: ``at``, ``ago``, ``error``). ``tpsl``: null until read, else exitSettingParam's
        fields as OKX wrote them with ``readAt`` and ``readAgo``."""
        now = self._clock()
        with self._lock:
            positions, failure, exit_setting = (
                self._positions.get(algo_id),
                self._failures.get(algo_id),
                self._exits.get(algo_id),
            )
        shown = {"positions": None, "tpsl": None}
        if positions is not None or failure is not None:
            shown["positions"] = {
                "open": None if positions is None else [p.to_json() for p in positions.value.open],
                **_when(positions, now),
                "failed": None
                if failure is None
                else {"at": okx_timestamp(failure.at), "ago": round(now - failure.kept_at, 1), "error": failure.error},
            }
        if exit_setting is not None:
            shown["tpsl"] = {**exit_setting.value.to_json(), **_when(exit_setting, now)}
        return shown


def _when(reading: Reading | None, now: float) -> dict:
    if reading is None:
        return {"readAt": None, "readAgo": None}
    return {"readAt": okx_timestamp(reading.read_at), "readAgo": round(now - reading.kept_at, 1)}
