"""One rule for a ``.env`` file at every entry point: gunicorn (as the Procfile starts it) and the
``flask`` commands read the same file the same way, so ``flask check`` judges the settings the
service runs with; a variable set in the environment wins over the file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET, live_env, make_alert
from tests.service_process import REPO, ServiceProcess


@pytest.fixture
def clone(tmp_path):
    """A folder laid out like a clone (the app, its gunicorn config and wsgi.py) to put a .env in."""
    folder = tmp_path / "clone"
    folder.mkdir()
    for name in ("webhook_app", "wsgi.py", "gunicorn.conf.py"):
        (folder / name).symlink_to(REPO / name)
    return folder


def write_dotenv(folder, settings: dict[str, str]) -> None:
    (folder / ".env").write_text("".join(f"{name}={value}\n" for name, value in settings.items()))


def base_env(**extra) -> dict[str, str]:
    """What a terminal has: PATH, and no FLASK_SKIP_DOTENV (the tests' children otherwise carry it)."""
    return {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", "FLASK_SKIP_DOTENV": "", **extra}


def flask_check(folder, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webhook_app", "check"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def start(folder, env) -> ServiceProcess:
    service = ServiceProcess(env, cwd=folder)
    try:
        return service.start()
    except AssertionError:
        service.discard()
        raise


def test_gunicorn_and_flask_check_both_run_live_on_the_dotenv_files_settings(clone, okx, tmp_path):
    write_dotenv(clone, live_env(okx, tmp_path, ALLOWED_ALGO_IDS="581628185981813760"))
    service = start(clone, base_env())
    try:
        assert f"live: forwarding to {okx.base_url}" in service.log(), service.log()
        reply = requests.post(service.url + "/webhook", json=make_alert(id="from-dotenv"), timeout=5)
        assert reply.status_code == 200 and reply.json()["status"] == "ok", reply.text
        assert len(okx.executed) == 1
    finally:
        service.discard()
    check = flask_check(clone, base_env())
    assert check.returncode == 0, check.stdout + check.stderr
    assert "dry run" not in (check.stdout + check.stderr).lower()


def test_a_variable_set_in_the_environment_wins_over_the_dotenv_file_everywhere(clone, okx, tmp_path):
    write_dotenv(clone, live_env(okx, tmp_path))
    service = start(clone, base_env(DRY_RUN="1"))
    try:
        assert "DRY RUN (DRY_RUN=1)" in service.log(), service.log()
        reply = requests.post(service.url + "/webhook", json=make_alert(secret=WEBHOOK_SECRET), timeout=5)
        assert reply.json()["status"] == "dry_run" and okx.executed == []
    finally:
        service.discard()
    check = flask_check(clone, base_env(DRY_RUN="1"))
    assert "dry run" in (check.stdout + check.stderr).lower(), check.stdout + check.stderr


def test_flask_skip_dotenv_reads_no_file_anywhere(clone, okx, tmp_path):
    write_dotenv(clone, live_env(okx, tmp_path))
    service = start(clone, base_env(FLASK_SKIP_DOTENV="1", DATABASE_URL=f"sqlite:///{tmp_path}/skip.db"))
    try:
        assert "DRY RUN (no OKX credentials are set)" in service.log(), service.log()
    finally:
        service.discard()
