"""The margin-balance call: its exact body, and what OKX's answer acknowledges."""

from __future__ import annotations

import dataclasses
import json

MARGIN_BALANCE_PATH = "/api/v5/tradingBot/signal/margin-balance"


@dataclasses.dataclass(frozen=True)
class MarginRequest:
    """The body of POST /api/v5/tradingBot/signal/margin-balance."""

    algo_id: str
    type: str  # "add" | "reduce"
    amt: str  # plain decimal string, never an exponent
    allow_reinvest: bool | None = None  # sent only when not None

    def body(self) -> dict:
        body = {"algoId": self.algo_id, "type": self.type, "amt": self.amt}
        if self.allow_reinvest is not None:
            body["allowReinvest"] = self.allow_reinvest
        return body

    def body_bytes(self) -> bytes:
        """The exact bytes that are signed and sent."""
        return json.dumps(self.body(), separators=(",", ":")).encode()


def acknowledged_algo_id(payload: dict, sent: str) -> str:
    """The algoId OKX echoed in ``data[0]``, or the one sent. OKX said "0", so the change is
    made whatever shape ``data`` has; its shape never turns a success into anything else."""
    data = payload.get("data")
    first = data[0] if isinstance(data, list) and data else None
    echoed = first.get("algoId") if isinstance(first, dict) else None
    return echoed if isinstance(echoed, str) and echoed else sent
