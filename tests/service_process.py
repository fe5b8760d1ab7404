"""Runs the service as deployed: the Procfile's web command, gunicorn and its config file."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]


def procfile_command(app_spec: str | None = None) -> list[str]:
    """The Procfile's web command; ``app_spec`` swaps the WSGI app (benchmarks' bare floor)."""
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            argv = shlex.split(line[len("web:") :])
            assert argv[0] == "gunicorn" and argv[-1] == "wsgi:app", argv
            if app_spec:
                argv[-1] = app_spec
            # The same command, run by this interpreter's gunicorn (the venv may not be on PATH).
            return [sys.executable, "-m", "gunicorn", *argv[1:]]
    raise AssertionError("Procfile has no web: line")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """gunicorn in its own process group, its stdout and stderr collected in a file."""

    def __init__(
        self, env: dict, port: int | None = None, app_spec: str | None = None, cwd: Path = REPO, ca: str | None = None
    ):
        """``ca``: the CA file that issued the service's own certificate (TLS_CERT_FILE), when it serves HTTPS."""
        self.app_spec = app_spec
        self.ca = ca
        self.cwd = cwd
        self.port = port or free_port()
        inherited = {name: os.environ[name] for name in ("PATH", "PYTHONDONTWRITEBYTECODE") if name in os.environ}
        # A .env in the clone is the trader's, never the tests': FLASK_SKIP_DOTENV keeps it unread.
        self.env = {**inherited, "PYTHONUNBUFFERED": "1", "FLASK_SKIP_DOTENV": "1", **env, "PORT": str(self.port)}
        # Outlives this call (the process writes to it); discard() closes and removes it.
        self.output = tempfile.NamedTemporaryFile(prefix="service-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> str | bool:
        """``requests``' ``verify=`` for this service: its CA over HTTPS."""
        return self.ca or True

    def start(self, timeout: float = 20.0) -> ServiceProcess:
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            procfile_command(self.app_spec),
            cwd=self.cwd,
            env=self.env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=0.5, verify=self.verify).status_code == 200:
                    self.ready_after = time.monotonic() - self.started_at
                    self.worker_pid_at_start = self.worker_pid()
                    return self
            except requests.RequestException:  # not listening yet, or busy starting
                pass
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"service did not answer /healthz within {timeout} s:\n{self.log()}")

    def worker_pid(self) -> int:
        return int(self._children_file().read_text().split()[0])

    def worker_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.worker_pid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def worker_cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.worker_pid()}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        return Path(self.output.name).read_text(errors="replace")

    def terminate(self, timeout: float = 30.0) -> float:
        """SIGTERM, as a PaaS does on deploy; returns the seconds until it exited."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL to master and worker at once: a crash, no chance to clean up. Returns once both
        are dead, so that a next start never meets the worker's open journal."""
        if self.process and self.process.poll() is None:
            workers = self._children()
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            for pid in workers:
                _wait_dead(pid)

    def _children(self) -> list[int]:
        try:
            return [int(pid) for pid in self._children_file().read_text().split()]
        except FileNotFoundError:
            return []

    def _children_file(self) -> Path:
        return Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")

    def discard(self) -> None:
        """Kill it if it still runs, and remove its log file."""
        self.kill()
        self.output.close()
        Path(self.output.name).unlink(missing_ok=True)


def _wait_dead(pid: int, timeout: float = 10.0) -> None:
    """Until process ``pid`` has exited (gone, or a zombie: its files are closed either way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still alive {timeout} s after SIGKILL")
