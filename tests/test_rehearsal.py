"""README's rehearsal of the live path works as written: the one command that starts the loopback
stand-in OKX prints the settings that point the service at it, and the service started with them
(as the Procfile starts it) sends README's alert message to it and is answered ok."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from datetime import UTC, datetime

import requests

from tests.conftest import WEBHOOK_SECRET
from tests.service_process import REPO, ServiceProcess, free_port


def readme() -> str:
    return (REPO / "README.md").read_text()


def documented_stand_in_command() -> list[str]:
    """The command README gives to start the stand-in (one line in a sh block)."""
    [line] = [line for line in re.findall(r"^(.*-m tests\.okx_stand_in.*)$", readme(), re.M) if "`" not in line]
    argv = shlex.split(line)
    assert argv[:3] == [".venv/bin/python", "-m", "tests.okx_stand_in"], argv
    return [sys.executable, *argv[1:]]


def documented_alert() -> dict:
    """README's first alert message (the one a trader pastes into TradingView)."""
    block = re.search(r"```json\n(\{.*?\})\n```", readme(), re.S).group(1)
    return json.loads(block)


def test_the_documented_rehearsal_sends_the_documented_alert_to_the_stand_in(tmp_path):
    stand_in = subprocess.Popen(
        [*documented_stand_in_command(), "--port", str(free_port())],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ.get("PATH", "")},
        start_new_session=True,
    )
    service = None
    try:
        printed = []
        while len([line for line in printed if not line.strip()]) < 2:  # the text, then the settings
            printed.append(stand_in.stdout.readline())
        settings = dict(line.strip().split("=", 1) for line in printed if re.match(r"[A-Z_]+=", line))
        assert set(settings) == {"OKX_BASE_URL", "OKX_API_KEY", "OKX_API_SECRET", "OKX_API_PASSPHRASE"}, printed
        assert settings["OKX_BASE_URL"].startswith("http://127.0.0.1:")
        env = {**settings, "WEBHOOK_SECRET": WEBHOOK_SECRET, "DATABASE_URL": f"sqlite:///{tmp_path}/alerts.db"}
        service = ServiceProcess(env).start()
        assert f"live: forwarding to {settings['OKX_BASE_URL']}" in service.log()
        # As TradingView fills it in: the secret, and {{…}} placeholders with their values.
        alert = {**documented_alert(), "secret": WEBHOOK_SECRET, "id": "rehearsal-1"}
        if "timestamp" in alert:
            alert["timestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        reply = requests.post(service.url + "/webhook", json=alert, timeout=10)
        assert reply.status_code == 200 and reply.json()["status"] == "ok", reply.text
    finally:
        if service is not None:
            service.discard()
        stand_in.terminate()
        stand_in.wait(10)
