"""The floor to compare against: bare Flask routes under the same gunicorn settings."""

import base64
import hashlib
import hmac
import json
import os
from datetime import UTC, datetime

import requests
from flask import Flask, jsonify, request

app = Flask(__name__)
session = requests.Session()
PATH = "/api/v5/tradingBot/signal/margin-balance"
OKX_URL = os.environ.get("OKX_BASE_URL", "http://127.0.0.1:9") + PATH
KEY, SECRET, PASSPHRASE = (os.environ.get(n, "") for n in ("OKX_API_KEY", "OKX_API_SECRET", "OKX_API_PASSPHRASE"))


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
    payload = request.get_json(force=True)
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
    return jsonify(status="ok", okx=response.json().get("code"))
