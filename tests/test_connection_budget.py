"""The connection budget (issue 24, item 1): an entry PostgreSQL plan allows about 20 connections
per role. Each web instance holds at most DATABASE_MAX_CONNECTIONS (default 7) and a flask command
3, so two instances, a release phase and a command fit in 20; idle connections are given back; a
formation that cannot fit is warned about at start, and a refusal for want of room is named as the
budget, with the numbers. Tested with a PostgreSQL role of the test's own, limited as a plan is."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid

import psycopg
import pytest

from tests.conftest import TEST_DATABASE_URL, eventually, live_env, make_alert
from tests.service_process import REPO, ServiceProcess
from tests.test_instances import post_spread
from webhook_app.journal.postgres import PostgresJournal
from webhook_app.journal.postgres import database as postgres_database

ENTRY_PLAN_LIMIT = 20


@pytest.fixture
def limited_role(pg_url):
    """``make(limit)``: a login role with CONNECTION LIMIT ``limit`` owning nothing but what it
    creates in this test's schema; returns pg_url as that role. Dropped afterwards with all it made."""
    admin = psycopg.connect(TEST_DATABASE_URL, autocommit=True)
    run = psycopg.connect(pg_url.split("?")[0], autocommit=True)
    schema = pg_url.rsplit("%3D", 1)[1]
    made = []

    def make(limit: int) -> str:
        role = f"relay_budget_{uuid.uuid4().hex[:10]}"
        admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT {limit}")
        run.execute(f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}")
        made.append(role)
        return pg_url.replace("://postgres@", f"://{role}@", 1)

    yield make
    for role in made:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        run.execute(f"DROP OWNED BY {role} CASCADE")
        admin.execute(f"DROP ROLE {role}")
    run.close()
    admin.close()


def connections_of(role_url: str) -> int:
    """How many connections the role holds now (seen from the superuser's side, not the role's)."""
    role = role_url.split("://", 1)[1].split("@", 1)[0]
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)).fetchone()[0]


def flask(args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webhook_app", *args],
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", ""), "FLASK_SKIP_DOTENV": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_two_instances_a_burst_a_release_phase_and_a_command_fit_an_entry_plan(limited_role, okx, tmp_path):
    role_url = limited_role(ENTRY_PLAN_LIMIT)
    env = live_env(okx, tmp_path, DATABASE_URL=role_url)
    services = [ServiceProcess(env), ServiceProcess(env)]
    try:
        for service in services:
            service.start(timeout=30)
        replies = post_spread(services, [make_alert(amount=str(n), id=f"burst-{n}") for n in range(1, 101)])
        assert sorted({reply.status_code for reply, _ in replies}) in ([200], [200, 202], [202]), [
            reply.text for reply, _ in replies if reply.status_code not in (200, 202)
        ]
        assert connections_of(role_url) <= 2 * 7, "each instance within its budget after the burst"
        # The release phase of the next deploy, and a trader's look at the journal, beside both.
        upgrade = flask(["db", "upgrade"], env)
        assert upgrade.returncode == 0 and upgrade.stdout.startswith("already at "), upgrade.stdout + upgrade.stderr
        alerts = flask(["alerts", "--limit", "200"], env)
        assert alerts.returncode == 0, alerts.stdout + alerts.stderr
        assert len(alerts.stdout.splitlines()) == 101  # the header and every alert of the burst
        for service in services:
            assert "too many connections" not in service.log() and "PoolTimeout" not in service.log()
        eventually(lambda: len(okx.executed) == 100, timeout=30)  # and every alert was sent, once
    finally:
        for service in services:
            service.discard()


def test_a_web_instance_holds_at_most_its_budget_and_gives_idle_connections_back(pg_url, monkeypatch):
    monkeypatch.setattr(postgres_database, "MAX_IDLE", 0.5)  # the pools give back one idle connection per 0.5 s
    journal = PostgresJournal(pg_url, max_connections=5)
    mine = f"okx-relay:{os.getpid()}"

    def held() -> int:
        with psycopg.connect(pg_url, autocommit=True) as observer:
            return observer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (mine,)
            ).fetchone()[0]

    try:
        journal.register("budget-test")
        journal.heartbeat("budget-test")  # the heartbeat's own connection
        busy = [
            threading.Thread(
                target=journal.database.transaction,
                args=(lambda conn: conn.execute("SELECT pg_sleep(0.6)"),),
                kwargs={"durable": durable},
            )
            for durable in [True] * 12 + [False] * 6
        ]
        for thread in busy:
            thread.start()
        peak = max(held() for _ in range(10))
        for thread in busy:
            thread.join()
        assert peak <= 5, peak
        assert eventually(lambda: held() == 3, timeout=10)  # one per pool and the heartbeat's
    finally:
        journal.close()


def test_a_formation_that_cannot_fit_is_warned_about_at_start_with_the_numbers(limited_role, tmp_path):
    role_url = limited_role(15)
    env = {"DATABASE_URL": role_url}
    warned = flask(["alerts"], env)
    assert warned.returncode == 0, warned.stderr
    role = role_url.split("://", 1)[1].split("@", 1)[0]
    assert (
        "WARNING connection budget: DATABASE_MAX_CONNECTIONS=7: two web instances, a release phase and a flask "
        f"command take 2 x 7 + 3 + 3 = 20 connections, but role {role} may open 15 (its CONNECTION LIMIT): "
        "set DATABASE_MAX_CONNECTIONS=4 or lower"
    ) in warned.stderr, warned.stderr
    fitting = flask(["alerts"], {**env, "DATABASE_MAX_CONNECTIONS": "4"})
    assert fitting.returncode == 0 and "connection budget" not in fitting.stderr, fitting.stderr


def test_a_connection_refused_for_want_of_room_is_named_as_the_budget(limited_role):
    role_url = limited_role(2)
    held = [psycopg.connect(role_url), psycopg.connect(role_url)]  # the role's whole limit, elsewhere
    try:
        result = flask(["db", "upgrade"], {"DATABASE_URL": role_url})
    finally:
        for conn in held:
            conn.close()
    print(result.stderr)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line, _summary] = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: DATABASE_MAX_CONNECTIONS: the database refused a connection: ")
    assert "too many connections for role" in line and "This process may hold 3" in line
    assert "2 x 7 + 3 + 3 = 20" in line and "DATABASE_URL" not in line


def test_the_setting_is_read_and_bounded(tmp_path):
    from webhook_app.config import Config, ConfigError

    base = {"DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    assert Config.from_env(base, instance_path=tmp_path).database_max_connections == 7
    assert Config.from_env({**base, "DATABASE_MAX_CONNECTIONS": "12"}).database_max_connections == 12
    with pytest.raises(ConfigError) as refused:
        Config.from_env({**base, "DATABASE_MAX_CONNECTIONS": "2"})
    assert refused.value.variables == ["DATABASE_MAX_CONNECTIONS"]
