"""Limits on what a leaked or replayed alert can do."""

import collections
import ipaddress
import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.conftest import WEBHOOK_SECRET, MovableClock, make_alert, post_concurrently
from tests.okx_stand_in import OkxReply
from webhook_app.config import TRADINGVIEW_ADDRESSES
from webhook_app.intake.protection import Lockout, MemoryLockoutStore, client_address

TV = TRADINGVIEW_ADDRESSES[0]
STRANGER = "203.0.113.9"
PREVIOUS = "previous-secret-0123456789"


def iso(delta_seconds=0.0, fmt="%Y-%m-%dT%H:%M:%SZ"):
    return (datetime.now(UTC) + timedelta(seconds=delta_seconds)).strftime(fmt)


def post(client, alert, peer="127.0.0.1", forwarded=None):
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return client.post("/webhook", json=alert, headers=headers, environ_base={"REMOTE_ADDR": peer})


def log_says(caplog, status):
    return any(f"status={status}" in r.getMessage() for r in caplog.records)


# -- stale and replayed ---------------------------------------------------------------------


# Timestamps are made when the test runs (lambdas), not when pytest collects it.
@pytest.mark.parametrize(
    "timestamp",
    [
        lambda: iso(-5),
        lambda: iso(-55),
        lambda: iso(3),
        lambda: iso(-2, "%Y-%m-%dT%H:%M:%S.123Z"),
        lambda: datetime.now(timezone(timedelta(hours=2))).isoformat(timespec="seconds"),
        lambda: datetime.now(timezone(timedelta(hours=-5))).isoformat(),
    ],
    ids=["5s-ago", "55s-ago", "3s-ahead", "milliseconds", "plus-2h-offset", "minus-5h-microseconds"],
)
def test_fresh_alert_passes_in_any_utc_offset_and_precision(client, okx, timestamp):
    assert post(client, make_alert(timestamp=timestamp())).status_code == 200
    assert len(okx.executed) == 1


@pytest.mark.parametrize(
    "delta, max_lag",
    [(-61, None), (-400, 300), (-3 * 3600, None), (30, None), (-20, 10)],
    ids=["61s-ago", "past-own-lag", "3h-ago", "30s-ahead", "20s-ago-lag-10"],
)
def test_stale_or_future_alert_is_422_stale_and_not_sent(client, okx, caplog, delta, max_lag):
    changes = {"timestamp": iso(delta)} | ({"maxLag": max_lag} if max_lag else {})
    response = post(client, make_alert(**changes))
    assert response.status_code == 422
    assert response.json["status"] == "stale"
    assert response.json["errors"][0]["field"] == "timestamp"
    assert okx.received == []
    assert log_says(caplog, "stale")


@pytest.mark.parametrize("later", [61, 200, 298])
def test_a_captured_timestamped_alert_cannot_be_replayed_inside_its_lag(make_app, okx, later):
    clock = MovableClock()
    client = make_app(clock=clock, dedup_window=60).test_client()
    captured = make_alert(timestamp=iso(-1), maxLag=300)  # fresh for 299 s more
    assert post(client, captured).status_code == 200
    clock.advance(later)  # beyond DEDUP_WINDOW, inside the alert's own lag
    replay = post(client, captured)
    assert replay.status_code == 409, replay.json
    assert replay.json["matched"] == "fingerprint"
    assert len(okx.executed) == 1


def test_a_replay_is_judged_on_one_clock_whatever_this_hosts_says(make_app, okx, database_url, monkeypatch):
    """The database's clock 7 s behind this host's; a timestamped alert, then its replay 21 s
    later (past DEDUP_WINDOW, inside the alert's lag): executed at most once."""
    host = MovableClock()  # this host's clock
    app = make_app(clock=host, dedup_window=20, database_url=database_url)
    svc = app.extensions["webhook"]
    # As deployed (no clock injected): alerts are received on the journal's clock, not this host's.
    svc.intake.clock = None
    monkeypatch.setattr(svc.journal, "now", lambda: host() - 7)  # the database's clock, behind
    client = app.test_client()
    fired = datetime.fromtimestamp(host() - 1, UTC)  # TradingView's clock agrees with this host's
    captured = make_alert(timestamp=fired.isoformat(timespec="milliseconds"), maxLag=60)
    first = post(client, captured)
    host.advance(21)
    replay = post(client, captured)
    assert len(okx.executed) == 1, (first.json, replay.json)
    # Dated 6 s ahead of the journal's clock, the clock that also judges duplicates: refused as
    # from the future (TradingView does not resend a 422); 21 s on, the same alert is fresh.
    assert (first.json["status"], replay.status_code) == ("stale", 200)


def test_a_replay_after_its_lag_is_stale(make_app, okx):
    clock = MovableClock()
    client = make_app(clock=clock).test_client()
    captured = make_alert(timestamp=iso(-1), maxLag=300)
    assert post(client, captured).status_code == 200
    clock.advance(301)
    assert post(client, captured).json["status"] == "stale"
    assert len(okx.executed) == 1


def test_max_lag_widens_the_window(client, okx):
    assert post(client, make_alert(timestamp=iso(-120), maxLag=300)).status_code == 200


def test_max_lag_setting_is_the_default_lag(make_app, okx):
    client = make_app(max_lag=10).test_client()
    assert post(client, make_alert(timestamp=iso(-20))).status_code == 422
    assert post(client, make_alert(timestamp=iso(-5))).status_code == 200


def test_require_timestamp_refuses_alerts_without_one(make_app, okx, caplog):
    client = make_app(require_timestamp=True).test_client()
    response = post(client, make_alert())
    assert response.status_code == 422 and response.json["errors"][0]["field"] == "timestamp"
    assert okx.received == [] and log_says(caplog, "invalid")
    assert post(client, make_alert(timestamp=iso(-1))).status_code == 200


# -- who may send ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "peer, forwarded, hops, expected",
    [
        ("10.0.0.5", None, 0, "10.0.0.5"),
        ("10.0.0.5", TV, 0, "10.0.0.5"),  # no proxy trusted: header ignored
        ("10.0.0.5", f"{STRANGER}, {TV}", 1, TV),  # the router appended TV's address
        ("10.0.0.5", f"{TV}, {STRANGER}", 1, STRANGER),  # forged TV entry stands left: not read
        ("10.0.0.5", f"{TV}", 2, None),  # fewer entries than trusted hops
        ("10.0.0.5", f"{TV}, {STRANGER}, 10.1.1.1", 2, STRANGER),
        ("10.0.0.5", f"{STRANGER}, {TV}, 10.1.1.1", 2, TV),
        ("10.0.0.5", "not-an-ip", 1, None),
        ("10.0.0.5", "", 1, None),
    ],
)
def test_client_address_counts_trusted_hops_from_the_right(peer, forwarded, hops, expected):
    assert client_address(peer, [forwarded] if forwarded is not None else [], hops) == expected


def source_app(make_app, hops, sources="tradingview"):
    from webhook_app.config import Config

    networks = Config.from_env(
        {"WEBHOOK_SECRET": WEBHOOK_SECRET, "ALLOWED_SOURCES": sources, "DATABASE_URL": "sqlite:///:memory:"}
    ).protection.allowed_sources
    return make_app(allowed_sources=networks, trusted_proxy_hops=hops).test_client()


@pytest.mark.parametrize(
    "hops, peer, forwarded, allowed",
    [
        (0, TV, None, True),
        (0, STRANGER, TV, False),  # forged header, no proxy trusted
        (1, "10.0.0.1", f"{STRANGER}, {TV}", True),
        (1, "10.0.0.1", f"{TV}, {STRANGER}", False),  # client wrote TV's address itself
        (1, "10.0.0.1", None, False),
        (2, "10.0.0.1", f"{TV}, {STRANGER}, 10.9.9.9", False),
        (2, "10.0.0.1", f"{STRANGER}, {TV}, 10.9.9.9", True),
    ],
)
def test_forged_x_forwarded_for_cannot_pass_the_source_allowlist(make_app, okx, caplog, hops, peer, forwarded, allowed):
    client = source_app(make_app, hops)
    response = post(client, make_alert(), peer=peer, forwarded=forwarded)
    if allowed:
        assert response.status_code == 200, response.json
    else:
        assert response.status_code == 403
        assert response.json["status"] == "forbidden_source"
        assert okx.received == []
        assert log_says(caplog, "forbidden_source")


def test_cidr_ranges_are_allowed(make_app, okx):
    client = source_app(make_app, 0, sources="198.51.100.0/24, 2001:db8::/32")
    assert post(client, make_alert(), peer="198.51.100.77").status_code == 200
    assert post(client, make_alert(amount="2"), peer="2001:db8::5").status_code == 200
    assert post(client, make_alert(amount="3"), peer="198.51.101.1").status_code == 403


def test_source_is_refused_before_the_body_is_parsed(make_app, okx):
    client = source_app(make_app, 0)
    response = client.post("/webhook", data=b"not json", environ_base={"REMOTE_ADDR": STRANGER})
    assert response.status_code == 403


def test_wrong_secrets_lock_out_that_address_only(make_app, okx, caplog):
    client = make_app(lockout_threshold=3, lockout_seconds=60).test_client()
    for _ in range(3):
        assert post(client, make_alert(secret="guess-0123456789abcdef"), peer=STRANGER).status_code == 401
    locked = post(client, make_alert(), peer=STRANGER)  # even the right secret, while locked out
    assert locked.status_code == 429
    assert locked.json["status"] == "locked_out" and int(locked.headers["Retry-After"]) > 0
    assert log_says(caplog, "locked_out")
    assert post(client, make_alert(amount="2"), peer="198.51.100.1").status_code == 200
    assert len(okx.executed) == 1
    assert any("locked out 203.0.113.9" in r.getMessage() for r in caplog.records)


ROUTER = "10.1.2.3"  # a PaaS router's address, inside the platform's network


def test_behind_an_untrusted_router_a_strangers_guesses_never_block_tradingview(make_app, okx, caplog):
    client = make_app(lockout_threshold=3).test_client()  # the defaults: TRUSTED_PROXY_HOPS=0
    for _ in range(10):
        response = post(client, make_alert(secret="guess-0123456789abcdef"), peer=ROUTER, forwarded=STRANGER)
        assert response.status_code == 401
    assert post(client, make_alert(), peer=ROUTER, forwarded=TV).status_code == 200
    assert len(okx.executed) == 1
    warnings = [r for r in caplog.records if "TRUSTED_PROXY_HOPS=0" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"  # said once, not per request
    assert "set TRUSTED_PROXY_HOPS=1" in warnings[0].getMessage()


def test_a_client_writing_its_own_x_forwarded_for_is_still_locked_out(make_app, okx):
    client = make_app(lockout_threshold=3).test_client()  # no proxy: the peer is the client
    for _ in range(3):
        post(client, make_alert(secret="guess-0123456789abcdef"), peer=STRANGER, forwarded="198.51.100.1")
    assert post(client, make_alert(), peer=STRANGER, forwarded="198.51.100.2").status_code == 429
    assert okx.received == []


def test_tradingview_addresses_are_never_locked_out(make_app, okx):
    client = make_app(lockout_threshold=3, trusted_proxy_hops=1).test_client()
    for _ in range(10):  # anyone can aim wrong secrets at the URL through TradingView
        assert post(client, make_alert(secret="guess-0123456789abcdef"), forwarded=TV).status_code == 401
    assert post(client, make_alert(), forwarded=TV).status_code == 200
    assert len(okx.executed) == 1


def test_lockout_ends_and_forgets_old_failures():
    now = [0.0]
    lockout = Lockout(threshold=2, window=10, duration=30, store=MemoryLockoutStore(clock=lambda: now[0]))
    lockout.failure(STRANGER)
    now[0] = 11.0
    assert lockout.failure(STRANGER) is False  # the first fell out of the window
    assert lockout.failure(STRANGER) is True
    now[0] = 41.5
    lockout.check(STRANGER)  # no longer locked


def test_lockout_memory_is_bounded():
    store = MemoryLockoutStore(max_tracked=100)
    lockout = Lockout(threshold=5, window=60, duration=60, store=store)
    for i in range(1000):
        lockout.failure(str(ipaddress.ip_address(0x0A000000 + i)))
    assert len(store._failures) == 100


# -- what a valid alert may do --------------------------------------------------------------


def test_only_allowed_bots(make_app, okx, caplog):
    client = make_app(allowed_algo_ids=frozenset({"581628185981813760"})).test_client()
    response = post(client, make_alert(algoId="111"))
    assert response.status_code == 403
    assert response.json["status"] == "forbidden_bot" and response.json["errors"][0]["field"] == "algoId"
    assert okx.received == [] and log_says(caplog, "forbidden_bot")
    assert post(client, make_alert()).status_code == 200


def test_max_amount(make_app, okx, caplog):
    client = make_app(max_amount=Decimal("100")).test_client()
    over = post(client, make_alert(amount="100.01"))
    assert over.status_code == 422 and "MAX_AMOUNT" in over.json["errors"][0]["message"]
    assert okx.received == [] and log_says(caplog, "invalid")
    assert post(client, make_alert(amount="100")).status_code == 200


def test_daily_cap_per_bot_and_direction_with_remaining_allowance(make_app, okx, caplog):
    client = make_app(max_amount_per_day=Decimal("100")).test_client()
    assert post(client, make_alert(amount="60")).status_code == 200
    assert post(client, make_alert(amount="30")).status_code == 200
    over = post(client, make_alert(amount="20"))
    assert over.status_code == 422
    assert over.json["status"] == "over_daily_cap" and over.json["remaining"] == "10"
    assert log_says(caplog, "over_daily_cap")
    assert post(client, make_alert(amount="10")).status_code == 200  # exactly the cap
    assert post(client, make_alert(amount="50", action="reduce")).status_code == 200  # other direction
    assert post(client, make_alert(amount="50", algoId="42")).status_code == 200  # other bot
    assert sum(Decimal(b["amt"]) for b in okx.executed if b["type"] == "add" and b["algoId"] != "42") == 100


def test_refused_alerts_do_not_use_up_the_daily_cap(make_app, okx):
    client = make_app(max_amount_per_day=Decimal("100")).test_client()
    okx.play(OkxReply("51000", "Parameter error"))
    assert post(client, make_alert(amount="80")).status_code == 424
    assert post(client, make_alert(amount="90")).status_code == 200


def test_dry_run_alerts_count_against_the_daily_cap_so_it_can_be_tried(make_app, okx, database_url):
    client = make_app(dry_run=True, database_url=database_url, max_amount_per_day=Decimal("120")).test_client()
    first = post(client, make_alert(amount="50"))
    assert first.status_code == 200 and first.json["status"] == "dry_run", first.json
    over = post(client, make_alert(amount="80"))
    assert over.status_code == 422, over.json
    assert over.json["status"] == "over_daily_cap" and over.json["remaining"] == "70"
    assert over.json["errors"][0]["field"] == "amount" and "120" in over.json["errors"][0]["message"]
    assert post(client, make_alert(amount="70")).status_code == 200  # exactly the cap
    assert okx.received == []


def test_a_live_start_never_counts_the_dry_run_alerts_of_a_trial(make_app, okx, database_url):
    dry = make_app(dry_run=True, database_url=database_url, max_amount_per_day=Decimal("120")).test_client()
    assert post(dry, make_alert(amount="100", close="1")).json["status"] == "dry_run"
    dry.application.extensions["webhook"].delivery.stop(timeout=1)
    live = make_app(database_url=database_url, max_amount_per_day=Decimal("120")).test_client()
    reply = post(live, make_alert(amount="100", close="2"))  # the trial's 100 is not money that moved
    assert reply.status_code == 200 and reply.json["status"] == "ok", reply.json
    assert len(okx.executed) == 1


def test_daily_cap_holds_under_concurrency(make_app, okx):
    app = make_app(max_amount_per_day=Decimal("100"))
    replies = post_concurrently(app.test_client, [make_alert(amount="10", close=str(i)) for i in range(20)])
    statuses = sorted(r.status_code for r in replies)
    assert statuses.count(422) == 10 and len([s for s in statuses if s in (200, 202)]) == 10, statuses
    assert sum(Decimal(b["amt"]) for b in okx.executed) <= 100


# -- secret rotation ------------------------------------------------------------------------


def test_both_secrets_work_during_rotation_and_the_journal_says_which(make_app, okx, caplog):
    app = make_app(webhook_secret_previous=PREVIOUS)
    client = app.test_client()
    new = post(client, make_alert())
    old = post(client, make_alert(secret=PREVIOUS, amount="2"))
    assert new.status_code == 200 and old.status_code == 200
    journal = app.extensions["webhook"].journal
    assert journal.get(new.json["id"]).secret_name == "WEBHOOK_SECRET"
    assert journal.get(old.json["id"]).secret_name == "WEBHOOK_SECRET_PREVIOUS"
    assert post(client, make_alert(secret="neither-0123456789abc")).status_code == 401
    assert "secret=WEBHOOK_SECRET_PREVIOUS" in caplog.text
    assert PREVIOUS not in caplog.text


def test_startup_log_shows_protection_settings_but_no_secret(make_app, caplog):
    caplog.set_level(logging.INFO)
    make_app(
        webhook_secret_previous=PREVIOUS,
        max_amount=Decimal("250"),
        require_timestamp=True,
        allowed_actions=frozenset({"sell", "add", "buy"}),
        max_size=Decimal("3"),
    )
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("protection:"))
    assert "max amount=250" in line and "timestamp required" in line and "WEBHOOK_SECRET_PREVIOUS" in line
    assert "actions=add,buy,sell;" in line and "max size=3 contracts" in line
    assert PREVIOUS not in caplog.text and WEBHOOK_SECRET not in caplog.text


# -- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "secret",
    "algoId",
    "action",
    "type",
    "amount",
    "amt",
    "investmentType",
    "allowReinvest",
    "id",
    "timestamp",
    "maxLag",
]
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def fuzz_app(make_app, okx):
    okx.rate_limit = 10_000
    return make_app(
        okx_rate_limit=10_000, allowed_algo_ids=frozenset({"581628185981813760", "7"}), max_amount=Decimal("1000")
    )


class Examples:
    """Isolates Hypothesis examples from one another and counts what became of them.

    Each example comes from an address of its own (so ten wrong secrets in earlier examples
    do not lock later ones out) and carries a unique ``ticker`` (so an earlier example's
    fingerprint does not make it a duplicate)."""

    def __init__(self, app, okx):
        self.app, self.okx = app, okx
        self.count = 0
        self.outcomes = collections.Counter()

    def post(self, data, content_type="application/json"):
        self.count += 1
        peer = str(ipaddress.ip_address("198.18.0.0") + self.count)
        received_before = len(self.okx.margin_requests())
        response = self.app.test_client().post(
            "/webhook", data=data, content_type=content_type, environ_base={"REMOTE_ADDR": peer}
        )
        forwarded = len(self.okx.margin_requests()) - received_before
        self.check(response, forwarded)
        self.outcomes["forwarded" if forwarded else f"refused {response.status_code}"] += 1
        event(f"HTTP {response.status_code}")
        return response, forwarded

    def check(self, response, forwarded):
        text = response.get_data(as_text=True)
        okx = self.okx
        assert response.status_code != 429, text  # isolation holds: no example is locked out by another
        assert response.status_code < 500 or response.json["status"] in ("failed", "unavailable"), text
        assert WEBHOOK_SECRET not in text and okx.secret_key not in text and okx.passphrase not in text
        if response.status_code in (200, 202, 424):  # it reached OKX: then it was valid and allowed
            assert forwarded == 1, text
            body = json.loads(okx.margin_requests()[-1].body)
            assert body["algoId"] in ("581628185981813760", "7") and Decimal(body["amt"]) <= 1000
        else:
            assert forwarded == 0, text


def surely_valid(field, value):
    """An independent opinion, for a few fields, that the alert is valid with this value."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if field == "id":
        # NUL and lone surrogates cannot be stored: refused at parsing (400), whatever the field.
        storable = isinstance(value, str) and not any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in value)
        return storable and 1 <= len(value) <= 128 and "{{" not in value
    if field == "maxLag":
        return whole and 1 <= value <= 3600
    if field == "amount":
        return whole and 1 <= value <= 1000
    if field == "amt":  # OKX's name for amount, which the alert also carries ("10"): they must agree
        return whole and value == 10
    if field == "allowReinvest":
        return value is False
    return False


def test_any_value_in_any_field_is_handled(fuzz_app, okx):
    examples = Examples(fuzz_app, okx)

    @PROPERTY_SETTINGS
    @given(field=st.sampled_from(FIELDS), value=json_values | st.integers(1, 1000) | st.text(min_size=1, max_size=30))
    # Valid values, so the forwarded branch runs in every run, whatever Hypothesis draws.
    @example(field="id", value="Long")
    @example(field="maxLag", value=30)
    @example(field="amount", value=1000)
    @example(field="allowReinvest", value=False)
    @example(field="amt", value=10)
    @example(field="id", value="é")
    def run(field, value):
        alert = make_alert(ticker=f"example-{examples.count}", **{field: value})
        response, forwarded = examples.post(json.dumps(alert))
        if surely_valid(field, value):
            assert response.status_code == 200 and forwarded == 1, (field, value, response.json)

    run()
    # Both branches ran, many times: valid alerts were forwarded, invalid ones refused.
    assert examples.outcomes["forwarded"] >= 6, examples.outcomes
    assert sum(n for k, n in examples.outcomes.items() if k.startswith("refused 422")) >= 20, examples.outcomes


def test_any_json_body_is_handled(fuzz_app, okx):
    examples = Examples(fuzz_app, okx)

    @PROPERTY_SETTINGS
    @given(
        body=json_values
        | st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6).map(
            lambda fields: {**fields, "secret": WEBHOOK_SECRET}
        )
    )
    def run(body):
        response, forwarded = examples.post(json.dumps(body))
        assert forwarded == 0  # no random body makes a whole valid alert

    run()
    assert examples.outcomes["refused 422"] >= 20 and examples.outcomes["refused 401"] >= 5, examples.outcomes


def test_any_bytes_are_handled(fuzz_app, okx):
    examples = Examples(fuzz_app, okx)

    @PROPERTY_SETTINGS
    @given(body=st.binary(max_size=300))
    def run(body):
        response, forwarded = examples.post(body, content_type="text/plain")
        assert forwarded == 0

    run()
    assert examples.outcomes["refused 400"] >= 20, examples.outcomes
