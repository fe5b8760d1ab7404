"""Where the worker's time goes: py-spy on the gunicorn worker while wrk drives it (bench/profile).

    bench/profile        (installs wrk, py-spy and the requirements, then runs this)
    python -m bench.profiling [--cases pipeline,relay_pg] [--seconds 10] [--clients 8] [--top 15]
                              [--modes gil] [--rate 200]

Starts the service as the benchmarks do (the Procfile's gunicorn, gunicorn.conf.py, 1 worker):
``pipeline`` dry-run on SQLite, ``relay_pg`` relaying to the stand-in OKX with the journal in
PostgreSQL (BENCH_DATABASE_URL, a schema of its own). Per case: a wrk run without the profiler for
req/s and the worker's CPU per alert (/proc/<pid>/stat utime+stime over the requests served), then a
second wrk run with ``py-spy record --format raw`` on the worker (not the master). Prints the top
functions (file:function) by own and by inclusive samples as Markdown tables, for each of
``--modes`` (a profiled run each; MODES says what each counts; by default only the thread holding
the GIL: the Python work).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.harness import (
    CHILDREN,
    PgSchema,
    StandIn,
    run_steps,
    service_env,
    start_service,
    temp_dir,
    wrk,
)
from tests.service_process import ServiceProcess

# py-spy's options per mode (--modes). gil: the thread holding the GIL, the Python work that one worker
# does one thread at a time (what bounds its throughput); a sample where none holds it (system calls,
# waits) counts nowhere. active: py-spy's default, every thread it judges not idle, often several per
# sample (runnable threads waiting for the GIL too). idle: every thread, waiting or not (wall time).
MODES = {"gil": ["--gil"], "active": [], "idle": ["--idle"]}
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# Frames at the bottom of nearly every stack of their thread: the threads' start, and the worker's main
# thread's way from ``python -m gunicorn`` through the arbiter to the worker's loop.
THREAD_PLUMBING = (
    "threading.py:",
    "concurrent/futures/thread.py:",
    "<frozen runpy>:",
    "gunicorn/__main__.py:",
    "gunicorn/app/",
    "gunicorn/arbiter.py:",
)


def py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"  # the venv's, when its bin is not on PATH
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is missing: run bench/profile, or pip install -r requirements-dev.txt")
    return found


def record(pid: int, seconds: int, rate: int, out: Path, mode: str) -> subprocess.Popen:
    """py-spy sampling process ``pid`` for ``seconds`` at ``rate`` Hz into ``out`` (collapsed stacks)."""
    argv = [py_spy(), "record", "-p", str(pid), "-d", str(seconds), "-r", str(rate), "--format", "raw", "-o", str(out)]
    process = subprocess.Popen(
        [*argv, *MODES[mode]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, which cleanup() kills
    )
    CHILDREN.append(process)
    return process


def function_of(frame: str) -> str:
    """``handle (gunicorn/workers/gthread.py:279)`` -> ``gunicorn/workers/gthread.py:handle``."""
    match = FRAME.match(frame)
    return f"{match['file']}:{match['function']}" if match else frame


def aggregate(raw: str) -> tuple[int, Counter, Counter]:
    """Total samples, and per function its own samples (the innermost frame) and its inclusive ones
    (anywhere in the stack, once per sample however deep it recurses)."""
    total, own, inclusive = 0, Counter(), Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        functions = [function_of(frame) for frame in stack.split(";")]
        total += int(count)
        own[functions[-1]] += int(count)
        for function in dict.fromkeys(functions):  # once each, outermost first
            inclusive[function] += int(count)
    return total, own, inclusive


def table(title: str, functions: list[str], own: Counter, inclusive: Counter, total: int) -> str:
    """Markdown: each function's own and inclusive share of the samples."""
    rows = [f"**{title}** ({total} samples)", "", "| function | own % | inclusive % |", "|---|---:|---:|"]
    for function in functions:
        rows.append(f"| `{function}` | {100 * own[function] / total:.1f} | {100 * inclusive[function] / total:.1f} |")
    return "\n".join(rows)


def by_inclusive(inclusive: Counter, top: int) -> list[str]:
    """The ``top`` functions by inclusive samples, less the threads' plumbing (THREAD_PLUMBING)."""
    ranked = (f for f, _ in inclusive.most_common() if not f.startswith(THREAD_PLUMBING))
    return list(itertools.islice(ranked, top))


def cpu_seconds(pid: int) -> tuple[float, float]:
    """The process's user and system CPU seconds so far (/proc/<pid>/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def drive(service: ServiceProcess, seconds: int, clients: int, label: str) -> dict:
    """wrk for ``seconds``, with the worker's user and system CPU seconds over it."""
    user, system = cpu_seconds(service.worker_pid())
    result = wrk(service.url, "/webhook", clients, seconds, f"profile-{label}-{time.time()}")
    user_after, system_after = cpu_seconds(service.worker_pid())
    return result | {"user_s": user_after - user, "system_s": system_after - system}


def cpu_per_alert(run: dict) -> str:
    served, user, system = run["requests"], run["user_s"], run["system_s"]
    return (
        f"worker CPU {user + system:.2f} s over {served} alerts = **{1000 * (user + system) / served:.2f} ms "
        f"per alert** (user {1000 * user / served:.2f}, system {1000 * system / served:.2f})"
    )


def profile(service: ServiceProcess, name: str, args) -> None:
    drive(service, 2, args.clients, "warm-up")
    plain = drive(service, args.seconds, args.clients, "plain")
    print(f"\n## {name}: wrk at {args.clients} clients, {args.seconds:g} s, worker pid {service.worker_pid()}")
    print(f"without the profiler: {plain['rps']:.0f} req/s, {plain['errors']} errors; {cpu_per_alert(plain)}")
    for mode in args.modes.split(","):
        profiled_run(service, mode, args)


def profiled_run(service: ServiceProcess, mode: str, args) -> None:
    """One wrk run with py-spy sampling the worker as ``mode`` says; prints its two tables."""
    out = Path(temp_dir("bench-profile-")) / "stacks.raw"
    spy = record(service.worker_pid(), args.seconds, args.rate, out, mode)
    profiled = drive(service, args.seconds, args.clients, f"profiled-{mode}")  # py-spy samples meanwhile
    _, errors = spy.communicate(timeout=args.seconds + 60)
    if spy.returncode != 0 or not out.exists():
        raise SystemExit(f"py-spy failed ({spy.returncode}): {errors.strip()}")
    total, own, inclusive = aggregate(out.read_text())
    print(f"\n### {mode} samples: py-spy attached, {profiled['rps']:.0f} req/s\n")
    top_own = [function for function, _ in own.most_common(args.top)]
    print(table(f"by own time, {mode} samples", top_own, own, inclusive, total) + "\n")
    print(table(f"by inclusive time, {mode} samples", by_inclusive(inclusive, args.top), own, inclusive, total))


def pipeline(args) -> None:
    service = start_service(service_env(temp_dir("bench-profile-pipeline-"), DRY_RUN="1"))
    try:
        profile(service, "pipeline, SQLite journal, dry-run", args)
    finally:
        service.terminate()


def relay_pg(args) -> None:
    okx = StandIn(rate_limit=1_000_000)  # answers at once and never limits, as in the relay benchmark
    schema = PgSchema()
    try:
        env = service_env(temp_dir("bench-profile-relay-"), okx, OKX_RATE_LIMIT="10000", DATABASE_URL=schema.url)
        service = start_service(env)
        try:
            profile(service, "relay, PostgreSQL journal", args)
        finally:
            service.terminate()
    finally:
        okx.stop()
        schema.drop()


CASES = {"pipeline": pipeline, "relay_pg": relay_pg}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--modes", default="gil", help="a profiled run each: gil, active, idle (see MODES)")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is missing: run bench/profile, or apt-get install -y wrk", file=sys.stderr)
        return 2
    py_spy()
    return run_steps(CASES, args.cases, args)


if __name__ == "__main__":
    sys.exit(main())
