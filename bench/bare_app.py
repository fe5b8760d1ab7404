"""The floors to compare against: bare Flask routes under the same gunicorn settings.

/webhook and /relay keep nothing (SQLite's floors). With BARE_DATABASE_URL set (a PostgreSQL URL),
/durable and /durable-relay also commit one durable INSERT per alert through a psycopg pool before
replying (PostgreSQL's floors): what any receiver that must not lose an answered alert pays at least.
"""

import base64
import hashlib
import hmac
import json
import os
from datetime import UTC, datetime

import requests
from flask import Flask, jsonify, request
from psycopg_pool import ConnectionPool

app = Flask(__name__)
session = requests.Session()
PATH = "/api/v5/tradingBot/signal/margin-balance"
OKX_URL = os.environ.get("OKX_BASE_URL", "http://127.0.0.1:9") + PATH
KEY, SECRET, PASSPHRASE = (os.environ.get(n, "") for n in ("OKX_API_KEY", "OKX_API_SECRET", "OKX_API_PASSPHRASE"))
DURABLE_URL = os.environ.get("BARE_DATABASE_URL")
# The service's durable pool holds at most 4 connections by default (DATABASE_MAX_CONNECTIONS=7: its
# heartbeat's, 4 durable, 2 lazy; journal/postgres/budget.py): the same here, so that at 64 clients the
# floor queues for a connection as the service does.
POOL_SIZE = int(os.environ.get("BARE_POOL_SIZE", "4"))


def _durable(conn) -> None:
    # The server's default, said here: the commit waits for the WAL flush, as the service's alert does.
    conn.execute("SET synchronous_commit TO on")


pool: ConnectionPool | None = None
if DURABLE_URL:
    # autocommit: the INSERT is its own transaction, committed in one round trip.
    pool = ConnectionPool(
        DURABLE_URL, min_size=1, max_size=POOL_SIZE, kwargs={"autocommit": True}, configure=_durable, open=False
    )
    pool.open(wait=True, timeout=10)
    with pool.connection() as setup:
        # The alert's id is unique, as any receiver that drops a retried alert needs.
        setup.execute(
            "CREATE TABLE IF NOT EXISTS floor_alerts (id bigserial PRIMARY KEY, received_at timestamptz NOT NULL "
            "DEFAULT now(), alert_id text NOT NULL UNIQUE, algo_id text NOT NULL, action text NOT NULL, "
            "amount text NOT NULL, request_body text NOT NULL)"
        )


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


@app.post("/webhook")
def parse_and_reply():
    """Parses the JSON body and returns a JSON reply: what any Flask webhook does at least."""
    payload = request.get_json(force=True)
    return jsonify(status="ok", algoId=payload.get("algoId"))


@app.post("/relay")
def relay():
    """Signs and posts the same margin body to the stand-in with a plain requests.Session."""
    return jsonify(status="ok", okx=_forward(request.get_json(force=True)))


def _record(payload: dict) -> None:
    """One durable INSERT of the alert, committed before the reply (amount kept as its text)."""
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO floor_alerts (alert_id, algo_id, action, amount, request_body) VALUES (%s, %s, %s, %s, %s)",
            (
                str(payload["id"]),
                str(payload["algoId"]),
                payload["action"],
                str(payload["amount"]),
                request.get_data(as_text=True),
            ),
        )


@app.post("/durable")
def durable():
    """The pipeline floor on PostgreSQL: parse, one committed INSERT, a JSON reply."""
    payload = request.get_json(force=True)
    _record(payload)
    return jsonify(status="ok", algoId=payload.get("algoId"))


@app.post("/durable-relay")
def durable_relay():
    """The relay floor on PostgreSQL: the committed INSERT, then the signed POST to the stand-in."""
    payload = request.get_json(force=True)
    _record(payload)
    return jsonify(status="ok", okx=_forward(payload))


def _forward(payload: dict) -> str | None:
    """Signs the margin body and posts it; returns OKX's code."""
    body = json.dumps(
        {"algoId": str(payload["algoId"]), "type": payload["action"], "amt": str(payload["amount"])},
        separators=(",", ":"),
    )
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sign = base64.b64encode(hmac.new(SECRET.encode(), f"{ts}POST{PATH}{body}".encode(), hashlib.sha256).digest())
    headers = {
        "OK-ACCESS-KEY": KEY,
        "OK-ACCESS-SIGN": sign.decode(),
        "OK-ACCESS-TIMESTAMP": ts,
        "OK-ACCESS-PASSPHRASE": PASSPHRASE,
        "Content-Type": "application/json",
    }
    response = session.post(OKX_URL, data=body, headers=headers, timeout=(1, 10))
    return response.json().get("code")
