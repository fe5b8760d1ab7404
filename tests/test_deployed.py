"""The service as the Procfile starts it: gunicorn, its config, wsgi.py, environment variables."""

import concurrent.futures
import json
import os
import re
import sqlite3
import subprocess
import time

import pytest
import requests

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, live_env, make_alert
from tests.okx_stand_in import Slow
from tests.service_process import REPO, ServiceProcess, procfile_command


def test_procfile_service_relays_an_alert_and_logs_no_secret(okx, tmp_path, service_factory):
    service = service_factory(live_env(okx, tmp_path, ADMIN_TOKEN="admin-token-0123456789"))
    ok = requests.post(service.url + "/webhook", json=make_alert(), timeout=5)
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "ok"
    assert len(okx.executed) == 1
    # failures too: wrong secret, bad field, not JSON, query string carrying a secret
    assert (
        requests.post(service.url + "/webhook", json=make_alert(secret="nope-" + WEBHOOK_SECRET), timeout=5).status_code
        == 401
    )
    assert requests.post(service.url + "/webhook", json=make_alert(amount="-1"), timeout=5).status_code == 422
    assert requests.post(service.url + "/webhook", data=WEBHOOK_SECRET, timeout=5).status_code == 400
    assert (
        requests.post(
            service.url + f"/webhook?secret={WEBHOOK_SECRET}",
            json=make_alert(amount="7"),
            headers={"Content-Type": "text/plain"},
            timeout=5,
        ).status_code
        == 200
    )
    elapsed = service.terminate()
    log = service.log()
    assert "alert http=200 status=ok" in log and "alert http=401" in log and "alert http=422" in log
    assert '"POST /webhook"' in log  # access log: path only
    signatures = [r.headers["OK-ACCESS-SIGN"] for r in okx.margin_requests()]
    for secret in [WEBHOOK_SECRET, okx.secret_key, okx.passphrase, "admin-token-0123456789", *signatures]:
        assert secret not in log
    assert elapsed < 30  # inside a PaaS's stop window


def test_fresh_machine_without_configuration_runs_in_dry_run(tmp_path, service_factory, okx):
    service = service_factory({"DATABASE_URL": f"sqlite:///{tmp_path}/alerts.db"})
    log = service.log()
    assert "DRY RUN" in log
    secret = re.search(r"Generated a webhook secret.*: (\S+)", log).group(1)
    response = requests.post(service.url + "/webhook", json=make_alert(secret=secret), timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "dry_run"
    assert response.json()["request"]["body"] == {"algoId": "581628185981813760", "type": "add", "amt": "10"}
    assert okx.received == []


def test_bad_configuration_stops_the_start_with_one_line_naming_the_variable(tmp_path):
    service = ServiceProcess({"WEBHOOK_SECRET": "short", "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"})
    with pytest.raises(AssertionError) as failure:
        try:
            service.start(timeout=15)
        finally:
            service.discard()
    assert "WEBHOOK_SECRET: is too weak" in str(failure.value)
    assert "short" not in str(failure.value).replace("WEBHOOK_SECRET: is too weak", "")


def test_every_bad_setting_is_named_before_gunicorn_binds_without_a_traceback(tmp_path):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "FLASK_SKIP_DOTENV": "1",
        "PORT": "abc",
        "OKX_RATE_LIMIT": "\u00b2",
        "WEBHOOK_SECRET": "short",
        "DEDUP_WINDOW": "5",
        "OKX_API_KEY": "k" * 20,
        "DATABASE_URL": f"sqlite:///{tmp_path}/a.db",
    }
    result = subprocess.run(procfile_command(), cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("configuration error: ")]
    assert sorted(line.split(":")[1].strip() for line in errors) == sorted(
        ["OKX_API_SECRET", "OKX_API_PASSPHRASE", "WEBHOOK_SECRET", "OKX_RATE_LIMIT", "DEDUP_WINDOW", "PORT"]
    )
    assert "Traceback" not in output and "Listening at" not in output and "Booting worker" not in output
    assert "short" not in output.replace("WEBHOOK_SECRET: is too weak", "")


def test_gunicorns_own_log_lines_are_scrubbed(okx, tmp_path, service_factory):
    service = service_factory(live_env(okx, tmp_path))
    assert requests.get(f"{service.url}/webhook/{WEBHOOK_SECRET}", timeout=5).status_code == 404
    assert requests.post(f"{service.url}/{okx.passphrase}?x={okx.secret_key}", timeout=5).status_code == 404
    service.terminate()
    log = service.log()
    assert '"GET /webhook/[redacted]" 404' in log  # the access line is there, scrubbed
    for secret in (WEBHOOK_SECRET, okx.passphrase, okx.secret_key):
        assert secret not in log


def journal_states(tmp_path):
    with sqlite3.connect(f"{tmp_path}/alerts.db") as db:
        return dict(db.execute("SELECT id, state FROM alerts ORDER BY id").fetchall())


def test_sigkill_with_alerts_in_flight_and_queued_then_restart(okx, tmp_path, service_factory):
    """Killed mid-send: in-flight alerts end unknown (never resent), queued ones are sent once."""
    # Two requests per 2 s: the first two go out at once and hang at OKX, the rest wait.
    env = live_env(okx, tmp_path, OKX_RATE_LIMIT="2", OKX_READ_TIMEOUT="10")
    service = service_factory(env)
    okx.play(Slow(5), Slow(5))
    alerts = [make_alert(amount=str(n), algoId=f"58162818598181376{n}") for n in range(1, 7)]  # six bots
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda a: requests.post(service.url + "/webhook", json=a, timeout=5), alerts))
    assert all(r.status_code == 202 for r in replies), [r.text for r in replies]
    states = journal_states(tmp_path)
    assert sorted(states.values()) == ["queued"] * 4 + ["sending"] * 2, states
    service.kill()  # returns once master and worker are dead

    service_factory(env)  # restart on the same journal
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = journal_states(tmp_path)
        if all(s in ("ok", "rejected", "unknown", "expired", "failed") for s in states.values()):
            break
        time.sleep(0.1)
    assert sorted(states.values()) == ["ok"] * 4 + ["unknown"] * 2, states
    executed = sorted(float(body["amt"]) for body in okx.executed)
    assert executed == [1, 2, 3, 4, 5, 6], executed  # each alert executed exactly once


def test_sigterm_leaves_queued_alerts_queued_and_the_next_start_sends_them(okx, tmp_path, service_factory):
    env = live_env(okx, tmp_path, OKX_RATE_LIMIT="1", REPLY_DEADLINE="0.5")  # one send per 2 s
    service = service_factory(env)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        replies = list(
            pool.map(
                lambda n: requests.post(service.url + "/webhook", json=make_alert(amount=str(n)), timeout=5), (1, 2, 3)
            )
        )
    assert sorted(r.status_code for r in replies) == [200, 202, 202]
    elapsed = service.terminate()
    assert elapsed < 20, elapsed  # inside gunicorn's graceful_timeout, well inside a PaaS's 30 s
    states = sorted(journal_states(tmp_path).values())
    # whatever was sent during the graceful stop finished; the rest waits in the journal
    assert set(states) <= {"ok", "queued"} and "queued" in states, states
    assert len(okx.executed) == states.count("ok")

    service_factory(env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sorted(journal_states(tmp_path).values()) != ["ok"] * 3:
        time.sleep(0.1)
    assert sorted(journal_states(tmp_path).values()) == ["ok"] * 3
    assert sorted(b["amt"] for b in okx.executed) == ["1", "2", "3"]


LIMIT = 64 * 1024


def chunks(body: bytes, size: int = 8192):
    """The body as requests sends a generator: Transfer-Encoding: chunked, no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize(
    "total, chunked, status, state",
    [
        (LIMIT + 1, True, 413, "too_large"),
        (LIMIT + 70_000, True, 413, "too_large"),
        (LIMIT + 1, False, 413, "too_large"),  # as with a Content-Length
        (LIMIT, True, 200, "ok"),  # at the limit exactly: whole, so accepted
    ],
    ids=["chunked-one-over", "chunked-far-over", "content-length-one-over", "chunked-at-the-limit"],
)
def test_a_body_over_the_limit_is_413_chunked_or_not(okx, tmp_path, service_factory, total, chunked, status, state):
    # A valid alert padded with spaces: a body cut at the limit would still be a valid alert.
    alert = json.dumps(make_alert(id="padded-1")).encode()
    body = alert + b" " * (total - len(alert))
    service = service_factory(live_env(okx, tmp_path, ADMIN_TOKEN=ADMIN_TOKEN))
    data = chunks(body) if chunked else body
    reply = requests.post(service.url + "/webhook", data=data, headers={"Content-Type": "application/json"}, timeout=5)
    assert (reply.status_code, reply.json()["status"]) == (status, state), reply.text
    journaled = requests.get(service.url + "/alerts", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
    assert len(journaled.json()["alerts"]) == (1 if status == 200 else 0)
    assert len(okx.margin_requests()) == (1 if status == 200 else 0)
