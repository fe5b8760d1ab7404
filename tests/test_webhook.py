"""The receiver's public contract, through HTTP, against the loopback stand-in for OKX."""

import json
import socket
from decimal import Decimal

import pytest

from tests.conftest import ADMIN_TOKEN, DELETE, WEBHOOK_SECRET, make_alert, wait_final
from tests.okx_stand_in import Drop, OkxReply, RawReply, Slow
from webhook_app.okx.margin.request import MARGIN_BALANCE_PATH


def sent_bodies(okx):
    return [json.loads(r.body) for r in okx.margin_requests()]


# -- accepted alerts ------------------------------------------------------------------------


def test_valid_alert_is_signed_forwarded_once_and_answered_200(client, okx):
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 200, response.json
    assert response.json["status"] == "ok"
    assert response.json["algoId"] == "581628185981813760"
    assert isinstance(response.json["id"], int)
    assert okx.executed == [{"algoId": "581628185981813760", "type": "add", "amt": "10"}]
    # exactly these bytes, compact, signed as sent (the stand-in verified the signature)
    assert okx.margin_requests()[0].body == b'{"algoId":"581628185981813760","type":"add","amt":"10"}'


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "text/plain; charset=utf-8", None])
def test_body_is_parsed_whatever_the_content_type(client, okx, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/webhook", data=json.dumps(make_alert()), headers=headers)
    assert response.status_code == 200, response.json
    assert len(okx.executed) == 1


@pytest.mark.parametrize(
    "changes, sent",
    [
        ({"action": "ADD"}, {"type": "add"}),
        ({"action": "Reduce"}, {"type": "reduce"}),
        ({"action": DELETE, "type": "reduce"}, {"type": "reduce"}),
        ({"amount": DELETE, "amt": "2.5"}, {"amt": "2.5"}),
        ({"action": "add", "type": "add"}, {"type": "add"}),
        ({"action": "ADD", "type": "add"}, {"type": "add"}),  # two spellings of one value (found by Hypothesis)
        ({"amount": "10", "amt": 10}, {"amt": "10"}),
        ({"amount": "10.50", "amt": "10.5"}, {"amt": "10.5"}),
        ({"algoId": 581628185981813760}, {"algoId": "581628185981813760"}),
        ({"amount": "10.50"}, {"amt": "10.5"}),
        ({"amount": "0.00000001"}, {"amt": "0.00000001"}),
        ({"amount": "1234567890.123456"}, {"amt": "1234567890.123456"}),
    ],
)
def test_field_mapping(client, okx, changes, sent):
    response = client.post("/webhook", json=make_alert(**changes))
    assert response.status_code == 200, response.json
    expected = {"algoId": "581628185981813760", "type": "add", "amt": "10", **sent}
    assert sent_bodies(okx) == [expected]


@pytest.mark.parametrize(
    "raw_amount, sent", [("2.5", "2.5"), ("1e2", "100"), ("15", "15"), ("1E-3", "0.001"), ("0.1000", "0.1")]
)
def test_json_number_amounts_never_go_through_float_or_exponent(client, okx, raw_amount, sent):
    body = json.dumps(make_alert(amount="X")).replace('"X"', raw_amount)
    response = client.post("/webhook", data=body)
    assert response.status_code == 200, response.json
    assert sent_bodies(okx)[0]["amt"] == sent


@pytest.mark.parametrize(
    "changes, allow_reinvest",
    [
        ({"investmentType": "percentage_investment", "allowReinvest": True}, True),
        ({"investmentType": "percentage_investment", "allowReinvest": "true"}, True),
        ({"investmentType": "percentage_investment", "allowReinvest": False}, False),
        ({"investmentType": "percentage_investment", "allowReinvest": "FALSE"}, False),
        ({"investmentType": "percentage_investment"}, None),
        ({"investmentType": "margin", "allowReinvest": False}, None),
        ({"allowReinvest": False}, None),
        ({"investmentType": "contract"}, None),
    ],
)
def test_allow_reinvest_is_sent_only_to_percentage_investment_bots(client, okx, changes, allow_reinvest):
    response = client.post("/webhook", json=make_alert(**changes))
    assert response.status_code == 200, response.json
    body = sent_bodies(okx)[0]
    assert body.get("allowReinvest") is allow_reinvest if allow_reinvest is not None else "allowReinvest" not in body
    assert "investmentType" not in body


def test_unknown_fields_are_ignored_and_never_forwarded(client, okx):
    alert = make_alert(ticker="ETHUSDT", strategy={"position": "long"}, percent="50", extra=[1, 2])
    assert client.post("/webhook", json=alert).status_code == 200
    assert set(sent_bodies(okx)[0]) == {"algoId", "type", "amt"}


def test_healthz_answers_without_touching_okx(client, okx):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json["status"] == "ok"
    assert okx.received == []


def test_demo_mode_sends_the_simulated_trading_header(make_app, okx):
    okx.demo = True
    client = make_app(okx_demo=True).test_client()
    assert client.post("/webhook", json=make_alert()).status_code == 200
    assert okx.margin_requests()[0].headers["x-simulated-trading"] == "1"


def test_dry_run_shows_the_exact_body_and_sends_nothing(make_app, okx):
    client = make_app(dry_run=True, okx_api_key="", okx_api_secret="", okx_api_passphrase="").test_client()
    response = client.post("/webhook", json=make_alert(amount="100", action="REDUCE"))
    assert response.status_code == 200, response.json
    assert response.json["status"] == "dry_run"
    assert response.json["request"] == {
        "method": "POST",
        "path": MARGIN_BALANCE_PATH,
        "body": {"algoId": "581628185981813760", "type": "reduce", "amt": "100"},
    }
    assert okx.received == []


# -- refused before OKX ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   \n",
        b"not json",
        b"{'secret': 1}",
        b"[1, 2]",
        b'"text"',
        b"42",
        b"null",
        b"\xff\xfe{}",
        b'{"secret": "a",}',
        b"[" * 5000 + b"]" * 5000,
        b'{"amount": 1' + b"0" * 5000 + b"}",
    ],
    ids=[
        "empty",
        "blank",
        "text",
        "single-quotes",
        "array",
        "string",
        "number",
        "null",
        "not-utf8",
        "trailing-comma",
        "deep-nesting",
        "huge-integer",
    ],
)
def test_body_that_is_not_a_json_object_is_400(client, okx, body):
    response = client.post("/webhook", data=body, content_type="text/plain")
    assert response.status_code == 400
    assert response.json["status"] == "invalid_body"
    assert response.json["errors"][0]["field"] == "body"
    assert okx.received == []


@pytest.mark.parametrize(
    "secret",
    [
        DELETE,
        None,
        "",
        "wrong-secret-0123456789",
        WEBHOOK_SECRET + "x",
        WEBHOOK_SECRET[:-1],
        WEBHOOK_SECRET.upper(),
        12345,
        ["x"],
        {"a": 1},
        True,
        "ключ-секрет-0123456789",
        # A lone surrogate ("\ud800") is refused before the secret is read: tests/test_unstorable_text.py
    ],
    ids=[
        "missing",
        "null",
        "empty",
        "wrong",
        "longer",
        "shorter",
        "case",
        "int",
        "list",
        "object",
        "bool",
        "non-ascii",
    ],
)
def test_bad_secret_is_401_and_nothing_is_sent(client, okx, secret):
    body = json.dumps(make_alert(secret=secret))
    response = client.post("/webhook", data=body)
    assert response.status_code == 401
    assert response.json["status"] == "unauthorized"
    assert response.json["errors"][0]["field"] == "secret"
    assert WEBHOOK_SECRET not in response.get_data(as_text=True)
    assert okx.received == []


def test_secret_is_checked_before_the_fields(client, okx):
    response = client.post("/webhook", json=make_alert(secret="wrong-secret-0123456789", amount="-1"))
    assert response.status_code == 401


BAD_FIELDS = [
    ("algoId", {"algoId": DELETE}),
    ("algoId", {"algoId": ""}),
    ("algoId", {"algoId": "abc"}),
    ("algoId", {"algoId": "12 34"}),
    ("algoId", {"algoId": -1}),
    ("algoId", {"algoId": True}),
    ("algoId", {"algoId": "{{plot_0}}"}),
    ("algoId", {"algoId": "1" * 33}),
    ("action", {"action": DELETE}),
    ("action", {"action": "long"}),  # not an action ("buy" is one since issue 23: its own tests say what it takes)
    ("action", {"action": "add margin"}),
    ("action", {"action": ""}),
    ("action", {"action": 1}),
    ("action", {"action": None}),
    ("action", {"action": "add", "type": "reduce"}),
    ("amount", {"amount": DELETE}),
    ("amount", {"amount": "0"}),
    ("amount", {"amount": 0}),
    ("amount", {"amount": "0.000"}),
    ("amount", {"amount": "-1"}),
    ("amount", {"amount": -5}),
    ("amount", {"amount": "1,000"}),
    ("amount", {"amount": "1,5"}),
    ("amount", {"amount": "NaN"}),
    ("amount", {"amount": "Infinity"}),
    ("amount", {"amount": "1e2"}),
    ("amount", {"amount": " 10"}),
    ("amount", {"amount": "+10"}),
    ("amount", {"amount": "10."}),
    ("amount", {"amount": ".5"}),
    ("amount", {"amount": "12345678901234567"}),
    ("amount", {"amount": "0.12345678901234567"}),
    ("amount", {"amount": "1000000000000"}),
    ("amount", {"amount": "{{strategy.order.contracts}}"}),
    ("amount", {"amount": True}),
    ("amount", {"amount": None}),
    ("amount", {"amount": [10]}),
    ("amount", {"amount": "10", "amt": "20"}),
    ("investmentType", {"investmentType": "percent"}),
    ("investmentType", {"investmentType": 5}),
    ("allowReinvest", {"allowReinvest": "yes"}),
    ("allowReinvest", {"allowReinvest": 1}),
    ("allowReinvest", {"investmentType": "percentage_investment", "allowReinvest": None}),
    ("allowReinvest", {"allowReinvest": True}),
    ("allowReinvest", {"allowReinvest": "true"}),
    ("allowReinvest", {"investmentType": "margin", "allowReinvest": True}),
    ("allowReinvest", {"investmentType": "percentage_balance", "allowReinvest": True}),
    ("id", {"id": ""}),
    ("id", {"id": 7}),
    ("id", {"id": "x" * 129}),
    ("id", {"id": "{{strategy.order.id}}"}),
    ("id", {"id": "BTC-{{timenow}}"}),
    ("maxLag", {"maxLag": 0}),
    ("maxLag", {"maxLag": 3601}),
    ("maxLag", {"maxLag": "60"}),
    ("timestamp", {"timestamp": "yesterday"}),
    ("timestamp", {"timestamp": "2026-11-24T10:00:00"}),
]


@pytest.mark.parametrize("field, changes", BAD_FIELDS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_FIELDS)])
def test_invalid_field_is_422_naming_the_field_and_nothing_is_sent(client, okx, field, changes):
    response = client.post("/webhook", json=make_alert(**changes))
    assert response.status_code == 422, response.json
    assert response.json["status"] == "invalid"
    assert field in [e["field"] for e in response.json["errors"]]
    assert all(e["message"] for e in response.json["errors"])
    assert WEBHOOK_SECRET not in response.get_data(as_text=True)
    assert okx.received == []


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400", "1e-400", "-0", "0e5"])
def test_non_finite_huge_and_tiny_json_numbers_are_422(client, okx, raw):
    body = json.dumps(make_alert(amount="X")).replace('"X"', raw)
    response = client.post("/webhook", data=body)
    assert response.status_code == 422, response.json
    assert response.json["errors"][0]["field"] == "amount"
    assert okx.received == []


def test_allow_reinvest_refusal_says_why(client):
    response = client.post("/webhook", json=make_alert(allowReinvest=True))
    message = response.json["errors"][0]["message"]
    assert "percentage_investment" in message


def test_body_over_64_kib_is_413(client, okx):
    response = client.post("/webhook", json=make_alert(padding="x" * 70_000))
    assert response.status_code == 413
    assert response.json["status"] == "too_large"
    assert okx.received == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(client, okx, method):
    response = client.open("/webhook", method=method, json=make_alert())
    assert response.status_code == 405
    assert response.json["status"] == "method_not_allowed"
    assert okx.received == []


# -- OKX's answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, msg, hint_word",
    [
        ("51000", "Parameter amt error", None),
        ("51291", "This bot does not exist or has stopped", None),
        ("50113", "Invalid Sign", "OKX_API_SECRET"),
        ("50119", "API key doesn't exist", "OKX_BASE_URL"),
        ("50101", "APIKey does not match current environment.", "OKX_DEMO"),
        ("51008_1000", "Insufficient balance", None),
        ("51288", "Bot is stopping", None),
        ("59999", "a code not in any table, with HTTP 200", None),
    ],
)
def test_okx_refusal_is_424_with_its_code_message_and_hint(client, okx, code, msg, hint_word):
    okx.play(OkxReply(code, msg, http=401 if code.startswith("501") else 200))
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 424, response.json
    assert response.json["status"] == "rejected"
    assert response.json["okx"] == {"code": code, "msg": msg}
    assert "OKX refused" in response.json["message"] and code in response.json["message"], response.json
    assert "did not act" in response.json["message"]
    if hint_word:
        assert hint_word in response.json["detail"]
    assert len(okx.margin_requests()) == 1


def test_wrong_key_against_the_real_checks_is_424(make_app, okx):
    client = make_app(okx_api_secret="not-the-right-secret-key").test_client()
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 424
    assert response.json["okx"]["code"] == "50113"
    assert okx.executed == []


def test_demo_key_without_demo_mode_is_424_with_hint(client, okx):
    okx.demo = True  # the key is a demo key; the app is not in demo mode
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 424
    assert response.json["okx"]["code"] == "50101"
    assert "OKX_DEMO" in response.json["detail"]


@pytest.mark.parametrize(
    "behaviour",
    [
        RawReply(502),
        RawReply(500, "oops"),
        OkxReply("50004", "API endpoint request timeout", 200),
        OkxReply("51149", "Order timed out"),
        OkxReply("50026", "System error", 500),
        OkxReply("51054", "Request timed out", 500),
        Slow(1.5),
        Drop(),
        OkxReply("59999", "unlisted", 500),
        OkxReply("51000", "unlisted with 503", 503),
        RawReply(200, "<html>ok</html>"),
    ],
    ids=[
        "502-html",
        "500-text",
        "50004",
        "51149",
        "50026",
        "51054",
        "read-timeout",
        "dropped",
        "unlisted-code-500",
        "refusal-code-503",
        "200-not-okx",
    ],
)
def test_outcome_unknown_is_202_unknown_and_never_resent(client, okx, behaviour):
    okx.play(behaviour)
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 202, response.json
    assert response.json["status"] == "unknown"
    assert len(okx.margin_requests()) == 1
    assert UNKNOWN_SAYS_WHAT_NEXT in response.json["message"], response.json


# What an unknown reply says happens next and what to do, like a rejected one says what OKX refused.
UNKNOWN_SAYS_WHAT_NEXT = (
    "OKX may have acted on it, so it is never resent. In about 3 s the service reads the bot on OKX and proposes "
    "whether it was executed."
)
UNKNOWN_REPLIES = {
    "manual-with-the-page": (
        {},
        "Check the bot's margin on OKX, then mark the alert on its page (/admin/alerts/{id}); "
        "send it again from there only if it was not executed.",
    ),
    "auto": (
        {"resolve_unknown": "auto"},
        "RESOLVE_UNKNOWN=auto marks it itself when OKX's records leave no doubt.",
    ),
    "notified": (
        {"notify_urls": ("json://127.0.0.1:1/unused",)},
        "The proposal is notified (NOTIFY_URLS).",
    ),
    "without-the-operator-page": (
        {"admin_token": ""},
        "Check the bot's margin on OKX before sending it again (set ADMIN_TOKEN for the operator page, "
        "where it is marked and sent again).",
    ),
}


@pytest.mark.parametrize("settings, says", UNKNOWN_REPLIES.values(), ids=UNKNOWN_REPLIES.keys())
def test_an_unknown_reply_says_what_happens_next_and_what_to_do(make_app, okx, settings, says):
    okx.play(RawReply(502))
    response = make_app(**settings).test_client().post("/webhook", json=make_alert())
    assert response.status_code == 202 and response.json["status"] == "unknown", response.json
    message = response.json["message"]
    assert message.startswith(UNKNOWN_SAYS_WHAT_NEXT), message
    assert says.format(id=response.json["id"]) in message, message


@pytest.mark.parametrize("code, http", [("50013", 200), ("50001", 503), ("50040", 200)])
def test_okx_did_not_act_is_retried_then_503_failed_when_it_never_does(make_app, okx, code, http):
    client = make_app(okx_max_attempts=2).test_client()
    okx.play(*[OkxReply(code, "busy", http)] * 5)
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 503, response.json
    assert response.json["status"] == "failed"
    assert response.json["okx"]["code"] == code
    assert len(okx.margin_requests()) == 2
    assert okx.executed == []


@pytest.mark.parametrize("http", [429, 200])
def test_rate_limited_by_okx_waits_out_its_window_so_the_reply_is_202_then_failed(make_app, okx, http):
    client = make_app(okx_max_attempts=2, reply_deadline=1.0).test_client()
    okx.play(*[OkxReply("50011", "Too Many Requests", http)] * 5)
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 202, response.json  # the retry waits 2 s, past the reply deadline
    assert response.json["status"] in ("queued", "sending")  # "sending" while attempt 1's outcome is recorded
    record = wait_final(client.application, response.json["id"])
    assert (record.state, record.okx_code, record.attempts) == ("failed", "50011", 2)
    assert len(okx.margin_requests()) == 2
    assert okx.executed == []


@pytest.mark.parametrize(
    "data",
    [{"algoId": "581628185981813760"}, 5, None, "x", [1], [], [{"algoId": 7}]],
    ids=["object", "number", "null", "string", "list-of-number", "empty", "algoId-not-string"],
)
def test_okx_success_is_ok_whatever_the_shape_of_its_data(client, okx, data):
    okx.play(OkxReply("0", "", data=data))
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 200, response.json
    assert response.json["status"] == "ok"
    assert len(okx.executed) == 1


@pytest.mark.parametrize(
    "page",
    [
        RawReply(403, "<html>Forbidden by the CDN</html>", executed=False),
        RawReply(407, "Proxy Authentication Required", executed=False),
        RawReply(404, "<html>Not Found</html>", executed=False),
    ],
    ids=["cdn-403", "proxy-407", "404-page"],
)
def test_a_page_that_never_came_from_okx_is_not_executed_and_retried(client, okx, page):
    okx.play(page)
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 200, response.json
    assert len(okx.margin_requests()) == 2
    assert len(okx.executed) == 1


def test_bot_engine_upgrading_51290_is_retried_later(client, okx):
    okx.play(OkxReply("51290", "Bot engine is being upgraded"))
    response = client.post("/webhook", json=make_alert())
    record = wait_final(client.application, response.json["id"])
    assert record.state == "ok"
    assert [r.code for r in okx.margin_requests()] == ["51290", "0"]
    assert len(okx.executed) == 1


def test_okx_unreachable_is_503_failed_and_nothing_was_received(make_app, okx):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    client = make_app(okx_base_url=f"http://127.0.0.1:{closed_port}", okx_max_attempts=2).test_client()
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 503, response.json
    assert response.json["status"] == "failed"
    assert "connect" in response.json["detail"]


def test_reply_comes_by_the_deadline_while_okx_is_slow(make_app, okx):
    client = make_app(okx_read_timeout=5.0, reply_deadline=0.5).test_client()
    okx.play(Slow(1.5))
    response = client.post("/webhook", json=make_alert())
    assert response.status_code == 202
    assert response.json["status"] == "sending"
    record = wait_final(client.application, response.json["id"])
    assert record.state == "ok"
    assert len(okx.executed) == 1


@pytest.mark.parametrize(
    "value, plain",
    [
        ("1E+2", "100"),
        ("0.10", "0.1"),
        ("0", "0"),
        ("0.000", "0"),
        ("0.99999999999999999999999999999", "0.99999999999999999999999999999"),
        ("123456789012345678901234567890.5", "123456789012345678901234567890.5"),
    ],
)
def test_amounts_are_written_exactly_never_rounded(value, plain):
    from webhook_app.okx.records import plain_decimal

    assert plain_decimal(Decimal(value)) == plain


@pytest.mark.parametrize(
    "raw",
    [
        '"0.99999999999999999999999999999"',
        "0.99999999999999999999999999999",
        '"1.00000000000000000000000000001"',
        '"9999999999.9999999999999999999"',
    ],
)
def test_an_amount_too_precise_is_refused_never_rounded(client, okx, raw):
    body = json.dumps(make_alert(amount="X")).replace('"X"', raw)
    response = client.post("/webhook", data=body)
    assert response.status_code == 422, response.json
    assert response.json["errors"][0]["field"] == "amount"
    assert okx.received == []


# Each secret the service knows, by where it comes from: pasted into a field the service shows back.
SECRETS = {
    "webhook-secret": lambda okx: WEBHOOK_SECRET,
    "okx-secret": lambda okx: okx.secret_key,
    "okx-passphrase": lambda okx: okx.passphrase,
    "okx-api-key": lambda okx: okx.api_key,
    "admin-token": lambda okx: ADMIN_TOKEN,
}


@pytest.mark.parametrize("field", ["id", "account"])
@pytest.mark.parametrize("shape", [lambda s: s, lambda s: f"Long-{s}-1"], ids=["equal", "containing"])
@pytest.mark.parametrize("source", SECRETS)
def test_a_secret_pasted_into_a_field_shown_back_is_422_naming_it_never_echoed(make_app, okx, source, shape, field):
    secret = SECRETS[source](okx)
    app = make_app()
    client = app.test_client()
    replies = [client.post("/webhook", json=make_alert(**{field: shape(secret)})) for _ in range(2)]  # and a resend
    for reply in replies:
        assert reply.status_code == 422, reply.text
        assert reply.json["status"] in ("invalid", "account_refused")  # an account: refused by its own checks
        assert [e["field"] for e in reply.json["errors"]] == [field]
        assert secret not in reply.get_data(as_text=True)
    app.extensions["webhook"].refusals.flush()
    shown = [client.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) for path in ("/refused", "/admin")]
    assert all(secret not in page.get_data(as_text=True) for page in shown)
    assert app.extensions["webhook"].journal.recent(10) == [] and okx.margin_requests() == []
