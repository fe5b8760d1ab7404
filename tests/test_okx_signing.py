"""Known-answer vectors computed with OKX's official SDK (a copy kept in tests/okx-sign-vectors.json)."""

import json
from datetime import datetime
from pathlib import Path

import pytest

from webhook_app.okx.client import sign
from webhook_app.okx.margin.request import MarginRequest
from webhook_app.okx.records import okx_timestamp

VECTORS_FILE = Path(__file__).resolve().with_name("okx-sign-vectors.json")
VECTORS = json.loads(VECTORS_FILE.read_text())["vectors"]


def test_the_vector_file_is_there():
    assert len(VECTORS) >= 4


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["timestamp"])
def test_signature_matches_okx_sdk(vector):
    assert (
        sign(vector["secretKey"], vector["timestamp"], vector["method"], vector["requestPath"], vector["body"])
        == vector["sign"]
    )


def test_signature_covers_the_exact_bytes():
    compact = VECTORS[0]
    spaced_body = compact["body"].replace(",", ", ")
    assert (
        sign(compact["secretKey"], compact["timestamp"], "POST", compact["requestPath"], spaced_body) != compact["sign"]
    )


def test_margin_request_body_is_compact_json_that_signs_to_the_vector():
    vector = VECTORS[2]  # the allowReinvest one, compact
    request = MarginRequest(algo_id="581628185981813760", type="add", amt="15", allow_reinvest=True)
    assert request.body_bytes().decode() == vector["body"]
    assert (
        sign(vector["secretKey"], vector["timestamp"], "POST", vector["requestPath"], request.body_bytes())
        == vector["sign"]
    )


def test_allow_reinvest_absent_means_not_sent():
    assert MarginRequest("1", "reduce", "2.5").body_bytes() == b'{"algoId":"1","type":"reduce","amt":"2.5"}'


@pytest.mark.parametrize(
    "epoch, expected",
    [
        (1607418537.715, "2020-12-08T09:08:57.715Z"),
        (1795392000.0, "2026-11-23T00:00:00.000Z"),
        (1795392000.0005, "2026-11-23T00:00:00.000Z"),
    ],
)
def test_timestamp_has_exactly_three_millisecond_digits(epoch, expected):
    assert okx_timestamp(epoch) == expected
    assert datetime.fromisoformat(expected.replace("Z", "+00:00")).timestamp() == pytest.approx(epoch, abs=1e-3)
