"""Several OKX accounts from one service (issue 15): each alert is routed to one account, by its
`account` field or by its bot's listing under one account's OKX_<NAME>_ALGO_IDS; an alert that
cannot be routed is refused with 422 naming the field, and reaches neither account's OKX."""

import json

import pytest

from tests.conftest import ADMIN_TOKEN, DELETE, WEBHOOK_SECRET, make_alert, wait_final
from tests.okx_stand_in import OkxReply, OkxStandIn
from tests.test_notify import Receiver
from webhook_app.config import OkxAccount
from webhook_app.journal import open_journal

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MAIN_BOT = "581628185981813760"  # listed under OKX_MAIN_ALGO_IDS
HEDGE_BOT = "690000000000000001"  # listed under OKX_HEDGE_ALGO_IDS
UNLISTED_BOT = "700000000000000002"  # allowed by ALLOWED_ALGO_IDS, listed under no account
HEDGE_KEY = dict(api_key="hedge-key-9876543210", secret_key="hedge-secret-fedcba9876543210", passphrase="hedge-pass-7")


@pytest.fixture
def hedge_okx():
    """The second account's OKX: a stand-in that accepts only the hedge account's key."""
    stand_in = OkxStandIn(**HEDGE_KEY).start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def two_accounts(make_app, okx, hedge_okx):
    """A service sending to two accounts, "main" (the `okx` stand-in) and "hedge" (its own stand-in).
    ``allowed_algo_ids`` is what OKX_ACCOUNTS' parsing makes of OKX_MAIN_ALGO_IDS, OKX_HEDGE_ALGO_IDS
    and ALLOWED_ALGO_IDS=UNLISTED_BOT: their union."""

    def build(**overrides):
        main = OkxAccount(
            "main", okx.api_key, okx.secret_key, okx.passphrase, base_url=okx.base_url, algo_ids=frozenset({MAIN_BOT})
        )
        hedge = OkxAccount(
            "hedge",
            HEDGE_KEY["api_key"],
            HEDGE_KEY["secret_key"],
            HEDGE_KEY["passphrase"],
            base_url=hedge_okx.base_url,
            algo_ids=frozenset({HEDGE_BOT}),
        )
        settings = dict(okx_accounts=(main, hedge), allowed_algo_ids=frozenset({MAIN_BOT, HEDGE_BOT, UNLISTED_BOT}))
        return make_app(**{**settings, **overrides})

    return build


def nothing_sent(*stand_ins) -> bool:
    return all(stand_in.margin_requests() == [] for stand_in in stand_ins)


# -- refusals ---------------------------------------------------------------------------------

ROUTING_REFUSALS = [
    pytest.param(
        dict(account="nope", algoId=MAIN_BOT),
        "no account named 'nope' (accounts: main, hedge)",
        id="unknown-account",
    ),
    pytest.param(
        dict(algoId=UNLISTED_BOT),
        f"required: this service sends to several OKX accounts (main, hedge) and bot {UNLISTED_BOT} "
        "is not listed under any one of them",
        id="missing-and-not-inferable",
    ),
    pytest.param(
        dict(account="main", algoId=HEDGE_BOT),
        f"algoId {HEDGE_BOT} belongs to account hedge (OKX_HEDGE_ALGO_IDS), not main",
        id="another-accounts-bot",
    ),
    pytest.param(
        dict(account="hedge", algoId=MAIN_BOT),
        f"algoId {MAIN_BOT} belongs to account main (OKX_MAIN_ALGO_IDS), not hedge",
        id="another-accounts-bot-the-other-way",
    ),
]


@pytest.mark.parametrize("changes, problem", ROUTING_REFUSALS)
def test_an_alert_with_no_one_account_for_it_is_refused_naming_the_field(
    two_accounts, okx, hedge_okx, changes, problem
):
    app = two_accounts()
    response = app.test_client().post("/webhook", json=make_alert(**changes))
    assert response.status_code == 422, response.json
    assert response.json == {
        "status": "account_refused",
        "message": f"account: {problem}; nothing was sent",
        "errors": [{"field": "account", "message": problem}],
    }
    journal = app.extensions["webhook"].journal
    assert journal.recent(limit=10) == []
    assert nothing_sent(okx, hedge_okx)
    app.extensions["webhook"].refusals.flush()
    [refused] = journal.refusals(10)  # the operator sees why, on /refused
    assert refused.kind == "account_refused" and refused.errors == ({"field": "account", "message": problem},)


MALFORMED_ACCOUNTS = [
    pytest.param("", "", id="empty"),
    pytest.param("a" * 33, "", id="too-long"),
    pytest.param("main-2", "", id="a-dash"),
    pytest.param(" main", "", id="a-space"),
    pytest.param(7, "", id="a-number"),
    pytest.param(["main"], "", id="a-list"),
    pytest.param(WEBHOOK_SECRET, "", id="the-secret-pasted-here"),
]


@pytest.mark.parametrize("value, hint", MALFORMED_ACCOUNTS)
def test_a_malformed_account_is_invalid_and_never_echoed(two_accounts, okx, hedge_okx, value, hint):
    app = two_accounts()
    response = app.test_client().post("/webhook", json=make_alert(account=value))
    assert response.status_code == 422
    assert response.json["status"] == "invalid"
    assert response.json["errors"] == [
        {
            "field": "account",
            "message": "must be the name of an OKX account of this service (OKX_ACCOUNTS): "
            f"1 to 32 letters, digits or _{hint}",
        }
    ]
    assert WEBHOOK_SECRET not in response.text
    assert nothing_sent(okx, hedge_okx)


def test_an_unfilled_placeholder_as_account_says_so(two_accounts):
    response = two_accounts().test_client().post("/webhook", json=make_alert(account="{{strategy.account}}"))
    assert response.status_code == 422
    [error] = response.json["errors"]
    assert error["field"] == "account" and "placeholder that was not filled in" in error["message"]


def test_an_unknown_account_name_that_holds_a_secret_is_not_shown(two_accounts, okx, hedge_okx):
    token = "operator_token_0123456789abcdef"  # a valid account name, but the ADMIN_TOKEN
    response = two_accounts(admin_token=token).test_client().post("/webhook", json=make_alert(account=token))
    assert response.status_code == 422 and token not in response.text
    assert response.json["errors"] == [
        {"field": "account", "message": "no account by that name (accounts: main, hedge)"}
    ]
    assert nothing_sent(okx, hedge_okx)


# -- routing ----------------------------------------------------------------------------------

ROUTED = [
    pytest.param(dict(account="main", algoId=MAIN_BOT), "main", id="named-main"),
    pytest.param(dict(account="hedge", algoId=HEDGE_BOT), "hedge", id="named-hedge"),
    pytest.param(dict(algoId=MAIN_BOT), "main", id="inferred-main"),
    pytest.param(dict(algoId=HEDGE_BOT), "hedge", id="inferred-hedge"),
    pytest.param(dict(account="hedge", algoId=UNLISTED_BOT), "hedge", id="named-for-an-unlisted-bot"),
    # Names are case-insensitive, as actions are: TradingView users write "HEDGE" as readily as "hedge".
    pytest.param(dict(account="HEDGE", algoId=HEDGE_BOT), "hedge", id="named-in-capitals"),
    pytest.param(dict(account="Main", algoId=MAIN_BOT), "main", id="named-capitalised"),
]


@pytest.mark.parametrize("changes, account", ROUTED)
def test_an_alert_is_journaled_with_the_account_it_is_routed_to(two_accounts, database_url, changes, account):
    # Routing and journaling only, on each journal: sending is the next test's.
    app = two_accounts(dry_run=True, database_url=database_url)
    response = app.test_client().post("/webhook", json=make_alert(**changes))
    assert response.status_code == 200 and response.json["status"] == "dry_run", response.json
    assert app.extensions["webhook"].journal.get(response.json["id"]).account == account


@pytest.mark.parametrize("changes, account", ROUTED)
def test_an_alert_arrives_only_at_its_accounts_okx_signed_with_its_key(two_accounts, okx, hedge_okx, changes, account):
    app = two_accounts()
    response = app.test_client().post("/webhook", json=make_alert(**changes))
    assert response.status_code == 200 and response.json["status"] == "ok", response.json
    target, other = (okx, hedge_okx) if account == "main" else (hedge_okx, okx)
    [request] = target.margin_requests()
    assert json.loads(request.body) == {"algoId": changes["algoId"], "type": "add", "amt": "10"}
    sent_key = {name.lower(): value for name, value in request.headers.items()}["ok-access-key"]
    assert sent_key == target.api_key  # and the stand-in accepted its signature: signed with that account's secret
    assert target.executed == [{"algoId": changes["algoId"], "type": "add", "amt": "10"}]
    assert nothing_sent(other)
    assert app.extensions["webhook"].journal.get(response.json["id"]).account == account


def test_the_bots_state_is_read_from_the_alerts_own_account(two_accounts, okx, hedge_okx):
    """A bot OKX reports stopped refuses alerts by the word of its own account's OKX: the hedge
    account's read, with the hedge key; the main account's bots are unaffected."""
    hedge_okx.add_bot(HEDGE_BOT, state="stopped")
    app = two_accounts()
    app.extensions["webhook"].bots.refresh()
    client = app.test_client()
    refused = client.post("/webhook", json=make_alert(algoId=HEDGE_BOT))
    assert refused.status_code == 422 and refused.json["status"] == "bot_not_running", refused.json
    assert client.post("/webhook", json=make_alert(algoId=MAIN_BOT)).json["status"] == "ok"
    assert nothing_sent(hedge_okx) and len(okx.executed) == 1


# -- one account ------------------------------------------------------------------------------

ONE_ACCOUNT = [
    pytest.param(dict(account=DELETE), 200, None, id="omitted"),
    pytest.param(dict(account="default"), 200, None, id="named"),
    pytest.param(dict(account="main"), 422, "no account named 'main' (accounts: default)", id="another-name"),
]


@pytest.mark.parametrize("changes, http, problem", ONE_ACCOUNT)
def test_with_one_account_the_field_may_be_omitted_or_must_name_it(make_app, okx, changes, http, problem):
    app = make_app()
    response = app.test_client().post("/webhook", json=make_alert(**changes))
    assert response.status_code == http, response.json
    if problem is None:
        assert app.extensions["webhook"].journal.get(response.json["id"]).account == "default"
        assert len(okx.executed) == 1
    else:
        assert response.json["errors"] == [{"field": "account", "message": problem}]
        assert nothing_sent(okx)


# -- an operator's resend ---------------------------------------------------------------------


def test_a_resend_goes_to_the_original_alerts_account(two_accounts, okx, hedge_okx):
    app = two_accounts(okx_max_attempts=1)
    client = app.test_client()
    hedge_okx.play(OkxReply("50013", "System is busy"))  # certainly not executed: failed
    failed = client.post("/webhook", json=make_alert(account="hedge", algoId=UNLISTED_BOT)).json["id"]
    assert wait_final(app, failed).state == "failed"
    response = client.post(f"/alerts/{failed}/resend", headers=BEARER)
    assert response.status_code == 201, response.json
    resent = wait_final(app, response.json["alert"]["id"])
    assert resent.state == "ok" and resent.account == "hedge"
    assert hedge_okx.executed == [{"algoId": UNLISTED_BOT, "type": "add", "amt": "10"}]
    assert nothing_sent(okx)


def test_a_resend_whose_account_is_gone_is_refused_and_not_offered(two_accounts, make_app, okx, hedge_okx, tmp_path):
    database_url = f"sqlite:///{tmp_path}/shared.db"
    app = two_accounts(okx_max_attempts=1, database_url=database_url)
    hedge_okx.play(OkxReply("50013", "System is busy"))
    failed = app.test_client().post("/webhook", json=make_alert(account="hedge", algoId=UNLISTED_BOT)).json["id"]
    assert wait_final(app, failed).state == "failed"
    # The service restarted with OKX_ACCOUNTS=main only: the hedge account's alert has nowhere to go.
    main_only = make_app(
        okx_max_attempts=1,
        database_url=database_url,
        okx_accounts=(OkxAccount("main", okx.api_key, okx.secret_key, okx.passphrase, base_url=okx.base_url),),
    )
    client = main_only.test_client()
    problem = "no account named 'hedge' (accounts: main)"
    assert client.get(f"/alerts/{failed}", headers=BEARER).json["resend"] == {
        "offered": False,
        "reason": f"account: {problem}",
    }
    response = client.post(f"/alerts/{failed}/resend", headers=BEARER)
    assert response.status_code == 422 and response.json["status"] == "account_refused"
    assert response.json["errors"] == [{"field": "account", "message": problem}]
    assert main_only.extensions["webhook"].journal.get(failed).resent_as is None
    assert nothing_sent(okx)


def test_a_notification_names_the_alerts_account(two_accounts, hedge_okx):
    receiver = Receiver()
    try:
        app = two_accounts(notify_urls=(receiver.url,), unknown_settle=0.0)
        app.extensions["webhook"].notifier.start()
        hedge_okx.play(OkxReply("51000", "Parameter amt error"))
        alert_id = app.test_client().post("/webhook", json=make_alert(algoId=HEDGE_BOT)).json["id"]
        (message,) = receiver.wait_for(1)
        assert message["title"].startswith(f"Alert {alert_id} rejected: account hedge, bot {HEDGE_BOT}")
    finally:
        receiver.server.shutdown()


def test_a_dry_run_start_with_several_accounts_names_them(make_app, caplog):
    make_app(okx_accounts=(OkxAccount("main"), OkxAccount("hedge")), dry_run=True)
    assert "accounts (OKX_ACCOUNTS): main, hedge, each in dry-run" in caplog.text


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def test_an_alert_under_an_account_no_longer_configured_fails_at_once_and_holds_its_bot_no_longer(
    make_app, okx, database_url, receiver
):
    # Journaled under account "hedge" and still queued, with an hour of lag left; the service restarts
    # without hedge. Nothing can ever send it: it ends failed at once, naming the account, is notified,
    # and the next alert for its bot goes at once (it waited out the hour before, the notice blaming pacing).
    journal = open_journal(database_url)
    body = json.dumps({"algoId": MAIN_BOT, "type": "add", "amt": "7"})
    orphan, _ = journal.add(
        dedup_key="fp:hedge", dedup_since=0.0, algo_id=MAIN_BOT, action="add", amount="7", request_body=body,
        expires_at=journal.now() + 3600, account="hedge",
    )  # fmt: skip
    journal.close()
    app = make_app(database_url=database_url, reply_deadline=0.1, notify_urls=(receiver.url,))
    next_id = app.test_client().post("/webhook", json=make_alert(algoId=MAIN_BOT, amount="3")).json["id"]
    assert wait_final(app, next_id, timeout=8).state == "ok"
    failed = wait_final(app, orphan.id, timeout=1)
    assert failed.state == "failed" and "account hedge is not configured" in failed.detail
    assert [(b["algoId"], b["amt"]) for b in okx.executed] == [(MAIN_BOT, "3")]  # the hedge alert never left
    (message,) = receiver.wait_for(1)
    assert f"Alert {orphan.id} failed" in message["title"] and "account hedge" in message["message"], message


# -- the allowlist names the setting to change ------------------------------------------------

LISTED_NOWHERE = "900000000000000009"

FORBIDDEN_BOTS = [
    pytest.param(dict(algoId=LISTED_NOWHERE), "OKX_MAIN_ALGO_IDS or OKX_HEDGE_ALGO_IDS", id="no-account-named"),
    pytest.param(dict(algoId=LISTED_NOWHERE, account="hedge"), "OKX_HEDGE_ALGO_IDS", id="account-named"),
    pytest.param(dict(algoId=LISTED_NOWHERE, account="HEDGE"), "OKX_HEDGE_ALGO_IDS", id="account-in-capitals"),
    pytest.param(dict(algoId=LISTED_NOWHERE, account="nope"), "OKX_MAIN_ALGO_IDS or OKX_HEDGE_ALGO_IDS", id="unknown"),
]


@pytest.mark.parametrize("changes, setting", FORBIDDEN_BOTS)
def test_a_bot_listed_under_no_account_is_refused_naming_the_accounts_setting(
    two_accounts, okx, hedge_okx, changes, setting
):
    """With several accounts the allowlist is their OKX_<NAME>_ALGO_IDS: the refusal names those,
    never ALLOWED_ALGO_IDS, which would route nothing."""
    app = two_accounts(allowed_algo_ids=frozenset({MAIN_BOT, HEDGE_BOT}))
    response = app.test_client().post("/webhook", json=make_alert(**changes))
    assert response.status_code == 403 and response.json["status"] == "forbidden_bot", response.json
    [error] = response.json["errors"]
    assert error["field"] == "algoId" and f"add it to {setting}" in error["message"], error
    assert "ALLOWED_ALGO_IDS" not in response.text
    assert nothing_sent(okx, hedge_okx)


def test_with_one_account_the_refusal_names_allowed_algo_ids(make_app, okx):
    app = make_app(allowed_algo_ids=frozenset({MAIN_BOT}))
    response = app.test_client().post("/webhook", json=make_alert(algoId=LISTED_NOWHERE))
    assert response.status_code == 403
    assert response.json["errors"] == [{"field": "algoId", "message": "this bot is not in ALLOWED_ALGO_IDS"}]
