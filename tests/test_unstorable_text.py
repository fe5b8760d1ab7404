"""Text no database can store (lone surrogates, NUL) is refused where the body is parsed, before
the secret is checked, so it never reaches the journal nor the refusal log; and the refusal log
stores what it can even if one row cannot be stored."""

import json
import logging
import time

import pytest

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, make_alert, post_concurrently
from webhook_app.intake.refusals import RefusalLog
from webhook_app.journal import Refusal, open_journal

HIGH, LOW, NUL = "\ud800", "\udc00", "\u0000"
BAD_TEXT = {"lone high surrogate": (HIGH, "\\ud800"), "lone low surrogate": (LOW, "\\udc00"), "NUL": (NUL, "\\u0000")}


def body_of(alert) -> bytes:
    """JSON as TradingView would send it: the bad character as a \\u escape (ASCII on the wire)."""
    return json.dumps(alert).encode("ascii")


# field in the reply -> an alert with `bad` placed there (one change each)
PLACES = {
    "secret": lambda bad: make_alert(secret=WEBHOOK_SECRET + bad),
    "algoId": lambda bad: make_alert(algoId="5816281859818" + bad),
    "id": lambda bad: make_alert(id="Long" + bad),
    "amount": lambda bad: make_alert(amount="10" + bad),
    "ticker": lambda bad: make_alert(ticker="BTC" + bad),
    "meta.note": lambda bad: make_alert(meta={"note": "a" + bad + "b"}),
    "tags[1]": lambda bad: make_alert(tags=["ok", bad]),
    "body": lambda bad: make_alert(**{"key" + bad: "1"}),  # a key itself: named by where it stands
    "meta": lambda bad: make_alert(meta={bad: "x"}),
}


@pytest.mark.parametrize("bad_name", BAD_TEXT)
@pytest.mark.parametrize("field", PLACES)
def test_unstorable_text_anywhere_is_refused_at_parsing_naming_the_field(make_app, okx, field, bad_name):
    bad, escaped = BAD_TEXT[bad_name]
    app = make_app()
    response = app.test_client().post("/webhook", data=body_of(PLACES[field](bad)), content_type="application/json")
    assert response.status_code == 400, response.text
    assert response.json["status"] == "invalid_body"
    (error,) = response.json["errors"]
    assert error["field"] == field and escaped in error["message"]
    assert bad not in response.get_data(as_text=True)  # the raw value is never echoed
    assert okx.received == []
    svc = app.extensions["webhook"]
    svc.refusals.flush()
    (refusal,) = svc.journal.refusals(10)
    assert (refusal.status, refusal.kind) == (400, "invalid_body")
    assert refusal.errors[0]["field"] == field


def test_unstorable_text_is_refused_before_the_secret_is_checked(make_app, okx):
    app = make_app(lockout_threshold=2)
    client = app.test_client()
    for _ in range(3):  # no secret at all: still 400, never 401, never counted as a guess
        response = client.post("/webhook", data=body_of({"id": HIGH}), content_type="application/json")
        assert response.status_code == 400 and response.json["errors"][0]["field"] == "id"
    assert client.post("/webhook", json=make_alert()).status_code == 200


def test_a_valid_pair_of_surrogate_escapes_is_ordinary_text(make_app, okx):
    app = make_app()
    response = app.test_client().post(
        "/webhook", data=body_of(make_alert(id="Long \U0001f680")), content_type="application/json"
    )
    assert response.status_code == 200, response.text


def test_a_strangers_unstorable_text_does_not_blank_the_refusal_log(make_app, okx, database_url):
    app = make_app(database_url=database_url)
    client = app.test_client()
    stranger = {"REMOTE_ADDR": "203.0.113.9"}
    sent = [
        body_of({"id": HIGH}),  # unauthenticated
        body_of({"id": "a" + NUL + "b"}),
        body_of(make_alert(**{"k" + LOW: 1})),
        body_of(make_alert(secret="wrong-" + WEBHOOK_SECRET)),
        body_of(make_alert(amount="-1")),
        b"not json",
    ]
    statuses = [
        client.post("/webhook", data=b, content_type="application/json", environ_base=stranger).status_code
        for b in sent
    ]
    assert statuses == [400, 400, 400, 401, 422, 400]
    svc = app.extensions["webhook"]
    svc.refusals.flush()
    assert sorted(r.status for r in svc.journal.refusals(100)) == sorted(statuses)


def test_concurrent_valid_alerts_are_not_sunk_by_one_with_a_lone_surrogate(make_app, okx, database_url):
    app = make_app(database_url=database_url)
    okx.rate_limit = 1000
    bodies = [make_alert(amount=str(n), id=f"ok-{n}") for n in range(1, 13)] + [make_alert(id="bad" + HIGH)]
    replies = post_concurrently(app.test_client, bodies)
    assert [r.status_code for r in replies] == [200] * 12 + [400], [r.get_data(as_text=True) for r in replies]
    assert len(okx.executed) == 12


def test_the_refusal_log_scrubs_unstorable_text_and_stores_row_by_row_when_a_batch_fails(database_url, caplog):
    journal = open_journal(database_url)
    try:
        log = RefusalLog(journal)
        now = time.time()
        for n, bad in enumerate((HIGH, LOW, NUL)):
            log.record(
                Refusal(
                    at=now + n,
                    status=400,
                    kind="invalid_body",
                    message="m" + bad,
                    client="c" + bad,
                    errors=({"field": "f" + bad, "message": "e" + bad},),
                    algo_id="1" + bad,
                    trader_id="t" + bad,
                )
            )
        log.record(Refusal(at=now, status=2**70, kind="overflow", message="no INTEGER holds this status"))
        log.record(Refusal(at=now, status=401, kind="unauthorized", message="secret is wrong"))
        log.record(Refusal(at=now, status=422, kind="invalid", message="amount"))
        with caplog.at_level(logging.WARNING, logger="webhook_app"):
            log.flush()
        stored = journal.refusals(100)
        assert sorted(r.kind for r in stored) == [
            "invalid",
            "invalid_body",
            "invalid_body",
            "invalid_body",
            "unauthorized",
        ]
        for refusal in stored:
            text = json.dumps(refusal.to_json(), ensure_ascii=False)
            assert not any(bad in text for bad in (HIGH, LOW, NUL))
        assert any("could not record 1 refused request" in r.getMessage() for r in caplog.records)
    finally:
        journal.close()


@pytest.mark.parametrize("query", ["trader_id=Long%00x", "algo_id=581628185981813760%00", "trader_id=%00"])
def test_a_nul_in_a_listing_filter_is_422_naming_the_filter_on_either_journal(make_app, okx, database_url, query):
    app = make_app(database_url=database_url)
    app.test_client().post("/webhook", json=make_alert(id="Long"))  # something to list
    reply = app.test_client().get(f"/alerts?{query}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert reply.status_code == 422, reply.text
    assert reply.json["status"] == "invalid_parameter"
    (error,) = reply.json["errors"]
    assert error["field"] == query.split("=")[0] and "NUL" in error["message"]
    assert NUL not in reply.get_data(as_text=True)


def test_a_nul_in_the_alerts_commands_trader_id_is_refused_naming_it(make_app, database_url):
    app = make_app(database_url=database_url)
    result = app.test_cli_runner().invoke(args=["alerts", "--trader-id", "Long" + NUL])
    assert result.exit_code == 2, result.output
    assert "--trader-id" in result.output and "NUL" in result.output
