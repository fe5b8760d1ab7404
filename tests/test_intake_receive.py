"""``Intake.receive``: the webhook's whole pipeline without Flask or HTTP (a body and its sender in,
the journaled record or a typed error out); and the operator's query errors, told apart from an
alert's invalid fields."""

import json
from decimal import Decimal

import pytest

from tests.conftest import ADMIN_TOKEN, DELETE, WEBHOOK_SECRET, make_alert
from webhook_app.config import Config
from webhook_app.intake.alerts import InvalidAlert, InvalidBody, Unauthorized
from webhook_app.intake.pipeline import AccountRefused, DuplicateAlert, Receipt
from webhook_app.intake.protection import Forbidden, LockedOut, Sender, StaleAlert
from webhook_app.journal import DailyCapExceeded

CLIENT = Sender("203.0.113.9", "203.0.113.9")
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STATES_LISTED = "must be one of "


def body(**changes) -> bytes:
    return json.dumps(make_alert(**changes)).encode()


def intake_of(app):
    return app.extensions["webhook"].intake


# -- refused: each bad request raises its own error, and nothing is sent ------------------------


@pytest.mark.parametrize(
    "settings, raw_body, error",
    [
        ({}, b"not json", InvalidBody),
        ({}, b'["a", "list"]', InvalidBody),
        ({}, b'{"secret": "a\\u0000b"}', InvalidBody),
        ({}, body(secret=DELETE), Unauthorized),
        ({}, body(secret="guess-0123456789abcdef"), Unauthorized),
        ({}, body(amount="-1"), InvalidAlert),
        ({}, body(algoId=DELETE), InvalidAlert),
        ({}, body(action="close"), InvalidAlert),
        ({"max_amount": Decimal("5")}, body(), InvalidAlert),
        ({"allowed_algo_ids": frozenset({"111"})}, body(), Forbidden),
        ({}, body(timestamp="2020-01-01T00:00:00Z"), StaleAlert),
        ({}, body(account="elsewhere"), AccountRefused),
        ({"max_amount_per_day": Decimal("5")}, body(), DailyCapExceeded),
    ],
    ids=[
        "not-json",
        "a-list",
        "unstorable-text",
        "no-secret",
        "wrong-secret",
        "negative-amount",
        "no-algoId",
        "unknown-action",
        "over-max-amount",
        "bot-not-allowed",
        "stale",
        "unknown-account",
        "over-daily-cap",
    ],
)
def test_a_bad_request_raises_its_error_and_journals_nothing(make_app, okx, settings, raw_body, error):
    app = make_app(**settings)
    with pytest.raises(error):
        intake_of(app).receive(raw_body, CLIENT)
    assert app.extensions["webhook"].journal.recent(10) == [] and okx.received == []


def test_a_valid_alert_returns_its_journaled_record(make_app, okx):
    app = make_app()
    receipt = intake_of(app).receive(body(amount="2.5"), CLIENT)
    journaled = app.extensions["webhook"].journal.get(receipt.record.id)
    assert receipt.record == journaled and journaled.state == "ok"
    assert (receipt.client, receipt.secret_name) == (CLIENT.address, "WEBHOOK_SECRET")
    assert (receipt.algo_id, receipt.action, receipt.amount) == ("581628185981813760", "add", "2.5")
    assert okx.executed == [{"algoId": "581628185981813760", "type": "add", "amt": "2.5"}]


def test_a_repeat_raises_duplicate_naming_the_journaled_original(make_app, okx):
    intake = intake_of(make_app())
    first = intake.receive(body(id="Long-1"), CLIENT).record
    with pytest.raises(DuplicateAlert) as refused:
        intake.receive(body(id="Long-1"), CLIENT)
    assert refused.value.original.id == first.id and len(okx.executed) == 1


def test_a_refused_request_leaves_in_the_receipt_what_was_read_before(make_app, okx):
    """The log line and refusal record of a refused alert still name its sender, secret and payload."""
    intake, receipt = intake_of(make_app()), Receipt()
    with pytest.raises(InvalidAlert):
        intake.receive(body(amount="-1"), CLIENT, receipt=receipt)
    assert receipt.client == CLIENT.address and receipt.secret_name == "WEBHOOK_SECRET"
    assert receipt.payload["amount"] == "-1" and receipt.algo_id is None and receipt.record is None


def test_a_source_not_allowed_is_refused_before_its_body_is_read(make_app, okx):
    networks = Config.from_env(
        {"WEBHOOK_SECRET": WEBHOOK_SECRET, "ALLOWED_SOURCES": "tradingview", "DATABASE_URL": "sqlite:///:memory:"}
    ).protection.allowed_sources
    intake = intake_of(make_app(allowed_sources=networks))

    def read_body() -> bytes:
        raise AssertionError("the body of a refused source was read")

    with pytest.raises(Forbidden) as refused:
        intake.receive(read_body, CLIENT)
    assert refused.value.kind == "forbidden_source"


def test_wrong_secrets_lock_the_sender_out_even_with_the_right_one(make_app, okx):
    intake = intake_of(make_app(lockout_threshold=2))
    for _ in range(2):
        with pytest.raises(Unauthorized):
            intake.receive(body(secret="guess-0123456789abcdef"), CLIENT)
    with pytest.raises(LockedOut):
        intake.receive(body(), CLIENT)
    assert intake.receive(body(), Sender("198.51.100.1", "198.51.100.1")).record.state == "ok"


# -- an operator's bad parameter is its own error, naming the parameter ---------------------------


@pytest.mark.parametrize(
    "path, parameter, message",
    [
        ("/alerts?state=bogus", "state", STATES_LISTED),
        ("/alerts?state=", "state", STATES_LISTED),
        ("/alerts?limit=0", "limit", "must be from 1 to 1000"),
        ("/alerts?limit=ten", "limit", "must be a whole number"),
        ("/alerts?algo_id=" + "1" * 129, "algo_id", "must be 1 to 128 characters"),
        ("/alerts?account=main-account", "account", "must be an account's name: 1 to 32 letters, digits or _"),
        ("/alerts?stat=ok", "stat", "is not a filter"),
        ("/refused?limit=1001", "limit", "must be from 1 to 1000"),
    ],
)
def test_a_bad_query_parameter_is_refused_naming_it(client, path, parameter, message):
    reply = client.get(path, headers=BEARER)
    assert reply.status_code == 422
    assert reply.json["status"] == "invalid_parameter"
    assert reply.json["message"].startswith(f"{parameter}: {message}")
    assert reply.json["errors"][0]["field"] == parameter and reply.json["errors"][0]["message"].startswith(message)
    assert "alert has invalid fields" not in reply.text


def test_every_unknown_filter_is_named(client):
    reply = client.get("/alerts?stat=ok&bot=1", headers=BEARER)
    assert reply.status_code == 422 and [e["field"] for e in reply.json["errors"]] == ["bot", "stat"]


@pytest.mark.parametrize(
    "path, form, parameter",
    [
        ("/lockouts/clear", {"address": "not-an-address"}, "address"),
        ("/alerts/1/mark", {"resolution": "maybe"}, "resolution"),
    ],
)
def test_a_bad_form_field_is_refused_naming_it(client, path, form, parameter):
    reply = client.post(path, json=form, headers=BEARER)
    assert reply.status_code == 422 and reply.json["status"] == "invalid_parameter"
    assert reply.json["errors"][0]["field"] == parameter and reply.json["message"].startswith(f"{parameter}: ")


def test_a_receipt_never_shows_the_secret_it_was_sent():
    # A wrong secret is not one the log scrubber knows: a receipt logged with %r must not carry it.
    wrong = "a-wrong-secret-the-scrubber-does-not-know"
    assert wrong not in repr(Receipt(payload=make_alert(secret=wrong)))
