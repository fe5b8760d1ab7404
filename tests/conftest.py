import dataclasses
import os
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.okx_stand_in import OkxStandIn
from webhook_app import Config, create_app
from webhook_app.clock import SYSTEM_CLOCK
from webhook_app.config import DEFAULT_ACCOUNT, OkxAccount

WEBHOOK_SECRET = "tv-secret-0123456789-abcdef"
ADMIN_TOKEN = "admin-token-0123456789-xyz"
DELETE = object()


# An alert for a percentage_investment bot that counts the margin into its investment: only then does
# a margin change move investAmt, which PnL never does, so only then can OKX's records say "executed".
REINVESTED = {"investmentType": "percentage_investment", "allowReinvest": True}


def make_alert(**changes):
    """A valid alert; each keyword changes one field (DELETE removes it)."""
    alert = {
        "secret": WEBHOOK_SECRET,
        "algoId": "581628185981813760",
        "action": "add",
        "amount": "10",
        "ticker": "BTCUSDT.P",
        "close": "64000.5",
    }
    return changed(alert, changes)


def changed(alert: dict, changes: dict) -> dict:
    """``alert`` with each of ``changes`` applied: a new value, or DELETE to remove the field."""
    for key, value in changes.items():
        if value is DELETE:
            alert.pop(key, None)
        else:
            alert[key] = value
    return alert


# Each action's own fields in a valid alert (besides secret and algoId); the instrument is one the stand-in lists.
ACTION_FIELDS = {
    "add": {"amount": "10"},
    "reduce": {"amount": "10"},
    "buy": {"instId": "BTC-USDT-SWAP", "size": "2"},
    "sell": {"instId": "BTC-USDT-SWAP", "size": "2"},
    "close": {"instId": "BTC-USDT-SWAP"},
    "cancel": {"instId": "BTC-USDT-SWAP"},
    "tpsl": {"tpSlType": "pnl", "tpPct": "0.05", "slPct": "0.02"},
    "stop": {},
}
ALL_ACTIONS = frozenset(ACTION_FIELDS)


def make_action_alert(action, /, **changes):
    """A valid alert of ``action`` (one of ACTION_FIELDS); each keyword changes one field (DELETE removes it)."""
    alert = {"secret": WEBHOOK_SECRET, "algoId": "581628185981813760", "action": action, **ACTION_FIELDS[action]}
    alert["ticker"] = "BTCUSDT.P"  # a trader's own field: ignored, never forwarded
    return changed(alert, changes)


# The flat names tests give a Config's settings, each onto its section's field (None: a field of Config's own).
FLAT_SETTINGS = {
    "webhook_secret": ("webhook", "secret"),
    "webhook_secret_previous": ("webhook", "previous"),
    "dry_run": ("okx", "dry_run"),
    "okx_rate_window": ("okx", "rate_window"),
    "okx_connect_timeout": ("okx", "connect_timeout"),
    "okx_read_timeout": ("okx", "read_timeout"),
    "okx_accounts": ("okx", "accounts"),
    "database_url": (None, "database_url"),
    "admin_token": (None, "admin_token"),
    "reply_deadline": ("delivery", "reply_deadline"),
    "okx_max_attempts": ("delivery", "max_attempts"),
    "max_lag": ("delivery", "max_lag"),
    "retention_days": ("delivery", "retention_days"),
    "max_body_bytes": ("web", "max_body_bytes"),
    "trusted_proxy_hops": ("web", "trusted_proxy_hops"),
    "public_url": ("web", "public_url"),
    "dedup_window": ("protection", "dedup_window"),
    "id_window": ("protection", "id_window"),
    "require_timestamp": ("protection", "require_timestamp"),
    "allowed_sources": ("protection", "allowed_sources"),
    "allowed_algo_ids": ("protection", "allowed_algo_ids"),
    "max_amount": ("protection", "max_amount"),
    "max_amount_per_day": ("protection", "max_amount_per_day"),
    "allowed_actions": ("protection", "allowed_actions"),
    "max_size": ("protection", "max_size"),
    "lockout_threshold": ("protection", "lockout_threshold"),
    "lockout_window": ("protection", "lockout_window"),
    "lockout_seconds": ("protection", "lockout_seconds"),
    "refused_per_minute": ("refusals", "per_minute"),
    "refused_retention_days": ("refusals", "retention_days"),
    "resolve_unknown": ("unknowns", "resolve"),
    "unknown_settle": ("unknowns", "settle"),
    "unknown_recheck": ("unknowns", "recheck"),
    "bot_refresh": ("unknowns", "bot_refresh"),
    "bot_state_max_age": ("unknowns", "bot_max_age"),
    "notify_urls": ("notify", "urls"),
    "notify_on": ("notify", "events"),
    "tls_cert_file": ("tls", "cert_file"),
    "client_cert": ("tls", "client_cert"),
    "cert_subject": ("tls", "subject"),
}
# ...and those of the one default account (without okx_accounts); its bots are allowed_algo_ids.
DEFAULT_ACCOUNT_SETTINGS = {
    "okx_api_key": "api_key",
    "okx_api_secret": "api_secret",
    "okx_api_passphrase": "passphrase",
    "okx_base_url": "base_url",
    "okx_demo": "demo",
    "okx_rate_limit": "rate_limit",
    "allowed_algo_ids": "algo_ids",
}


def make_config(**flat) -> Config:
    """A Config from flat settings (``max_amount=…``, ``okx_rate_limit=…``), each put in its section."""
    account = {DEFAULT_ACCOUNT_SETTINGS[name]: flat[name] for name in DEFAULT_ACCOUNT_SETTINGS if name in flat}
    if "okx_accounts" not in flat:
        flat["okx_accounts"] = (OkxAccount(DEFAULT_ACCOUNT, **account),)
    sections, defaults = {}, Config()
    for name, value in flat.items():
        if name in DEFAULT_ACCOUNT_SETTINGS and name not in FLAT_SETTINGS:
            continue
        section, field = FLAT_SETTINGS[name]
        if section is None:
            sections[field] = value
        else:
            sections[section] = dataclasses.replace(sections.get(section, getattr(defaults, section)), **{field: value})
    return Config(**sections)


class MovableClock:
    """Wall-clock time that a test can move forward, instead of sleeping."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


# The PostgreSQL server the journal's tests use. CI sets REQUIRE_POSTGRES=1, which turns
# "not reachable" from a skip into a failure.
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced by ``name`` (query string kept)."""
    head, _, query = url.partition("?")
    return head.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


@pytest.fixture(scope="session")
def run_database_url():
    """A database of this test run's own, dropped at its end: advisory locks and the journal's
    sessions are per database, so parallel runs on one server never meet."""
    try:
        admin = psycopg.connect(TEST_DATABASE_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL is not reachable at TEST_DATABASE_URL ({str(exc).strip().splitlines()[0]})"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"relay_run_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE DATABASE {name}")
    yield _with_database(TEST_DATABASE_URL, name)
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture
def pg_url(run_database_url):
    """A URL to an empty schema of its own in this run's database, dropped afterwards."""
    admin = psycopg.connect(run_database_url, autocommit=True, connect_timeout=3)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in run_database_url else "?"
    yield f"{run_database_url}{separator}options=-csearch_path%3D{schema}"
    # An app the test built may still be in its first round on this schema (fixtures end in the
    # reverse order they were asked for): a deadlock with it is tried again, and the run's database
    # is dropped whole at the end in any case.
    for _ in range(10):
        try:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
            break
        except psycopg.errors.DeadlockDetected:
            time.sleep(0.2)
    admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """Each journal backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/journal.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def okx():
    stand_in = OkxStandIn().start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def make_app(tmp_path, okx):
    """Build an app wired to the stand-in OKX; keyword arguments override settings (``make_config``'s flat
    names). ``local_clock``:
    the app's elapsed time (a ``ManualClock`` the test moves, e.g. to the investigator's second read)."""
    apps = []

    def build(clock=None, local_clock=SYSTEM_CLOCK, **overrides):
        settings = dict(
            webhook_secret=WEBHOOK_SECRET,
            okx_api_key=okx.api_key,
            okx_api_secret=okx.secret_key,
            okx_api_passphrase=okx.passphrase,
            okx_base_url=okx.base_url,
            dry_run=False,
            database_url=f"sqlite:///{tmp_path}/journal-{len(apps)}.db",
            admin_token=ADMIN_TOKEN,
            okx_read_timeout=1.0,
            okx_connect_timeout=0.5,
        )
        settings.update(overrides)
        app = create_app(make_config(**settings), clock=clock, local_clock=local_clock)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["webhook"].stop(timeout=4)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def post_concurrently(client_factory, bodies):
    """POST each body at once from its own thread; returns the responses in order."""
    results = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def run(i, body):
        c = client_factory()
        barrier.wait()
        results[i] = c.post("/webhook", json=body)

    threads = [threading.Thread(target=run, args=(i, b)) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def eventually(condition, timeout=5.0):
    """``condition()``'s first truthy answer, asked until ``timeout`` s have passed: a wait on a
    timer that runs elsewhere (the stand-in's, a worker's), with no margin to guess."""
    deadline = time.monotonic() + timeout
    while not (answer := condition()):
        assert time.monotonic() < deadline, f"still not so after {timeout} s"
        time.sleep(0.02)
    return answer


def wait_final(app, alert_id, timeout=10.0):
    """The alert's journal record once it reaches a final state."""
    journal = app.extensions["webhook"].journal
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        record = journal.get(alert_id)
        if record.final:
            return record
        time.sleep(0.02)
    raise AssertionError(f"alert {alert_id} still {record.state}")


def wait_proposal(app, alert_id, timeout=20.0):
    """The alert once OKX's records have been read for it and a finding proposed."""
    journal = app.extensions["webhook"].journal
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        record = journal.get(alert_id)
        if record.proposal is not None:
            return record
        time.sleep(0.05)
    raise AssertionError(f"alert {alert_id} has no proposal after {timeout} s: {journal.get(alert_id)}")


def screenshot_dir() -> Path:
    """Where browser tests put their screenshots (printed at the end of the run)."""
    return Path(os.environ.get("SCREENSHOT_DIR", Path(__file__).resolve().parents[1] / "build" / "screenshots"))


_SESSION_STARTED = time.time()


def pytest_terminal_summary(terminalreporter):
    shots = [p for p in screenshot_dir().glob("*.png") if p.stat().st_mtime >= _SESSION_STARTED]
    if shots:
        terminalreporter.write_line(f"screenshots of the operator page ({len(shots)}): {screenshot_dir()}")


@pytest.fixture
def service_factory():
    """Starts the service as the Procfile does (tests/service_process.py); all are discarded afterwards."""
    from tests.service_process import ServiceProcess

    started = []

    def start(env, **options):
        service = ServiceProcess(env, **options).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.discard()


def live_env(okx, tmp_path, **extra):
    """The environment of a live service (as the Procfile starts it) sending to the stand-in."""
    return {
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "OKX_API_KEY": okx.api_key,
        "OKX_API_SECRET": okx.secret_key,
        "OKX_API_PASSPHRASE": okx.passphrase,
        "OKX_BASE_URL": okx.base_url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/alerts.db",
        **extra,
    }
