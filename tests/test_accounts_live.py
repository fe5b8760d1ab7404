"""Issue 15 through gunicorn: one deployment sending to two OKX accounts (two loopback stand-ins
with different keys), two instances on one PostgreSQL database, each account with its own key,
budget and bots."""

import concurrent.futures
import time
from decimal import Decimal

import pytest
import requests

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, make_alert
from tests.okx_stand_in import OkxStandIn

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MAIN_BOTS = [f"60000000000000000{n}" for n in range(4)]
HEDGE_BOTS = [f"70000000000000000{n}" for n in range(4)]


@pytest.fixture
def accounts():
    """Two OKX accounts: two stand-ins, each knowing only its own key and its own bots."""
    main = OkxStandIn(api_key="main-key-0123456789", secret_key="main-secret-0123456789abcd", passphrase="main-pass-1")
    hedge = OkxStandIn(
        api_key="hedge-key-0123456789", secret_key="hedge-secret-0123456789abc", passphrase="hedge-pass-1"
    )
    for stand_in, bots in ((main, MAIN_BOTS), (hedge, HEDGE_BOTS)):
        stand_in.bots.unlisted_run = False  # an account knows its own bots only
        stand_in.bots.clear()
        for algo_id in bots:
            stand_in.add_bot(algo_id, avail_bal=Decimal("10000"), total_eq=Decimal("10100"))
        stand_in.start()
    yield {"main": main, "hedge": hedge}
    main.stop()
    hedge.stop()


def accounts_env(accounts, database_url, **changes):
    env = {
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "DATABASE_URL": database_url,
        "OKX_ACCOUNTS": "main,hedge",
        "BOT_REFRESH_SECONDS": "60",
    }
    for name, bots in (("main", MAIN_BOTS), ("hedge", HEDGE_BOTS)):
        stand_in, prefix = accounts[name], f"OKX_{name.upper()}_"
        env.update(
            {
                prefix + "API_KEY": stand_in.api_key,
                prefix + "API_SECRET": stand_in.secret_key,
                prefix + "API_PASSPHRASE": stand_in.passphrase,
                prefix + "BASE_URL": stand_in.base_url,
                prefix + "ALGO_IDS": ",".join(bots),
            }
        )
    env.update(changes)
    return env


def most_in_any_window(times, window=2.0):
    times, most, start = sorted(times), 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def wait_final(url, ids, timeout=60.0):
    deadline, states = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        listed = requests.get(f"{url}/alerts", params={"limit": 500}, headers=BEARER, timeout=5).json()["alerts"]
        states = {a["id"]: (a["state"], a["account"]) for a in listed if a["id"] in ids}
        if len(states) == len(ids) and all(s not in ("queued", "sending") for s, _ in states.values()):
            return states
        time.sleep(0.1)
    raise AssertionError(f"not final after {timeout} s: {states}")


def test_two_accounts_drain_their_bursts_in_parallel_each_with_its_own_key_and_budget(
    accounts, pg_url, service_factory
):
    env = accounts_env(accounts, pg_url)
    first, second = service_factory(env), service_factory(env)
    jobs = []  # (instance url, account named or None (routed by its bot), bot, amount)
    for n in range(40):
        jobs.append((first.url if n % 2 else second.url, "main" if n % 3 else None, MAIN_BOTS[n % 4], f"{n + 1}"))
        jobs.append((second.url if n % 2 else first.url, "hedge" if n % 3 else None, HEDGE_BOTS[n % 4], f"{n + 1}.5"))

    def post(job):
        url, account, bot, amount = job
        alert = make_alert(algoId=bot, amount=amount) | ({"account": account} if account else {})
        started = time.monotonic()
        reply = requests.post(url + "/webhook", json=alert, timeout=10)
        return reply, time.monotonic() - started

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(post, jobs))
    assert all(r.status_code in (200, 202) for r, _ in replies), [r.text for r, _ in replies if r.status_code >= 300]
    ids = {r.json()["id"] for r, _ in replies}
    states = wait_final(first.url, ids)
    drained = time.monotonic() - started
    assert sorted(set(states.values())) == [("ok", "hedge"), ("ok", "main")]
    assert sum(1 for _, account in states.values() if account == "main") == 40

    main, hedge = accounts["main"], accounts["hedge"]
    # Each alert reached its own account only, signed with that account's key (the stand-in checks it).
    assert sorted(b["algoId"] for b in main.executed) == sorted(MAIN_BOTS * 10)
    assert sorted(b["algoId"] for b in hedge.executed) == sorted(HEDGE_BOTS * 10)
    assert {r.headers["OK-ACCESS-KEY"] for r in main.margin_requests()} == {main.api_key}
    assert {r.headers["OK-ACCESS-KEY"] for r in hedge.margin_requests()} == {hedge.api_key}
    # Each account within its own limit, and the two drained side by side, not one after the other.
    for stand_in in (main, hedge):
        assert stand_in.max_in_any_window() <= 20 and stand_in.rate_limited == 0
    spans = {name: (min(s.counted_times), max(s.counted_times)) for name, s in (("main", main), ("hedge", hedge))}
    overlap = min(spans["main"][1], spans["hedge"][1]) - max(spans["main"][0], spans["hedge"][0])
    slowest = max(seconds for _, seconds in replies)
    print(
        f"\n80 alerts (40 per account) over 2 instances: drained in {drained:.1f} s; "
        f"main sent {spans['main'][1] - spans['main'][0]:.1f} s, hedge {spans['hedge'][1] - spans['hedge'][0]:.1f} s, "
        f"overlapping {overlap:.1f} s; most in 2 s: main {main.max_in_any_window()}, "
        f"hedge {hedge.max_in_any_window()}, both {most_in_any_window(main.counted_times + hedge.counted_times)}; "
        f"slowest reply {slowest:.2f} s"
    )
    # Side by side: within some 2 s both accounts were sending at once, more than one account's 20 in all
    # (one shared budget, or one account after the other, would never pass 20).
    assert most_in_any_window(main.counted_times + hedge.counted_times) > 20
    assert slowest < 3.0  # TradingView gives up at 3 s


def test_one_account_with_a_wrong_key_leaves_the_other_ready_and_sending(accounts, tmp_path, service_factory):
    env = accounts_env(accounts, f"sqlite:///{tmp_path}/alerts.db", OKX_HEDGE_API_KEY="hedge-key-9999999999")
    service = service_factory(env)
    deadline, ready = time.monotonic() + 20, None
    while time.monotonic() < deadline:
        ready = requests.get(service.url + "/readyz", headers=BEARER, timeout=5)
        if ready.json()["status"] != "starting":
            break
        time.sleep(0.2)
    body = ready.json()
    assert ready.status_code == 200 and body["status"] == "ready", body
    failing = [c for c in body["checks"] if not c["ok"]]
    assert failing and {c["account"] for c in failing} == {"hedge"} and failing[0]["name"].startswith("hedge ")
    assert all(c["ok"] for c in body["checks"] if c["account"] == "main")
    assert any("OKX_HEDGE_API_KEY" in c["hint"] for c in failing), failing  # the hint names hedge's own setting
    assert "hedge-key-9999999999" not in ready.text  # the key is named by its account, never shown

    sent = requests.post(service.url + "/webhook", json=make_alert(algoId=MAIN_BOTS[0]), timeout=5)
    assert sent.status_code == 200 and sent.json()["status"] == "ok", sent.text
    refused = requests.post(service.url + "/webhook", json=make_alert(algoId=HEDGE_BOTS[0]), timeout=5)
    assert refused.status_code == 424 and refused.json()["okx"]["code"] == "50111", refused.text  # OKX: wrong key
    assert len(accounts["main"].executed) == 1 and accounts["hedge"].executed == []
