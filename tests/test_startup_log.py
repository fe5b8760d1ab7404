"""What the web process (the Procfile's gunicorn) says at start: which journal, whether the
operator page is on, a rate limit above OKX's, the dry-run secret once; and, when the database
cannot be reached, one line naming it and why."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from tests.conftest import live_env
from tests.service_process import REPO, free_port, procfile_command
from tests.test_commands import UNREACHABLE  # the same databases, met by gunicorn's start

PASSWORD = "pw-never-shown-0123"


def stopped_log(service) -> str:
    service.terminate()
    return service.log()


def test_a_dry_run_on_sqlite_names_its_journal_and_prints_the_secret_once(tmp_path, service_factory):
    service = service_factory({"DATABASE_URL": f"sqlite:///{tmp_path}/alerts.db"})
    log = stopped_log(service)
    print(log)
    assert log.count("Generated a webhook secret") == 1
    secret = re.search(r"Generated a webhook secret.*: (\S+)", log).group(1)
    assert log.count(secret) == 1
    assert f"journal: SQLite at {tmp_path}/alerts.db" in log
    assert "operator page: off" in log and "ADMIN_TOKEN is not set" in log


def test_postgres_journal_is_named_without_its_password_and_the_operator_page_is_on(
    pg_url, okx, tmp_path, service_factory
):
    url = pg_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)  # the test server trusts: the password is unused
    admin_token = "admin-token-0123456789-abc"
    service = service_factory(live_env(okx, tmp_path, DATABASE_URL=url, ADMIN_TOKEN=admin_token))
    log = stopped_log(service)
    print(log)
    database = pg_url.rsplit("/", 1)[1].split("?")[0]
    assert f"journal: PostgreSQL, database {database} on 127.0.0.1:5432" in log
    assert "operator page: on" in log
    assert PASSWORD not in log and admin_token not in log


def test_a_rate_limit_above_okxs_is_warned_about_at_start(okx, tmp_path, service_factory):
    service = service_factory(live_env(okx, tmp_path, OKX_RATE_LIMIT="40"))
    log = stopped_log(service)
    warnings = [line for line in log.splitlines() if "WARNING" in line and "OKX_RATE_LIMIT" in line]
    assert len(warnings) == 1, log
    assert "40" in warnings[0] and "20 requests per 2 s" in warnings[0]


def test_okxs_own_rate_limit_gives_no_warning(okx, tmp_path, service_factory):
    log = stopped_log(service_factory(live_env(okx, tmp_path)))
    assert "OKX_RATE_LIMIT" not in log


@pytest.mark.parametrize("url, cause", UNREACHABLE.values(), ids=UNREACHABLE.keys())
def test_an_unreachable_database_stops_the_start_with_one_line_naming_why(url, cause):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "FLASK_SKIP_DOTENV": "1",
        "PORT": str(free_port()),
        "DATABASE_URL": url.format(pw=PASSWORD),
    }
    started_at = time.monotonic()
    result = subprocess.run(procfile_command(), cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    print(f"answered in {time.monotonic() - started_at:.2f} s:\n{output}")
    assert result.returncode == 2, output
    lines = output.strip().splitlines()
    assert lines[0].startswith("configuration error: DATABASE_URL: ") and cause in lines[0], output
    assert len(lines) == 2, output  # the problem and the summary line: no pool notices
    assert "pool" not in output and PASSWORD not in output and "Traceback" not in output
