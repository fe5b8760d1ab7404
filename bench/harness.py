"""What the benchmarks share: the service and the stand-in OKX in processes of their own, PostgreSQL
schemas, wrk, and the cleanup of everything a run started (also on Ctrl-C, SIGTERM or SIGHUP)."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from tests.conftest import WEBHOOK_SECRET
from tests.service_process import ServiceProcess, free_port

HERE = Path(__file__).resolve().parent
KEY, SECRET, PASSPHRASE = "test-key-0123456789", "test-secret-0123456789abcdef", "test-passphrase-42"
RESULTS: dict = {}
# Everything a run starts or creates, stopped and removed at its end, also when interrupted (cleanup()).
SERVICES: list[ServiceProcess] = []
CHILDREN: list[subprocess.Popen] = []
TEMP_DIRS: list[str] = []


def start_service(env: dict, **kwargs) -> ServiceProcess:
    """A ServiceProcess, started and remembered for cleanup() (its own process group: gunicorn and its worker)."""
    service = ServiceProcess(env, **kwargs)
    SERVICES.append(service)
    return service.start()


def temp_dir(prefix: str) -> str:
    folder = tempfile.mkdtemp(prefix=prefix)
    TEMP_DIRS.append(folder)
    return folder


def cleanup() -> None:
    """Kill every process group still running (gunicorn masters with their workers, the stand-in)
    and remove the temporary folders and service logs. Safe to call more than once."""
    for service in SERVICES:
        try:
            service.discard()
        except (OSError, subprocess.TimeoutExpired):
            pass
    SERVICES.clear()
    for process in CHILDREN:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
    CHILDREN.clear()
    for folder in TEMP_DIRS:
        shutil.rmtree(folder, ignore_errors=True)
    TEMP_DIRS.clear()


def stop_on_signal(signum, frame) -> None:
    """SIGINT, SIGTERM and SIGHUP end the run through every finally block, then cleanup()."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_steps(steps: dict, names: str, args) -> int:
    """Each named step (comma-separated ``names``) run with ``args``, then cleanup(), also when a
    signal ends the run: 130 when interrupted, else 0."""
    atexit.register(cleanup)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: a background job inherits it ignored
        signal.signal(signum, stop_on_signal)
    try:
        for name in names.split(","):
            steps[name](args)
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc or 'SIGINT'}): stopping every process it started", file=sys.stderr)
        return 130
    finally:
        cleanup()
    return 0


class StandIn:
    """tests.okx_stand_in in its own process, so it does not share a GIL with anything measured."""

    def __init__(self, rate_limit: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.okx_stand_in", "--port", str(self.port), "--rate-limit", str(rate_limit)],
            cwd=HERE.parent,
            stdout=subprocess.DEVNULL,  # its rehearsal settings: nothing the benchmarks need
            start_new_session=True,  # its own group, which cleanup() kills; Ctrl-C reaches it through us
        )
        CHILDREN.append(self.process)
        for _ in range(200):
            try:
                self.stats()
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("stand-in did not start")

    def stats(self) -> dict:
        return requests.get(self.url + "/_stand_in/stats", timeout=10).json()

    def arrivals(self) -> list[dict]:
        """Each request to an action: when its request line was read (time.monotonic()), path, body, code."""
        return requests.get(self.url + "/_stand_in/arrivals", timeout=10).json()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


class PgSchema:
    """A schema of its own on the PostgreSQL server, for one benchmark."""

    def __init__(self):
        import psycopg

        # Two are made within the same millisecond (the service's and its floor's): the suffix tells them apart.
        self.name = f"bench_{int(time.time() * 1000)}_{uuid.uuid4().hex[:8]}"
        self._admin = psycopg.connect(PG_URL, autocommit=True)
        self._admin.execute(f"CREATE SCHEMA {self.name}")
        separator = "&" if "?" in PG_URL else "?"
        self.url = f"{PG_URL}{separator}options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        self._admin.execute(f"DROP SCHEMA {self.name} CASCADE")
        self._admin.close()


def service_env(folder: str, okx: StandIn | None = None, **extra) -> dict:
    env = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "DATABASE_URL": f"sqlite:///{folder}/alerts.db", **extra}
    if okx:
        env |= {"OKX_API_KEY": KEY, "OKX_API_SECRET": SECRET, "OKX_API_PASSPHRASE": PASSPHRASE, "OKX_BASE_URL": okx.url}
    return env


def wrk(url: str, path: str, connections: int, seconds: float, nonce: str) -> dict:
    """wrk with a script that sends distinct valid alerts; returns requests, req/s, p50, p99 (ms), errors."""
    threads = min(connections, 2)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(HERE / "alerts.lua"),
            url + path,
            "--",
            WEBHOOK_SECRET,
            nonce,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {"errors": 0}
    for line in out.splitlines():
        parts = line.split()
        if "requests in" in line:
            result["requests"] = int(parts[0])
        elif line.startswith("Requests/sec:"):
            result["rps"] = float(parts[1])
        elif parts[:1] == ["50%"]:
            result["p50_ms"] = _ms(parts[1])
        elif parts[:1] == ["99%"]:
            result["p99_ms"] = _ms(parts[1])
        elif line.strip().startswith("Non-2xx") or line.strip().startswith("Socket errors"):
            result["errors"] += sum(int(p.strip(",")) for p in parts if p.strip(",").isdigit())
    return result


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(text)
