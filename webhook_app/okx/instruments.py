"""OKX's public list of perpetual swaps (GET /api/v5/public/instruments?instType=SWAP&instId=...):
what one contract of an instrument is worth and the steps its size moves in. An unauthenticated
read, one instrument at a time, each kept an hour (``KEEP_FOR``) and then read again; a read
that fails is never answered from figures older than that."""

from __future__ import annotations

import dataclasses
import threading
from decimal import Decimal, InvalidOperation

import requests

from webhook_app.clock import SYSTEM_CLOCK, Clock

INSTRUMENTS_PATH = "/api/v5/public/instruments"
KEEP_FOR = 3600.0  # seconds an instrument's figures are used before they are read again
UNKNOWN_INSTRUMENT_CODE = "51001"  # "Instrument ID ... doesn't exist"


@dataclasses.dataclass(frozen=True)
class ContractSpec:
    """One SWAP as OKX lists it: a contract is worth ``ct_val`` x ``ct_mult`` of ``ct_val_ccy``
    (BTC for BTC-USDT-SWAP, USD for the inverse BTC-USD-SWAP); a size is a whole number of
    ``lot_sz`` contracts, at least ``min_sz``."""

    inst_id: str
    ct_val: Decimal
    ct_mult: Decimal
    ct_val_ccy: str
    lot_sz: Decimal
    min_sz: Decimal


class InstrumentsUnavailable(Exception):
    """OKX's list of instruments could not be read now; ``str()`` says why (never a secret: the read has none)."""


class UnknownInstrument(Exception):
    """OKX lists no perpetual swap with that ID."""


class InstrumentReader:
    """The swaps of one OKX site (``base_url``), read when first asked for and again after ``keep_for``."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: tuple[float, float] = (1.0, 1.5),
        keep_for: float = KEEP_FOR,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.keep_for = keep_for
        self.clock = clock
        self.session = requests.Session()
        self._kept: dict[str, tuple[float, ContractSpec]] = {}  # instId -> (read at, its figures)
        self._lock = threading.Lock()

    def spec(self, inst_id: str) -> ContractSpec:
        """The swap's figures: kept ones younger than ``keep_for``, else read now. Raises
        ``UnknownInstrument`` or ``InstrumentsUnavailable``."""
        with self._lock:
            kept = self._kept.get(inst_id)
        if kept is not None and self.clock.monotonic() - kept[0] < self.keep_for:
            return kept[1]
        read_at = self.clock.monotonic()
        spec = self._read(inst_id)
        with self._lock:
            self._kept[inst_id] = (read_at, spec)
        return spec

    def close(self) -> None:
        self.session.close()

    def _read(self, inst_id: str) -> ContractSpec:
        try:
            response = self.session.get(
                self.base_url + INSTRUMENTS_PATH,
                params={"instType": "SWAP", "instId": inst_id},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise InstrumentsUnavailable(f"could not reach {self.base_url}: {type(exc).__name__}") from None
        try:
            payload = response.json()
            code, message, rows = str(payload["code"]), str(payload.get("msg", "")), payload.get("data")
        except (ValueError, KeyError, TypeError):
            raise InstrumentsUnavailable(f"OKX answered HTTP {response.status_code} without an OKX body") from None
        if code == UNKNOWN_INSTRUMENT_CODE:
            raise UnknownInstrument(inst_id)
        if code != "0":
            raise InstrumentsUnavailable(f"OKX answered {code}{': ' + message if message else ''}")
        row = next((r for r in rows or [] if isinstance(r, dict) and r.get("instId") == inst_id), None)
        if row is None:
            raise UnknownInstrument(inst_id)
        return _spec_of(inst_id, row)


def _spec_of(inst_id: str, row: dict) -> ContractSpec:
    """The figures of one row of OKX's answer; one missing or not a positive decimal makes the read a failure."""
    figures = {}
    for name in ("ctVal", "lotSz", "minSz", "ctMult"):
        text = row.get(name, "1" if name == "ctMult" else None)  # ctMult: 1 where OKX leaves it out
        try:
            figures[name] = Decimal(text)
        except (TypeError, ValueError, InvalidOperation):
            figures[name] = Decimal(0)
        if not (figures[name].is_finite() and figures[name] > 0):
            raise InstrumentsUnavailable(f"OKX listed {inst_id} without a usable {name}")
    currency = row.get("ctValCcy")
    if not isinstance(currency, str) or not currency:
        raise InstrumentsUnavailable(f"OKX listed {inst_id} without its ctValCcy")
    return ContractSpec(inst_id, figures["ctVal"], figures["ctMult"], currency, figures["lotSz"], figures["minSz"])
