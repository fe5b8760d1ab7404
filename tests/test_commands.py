"""The ``flask --app webhook_app`` commands as operators (and the Procfile's release phase) run
them: a bad setting or an unreachable database gives one line per problem and exit status 2,
never a traceback; the release phase never makes or prints a webhook secret."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest

from tests.conftest import TEST_DATABASE_URL, live_env
from tests.service_process import REPO
from tests.test_admin import journaled, two_accounts
from webhook_app.journal import open_journal
from webhook_app.journal.postgres import migrations as postgres_migrations
from webhook_app.journal.sqlite import migrations as sqlite_migrations

COMMANDS = (["check"], ["db", "upgrade"], ["alerts"], ["routes"])
PASSWORD = "pw-never-shown-0123"


def flask(args, env, timeout=60):
    """``flask --app webhook_app ARGS`` with only ``env`` (and PATH) in its environment."""
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", "FLASK_SKIP_DOTENV": "1", **env}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webhook_app", *args],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    result.elapsed = time.monotonic() - started
    result.output = result.stdout + result.stderr
    return result


BAD_CONFIGS = {
    "rate-limit-abc": ({"OKX_RATE_LIMIT": "abc"}, ["OKX_RATE_LIMIT"]),
    "database-refused": ({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"}, ["DATABASE_URL"]),
    "two-problems": ({"OKX_RATE_LIMIT": "abc", "WEBHOOK_SECRET": "short"}, ["WEBHOOK_SECRET", "OKX_RATE_LIMIT"]),
    "two-accounts": (  # hedge without its passphrase, and a typo in an account's name
        {
            "OKX_ACCOUNTS": "main,hedge",
            **{f"OKX_{name}_{suffix}": "x" * 20 for name in ("MAIN", "HEDGE") for suffix in ("API_KEY", "API_SECRET")},
            "OKX_MAIN_API_PASSPHRASE": "main-pass-01",
            "OKX_HDGE_API_PASSPHRASE": "hedge-pass-01",
            "WEBHOOK_SECRET": "w" * 24,
        },
        ["OKX_HEDGE_API_PASSPHRASE", "OKX_HDGE_API_PASSPHRASE"],
    ),
}


@pytest.mark.parametrize("bad", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_names_each_bad_setting_on_one_line_without_a_traceback(tmp_path, command, bad):
    values, variables = bad
    result = flask(command, {"DATABASE_URL": f"sqlite:///{tmp_path}/alerts.db", **values})
    print(result.output)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("configuration error: ")]
    assert sorted(line.split(":")[1].strip() for line in errors) == sorted(variables), result.output
    assert len(result.output.strip().splitlines()) <= len(variables) + 2, result.output
    assert "short" not in result.output.replace("WEBHOOK_SECRET: is too weak", "")


UNREACHABLE = {
    "refused": ("postgresql://postgres:{pw}@127.0.0.1:1/x", "connection refused"),
    "no-such-host": ("postgresql://postgres:{pw}@nohost.invalid:5432/x", "host not found"),
    "no-such-database": (
        TEST_DATABASE_URL.rsplit("/", 1)[0].replace("postgres@", "postgres:{pw}@") + "/no_such_db_okx_relay",
        'database "no_such_db_okx_relay" does not exist',
    ),
    "tls-not-offered": (  # the test server offers no TLS
        TEST_DATABASE_URL.replace("postgres@", "postgres:{pw}@") + "?sslmode=require",
        "does not offer it",
    ),
}


@pytest.mark.parametrize("url, cause", UNREACHABLE.values(), ids=UNREACHABLE.keys())
def test_check_names_the_databases_problem_in_one_line(tmp_path, url, cause):
    result = flask(["check"], {"DATABASE_URL": url.format(pw=PASSWORD)})
    print(f"answered in {result.elapsed:.2f} s:\n{result.output}")
    assert result.returncode == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("configuration error: DATABASE_URL: ") and cause in lines[0], result.output
    assert "***" in lines[0]  # the URL is named, its password masked
    assert len(lines) == 2, result.output  # the problem and the summary: no pool notices
    assert PASSWORD not in result.output and "Traceback" not in result.output


def secret_printed(output: str) -> bool:
    return "Generated a webhook secret" in output or "webhook secret generated earlier" in output


def test_the_release_phase_in_dry_run_makes_and_prints_no_webhook_secret(tmp_path):
    result = flask(["db", "upgrade"], {"DATABASE_URL": f"sqlite:///{tmp_path}/alerts.db"})
    assert result.returncode == 0, result.output
    assert result.stdout.startswith("migrated 0 → ")  # a new journal
    assert "Generated a webhook secret" not in result.output
    assert not (tmp_path / "webhook_secret").exists()


def test_the_release_phase_on_postgres_stores_no_webhook_secret(pg_url):
    result = flask(["db", "upgrade"], {"DATABASE_URL": pg_url})
    assert result.returncode == 0, result.output
    assert "Generated a webhook secret" not in result.output
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM settings").fetchone()[0] == 0


def test_check_says_okx_could_not_be_reached_not_that_it_refused_the_key(okx, tmp_path):
    okx.stop()
    env = live_env(okx, tmp_path, OKX_BASE_URL="http://127.0.0.1:1", ALLOWED_ALGO_IDS="581628185981813760")
    result = flask(["check"], env)
    print(result.output)
    assert result.returncode == 1, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert "refused" not in result.stdout, result.stdout
    api_key = next(line for line in lines if line.startswith("FAIL api_key"))
    assert "could not reach OKX at http://127.0.0.1:1" in api_key


# -- `alerts` with several OKX accounts (issue 15): an account column and --account, in process --


def alerts_table(app, *options) -> tuple[int, list[list[str]]]:
    """``flask alerts OPTIONS`` on ``app``: the exit code and the table's cells, header first."""
    result = app.test_cli_runner().invoke(args=["alerts", *options])
    return result.exit_code, [line.split() for line in result.output.splitlines()]


def test_alerts_shows_each_alerts_account_and_filters_by_it(make_app, okx):
    app = make_app(okx_accounts=two_accounts(okx))
    journaled(app, "main", "111", "M1")
    journaled(app, "hedge", "222", "H1")
    code, table = alerts_table(app)
    assert code == 0 and table[0][:5] == ["id", "received", "(UTC)", "account", "state"]
    assert [(row[0], row[2], row[4]) for row in table[1:]] == [("2", "hedge", "222"), ("1", "main", "111")]
    code, table = alerts_table(app, "--account", "hedge")
    assert code == 0 and [(row[0], row[2]) for row in table[1:]] == [("2", "hedge")]
    assert alerts_table(app, "--account", "HEDGE") == (code, table)  # names are case-insensitive
    none = app.test_cli_runner().invoke(args=["alerts", "--account", "main", "--state", "rejected"])
    assert none.output.strip() == "no alerts journaled in state rejected for account main"


def test_alerts_refuses_an_account_that_is_not_configured(make_app, okx):
    result = make_app(okx_accounts=two_accounts(okx)).test_cli_runner().invoke(args=["alerts", "--account", "hdge"])
    assert result.exit_code == 2 and "--account" in result.output and "must be one of main, hedge" in result.output


def test_a_single_accounts_alerts_table_has_no_account_column(make_app):
    app = make_app()
    journaled(app, "default", "581628185981813760", "D1")
    code, table = alerts_table(app, "--account", "default")
    assert code == 0 and "account" not in table[0] and [row[0] for row in table[1:]] == ["1"]
    assert table[0][:4] == ["id", "received", "(UTC)", "state"]


# -- quiet commands, and what `db upgrade` did -------------------------------------------------

QUIET_COMMANDS = (["check"], ["db", "upgrade"], ["alerts"], ["lockouts"])


@pytest.mark.parametrize("command", QUIET_COMMANDS, ids=[" ".join(c) for c in QUIET_COMMANDS])
def test_a_command_prints_no_start_up_lines_unless_asked_with_v(pg_url, command):
    """A command's output is its answer; the service's start-up lines (INFO) come only with -v."""
    env = {"DATABASE_URL": pg_url, "ADMIN_TOKEN": "a" * 24}
    quiet = flask(command, env)
    assert quiet.returncode == 0, quiet.output
    assert " INFO " not in quiet.output and "journal: PostgreSQL" not in quiet.output, quiet.output
    verbose = flask([*command, "-v"], env)
    assert verbose.returncode == 0, verbose.output
    assert " INFO journal: PostgreSQL" in verbose.stderr and " INFO protection: " in verbose.stderr, verbose.output
    assert verbose.stdout.replace("\n", "") != "" and verbose.stderr.count(" INFO journal: ") == 1


def test_db_upgrade_says_what_it_did(database_url, monkeypatch):
    """ "migrated 7 → 8" when this run moved the schema, "already at 8" when it found it there."""
    engine = "sqlite" if database_url.startswith("sqlite") else "postgres"
    module = {"sqlite": sqlite_migrations, "postgres": postgres_migrations}[engine]
    latest = module.SCHEMA_VERSION
    monkeypatch.setattr(module, "MIGRATIONS", module.MIGRATIONS[:-1])
    monkeypatch.setattr(module, "SCHEMA_VERSION", latest - 1)
    open_journal(database_url).close()  # the previous release's schema
    monkeypatch.undo()
    first = flask(["db", "upgrade"], {"DATABASE_URL": database_url})
    assert first.returncode == 0 and first.stdout == f"migrated {latest - 1} → {latest}\n", first.output
    again = flask(["db", "upgrade"], {"DATABASE_URL": database_url})
    assert again.returncode == 0 and again.stdout == f"already at {latest}\n", again.output
