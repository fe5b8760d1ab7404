"""A trader testing with curl (wrong secrets) locks their address out, the operator's token too:
the page and its JSON list the lockouts and lift one (a form with CSRF), the CLI lists and lifts
them on PostgreSQL, and the 429 says how."""

import logging
import os
import re
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, make_alert
from tests.test_admin import csrf_of, logged_in

STRANGER = "203.0.113.9"
AT_STRANGER = {"REMOTE_ADDR": STRANGER}
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def lock_out(client, times=3) -> None:
    wrong = make_alert(secret="wrong-" + WEBHOOK_SECRET)
    for _ in range(times):
        assert client.post("/webhook", json=wrong, environ_base=AT_STRANGER).status_code == 401


def test_the_page_lists_a_lockout_and_lifts_it_with_a_confirmed_form(make_app, database_url, caplog):
    caplog.set_level(logging.INFO, logger="webhook_app")
    app = make_app(database_url=database_url, lockout_threshold=3, lockout_seconds=900)
    client = app.test_client()
    lock_out(client)
    locked = client.get("/alerts", headers=BEARER, environ_base=AT_STRANGER)
    assert locked.status_code == 429 and "lockouts clear" in locked.json["message"]
    assert "another address" in locked.json["message"]

    listed = client.get("/lockouts", headers=BEARER).json["lockouts"]
    assert [entry["address"] for entry in listed] == [STRANGER]
    assert listed[0]["why"] == "3 wrong secrets or tokens" and listed[0]["until"] > listed[0]["since"]

    browser = app.test_client()
    csrf = logged_in(browser)
    page = browser.get("/admin").text
    assert 'id="lockouts"' in page and STRANGER in page and "3 wrong secrets or tokens" in page
    assert "data-confirm" in page.split('id="lockouts"')[1]
    assert STRANGER in browser.get("/admin/live").text
    forged = browser.post("/admin/lockouts/clear", data={"address": STRANGER})
    assert forged.status_code == 403 and client.get("/lockouts", headers=BEARER).json["lockouts"]
    lifted = browser.post("/admin/lockouts/clear", data={"address": STRANGER, "csrf_token": csrf})
    assert lifted.status_code == 303
    assert client.get("/lockouts", headers=BEARER).json["lockouts"] == []
    assert client.get("/alerts", headers=BEARER, environ_base=AT_STRANGER).status_code == 200
    assert re.search(rf"lockout of {re.escape(STRANGER)} lifted by session [0-9a-f]{{8}}", caplog.text)
    assert ADMIN_TOKEN not in caplog.text and "wrong-" + WEBHOOK_SECRET not in caplog.text


def test_a_script_lifts_a_lockout_with_the_bearer_token(make_app):
    app = make_app(lockout_threshold=3)
    client = app.test_client()
    lock_out(client)
    reply = client.post("/lockouts/clear", json={"address": STRANGER}, headers=BEARER)
    assert reply.status_code == 200 and reply.json["lifted"] is True
    again = client.post("/lockouts/clear", json={"address": STRANGER}, headers=BEARER)
    assert again.status_code == 200 and again.json["lifted"] is False
    assert client.post("/webhook", json=make_alert(), environ_base=AT_STRANGER).status_code == 200


def test_the_login_form_says_how_to_lift_a_lockout(make_app):
    client = make_app(lockout_threshold=3).test_client()
    lock_out(client)
    csrf = csrf_of(client.get("/admin", environ_base=AT_STRANGER).text)
    refused = client.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf}, environ_base=AT_STRANGER)
    assert refused.status_code == 429 and "lockouts clear" in refused.text and "another address" in refused.text


def cli(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webhook_app", "lockouts", *args],
        env={**env, "FLASK_SKIP_DOTENV": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_lists_and_lifts_a_lockout_kept_in_postgresql(make_app, pg_url, okx):
    app = make_app(database_url=pg_url, lockout_threshold=3)
    client = app.test_client()
    lock_out(client)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": pg_url,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "OKX_BASE_URL": okx.base_url,
        "LOCKOUT_THRESHOLD": "3",  # the service's settings: "why" is told from them
    }
    listed = cli(env)
    assert listed.returncode == 0, listed.stderr
    assert STRANGER in listed.stdout and "3 wrong secrets or tokens" in listed.stdout
    lifted = cli(env, "clear", STRANGER)
    assert lifted.returncode == 0, lifted.stderr
    assert f"lifted the lockout of {STRANGER}" in lifted.stdout
    assert f"lockout of {STRANGER} lifted by cli" in lifted.stderr
    assert client.get("/alerts", headers=BEARER, environ_base=AT_STRANGER).status_code == 200
    assert cli(env).stdout.strip() == "no address is locked out"
    missing = cli(env, "clear", STRANGER)
    assert missing.returncode == 1 and f"{STRANGER} is not locked out" in missing.stderr


def test_the_cli_lifts_a_lockout_on_sqlite_while_the_service_runs(tmp_path, service_factory):
    """A trader locked out of their own address runs the command the 429 names, with the service
    running (as the Procfile starts it) on its SQLite journal: the lockout is lifted at once."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/alerts.db",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "LOCKOUT_THRESHOLD": "3",
        "TRUSTED_PROXY_HOPS": "1",  # the trader's address as a router would append it
    }
    service = service_factory(env)
    from_stranger = {"X-Forwarded-For": STRANGER}
    for _ in range(3):
        wrong = requests.post(
            f"{service.url}/webhook",
            json=make_alert(secret="wrong-" + WEBHOOK_SECRET),
            headers=from_stranger,
            timeout=5,
        )
        assert wrong.status_code == 401
    right = make_alert(id="after-the-lockout")
    locked = requests.post(f"{service.url}/webhook", json=right, headers=from_stranger, timeout=5)
    assert locked.status_code == 429 and "lockouts clear" in locked.json()["message"]
    env["PATH"] = os.environ.get("PATH", "")
    listed = cli(env)
    assert listed.returncode == 0 and STRANGER in listed.stdout, listed.stdout + listed.stderr
    lifted = cli(env, "clear", STRANGER)
    assert lifted.returncode == 0 and f"lifted the lockout of {STRANGER}" in lifted.stdout, lifted.stderr
    again = requests.post(f"{service.url}/webhook", json=right, headers=from_stranger, timeout=5)
    assert again.status_code == 200 and again.json()["status"] == "dry_run", again.text
    admin = requests.get(f"{service.url}/alerts", headers={**BEARER, **from_stranger}, timeout=5)
    assert admin.status_code == 200


@pytest.mark.parametrize("engine", ["memory", "sqlite", "postgres"])
def test_every_store_lists_and_clears(engine, request, tmp_path):
    from webhook_app.intake.protection import Lockout
    from webhook_app.journal import open_journal

    url = None  # memory: the store of a journal-less Lockout
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path}/journal.db"
    elif engine == "postgres":
        url = request.getfixturevalue("pg_url")
    journal = open_journal(url) if url else None
    try:
        lockout = Lockout(2, 300, 600, journal.lockout_store() if journal else None)
        lockout.failure("192.0.2.7")
        assert lockout.active() == []  # one failure: not locked out
        lockout.failure("192.0.2.7")
        [entry] = lockout.active()
        if journal:  # kept in the journal: another process (the CLI) sees it, and lifts it there
            other = open_journal(url)
            try:
                assert 590 < other.lockout_store().remaining("192.0.2.7") <= 600
            finally:
                other.close()
        assert entry["address"] == "192.0.2.7" and abs(entry["until"] - time.time() - 600) < 5
        assert abs(entry["until"] - entry["since"] - 600) < 0.01 and entry["failures"] == 2
        assert lockout.clear("::ffff:192.0.2.7") is True  # the same address, written as IPv6 may write it
        assert lockout.active() == [] and lockout.clear("192.0.2.7") is False
        lockout.check("192.0.2.7")  # not raised
    finally:
        if journal:
            journal.close()


@pytest.mark.parametrize("address", ["", " ", "000000000000000000000000000000000", "\u001c", "not-an-address", 7])
def test_lifting_needs_an_ip_address(make_app, address):
    client = make_app(admin_token=ADMIN_TOKEN).test_client()
    reply = client.post("/lockouts/clear", json={"address": address}, headers=BEARER)
    assert reply.status_code == 422 and reply.json["errors"][0]["field"] == "address", reply.json
