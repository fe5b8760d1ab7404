"""Benchmarks: the receiver against the framework's floor and OKX's limit. Loopback only.

    bench/run            (installs what it needs, then runs this)
    python -m bench [--quick] [--sections pipeline,relay,bursts,memory,startup,pipeline_pg,relay_pg,bursts_pg,
                                latency,latency_pg]

The *_pg sections put the journal in PostgreSQL (BENCH_DATABASE_URL, by default the local
server's database "test", in a schema of their own that is dropped afterwards). pipeline_pg and
relay_pg compare against the durable floors: bench/bare_app.py committing one INSERT per alert
through a psycopg pool on the same server (another schema of its own), and for the relay also
posting to the stand-in. pipeline and relay (SQLite) compare against the bare floors, which keep nothing.
latency and latency_pg (bench/latency.py) time an alert from the webhook to its request at the stand-in OKX.

Starts the service exactly as deployed (the Procfile's gunicorn and gunicorn.conf.py), a stand-in
OKX in its own process that answers at once, and wrk as the load generator. Comparisons run side
by side, alternating, and report medians over rounds and the ratio. Every process it starts is
stopped and every temporary folder removed at the end, also on Ctrl-C, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.harness import (
    RESULTS,
    PgSchema,
    StandIn,
    run_steps,
    service_env,
    start_service,
    temp_dir,
    wrk,
)
from bench.latency import latency, latency_pg
from tests.conftest import WEBHOOK_SECRET
from tests.service_process import ServiceProcess


def side_by_side(name: str, a: tuple, b: tuple, levels, rounds: int, seconds: float) -> None:
    """a, b: (label, url, path). Alternates which runs first each round; medians and ratio a/b."""
    print(f"\n## {name}: {a[0]} vs {b[0]} (wrk, {seconds:g} s runs, median of {rounds} rounds)")
    print(
        f"{'clients':>7} | {a[0] + ' req/s':>18} {'p50 ms':>8} {'p99 ms':>8} | {b[0] + ' req/s':>18} "
        f"{'p50 ms':>8} {'p99 ms':>8} | {'ratio':>6} | {'errors a/b':>10}"
    )
    RESULTS[name] = {}
    for level in levels:
        runs = {a[0]: [], b[0]: []}
        for r in range(rounds):
            order = (a, b) if r % 2 == 0 else (b, a)
            for label, url, path in order:
                runs[label].append(wrk(url, path, level, seconds, f"{name}-{level}-{r}-{label}-{time.time()}"))
        med = {
            label: {k: statistics.median(x[k] for x in rs) for k in ("rps", "p50_ms", "p99_ms")}
            for label, rs in runs.items()
        }
        errors = "/".join(str(sum(x["errors"] for x in runs[label])) for label in (a[0], b[0]))
        ratio = med[a[0]]["rps"] / med[b[0]]["rps"]
        RESULTS[name][level] = {"medians": med, "ratio": ratio, "errors": errors}
        print(
            f"{level:>7} | {med[a[0]]['rps']:>18.0f} {med[a[0]]['p50_ms']:>8.2f} {med[a[0]]['p99_ms']:>8.2f} | "
            f"{med[b[0]]['rps']:>18.0f} {med[b[0]]['p50_ms']:>8.2f} {med[b[0]]['p99_ms']:>8.2f} | "
            f"{ratio:>6.2f} | {errors:>10}",
            flush=True,
        )


def start_floor(okx: StandIn | None = None, floor_url: str | None = None) -> ServiceProcess:
    """bench.bare_app under the same gunicorn.conf.py, whose pre-start check wants a valid configuration
    (its own SQLite journal, which the floor never touches). ``floor_url``: the durable routes' database."""
    extra = {"BARE_DATABASE_URL": floor_url} if floor_url else {}
    return start_service(service_env(temp_dir("bench-bare-"), okx, **extra), app_spec="bench.bare_app:app")


def pipeline(args, database_url: str | None = None, label: str = "SQLite", floor_url: str | None = None) -> None:
    folder = temp_dir("bench-pipeline-")
    extra = {"DATABASE_URL": database_url} if database_url else {}
    service = start_service(service_env(folder, DRY_RUN="1", **extra))
    bare = start_floor(floor_url=floor_url)
    floor = ("durable floor", bare.url, "/durable") if floor_url else ("bare flask", bare.url, "/webhook")
    try:
        cpu0 = service.worker_cpu_seconds()
        side_by_side(
            f"pipeline, {label} journal (dry-run: auth, validation, mapping, journal)",
            ("service", service.url, "/webhook"),
            floor,
            args.levels,
            args.rounds,
            args.seconds,
        )
        print(f"service worker CPU during the runs: {service.worker_cpu_seconds() - cpu0:.1f} s")
    finally:
        service.terminate()
        bare.terminate()


def relay(args, database_url: str | None = None, label: str = "SQLite", floor_url: str | None = None) -> None:
    okx = StandIn(rate_limit=1_000_000)
    folder = temp_dir("bench-relay-")
    extra = {"DATABASE_URL": database_url} if database_url else {}
    service = start_service(service_env(folder, okx, OKX_RATE_LIMIT="10000", **extra))
    bare = start_floor(okx, floor_url)
    floor = ("durable relay", bare.url, "/durable-relay") if floor_url else ("bare relay", bare.url, "/relay")
    try:
        side_by_side(
            f"relay, {label} journal (signed and forwarded to the stand-in OKX)",
            ("service", service.url, "/webhook"),
            floor,
            args.levels,
            args.rounds,
            args.seconds,
        )
        if database_url:
            print(f"  {_roads(database_url)}")
    finally:
        service.terminate()
        bare.terminate()
        okx.stop()


def _roads(database_url: str) -> str:
    """How the relayed alerts went: sent at once (claimed as journaled) or through the dispatcher's queue."""
    with psycopg.connect(database_url, autocommit=True) as db:
        total, at_once = db.execute(
            "SELECT (SELECT count(*) FROM alerts), "
            "(SELECT count(*) FROM alert_events WHERE kind = 'claimed' AND detail LIKE '%at receipt%')"
        ).fetchone()
    return f"alerts relayed: {total}, sent at once: {at_once}, through the queue: {total - at_once}"


def _with_pg(section):
    """The section with the service's journal in one schema and the durable floor's table in another."""

    def run(args) -> None:
        schema = PgSchema()
        try:
            floor_schema = PgSchema()
            try:
                section(args, schema.url, "PostgreSQL", floor_schema.url)
            finally:
                floor_schema.drop()
        finally:
            schema.drop()

    return run


async def _post(port: int, body: bytes) -> tuple[int, float]:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /webhook HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    await writer.drain()
    status_line = await reader.readline()
    await reader.read()
    writer.close()
    return int(status_line.split()[1]), time.monotonic() - started


async def _burst(ports: list[int], size: int, nonce: str, bots: int) -> list[tuple[int, float]]:
    # Spread over ``bots`` bots: one bot's alerts go one at a time (its order), different bots side by side.
    bodies = [
        json.dumps(
            {
                "secret": WEBHOOK_SECRET,
                "algoId": str(581628185981813760 + i % bots),
                "action": "add",
                "amount": str(i + 1),
                "id": f"{nonce}-{i}",
            }
        ).encode()
        for i in range(size)
    ]
    return await asyncio.gather(*(_post(ports[i % len(ports)], body) for i, body in enumerate(bodies)))


def bursts(args, two: bool = False) -> None:
    where = "two instances on one PostgreSQL journal, alerts alternating" if two else "one instance, SQLite"
    print(f"\n## bursts with OKX's real pacing (20 requests / 2 s), stand-in answering at once; {where}")
    print(
        f"{'alerts':>6} {'bots':>4} {'round':>5} | {'slowest reply':>13} {'p99 reply':>9} | {'last sent':>9} "
        f"{'least':>6} {'ratio':>6} | {'max in 2s':>9} {'50011s':>6} {'sent once':>9} | replies"
    )
    key = "bursts_pg" if two else "bursts"
    RESULTS[key] = []
    # A trader's 20 bots firing together, and (last) one bot receiving the whole burst.
    for size, bots in [(size, 20) for size in args.bursts] + [(args.bursts[min(1, len(args.bursts) - 1)], 1)]:
        for r in range(args.burst_rounds):
            okx = StandIn(rate_limit=20)
            folder = temp_dir("bench-burst-")
            schema = PgSchema() if two else None
            extra = {"DATABASE_URL": schema.url} if schema else {}
            services = [start_service(service_env(folder, okx, MAX_LAG="3600", **extra))]
            if two:
                services.append(start_service(service_env(folder, okx, MAX_LAG="3600", **extra)))
            try:
                t0 = time.monotonic()
                replies = asyncio.run(_burst([s.port for s in services], size, f"burst-{size}-{bots}-{r}", bots))
                end = time.monotonic() + 2.2 * size / 20 + 30
                while (stats := okx.stats())["executed"] < size and time.monotonic() < end:
                    time.sleep(0.25)
                latencies = sorted(lat for _, lat in replies)
                last = max(stats["counted_times"]) - t0
                least = (math.ceil(size / 20) - 1) * 2.0
                once = sorted(int(a) for a in stats["amounts"]) == list(range(1, size + 1))
                codes = {c: [s for s, _ in replies].count(c) for c in sorted({s for s, _ in replies})}
                row = {
                    "size": size,
                    "bots": bots,
                    "slowest_s": latencies[-1],
                    "p99_s": latencies[int(0.99 * (size - 1))],
                    "last_sent_s": last,
                    "least_s": least,
                    "ratio": last / least,
                    "max_in_2s": stats["max_in_window"],
                    "rate_limited": stats["rate_limited"],
                    "sent_once": once,
                    "replies": codes,
                }
                RESULTS[key].append(row)
                print(
                    f"{size:>6} {bots:>4} {r + 1:>5} | {row['slowest_s']:>12.3f}s {row['p99_s']:>8.3f}s | "
                    f"{last:>8.2f}s {least:>5.0f}s {row['ratio']:>6.3f} | {row['max_in_2s']:>9} "
                    f"{row['rate_limited']:>6} {str(once):>9} | {codes}",
                    flush=True,
                )
            finally:
                for service in services:
                    service.terminate()
                okx.stop()
                if schema:
                    schema.drop()


def _fill_journal(path: str, count: int) -> None:
    """Pre-fill a journal with ``count`` finished alerts, as months of use would."""
    from webhook_app.journal.sqlite import SqliteJournal

    SqliteJournal(path).close()  # create the schema
    now = time.time()
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO alerts (received_at, dedup_key, algo_id, action, amount, request_body, expires_at, state, "
            "attempts, okx_code, finished_at, latency_ms) VALUES (?, ?, '581628185981813760', 'add', ?, ?, ?, 'ok', "
            "1, '0', ?, 12.5)",
            (
                (
                    now - 86400 * 20 + i,
                    f"fp:{i:064x}",
                    str(i % 97 + 1),
                    f'{{"algoId":"581628185981813760","type":"add","amt":"{i % 97 + 1}"}}',
                    now,
                    now,
                )
                for i in range(count)
            ),
        )


def _drive(service: ServiceProcess, total: int, label: str) -> None:
    """Send ``total`` distinct alerts through wrk at 8 connections (wrk runs for time, so loop)."""
    sent = 0
    while sent < total:
        result = wrk(service.url, "/webhook", 8, 3, f"{label}-{sent}-{time.time()}")
        sent += int(result["rps"] * 3)


def memory(args) -> None:
    print("\n## memory and growth (dry-run service, wrk at 8 connections)")
    folder = temp_dir("bench-memory-")
    db = f"{folder}/alerts.db"
    service = start_service(service_env(folder, DRY_RUN="1"))
    try:
        rss = {"start": service.worker_rss_mib()}
        for target in args.memory_steps:
            _drive(service, target - _count(db), f"mem{target}")
            rss[f"{_count(db)} alerts"] = service.worker_rss_mib()
        size = sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))
        per_alert = size / _count(db)
    finally:
        service.terminate()
    RESULTS["memory"] = {"rss_mib": rss, "journal_bytes_per_alert": per_alert}
    print("worker RSS: " + ", ".join(f"{k}: {v:.1f} MiB" for k, v in rss.items()))
    print(f"journal: {per_alert:.0f} bytes per alert (database and WAL)")

    empty_folder, full_folder = temp_dir("bench-empty-"), temp_dir("bench-full-")
    _fill_journal(f"{full_folder}/alerts.db", args.prefill)
    empty = start_service(service_env(empty_folder, DRY_RUN="1"))
    full = start_service(service_env(full_folder, DRY_RUN="1"))
    try:
        side_by_side(  # its header: "## time per alert, a journal of N alerts vs an empty one: full vs empty (...)"
            f"time per alert, a journal of {args.prefill:,} alerts vs an empty one",
            ("full", full.url, "/webhook"),
            ("empty", empty.url, "/webhook"),
            [8],
            args.rounds,
            args.seconds,
        )
    finally:
        empty.terminate()
        full.terminate()


def _count(db: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]


def startup(args) -> None:
    print("\n## start-up: Popen of the Procfile command to the first 200 on /healthz")
    times = []
    for _ in range(args.starts):
        folder = temp_dir("bench-start-")
        service = start_service(service_env(folder, DRY_RUN="1"))
        times.append(service.ready_after)
        service.terminate()
    RESULTS["startup_s"] = {"median": statistics.median(times), "all": times}
    print(f"median {statistics.median(times):.3f} s over {len(times)} starts ({', '.join(f'{t:.3f}' for t in times)})")


SECTIONS = {
    "pipeline": pipeline,
    "relay": relay,
    "bursts": bursts,
    "memory": memory,
    "startup": startup,
    "pipeline_pg": _with_pg(pipeline),
    "relay_pg": _with_pg(relay),
    "bursts_pg": lambda args: bursts(args, two=True),
    "latency": latency,
    "latency_pg": latency_pg,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of about a minute and a half: 1 s runs at 1 and 64 clients, bursts of 40",
    )
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is missing: run bench/run, or apt-get install -y wrk", file=sys.stderr)
        return 2
    # --quick: about a minute and a half on 2 cores (a smoke run: every section, each measured briefly).
    args.levels = [1, 64] if args.quick else [1, 8, 64]
    args.rounds, args.seconds = (1, 1) if args.quick else (3, 5)
    args.bursts, args.burst_rounds = ([40], 1) if args.quick else ([50, 200, 1000], 1)
    args.memory_steps = [1000] if args.quick else [10_000, 50_000]
    args.prefill = 5_000 if args.quick else 100_000
    args.starts = 3 if args.quick else 5
    args.latency_alerts, args.latency_bursts = (20, 2) if args.quick else (300, 10)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {_cpu_model()}")
    started = time.monotonic()
    if run_steps(SECTIONS, args.sections, args):
        return 130
    print(f"\nwall time: {time.monotonic() - started:.0f} s")
    out = Path(tempfile.gettempdir()) / "bench-results.json"
    out.write_text(json.dumps(RESULTS, indent=2, default=str))
    print(f"\nraw results: {out}")
    return 0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
