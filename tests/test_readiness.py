"""Readiness: `flask check` and /readyz against the stand-in's signed reads, each failure
naming the setting to fix; /readyz never lets a visitor reach OKX."""

import time

import pytest

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, make_alert
from webhook_app.okx.client import BOT_DETAILS_PATH, sign
from webhook_app.workers.bots import READS_PER_WINDOW
from webhook_app.workers.readiness import READ_SHARE

BOT = "581628185981813760"


def check(app):
    result = app.test_cli_runner().invoke(args=["check"])
    return result.exit_code, result.output.splitlines()


def test_all_checks_pass_with_the_right_key_region_and_bot(make_app, okx):
    code, lines = check(make_app(allowed_algo_ids=frozenset({BOT})))
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines] == [
        "PASS okx_reachable",
        "PASS api_key",
        f"PASS bot {BOT}",
        "PASS journal",
        "PASS client_certificates",
    ]
    details = [r for r in okx.received if r.path.startswith(BOT_DETAILS_PATH)]
    assert details[0].path == f"{BOT_DETAILS_PATH}?algoOrdType=contract&algoId={BOT}"  # signed with its query


@pytest.mark.parametrize(
    "play, overrides, failing, hint",
    [
        (lambda okx: None, {"okx_api_key": "not-the-key-0123"}, "api_key", "OKX_API_KEY"),
        (lambda okx: None, {"okx_api_secret": "not-the-secret-0123"}, "api_key", "OKX_API_SECRET"),
        (lambda okx: None, {"okx_api_passphrase": "not-the-passphrase"}, "api_key", "OKX_API_PASSPHRASE"),
        (lambda okx: setattr(okx, "right_region", False), {}, "api_key", "OKX_BASE_URL"),
        (lambda okx: setattr(okx, "demo", True), {}, "api_key", "OKX_DEMO"),
        (lambda okx: setattr(okx, "ip_allowed", False), {}, "api_key", "IP address"),
        (lambda okx: setattr(okx, "perm", "read_only"), {}, "api_key", "Trade permission"),
        (lambda okx: okx.stop_bot(BOT), {}, f"bot {BOT}", "start the bot"),
        (lambda okx: okx.bots.clear(), {}, f"bot {BOT}", "ALLOWED_ALGO_IDS"),
        (lambda okx: setattr(okx, "clock_offset", 12.0), {}, "okx_reachable", "clock"),
    ],
    ids=[
        "bad-key",
        "bad-secret",
        "bad-passphrase",
        "wrong-region",
        "demo-key-live-mode",
        "ip-not-allowed",
        "read-only-key",
        "bot-stopped",
        "bot-missing",
        "clock-off",
    ],
)
def test_each_failure_names_what_to_fix(make_app, okx, play, overrides, failing, hint):
    play(okx)
    code, lines = check(make_app(allowed_algo_ids=frozenset({BOT}), **overrides))
    assert code == 1
    failed = [line for line in lines if line.startswith("FAIL") and "not checked" not in line]
    assert [line.split(":")[0] for line in failed] == [f"FAIL {failing}"], lines
    assert hint in failed[0]
    if failing == "api_key":  # the bots could only fail for the key's reason
        assert f"FAIL bot {BOT}: not checked: the API key was refused -> fix the key first" in lines
    for secret in (WEBHOOK_SECRET, okx.secret_key, okx.passphrase, "not-the-secret-0123", "not-the-passphrase"):
        assert secret not in "\n".join(lines)


def test_okx_unreachable_fails_naming_the_base_url(make_app, okx):
    okx.stop()
    code, lines = check(make_app())
    assert code == 1 and lines[0].startswith("FAIL okx_reachable") and "OKX_BASE_URL" in lines[0]


def test_an_unreachable_okx_is_not_a_refused_key_and_a_refused_key_is(make_app, okx):
    refused_code, refused = check(make_app(allowed_algo_ids=frozenset({BOT}), okx_api_key="not-the-key-0123"))
    assert refused_code == 1 and any(line.startswith("FAIL api_key: OKX refused the key") for line in refused)
    okx.stop()
    code, lines = check(make_app(allowed_algo_ids=frozenset({BOT})))
    assert code == 1
    assert [line for line in lines if line.startswith("FAIL api_key")][0].startswith(
        f"FAIL api_key: could not reach OKX at {okx.base_url}"
    ), lines
    assert not any("refused" in line for line in lines), lines


def test_readyz_answers_from_background_results_and_never_sends_visitors_to_okx(make_app, okx):
    app = make_app(allowed_algo_ids=frozenset({BOT}))
    client = app.test_client()
    readiness = app.extensions["webhook"].readiness
    assert client.get("/readyz").status_code == 503  # nothing checked yet: not ready
    readiness.start()
    deadline = time.monotonic() + 5
    while readiness.results is None and time.monotonic() < deadline:
        time.sleep(0.02)
    before = len(okx.received)
    for _ in range(20):
        reply = client.get("/readyz")
        assert reply.status_code == 200 and reply.json["status"] == "ready"
        assert "checks" not in reply.json  # details only for the operator
    assert len(okx.received) == before  # twenty visits, no request to OKX
    detailed = client.get("/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json
    assert [c["name"] for c in detailed["checks"]] == [
        "okx_reachable",
        "api_key",
        f"bot {BOT}",
        "journal",
        "client_certificates",
    ]
    readiness.stop()


def test_readyz_turns_503_when_a_check_fails_and_logs_it(make_app, okx, caplog):
    app = make_app(allowed_algo_ids=frozenset({BOT}))
    readiness = app.extensions["webhook"].readiness
    readiness.refresh()
    okx.bots[BOT].state = "stopped"
    readiness.refresh()
    reply = app.test_client().get("/readyz")
    assert reply.status_code == 503 and reply.json["status"] == "not_ready"
    assert any(r.levelname == "WARNING" and "FAIL bot" in r.getMessage() for r in caplog.records)


def test_a_signed_get_covers_the_query_string():
    # OKX's rule: prehash = timestamp + GET + path with its query + empty body.
    path = "/api/v5/tradingBot/signal/orders-algo-details?algoOrdType=contract&algoId=1"
    with_query = sign("secret", "2020-12-08T09:08:57.715Z", "GET", path, b"")
    assert with_query != sign("secret", "2020-12-08T09:08:57.715Z", "GET", path.split("?")[0], b"")


def test_a_dry_run_without_a_key_never_contacts_okx(make_app, okx):
    app = make_app(dry_run=True, okx_api_key="", okx_api_secret="", okx_api_passphrase="")
    code, lines = check(app)
    assert code == 0 and lines[0].startswith("PASS okx: dry-run without OKX credentials")
    assert okx.received == []


def test_permissions_read_as_words_not_a_python_list(make_app, okx):
    okx.perm = "read_only,trade"
    _, lines = check(make_app())
    (api_key,) = [line for line in lines if line.startswith("PASS api_key")]
    assert "permissions read_only, trade" in api_key and "[" not in api_key


def test_readiness_reads_many_bots_on_the_sends_ledger_and_leaves_the_sends_their_read(make_app, okx):
    bots = sorted(str(700000000000000000 + i) for i in range(25))
    for algo_id in bots:
        okx.add_bot(algo_id)
    app = make_app(allowed_algo_ids=frozenset(bots))
    services = app.extensions["webhook"]
    results = services.readiness.refresh()
    assert okx.read_limited == {}, okx.read_limited  # not one 50011: the reads were spread, never over budget
    assert services.readiness.ready, [check.line() for check in results if not check.ok]
    assert [c.detail for c in results if c.name.startswith("bot ")] == ["running"] * 25  # each read, none skipped
    assert 0 < services.bots["default"].details_pacer.busy() <= READS_PER_WINDOW * READ_SHARE  # the sends' ledger
    reply = app.test_client().post("/webhook", json=make_alert(algoId=bots[-1]))
    assert reply.status_code == 200, reply.json
    record = services.journal.get(reply.json["id"])
    assert record.evidence_data["before"]["algoId"] == bots[-1]  # the send's own read of its bot found room
    assert okx.read_limited == {}


def fill(pacer):
    """Every slot of a reads' ledger taken, as a burst of sends takes them."""
    return pacer.acquire("sends", pacer.limit)


@pytest.mark.parametrize(
    "busy, reads_made",
    [
        (lambda app, okx: fill(app.extensions["webhook"].bots["default"].details_pacer), 0),
        (lambda app, okx: setattr(okx, "read_rate_limit", 0), 1),  # another client of the account spent OKX's
    ],
    ids=["our-ledger-full", "okx-says-50011"],
)
def test_a_bot_not_read_for_want_of_budget_keeps_its_last_answer(make_app, okx, busy, reads_made):
    app = make_app(allowed_algo_ids=frozenset({BOT}))
    readiness = app.extensions["webhook"].readiness
    readiness.reads.spread_for = 0.0  # no waiting for room in this test
    first = {c.name: c for c in readiness.refresh()}[f"bot {BOT}"]
    assert first.ok and first.detail == "running"
    okx.stop_bot(BOT)  # what a read would find now: this test shows none was made over the budget
    busy(app, okx)
    reads_before = len(okx.reads(BOT_DETAILS_PATH))
    again = {c.name: c for c in readiness.refresh()}[f"bot {BOT}"]
    assert again.ok and again.detail.startswith("running (at the last read; not read again:"), again
    assert readiness.ready
    assert len(okx.reads(BOT_DETAILS_PATH)) - reads_before == reads_made


def test_a_bot_never_read_for_want_of_budget_is_not_called_missing(make_app, okx):
    app = make_app(allowed_algo_ids=frozenset({BOT}))
    readiness = app.extensions["webhook"].readiness
    readiness.reads.spread_for = 0.0
    fill(app.extensions["webhook"].bots["default"].details_pacer)
    check = {c.name: c for c in readiness.refresh()}[f"bot {BOT}"]
    assert check.ok and check.detail.startswith("not read yet: the bot reads' rate budget was in use by sends")
    assert okx.reads(BOT_DETAILS_PATH) == [] and readiness.ready
