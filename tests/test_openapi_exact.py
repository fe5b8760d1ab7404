"""The OpenAPI document is exact where a client reads it (issue 24, item 12): what its schema
allows for the webhook's ``timestamp`` is what the service takes, and only that (freshness apart,
which no schema can say); the text/plain body is described as the JSON text it is; a filter by an
account the service does not have finds nothing instead of refusing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_TOKEN, make_alert
from webhook_app.intake.alerts import InvalidAlert, load_alert
from webhook_app.intake.fields import ISO_TIME_PATTERN

DOCUMENT = json.loads((Path(__file__).parents[1] / "webhook_app" / "surfaces" / "openapi.json").read_text())
SCHEMAS = DOCUMENT["components"]["schemas"]
# Every alert's schema (a margin call, an order) says the same of its timestamp.
TIMESTAMPS = [
    schema["properties"]["timestamp"] for schema in SCHEMAS.values() if "timestamp" in schema.get("properties", {})
]
TIMESTAMP = jsonschema_rs.Draft4Validator(TIMESTAMPS[0], validate_formats=True)
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def service_takes(timestamp) -> bool:
    """The service reads ``timestamp`` as a time (whether it is fresh is judged later, on its clock)."""
    try:
        load_alert(make_alert(timestamp=timestamp))
    except InvalidAlert as refused:
        assert [error["field"] for error in refused.errors] == ["timestamp"], refused.errors
        return False
    return True


def agree(timestamp) -> None:
    assert TIMESTAMP.is_valid(timestamp) == service_takes(timestamp), repr(timestamp)


def test_the_documents_pattern_is_the_services():
    assert len(TIMESTAMPS) >= 2 and all(timestamp == TIMESTAMPS[0] for timestamp in TIMESTAMPS)
    [iso] = [form for form in TIMESTAMPS[0]["oneOf"] if form.get("format") == "date-time"]
    assert iso["pattern"] == ISO_TIME_PATTERN


@pytest.mark.parametrize(
    "timestamp",
    [
        "2019-08-27T09:56:05Z",  # TradingView's {{timenow}}
        "2019-08-27T09:56:05.123Z",
        "2019-08-27t09:56:05z",
        "2019-08-27T09:56:05.123456789+05:30",
        "2019-08-27T09:56:05-00:00",
        "1566899765",  # epoch seconds
        "1566899765123",  # epoch milliseconds (Pine's str.tostring(timenow))
        1566899765,
        1566899765123,
        # ... and what neither takes
        "2019-08-27T09:56:05",  # no time zone
        "2019-08-27 09:56:05Z",
        "2019-08-27T09:56Z",
        "20190827T095605Z",
        "2019-02-30T09:56:05Z",
        "2019-08-27T24:00:00Z",
        "2019-08-27T09:56:60Z",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00-00:60",  # an offset of 60 minutes (hypothesis found the service took it)
        "2019-08-27T09:56:05+24:00",
        "156689976",
        "15668997651",
        15668997651,
        -1566899765,
        1566899765.5,
        "yesterday",
        True,
    ],
)
def test_the_schema_and_the_service_agree_on_each_form(timestamp):
    agree(timestamp)


ISO_LIKE = st.from_regex(ISO_TIME_PATTERN, fullmatch=True)
DATETIMES = st.datetimes(min_value=datetime(1, 1, 1), timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7))]))
FORMATTED = st.builds(
    lambda moment, spec: moment.isoformat(sep=spec[0], timespec=spec[1]),
    DATETIMES,
    st.tuples(st.sampled_from(["T", " ", "t"]), st.sampled_from(["auto", "minutes", "seconds", "milliseconds"])),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ISO_LIKE, FORMATTED, st.integers(), st.from_regex(r"\A[0-9]{8,15}\Z"), st.text(max_size=30)))
def test_whatever_the_schema_allows_the_service_takes_and_nothing_else(timestamp):
    agree(timestamp)


def test_the_text_plain_body_is_described_as_the_json_text_it_is():
    text = DOCUMENT["paths"]["/webhook"]["post"]["requestBody"]["content"]["text/plain"]
    assert text["schema"] == {"$ref": "#/components/schemas/AlertMessage"}
    assert "JSON" in text.get("description", "") or "JSON" in DOCUMENT["paths"]["/webhook"]["post"]["requestBody"].get(
        "description", ""
    )


def test_a_filter_by_an_account_the_service_does_not_have_finds_nothing(make_app):
    client = make_app().test_client()
    assert client.post("/webhook", json=make_alert()).status_code == 200
    nothing = client.get("/alerts?account=hedge", headers=BEARER)
    assert nothing.status_code == 200 and nothing.json["alerts"] == [], nothing.json
    found = client.get("/alerts?account=DEFAULT", headers=BEARER)  # names are case-insensitive
    assert found.status_code == 200 and len(found.json["alerts"]) == 1
    malformed = client.get("/alerts?account=no-such-name!", headers=BEARER)
    assert malformed.status_code == 422 and malformed.json["errors"][0]["field"] == "account"
