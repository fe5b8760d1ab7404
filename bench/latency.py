"""Latency a trader feels: from a webhook request's arrival at the service to the first byte of its
signed request at the stand-in OKX, beside the service's own reply time for the same alerts.

The client stamps time.monotonic() just before it writes each request (its connection already open);
the stand-in, in its own process, stamps time.monotonic() when it has read the request line
(``Received.first_line_at``, listed at /_stand_in/arrivals). On Linux time.monotonic() is
CLOCK_MONOTONIC, one clock for every process, so the two stamps compare. Each OKX request is matched
to its alert by its amount, unique within a run.

The service runs as deployed with OKX's own limits (20 margin requests and 20 bot reads per 2 s), and
both cases stay inside them, so what is measured is the path of an alert, not the pacing:

- one client, one alert at a time, each sent once the previous one was answered and at least
  ``SEQUENTIAL_GAP`` after it was sent, all to one bot (a strategy's alerts);
- bursts of 20 alerts written at once, one to each of 20 bots (one bot's alerts would go one after
  another, by its order), ``BURST_GAP`` apart so that each burst finds OKX's 2-s windows empty.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time

from bench.harness import RESULTS, PgSchema, StandIn, service_env, start_service, temp_dir
from tests.conftest import WEBHOOK_SECRET
from tests.okx_stand_in import BOT_DETAILS_PATH, MARGIN_PATH

SEQUENTIAL_GAP = 0.15  # s between sends: under 10 a second, inside both 20-per-2-s budgets
BURST_SIZE = 20  # OKX's 20 margin requests per 2 s
BURST_GAP = 3.0  # s from a burst's last OKX request to the next burst: past the 2-s window
FIRST_BOT = 581628185981813760
WARM_UP = 5  # alerts sent first and not counted: the first connections and imports


@dataclasses.dataclass
class Posted:
    amount: str
    sent_at: float  # time.monotonic() just before the request was written
    replied_at: float  # ... once the whole reply was read
    status: int
    okx_at: float | None = None  # ... when the stand-in had read its signed request's first line


def alert_body(amount: int, bot: int, nonce: str) -> bytes:
    alert = {"secret": WEBHOOK_SECRET, "algoId": str(bot), "action": "add", "amount": str(amount)}
    return json.dumps({**alert, "id": f"{nonce}-{amount}"}).encode()


def _request(body: bytes) -> bytes:
    return (
        b"POST /webhook HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


async def post_at_once(port: int, alerts: list[tuple[str, bytes]]) -> list[Posted]:
    """Open a connection per alert, then write every request in one go; (amount, body) each."""
    connections = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in alerts))
    sent = []
    for (_, writer), (_, body) in zip(connections, alerts, strict=True):
        sent.append(time.monotonic())
        writer.write(_request(body))

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, float]:
        status_line = await reader.readline()
        await reader.read()  # Connection: close, so up to EOF
        replied_at = time.monotonic()
        writer.close()
        return int(status_line.split()[1]), replied_at

    replies = await asyncio.gather(*(reply(reader, writer) for reader, writer in connections))
    return [
        Posted(amount, sent_at, replied_at, status)
        for (amount, _), sent_at, (status, replied_at) in zip(alerts, sent, replies, strict=True)
    ]


class Run:
    """One service and its stand-in OKX; amounts count up across the run, so each is one alert's."""

    def __init__(self, service, okx: StandIn, nonce: str):
        self.service, self.okx, self.nonce = service, okx, nonce
        self.next_amount = 1

    def alerts(self, bots: list[int]) -> list[tuple[str, bytes]]:
        amounts = range(self.next_amount, self.next_amount + len(bots))
        self.next_amount += len(bots)
        return [(str(amount), alert_body(amount, bot, self.nonce)) for amount, bot in zip(amounts, bots, strict=True)]

    def one_at_a_time(self, count: int) -> list[Posted]:
        posted = []
        for _ in range(count):
            started = time.monotonic()
            posted += asyncio.run(post_at_once(self.service.port, self.alerts([FIRST_BOT])))
            time.sleep(max(0.0, started + SEQUENTIAL_GAP - time.monotonic()))
        return self.matched(posted)

    def bursts(self, count: int) -> list[Posted]:
        posted = []
        for _ in range(count):
            burst = asyncio.run(
                post_at_once(self.service.port, self.alerts(list(range(FIRST_BOT, FIRST_BOT + BURST_SIZE))))
            )
            posted += self.matched(burst)
            time.sleep(BURST_GAP)
        return posted

    def matched(self, posted: list[Posted], wait: float = 10.0) -> list[Posted]:
        """Each alert with the arrival of its margin request, waiting up to ``wait`` s for the last."""
        by_amount = {p.amount: p for p in posted}
        deadline = time.monotonic() + wait
        while True:
            for arrival in self.okx.arrivals():
                amount = json.loads(arrival["body"]).get("amt") if arrival["path"] == MARGIN_PATH else None
                if amount in by_amount and by_amount[amount].okx_at is None:  # the first, if retried
                    by_amount[amount].okx_at = arrival["first_line_at"]
            if all(p.okx_at is not None for p in posted) or time.monotonic() > deadline:
                return posted
            time.sleep(0.1)

    def bot_reads(self) -> int:
        return self.okx.stats()["reads"][BOT_DETAILS_PATH]


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value at or above a fraction ``q`` of them."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(posted: list[Posted], bot_reads: int) -> dict:
    to_okx = [(p.okx_at - p.sent_at) * 1000 for p in posted if p.okx_at is not None]
    replies = [(p.replied_at - p.sent_at) * 1000 for p in posted]
    result = {"alerts": len(posted), "not_sent": len(posted) - len(to_okx), "bot_reads": bot_reads}
    result["not_200"] = sum(p.status != 200 for p in posted)
    for name, values in (("to_okx", to_okx), ("reply", replies)):
        if values:
            result |= {f"{name}_{q}_ms": percentile(values, f) for q, f in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))}
    return result


def latency(args, database_url: str | None = None, label: str = "SQLite") -> None:
    print(
        f"\n## latency a trader feels, {label} journal: request written to the service -> first line of its "
        "signed request read at the stand-in OKX; and -> the service's reply (ms)"
    )
    okx = StandIn(rate_limit=20)  # OKX's own limit, as the service's default pacing expects
    extra = {"DATABASE_URL": database_url} if database_url else {}
    service = start_service(service_env(temp_dir("bench-latency-"), okx, **extra))
    run = Run(service, okx, f"latency-{label}-{time.time()}")
    try:
        run.one_at_a_time(WARM_UP)
        time.sleep(BURST_GAP)
        cases = {}
        reads = run.bot_reads()
        sequential = run.one_at_a_time(args.latency_alerts)
        cases[f"one client, one alert every {SEQUENTIAL_GAP:g} s or slower, one bot"] = summary(
            sequential, run.bot_reads() - reads
        )
        time.sleep(BURST_GAP)
        reads = run.bot_reads()
        burst = run.bursts(args.latency_bursts)
        cases[f"{args.latency_bursts} bursts of {BURST_SIZE} at once, one alert per bot, {BURST_GAP:g} s apart"] = (
            summary(burst, run.bot_reads() - reads)
        )
    finally:
        service.terminate()
        okx.stop()
    RESULTS["latency_pg" if database_url else "latency"] = cases
    print_table(cases)


def print_table(cases: dict) -> None:
    print(
        "| case | alerts | to OKX p50 | p99 | max | reply p50 | p99 | max | bot reads | not sent | not 200 |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for case, row in cases.items():
        figures = " | ".join(
            f"{row.get(f'{name}_{q}_ms', math.nan):.2f}" for name in ("to_okx", "reply") for q in ("p50", "p99", "max")
        )
        print(
            f"| {case} | {row['alerts']} | {figures} | {row['bot_reads']} | {row['not_sent']} | {row['not_200']} |",
            flush=True,
        )


def latency_pg(args) -> None:
    """The same with the journal in a PostgreSQL schema of its own (BENCH_DATABASE_URL)."""
    schema = PgSchema()
    try:
        latency(args, schema.url, "PostgreSQL")
    finally:
        schema.drop()
