"""Every background worker's life is ``Services.start``/``stop``'s: after ``stop`` none of ours runs."""

import threading
import time

from tests.conftest import make_alert, wait_final

# The names our workers' threads carry (the journal's PostgreSQL pools: pool-N-...).
OURS = (
    "okx-dispatcher",
    "okx-sender",
    "okx-at-once",
    "heartbeat",
    "readiness",
    "bot-watch",
    "investigator",
    "notifier",
)
OURS += ("refusal-log", "pool-")


def ours(before=()) -> list[str]:
    """Our workers' threads now, but for those in ``before`` (other tests' apps, not stopped by them)."""
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(OURS) and t not in before)


def test_stop_ends_every_worker_started_on_either_journal(make_app, database_url):
    before = set(threading.enumerate())
    app = make_app(database_url=database_url, notify_urls=("json://127.0.0.1:9/",))
    services = app.extensions["webhook"]
    services.start()
    alert_id = app.test_client().post("/webhook", json=make_alert()).json["id"]
    assert wait_final(app, alert_id).state == "ok"
    running = ours(before)
    expected = {"okx-dispatcher", "okx-sender", "readiness", "bot-watch", "investigator", "notifier", "refusal-log"}
    if database_url.startswith("postgresql"):  # a lone alert goes at once, on a sender of its own
        expected = expected - {"okx-sender"} | {"heartbeat", "pool-", "okx-at-once"}
    assert {prefix for prefix in OURS if any(name.startswith(prefix) for name in running)} == expected, running

    started = time.monotonic()
    services.stop(timeout=4)
    assert time.monotonic() - started < 4
    # The delivery's pool leaves its idle senders to end on their own, at once: give them a moment.
    end = time.monotonic() + 1
    while ours(before) and time.monotonic() < end:
        time.sleep(0.01)
    assert ours(before) == []
    services.stop()  # once: a second stop does nothing
