"""An IPv4 address written as IPv4-mapped IPv6 (``::ffff:a.b.c.d``, as a dual-stack socket or a
proxy may report it) is the same address everywhere: TradingView's list, allowlists, lockouts."""

import pytest

from tests.conftest import WEBHOOK_SECRET, make_alert
from webhook_app.config import TRADINGVIEW_ADDRESSES, Config
from webhook_app.intake.protection import client_address, is_tradingview

BOTH_FORMS = [(a, form) for a in TRADINGVIEW_ADDRESSES for form in ("plain", "mapped")]
STRANGER = "203.0.113.9"


def written(address, form):
    return address if form == "plain" else f"::ffff:{address}"


@pytest.mark.parametrize("address, form", BOTH_FORMS)
def test_tradingview_is_recognised_in_either_form(address, form):
    assert is_tradingview(written(address, form))
    assert client_address(written(address, form), [], 0) == address
    assert client_address("10.0.0.1", [f"{STRANGER}, {written(address, form)}"], 1) == address


@pytest.mark.parametrize("address, form", BOTH_FORMS)
@pytest.mark.parametrize("via", ["peer", "x-forwarded-for"])
def test_tradingview_in_either_form_is_never_locked_out_and_passes_the_allowlist(make_app, okx, address, form, via):
    hops = 1 if via == "x-forwarded-for" else 0
    sources = Config.from_env(
        {"WEBHOOK_SECRET": WEBHOOK_SECRET, "ALLOWED_SOURCES": "tradingview", "DATABASE_URL": "sqlite:///:memory:"}
    ).protection.allowed_sources
    client = make_app(lockout_threshold=3, trusted_proxy_hops=hops, allowed_sources=sources).test_client()
    sender = written(address, form)
    if via == "peer":
        request = {"environ_base": {"REMOTE_ADDR": sender}}
    else:
        request = {"environ_base": {"REMOTE_ADDR": "10.0.0.1"}, "headers": {"X-Forwarded-For": sender}}
    for _ in range(5):
        assert client.post("/webhook", json=make_alert(secret="guess-0123456789abcdef"), **request).status_code == 401
    response = client.post("/webhook", json=make_alert(), **request)
    assert response.status_code == 200, response.text
    assert len(okx.executed) == 1


def test_one_address_in_two_forms_shares_one_lockout(make_app, okx):
    client = make_app(lockout_threshold=3).test_client()
    for peer in (f"::ffff:{STRANGER}", STRANGER, f"::ffff:{STRANGER}"):
        wrong = make_alert(secret="guess-0123456789abcdef")
        assert client.post("/webhook", json=wrong, environ_base={"REMOTE_ADDR": peer}).status_code == 401
    assert client.post("/webhook", json=make_alert(), environ_base={"REMOTE_ADDR": STRANGER}).status_code == 429
    assert okx.received == []


@pytest.mark.parametrize(
    "allowed, peer",
    [
        ("198.51.100.7", "::ffff:198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("::ffff:198.51.100.0/120", "198.51.100.9"),
    ],
)
def test_an_allowlist_entry_matches_the_address_in_either_form(make_app, okx, allowed, peer):
    sources = Config.from_env(
        {"WEBHOOK_SECRET": WEBHOOK_SECRET, "ALLOWED_SOURCES": allowed, "DATABASE_URL": "sqlite:///:memory:"}
    ).protection.allowed_sources
    client = make_app(allowed_sources=sources).test_client()
    assert client.post("/webhook", json=make_alert(), environ_base={"REMOTE_ADDR": peer}).status_code == 200
    stranger = client.post("/webhook", json=make_alert(amount="2"), environ_base={"REMOTE_ADDR": STRANGER})
    assert stranger.status_code == 403
