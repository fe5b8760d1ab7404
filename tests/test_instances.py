"""Several instances on one PostgreSQL journal, each started as the Procfile starts it (gunicorn,
its config, wsgi.py), against the loopback OKX stand-in: the guarantees hold for all of them."""

import concurrent.futures
import shutil
import time

import psycopg
import pytest
import requests

from tests.conftest import WEBHOOK_SECRET, live_env, make_alert
from tests.okx_stand_in import Slow
from tests.service_process import REPO, ServiceProcess


@pytest.fixture
def instances(okx, pg_url, tmp_path):
    """Starts instances of the service on one PostgreSQL database; all are killed afterwards."""
    started = []

    def start(cwd=REPO, **extra):
        env = live_env(okx, tmp_path, DATABASE_URL=pg_url, **extra)
        service = ServiceProcess(env, cwd=cwd).start(timeout=30)
        started.append(service)
        return service

    yield start
    for service in started:
        service.discard()


def post_spread(services, alerts, timeout=10):
    """POST the alerts at once, alternating between the instances; returns (reply, seconds) pairs."""

    def one(i):
        began = time.monotonic()
        reply = requests.post(services[i % len(services)].url + "/webhook", json=alerts[i], timeout=timeout)
        return reply, time.monotonic() - began

    with concurrent.futures.ThreadPoolExecutor(len(alerts)) as pool:
        return list(pool.map(one, range(len(alerts))))


def states(pg_url):
    with psycopg.connect(pg_url) as db:
        return dict(db.execute("SELECT id, state FROM alerts ORDER BY id").fetchall())


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_a_burst_spread_over_two_instances_keeps_one_rate_limit(instances, okx, pg_url):
    a, b = instances(), instances()
    replies = post_spread([a, b], [make_alert(amount=str(n)) for n in range(1, 61)])
    assert {r.status_code for r, _ in replies} <= {200, 202}
    assert max(seconds for _, seconds in replies) < 3.0  # TradingView cancels at 3 s
    wait_for(lambda: set(states(pg_url).values()) == {"ok"}, 30, "all 60 sent")
    assert okx.rate_limited == 0 and okx.max_in_any_window() <= 20
    assert sorted(int(body["amt"]) for body in okx.executed) == list(range(1, 61))  # each once
    with psycopg.connect(pg_url) as db:
        senders = {row[0] for row in db.execute("SELECT DISTINCT claimed_by FROM alerts")}
    assert len(senders) == 2  # both sent, one budget


def test_ten_identical_alerts_spread_over_two_instances_are_sent_once(instances, okx):
    a, b = instances(), instances()
    replies = post_spread([a, b], [make_alert()] * 10)
    assert sorted(r.status_code for r, _ in replies) == [200] + [409] * 9
    assert len(okx.executed) == 1


def test_the_daily_cap_holds_across_two_instances(instances, okx):
    a, b = instances(MAX_AMOUNT_PER_DAY="100"), instances(MAX_AMOUNT_PER_DAY="100")
    replies = post_spread([a, b], [make_alert(amount="10", ticker=f"T{n}") for n in range(20)])
    codes = sorted(r.status_code for r, _ in replies)
    assert codes.count(422) == 10 and len([c for c in codes if c in (200, 202)]) == 10
    assert sum(float(body["amt"]) for body in okx.executed) <= 100


def test_a_killed_instances_alerts_are_taken_over_within_30_seconds(instances, okx, pg_url):
    # The lease: 3 s to send + 1 s connect + 12 s read + 5 s margin = 21 s after the claim.
    a = instances(OKX_RATE_LIMIT="2", OKX_READ_TIMEOUT="12", REPLY_DEADLINE="0.3")
    okx.play(Slow(10), Slow(10))  # OKX acts on the first two, and is slow to say so
    # Six bots, so that two may be in flight at once.
    replies = post_spread([a], [make_alert(amount=str(n), algoId=f"58162818598181376{n}") for n in range(1, 7)])
    assert {r.status_code for r, _ in replies} == {202}
    wait_for(lambda: len(okx.executed) == 2, 5, "two in flight")
    b = instances(OKX_RATE_LIMIT="2")
    a.kill()  # SIGKILL: no chance to say goodbye
    killed_at = time.monotonic()
    done = wait_for(lambda: all(s in ("ok", "unknown") for s in states(pg_url).values()), 40, "the survivor took over")
    assert done - killed_at < 30
    assert sorted(states(pg_url).values()) == ["ok"] * 4 + ["unknown"] * 2
    assert sorted(int(body["amt"]) for body in okx.executed) == [1, 2, 3, 4, 5, 6]  # nothing twice
    assert b.process.poll() is None


def test_restarting_one_instance_never_touches_what_the_other_is_sending(instances, okx, pg_url):
    a = instances(OKX_READ_TIMEOUT="20", REPLY_DEADLINE="0.3")
    b = instances()
    okx.play(Slow(4))
    reply = requests.post(a.url + "/webhook", json=make_alert(), timeout=5)
    assert reply.json()["status"] == "sending"
    b.terminate()  # a deploy restarts b while a is still waiting for OKX
    instances()
    wait_for(lambda: states(pg_url)[reply.json()["id"]] != "sending", 15, "a finished its send")
    assert states(pg_url)[reply.json()["id"]] == "ok"  # not a false "unknown"
    assert len(okx.executed) == 1


def test_a_fresh_copy_without_an_instance_folder_remembers_ids_and_goes_on(instances, okx, tmp_path, pg_url):
    first = instances()
    original = requests.post(first.url + "/webhook", json=make_alert(id="BTC-Long-1"), timeout=5).json()
    first.terminate()
    fresh = tmp_path / "fresh-deploy"  # a new dyno: the code, and no instance/ folder
    shutil.copytree(REPO, fresh, ignore=shutil.ignore_patterns(".git", ".venv", "instance", "__pycache__", ".*cache"))
    second = instances(cwd=fresh)
    repeat = requests.post(second.url + "/webhook", json=make_alert(id="BTC-Long-1"), timeout=5)
    assert repeat.status_code == 409 and repeat.json()["id"] == original["id"]
    new = requests.post(second.url + "/webhook", json=make_alert(id="BTC-Long-2"), timeout=5).json()
    assert new["id"] > original["id"]
    assert not (fresh / "instance").exists()
    assert len(okx.executed) == 2


def test_a_second_sender_on_one_sqlite_file_refuses_to_start(okx, tmp_path):
    env = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "DATABASE_URL": f"sqlite:///{tmp_path}/alerts.db"}
    first = ServiceProcess(env).start()
    second = ServiceProcess(env)
    try:
        with pytest.raises(AssertionError) as failure:
            second.start(timeout=20)
        assert "SQLite serves one process" in str(failure.value)
        assert first.process.poll() is None  # the first goes on
    finally:
        first.discard()
        second.discard()


def test_on_sigterm_an_instances_queued_alerts_are_sent_by_the_others(instances, okx, pg_url):
    a = instances(OKX_RATE_LIMIT="1", REPLY_DEADLINE="0.3")
    b = instances(OKX_RATE_LIMIT="1")
    replies = post_spread([a], [make_alert(amount=str(n), algoId=f"58162818598181376{n}") for n in range(1, 6)])
    assert {r.status_code for r, _ in replies} <= {200, 202}
    a.terminate()  # a deploy stops a; one request per 2 s means most of them were still queued
    wait_for(lambda: set(states(pg_url).values()) == {"ok"}, 25, "b sent what a left queued")
    with psycopg.connect(pg_url) as db:
        senders = dict(db.execute("SELECT id, claimed_by FROM alerts").fetchall())
    a_pid = f":{a.worker_pid_at_start}:"
    sent_by_a = sum(1 for sender in senders.values() if a_pid in sender)
    # a may send while it drains (one per 2 s, the budget shared with b); b sends what a left queued.
    assert sent_by_a <= 3 and len(senders) - sent_by_a >= 2, senders
    assert sorted(int(body["amt"]) for body in okx.executed) == [1, 2, 3, 4, 5]
    assert b.process.poll() is None
