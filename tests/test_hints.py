"""What a trader reads when an alert is refused: TradingView never shows reply bodies, so the
reply and the service log must both name the field and the problem, with a hint at the usual
mistakes (a placeholder left unfilled, Pine's epoch-milliseconds time)."""

import logging
import time

import pytest

from tests.conftest import DELETE, WEBHOOK_SECRET, make_alert

PLACEHOLDER_HINT = "TradingView placeholder that was not filled in"


def alert_log_lines(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "webhook_app" and r.getMessage().startswith("alert http=")
    ]


# -- the log line of a refused alert names its fields (item 11) -----------------------------


@pytest.mark.parametrize(
    "changes, status, expected",
    [
        ({"amount": "-5"}, 422, ["amount: must be a plain positive decimal"]),
        ({"algoId": DELETE}, 422, ["algoId: Missing data for required field."]),
        (
            {"amount": "0", "algoId": DELETE},
            422,
            ["amount: must be greater than zero", "algoId: Missing data for required field."],
        ),
        (
            {"action": "long"},
            422,
            ['action: must be "add", "reduce", "buy", "sell", "close", "cancel", "tpsl" or "stop"'],
        ),
        ({"timestamp": "yesterday"}, 422, ["timestamp: must be an ISO 8601 time"]),
        ({"secret": "wrong-0123456789abcdef"}, 401, ["secret: secret is wrong"]),
        ({"secret": DELETE}, 401, ["secret: secret is missing"]),
    ],
    ids=["amount", "missing-algoId", "two-fields", "action", "timestamp", "wrong-secret", "no-secret"],
)
def test_the_log_line_of_a_refused_alert_names_each_field_and_problem(client, okx, caplog, changes, status, expected):
    caplog.set_level(logging.INFO, logger="webhook_app")
    response = client.post("/webhook", json=make_alert(**changes))
    assert response.status_code == status, response.json
    (line,) = alert_log_lines(caplog)
    assert "errors=" in line, line
    errors = line.split("errors=", 1)[1]
    for text in expected:
        assert text in errors, line
    assert okx.margin_requests() == []
    assert "wrong-0123456789abcdef" not in caplog.text and WEBHOOK_SECRET not in caplog.text


def test_a_missing_value_is_written_as_a_dash_everywhere_in_the_line(client, okx, caplog):
    caplog.set_level(logging.INFO, logger="webhook_app")
    client.post("/webhook", json=make_alert(amount="-5"))
    (line,) = alert_log_lines(caplog)
    assert "None" not in line, line
    assert " id=- " in line and " algoId=- " in line, line


def test_the_errors_in_the_log_line_are_bounded_scrubbed_and_on_one_line(make_app, okx, caplog):
    caplog.set_level(logging.INFO, logger="webhook_app")
    client = make_app().test_client()
    many = {f"n{i}": "x" for i in range(5)}
    bad_id = "A" * 100 + "{{close}}\nalert http=200 status=ok " + WEBHOOK_SECRET
    response = client.post("/webhook", json=make_alert(id=bad_id, amount="x" * 5000, action="y" * 5000, **many))
    assert response.status_code == 422
    (line,) = alert_log_lines(caplog)
    assert "\n" not in line and len(line) < 1200, line
    assert WEBHOOK_SECRET not in caplog.text
    assert "id:" in line and "amount:" in line and "action:" in line


def test_an_accepted_alert_has_no_errors_in_its_line(client, okx, caplog):
    caplog.set_level(logging.INFO, logger="webhook_app")
    assert client.post("/webhook", json=make_alert()).status_code == 200
    (line,) = alert_log_lines(caplog)
    assert "errors=" not in line and "None" not in line


# -- hints (item 12) -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["{{timenow}}", "{{time}}", "2026-11-30T{{timenow}}"])
def test_an_unfilled_timestamp_gets_the_placeholder_hint(client, okx, value):
    response = client.post("/webhook", json=make_alert(timestamp=value))
    assert response.status_code == 422
    (error,) = response.json["errors"]
    assert error["field"] == "timestamp" and PLACEHOLDER_HINT in error["message"], error
    assert okx.margin_requests() == []


@pytest.mark.parametrize(
    "secret",
    ["<WEBHOOK_SECRET>", "<your secret here>", "{{secret}}", "{{strategy.order.alert_message}}"],
)
def test_a_placeholder_left_as_the_secret_says_to_replace_it(client, okx, secret):
    response = client.post("/webhook", json=make_alert(secret=secret))
    assert response.status_code == 401
    (error,) = response.json["errors"]
    assert error["field"] == "secret"
    assert "placeholder" in response.json["message"] and "replace it with" in response.json["message"]
    assert "placeholder" in error["message"]
    assert WEBHOOK_SECRET not in response.text
    assert secret not in response.json["message"] or secret == "<WEBHOOK_SECRET>"
    assert okx.margin_requests() == []


def test_a_wrong_secret_that_is_no_placeholder_is_just_wrong(client, okx):
    response = client.post("/webhook", json=make_alert(secret="nearly-" + WEBHOOK_SECRET))
    assert response.status_code == 401 and response.json["message"] == "secret is wrong"


def epoch_ms(offset=0.0) -> int:
    return int((time.time() + offset) * 1000)


@pytest.mark.parametrize(
    "timestamp",
    [
        lambda: str(epoch_ms(-1)),  # Pine: str.tostring(timenow)
        lambda: epoch_ms(-1),  # as a JSON number
        lambda: str(int(time.time()) - 1),  # epoch seconds
        lambda: int(time.time()) - 1,
    ],
    ids=["ms-string", "ms-number", "s-string", "s-number"],
)
def test_pine_epoch_times_are_accepted(client, okx, timestamp):
    response = client.post("/webhook", json=make_alert(timestamp=timestamp()))
    assert response.status_code == 200, response.json
    assert len(okx.executed) == 1


@pytest.mark.parametrize(
    "timestamp",
    [lambda: str(epoch_ms(-600)), lambda: epoch_ms(-600), lambda: int(time.time()) - 600],
    ids=["ms-string", "ms-number", "s-number"],
)
def test_a_stale_epoch_time_is_judged_like_an_iso_time(client, okx, timestamp):
    response = client.post("/webhook", json=make_alert(timestamp=timestamp()))
    assert response.status_code == 422 and response.json["status"] == "stale", response.json
    assert response.json["errors"][0]["field"] == "timestamp"
    assert okx.margin_requests() == []


@pytest.mark.parametrize(
    "value",
    ["17645040000", "176450400000", "17645040000000", "-1764504000", "1764504000.5", 1764504000.5, True, "0x1a"],
)
def test_other_numbers_are_not_times(client, okx, value):
    response = client.post("/webhook", json=make_alert(timestamp=value))
    assert response.status_code == 422, response.json
    (error,) = response.json["errors"]
    assert error["field"] == "timestamp" and "epoch" in error["message"], error
    assert okx.margin_requests() == []


def test_epoch_milliseconds_are_read_exactly():
    from webhook_app.intake.alerts import load_alert

    alert = load_alert({"algoId": "1", "action": "add", "amount": "1", "timestamp": "9999999999999"})
    assert alert.timestamp.microsecond == 999000  # through a float it was 999001
