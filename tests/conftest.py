import threading
import time

import pytest

from webhook_app import Config, create_app
from tests.okx_stand_in import OkxStandIn

WEBHOOK_SECRET = "tv-secret-0123456789-abcdef"
ADMIN_TOKEN = "admin-token-0123456789-xyz"
DELETE = object()


def make_alert(**changes):
    """A valid alert; each keyword changes one field (DELETE removes it)."""
    alert = {"secret": WEBHOOK_SECRET, "algoId": "581628185981813760", "action": "add", "amount": "10",
             "ticker": "BTCUSDT.P", "close": "64000.5"}
    for key, value in changes.items():
        if value is DELETE:
            alert.pop(key, None)
        else:
            alert[key] = value
    return alert


@pytest.fixture
def okx():
    stand_in = OkxStandIn().start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def make_app(tmp_path, okx):
    """Build an app wired to the stand-in OKX; keyword arguments override Config fields."""
    apps = []

    def build(**overrides):
        settings = dict(
            webhook_secret=WEBHOOK_SECRET, okx_api_key=okx.api_key, okx_api_secret=okx.secret_key,
            okx_api_passphrase=okx.passphrase, okx_base_url=okx.base_url, dry_run=False,
            database_url=f"sqlite:///{tmp_path}/journal-{len(apps)}.db", admin_token=ADMIN_TOKEN,
            okx_read_timeout=1.0, okx_connect_timeout=0.5)
        settings.update(overrides)
        app = create_app(Config(**settings))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["webhook"].delivery.stop(timeout=2)
        app.extensions["webhook"].journal.close()


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
