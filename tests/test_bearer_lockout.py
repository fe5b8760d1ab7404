"""Wrong ``Authorization: Bearer`` tokens count in the same lockout as wrong webhook secrets."""

import pytest

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, make_alert

STRANGER = {"REMOTE_ADDR": "203.0.113.9"}
OTHER = {"REMOTE_ADDR": "198.51.100.20"}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/alerts", "/status", "/refused", "/admin/live"])
def test_wrong_bearer_tokens_lock_the_address_out_even_for_the_right_one(make_app, path):
    client = make_app(lockout_threshold=3, lockout_seconds=60).test_client()
    for _ in range(3):
        assert client.get(path, headers=bearer("guess-0123456789abcdef"), environ_base=STRANGER).status_code == 401
    locked = client.get(path, headers=bearer(ADMIN_TOKEN), environ_base=STRANGER)
    assert locked.status_code == 429, locked.text
    assert locked.json["status"] == "locked_out" and int(locked.headers["Retry-After"]) > 0
    assert client.get(path, headers=bearer(ADMIN_TOKEN), environ_base=OTHER).status_code == 200  # that address only


def test_a_bearer_guess_and_a_secret_guess_count_together(make_app, okx):
    client = make_app(lockout_threshold=3).test_client()
    wrong_secret = make_alert(secret="wrong-" + WEBHOOK_SECRET)
    assert client.post("/webhook", json=wrong_secret, environ_base=STRANGER).status_code == 401
    assert client.get("/alerts", headers=bearer("guess-0123456789abcdef"), environ_base=STRANGER).status_code == 401
    assert client.post("/webhook", json=wrong_secret, environ_base=STRANGER).status_code == 401
    assert client.get("/alerts", headers=bearer(ADMIN_TOKEN), environ_base=STRANGER).status_code == 429
    assert client.post("/webhook", json=make_alert(), environ_base=STRANGER).status_code == 429
    assert okx.received == []


def test_the_right_bearer_token_is_not_counted(make_app):
    client = make_app(lockout_threshold=2).test_client()
    for _ in range(5):
        assert client.get("/alerts", headers=bearer(ADMIN_TOKEN), environ_base=STRANGER).status_code == 200
    assert client.get("/readyz", environ_base=STRANGER).status_code in (200, 503)  # no token: nothing counted


def test_bearer_guesses_on_one_instance_lock_out_on_another(make_app, pg_url):
    first = make_app(database_url=pg_url, lockout_threshold=3).test_client()
    second = make_app(database_url=pg_url, lockout_threshold=3).test_client()
    for _ in range(3):
        assert first.get("/alerts", headers=bearer("guess-0123456789abcdef"), environ_base=STRANGER).status_code == 401
    assert second.get("/alerts", headers=bearer(ADMIN_TOKEN), environ_base=STRANGER).status_code == 429
