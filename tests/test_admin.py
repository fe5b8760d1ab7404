"""The operator page and its JSON over HTTP: off without ADMIN_TOKEN, nothing without logging in,
sessions and CSRF, wrong tokens counted, and the actions on unknown and failed alerts."""

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import markupsafe
import pytest

from tests.conftest import ADMIN_TOKEN, REINVESTED, WEBHOOK_SECRET, make_alert, wait_final, wait_proposal
from tests.okx_stand_in import DEFAULT_BOT, Drop, DropUnexecuted, Meanwhile, OkxReply, RawReply
from webhook_app.clock import ManualClock
from webhook_app.config import OkxAccount

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MARKER = "trader-marker-7f3a"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def logged_in(client) -> str:
    """Log the test client in through the form; returns the session's CSRF token."""
    login_csrf = csrf_of(client.get("/admin").text)
    response = client.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": login_csrf})
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/admin").text)


def unknown_alert(app, okx, executed=True, **changes) -> int:
    okx.play(RawReply(502, executed=executed))  # OKX may have acted: unknown
    alert_id = app.test_client().post("/webhook", json=make_alert(**changes)).json["id"]
    assert wait_final(app, alert_id).state == "unknown"
    return alert_id


def failed_alert(app, okx, **changes) -> int:
    okx.play(OkxReply("50013", "System is busy"))  # certainly not executed; one attempt only
    alert_id = app.test_client().post("/webhook", json=make_alert(**changes)).json["id"]
    assert wait_final(app, alert_id).state == "failed"
    return alert_id


@pytest.mark.parametrize(
    "method, path", [("GET", "/admin"), ("GET", "/admin/live"), ("GET", "/alerts"), ("GET", "/status"),
                     ("GET", "/refused"), ("POST", "/admin/login"), ("POST", "/alerts/1/resend")]
)  # fmt: skip
def test_everything_for_operators_is_off_without_an_admin_token(make_app, method, path):
    client = make_app(admin_token="").test_client()
    assert client.open(path, method=method, headers=BEARER).status_code == 404


def test_without_logging_in_no_alert_data_is_served(make_app):
    app = make_app()
    client = app.test_client()
    client.post("/webhook", json=make_alert(id=MARKER))
    page = client.get("/admin")
    assert page.status_code == 200 and 'name="token"' in page.text and MARKER not in page.text
    detail = client.get("/admin/alerts/1")
    assert 'name="token"' in detail.text and MARKER not in detail.text
    for path in ("/admin/live", "/alerts", "/alerts/1", "/refused", "/status"):
        response = client.get(path)
        assert response.status_code == 401 and MARKER not in response.text, path
    assert client.get("/alerts", headers={"Authorization": "Bearer wrong-token"}).status_code == 401


def test_logging_in_shows_the_alerts_and_logging_out_ends_the_session(make_app):
    app = make_app()
    client = app.test_client()
    client.post("/webhook", json=make_alert(id=MARKER))
    csrf = logged_in(client)
    assert MARKER in client.get("/admin").text and MARKER in client.get("/admin/live").text
    assert client.post("/admin/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.get("/admin/live").status_code == 401 and MARKER not in client.get("/admin").text


def test_a_copy_of_the_cookie_is_worthless_after_logging_out(make_app, database_url):
    app = make_app(database_url=database_url)
    browser, thief = app.test_client(), app.test_client()
    csrf = logged_in(browser)
    cookie = browser.get_cookie("relay_admin").value
    thief.set_cookie("relay_admin", cookie)
    assert thief.get("/admin/live").status_code == 200
    browser.post("/admin/logout", data={"csrf_token": csrf})
    assert thief.get("/admin/live").status_code == 401
    assert thief.post("/alerts/1/resend", data={"csrf_token": csrf}).status_code == 401


def test_the_session_cookie_is_httponly_strict_and_secure_behind_https(make_app):
    client = make_app(trusted_proxy_hops=1).test_client()
    csrf = csrf_of(client.get("/admin").text)
    plain = client.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf}).headers["Set-Cookie"]
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Secure" not in plain
    behind_router = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    secure = client.get("/admin", headers=behind_router).headers["Set-Cookie"]
    assert "Secure" in secure and "HttpOnly" in secure and "SameSite=Strict" in secure
    assert ADMIN_TOKEN not in plain + secure


def test_a_wrong_token_is_refused_and_counted_like_a_wrong_secret(make_app):
    client = make_app(lockout_threshold=3).test_client()
    csrf = csrf_of(client.get("/admin").text)
    for _ in range(3):
        refused = client.post("/admin/login", data={"token": "not-the-token-0123456789", "csrf_token": csrf})
        assert refused.status_code == 401 and "wrong token" in refused.text
    locked = client.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf})
    assert locked.status_code == 429 and "too many wrong tokens" in locked.text
    assert client.get("/admin/live").status_code == 401  # the right token did not log in while locked out
    assert client.post("/webhook", json=make_alert()).status_code == 429  # one count per address, whatever the door


@pytest.mark.parametrize(
    "path, form",
    [("/admin/logout", {}), ("/alerts/1/mark", {"resolution": "executed"}), ("/alerts/1/resend", {})],
)
def test_a_form_without_its_csrf_token_is_refused(make_app, okx, path, form):
    app = make_app()
    unknown_alert(app, okx)
    client = app.test_client()
    logged_in(client)
    for token in (None, "forged-token"):
        data = form if token is None else {**form, "csrf_token": token}
        response = client.post(path, data=data)
        assert response.status_code == 403 and response.json["status"] == "csrf", path
    record = app.extensions["webhook"].journal.get(1)
    assert record.resolution is None and record.resent_as is None
    assert client.get("/admin/live").status_code == 200  # still logged in: the forged logout did nothing


def test_the_login_form_needs_its_csrf_token_too(make_app):
    client = make_app().test_client()
    client.get("/admin")
    assert client.post("/admin/login", data={"token": ADMIN_TOKEN}).status_code == 403
    assert client.get("/admin/live").status_code == 401


def test_an_unknown_alert_is_marked_once_with_who_and_when(make_app, okx, database_url):
    app = make_app(database_url=database_url, unknown_settle=60)  # the operator marks before OKX is read
    alert_id = unknown_alert(app, okx)
    client = app.test_client()
    csrf = logged_in(client)
    response = client.post(f"/alerts/{alert_id}/mark", data={"resolution": "executed", "csrf_token": csrf})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/admin/alerts/{alert_id}")
    shown = client.get(f"/alerts/{alert_id}", headers=BEARER).json
    assert shown["alert"]["resolution"] == "executed" and shown["alert"]["state"] == "unknown"
    marked = shown["timeline"][-1]
    assert marked["kind"] == "marked" and re.fullmatch(r"marked executed by session [0-9a-f]{8}", marked["detail"])
    again = client.post(f"/alerts/{alert_id}/mark", json={"resolution": "not_executed"}, headers=BEARER)
    assert again.status_code == 409 and again.json["status"] == "action_refused"


@pytest.mark.parametrize("resolution", ["", "maybe", None])
def test_a_mark_needs_a_known_resolution(make_app, okx, resolution):
    app = make_app()
    alert_id = unknown_alert(app, okx)
    response = app.test_client().post(f"/alerts/{alert_id}/mark", json={"resolution": resolution}, headers=BEARER)
    assert response.status_code == 422 and response.json["errors"][0]["field"] == "resolution"


def test_only_an_unknown_alert_can_be_marked(make_app, okx):
    app = make_app()
    client = app.test_client()
    ok_id = client.post("/webhook", json=make_alert()).json["id"]
    response = client.post(f"/alerts/{ok_id}/mark", json={"resolution": "executed"}, headers=BEARER)
    assert response.status_code == 409 and "unknown" in response.json["message"]
    assert client.post("/alerts/999/mark", json={"resolution": "executed"}, headers=BEARER).status_code == 404


def test_a_failed_alert_is_sent_again_once_as_a_new_linked_alert(make_app, okx, database_url):
    app = make_app(okx_max_attempts=1, database_url=database_url)
    alert_id = failed_alert(app, okx, id="Long")
    client = app.test_client()
    response = client.post(f"/alerts/{alert_id}/resend", headers=BEARER)
    assert response.status_code == 201, response.json
    new = response.json["alert"]
    assert new["id"] != alert_id and new["resent_from"] == alert_id and new["trader_id"] == "Long"
    assert wait_final(app, new["id"]).state == "ok"
    assert okx.executed == [{"algoId": "581628185981813760", "type": "add", "amt": "10"}]
    assert app.extensions["webhook"].journal.get(alert_id).resent_as == new["id"]
    assert client.get(f"/alerts/{alert_id}", headers=BEARER).json["timeline"][-1]["detail"] == (
        f"sent again as alert {new['id']} by token"
    )
    twice = client.post(f"/alerts/{alert_id}/resend", headers=BEARER)
    assert twice.status_code == 409 and f"alert {new['id']}" in twice.json["message"]
    assert len(okx.executed) == 1


def test_an_alert_marked_not_executed_can_be_sent_again_but_not_one_marked_executed(make_app, okx):
    app = make_app()
    client = app.test_client()
    executed = unknown_alert(app, okx, amount="1")
    not_executed = unknown_alert(app, okx, executed=False, amount="2")  # its bot stays as it was: resent at once
    client.post(f"/alerts/{executed}/mark", json={"resolution": "executed"}, headers=BEARER)
    client.post(f"/alerts/{not_executed}/mark", json={"resolution": "not_executed"}, headers=BEARER)
    assert client.post(f"/alerts/{executed}/resend", headers=BEARER).status_code == 409
    unmarked = unknown_alert(app, okx, executed=False, amount="3")
    assert client.post(f"/alerts/{unmarked}/resend", headers=BEARER).status_code == 409
    resent = client.post(f"/alerts/{not_executed}/resend", headers=BEARER)
    assert resent.status_code == 201 and wait_final(app, resent.json["alert"]["id"]).state == "ok"


def late_execution(okx, amount="10"):
    """OKX executes the dropped request after all, as its own records would show it: no event."""
    with okx._lock:
        okx._apply_margin(okx.bot(DEFAULT_BOT), "add", Decimal(amount), allow_reinvest=False)


def auto_found_not_executed(make_app, okx, **settings):
    """An unknown alert RESOLVE_UNKNOWN=auto marked not executed after its second read; (app, its id)."""
    clock = ManualClock(runs=True)
    app = make_app(local_clock=clock, unknown_settle=0.0, unknown_recheck=30.0, resolve_unknown="auto", **settings)
    alert_id = unknown_alert(app, okx, executed=False)
    assert wait_proposal(app, alert_id).proposal == "not_executed"
    clock.advance(30.0)  # the second read: nothing moved, so the service marks it
    deadline = time.monotonic() + 10
    while app.extensions["webhook"].journal.get(alert_id).resolution is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.extensions["webhook"].journal.get(alert_id).resolution == "not_executed"
    return app, alert_id


def test_a_late_execution_after_the_finding_refuses_the_resend_until_the_operator_insists(make_app, okx, database_url):
    app, alert_id = auto_found_not_executed(make_app, okx, database_url=database_url)
    journal = app.extensions["webhook"].journal
    client = app.test_client()
    late_execution(okx)  # OKX acts on the dropped request after all, after the service's finding
    refused = client.post(f"/alerts/{alert_id}/resend", headers=BEARER)
    assert refused.status_code == 409 and refused.json["status"] == "bot_moved", refused.json
    moved = {row["field"]: row for row in refused.json["moved"]}
    assert moved["availBal"] == {"field": "availBal", "then": "40", "now": "50"} and "totalEq" in moved
    assert "moved since that finding" in refused.json["message"] and "availBal 40 -> 50" in refused.json["message"]
    assert len(okx.margin_requests()) == 1 and okx.executed == []  # nothing sent: only the dropped one
    assert journal.get(alert_id).resent_as is None
    insisted = client.post(f"/alerts/{alert_id}/resend", json={"insist": True}, headers=BEARER)
    assert insisted.status_code == 201, insisted.json
    assert wait_final(app, insisted.json["alert"]["id"]).state == "ok"
    assert okx.executed == [{"algoId": DEFAULT_BOT, "type": "add", "amt": "10"}]
    timeline = [e.detail for e in journal.events(alert_id)]
    assert any(d.startswith("token insisted on sending it again after reading: alert") for d in timeline), timeline


def test_a_resend_of_a_finding_is_refused_when_the_bot_cannot_be_read(make_app, okx):
    app, alert_id = auto_found_not_executed(make_app, okx)
    okx.right_region = False  # every read refused (50119): nothing confirms the bot stayed put
    refused = app.test_client().post(f"/alerts/{alert_id}/resend", headers=BEARER)
    assert refused.status_code == 409 and refused.json["status"] == "cannot_confirm", refused.json
    assert "could not be read" in refused.json["message"] and refused.json["moved"] == []
    assert len(okx.margin_requests()) == 1


def test_a_resend_of_a_failed_alert_never_reads_the_bot(make_app, okx):
    app = make_app(okx_max_attempts=1)
    failed = failed_alert(app, okx)
    okx.move_pnl(DEFAULT_BOT, Decimal("3"))  # the bot moves; a failed alert was certainly never executed
    resent = app.test_client().post(f"/alerts/{failed}/resend", headers=BEARER)
    assert resent.status_code == 201 and wait_final(app, resent.json["alert"]["id"]).state == "ok"
    assert len(okx.executed) == 1


@pytest.mark.parametrize(
    "body, field", [({"insist": "yes"}, "insist"), ([True], "body")], ids=["insist-not-boolean", "not-an-object"]
)
def test_a_resend_with_a_bad_insist_is_refused_naming_it(make_app, okx, body, field):
    app = make_app(okx_max_attempts=1)
    failed = failed_alert(app, okx)
    response = app.test_client().post(f"/alerts/{failed}/resend", json=body, headers=BEARER)
    assert response.status_code == 422 and response.json["errors"][0]["field"] == field, response.json
    assert app.extensions["webhook"].journal.get(failed).resent_as is None


def test_the_page_says_what_moved_and_offers_sending_anyway(make_app, okx):
    app, alert_id = auto_found_not_executed(make_app, okx)
    late_execution(okx, "2.5")
    browser = app.test_client()
    csrf = logged_in(browser)
    refused = browser.post(f"/alerts/{alert_id}/resend", data={"csrf_token": csrf})
    assert refused.status_code == 409 and 'id="resend-insist"' in refused.text
    assert re.findall(r"<td[^>]*>([^<]*)</td>", refused.text.split('id="moved"')[1].split('data-field="availBal">')[1])[
        :3
    ] == [
        "availBal",
        "40",
        "42.5",
    ]
    assert 'id="resend">' not in refused.text and okx.executed == []
    sent = browser.post(f"/alerts/{alert_id}/resend", data={"csrf_token": csrf, "insist": "true"})
    assert sent.status_code == 303
    resend_id = app.extensions["webhook"].journal.get(alert_id).resent_as
    assert wait_final(app, resend_id).state == "ok" and len(okx.executed) == 1


def test_a_resend_meets_every_check_like_any_alert(make_app, okx, database_url):
    app = make_app(okx_max_attempts=1, max_amount_per_day=15, database_url=database_url)
    client = app.test_client()
    failed = failed_alert(app, okx, amount="10")  # failed: it does not count against the cap
    assert client.post("/webhook", json=make_alert(amount="6")).status_code == 200
    response = client.post(f"/alerts/{failed}/resend", headers=BEARER)
    assert response.status_code == 422 and response.json["status"] == "over_daily_cap"
    assert app.extensions["webhook"].journal.get(failed).resent_as is None
    assert okx.executed == [{"algoId": "581628185981813760", "type": "add", "amt": "6"}]


# The same alert twice: with the trader's own id, and without (its fields' fingerprint).
SAME_ALERT = pytest.mark.parametrize("changes", [{"id": "Long"}, {}], ids=["id", "fingerprint"])


@SAME_ALERT
def test_a_failed_alert_that_tradingview_resent_is_not_sent_again(make_app, okx, database_url, changes):
    app = make_app(okx_max_attempts=1, database_url=database_url)
    failed = failed_alert(app, okx, **changes)  # 503: TradingView resends it
    client = app.test_client()
    copy = client.post("/webhook", json=make_alert(**changes))
    assert copy.status_code == 200 and len(okx.executed) == 1
    carried = f"alert {copy.json['id']} already carries this alert (ok)"
    response = client.post(f"/alerts/{failed}/resend", headers=BEARER)
    assert response.status_code == 409, response.json
    assert response.json["message"] == f"{carried}: not sent again"
    assert len(okx.executed) == 1 and len(okx.margin_requests()) == 2  # the failed attempt and the copy
    assert app.extensions["webhook"].journal.get(failed).resent_as is None
    shown = client.get(f"/alerts/{failed}", headers=BEARER).json
    assert shown["resend"] == {"offered": False, "reason": f"{carried}: not sent again"}
    browser = app.test_client()
    logged_in(browser)
    page = browser.get(f"/admin/alerts/{failed}").text
    assert 'id="resend"' not in page and f"not offered: {carried}" in page
    assert f"not offered: {carried}" in browser.get("/admin/live").text


@SAME_ALERT
def test_tradingviews_copy_after_a_resend_is_a_duplicate_of_the_resend(make_app, okx, database_url, changes):
    app = make_app(okx_max_attempts=1, database_url=database_url)
    failed = failed_alert(app, okx, **changes)
    client = app.test_client()
    resent = client.post(f"/alerts/{failed}/resend", headers=BEARER)
    assert resent.status_code == 201, resent.json
    assert wait_final(app, resent.json["alert"]["id"]).state == "ok"
    copy = client.post("/webhook", json=make_alert(**changes))  # TradingView's resend comes in after it
    assert copy.status_code == 409 and copy.json["id"] == resent.json["alert"]["id"], copy.json
    assert len(okx.executed) == 1


def test_a_resend_and_tradingviews_copy_at_once_execute_once(make_app, okx, database_url):
    app = make_app(okx_max_attempts=1, database_url=database_url)
    failed = [failed_alert(app, okx, id=f"race-{i}") for i in range(3)]
    replies = {}

    def resend(i, barrier):
        barrier.wait()
        replies[("resend", i)] = app.test_client().post(f"/alerts/{failed[i]}/resend", headers=BEARER)

    def copy(i, barrier):
        barrier.wait()
        replies[("copy", i)] = app.test_client().post("/webhook", json=make_alert(id=f"race-{i}"))

    for i in range(3):
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=f, args=(i, barrier)) for f in (resend, copy)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for record in app.extensions["webhook"].journal.recent(50):
        wait_final(app, record.id)
    statuses = [(replies[("resend", i)].status_code, replies[("copy", i)].status_code) for i in range(3)]
    assert all(pair in ((201, 409), (409, 200)) for pair in statuses), statuses
    assert len(okx.executed) == 3  # one per alert


def test_a_later_copy_marked_not_executed_does_not_stop_a_resend(make_app, okx, database_url):
    app = make_app(okx_max_attempts=1, database_url=database_url)
    client = app.test_client()
    failed = failed_alert(app, okx, id="Long")
    okx.play(RawReply(502, executed=False))  # TradingView's copy: unknown; the operator finds it not executed
    copy = client.post("/webhook", json=make_alert(id="Long")).json["id"]
    assert wait_final(app, copy).state == "unknown"
    client.post(f"/alerts/{copy}/mark", json={"resolution": "not_executed"}, headers=BEARER)
    resent = client.post(f"/alerts/{failed}/resend", headers=BEARER)
    assert resent.status_code == 201, resent.json
    assert wait_final(app, resent.json["alert"]["id"]).state == "ok"
    again = client.post(f"/alerts/{copy}/resend", headers=BEARER)  # the copy is the same alert: not twice
    assert again.status_code == 409 and f"alert {resent.json['alert']['id']} already carries" in again.json["message"]
    assert len(okx.executed) == 1


def iso_ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def test_a_resend_works_when_timestamps_are_required(make_app, okx, database_url):
    app = make_app(okx_max_attempts=1, require_timestamp=True, database_url=database_url)
    failed = failed_alert(app, okx, timestamp=iso_ago(1))
    response = app.test_client().post(f"/alerts/{failed}/resend", headers=BEARER)
    assert response.status_code == 201, response.json
    assert wait_final(app, response.json["alert"]["id"]).state == "ok"
    assert okx.executed == [{"algoId": "581628185981813760", "type": "add", "amt": "10"}]


@pytest.mark.parametrize(
    "since, status, kind, field",
    [
        ({"allowed_algo_ids": frozenset({"42"})}, 403, "forbidden_bot", "algoId"),
        ({"max_amount": Decimal("5")}, 422, "invalid", "amount"),
    ],
    ids=["bot-removed-from-allowlist", "max-amount-lowered"],
)
def test_a_resend_meets_the_settings_in_force_when_timestamps_are_required(
    make_app, okx, database_url, since, status, kind, field
):
    before = make_app(okx_max_attempts=1, require_timestamp=True, database_url=database_url)
    failed = failed_alert(before, okx, timestamp=iso_ago(1))
    before.extensions["webhook"].delivery.stop(timeout=2)
    # Restarted with a stricter setting: the resend meets it, like any alert.
    after = make_app(okx_max_attempts=1, require_timestamp=True, database_url=database_url, **since)
    response = after.test_client().post(f"/alerts/{failed}/resend", headers=BEARER)
    assert response.status_code == status and response.json["status"] == kind, response.json
    assert response.json["errors"][0]["field"] == field
    assert after.extensions["webhook"].journal.get(failed).resent_as is None
    assert len(okx.margin_requests()) == 1 and okx.executed == []


def test_the_json_behind_the_page_serves_scripts(make_app, okx, database_url):
    app = make_app(database_url=database_url)
    client = app.test_client()
    client.post("/webhook", json=make_alert(id="A1"))
    client.post("/webhook", json=make_alert(algoId="42", id="B2"))
    client.post("/webhook", json=make_alert(secret="wrong-" + WEBHOOK_SECRET))
    app.extensions["webhook"].refusals.flush()
    by_bot = client.get("/alerts?algo_id=42", headers=BEARER).json["alerts"]
    assert [a["trader_id"] for a in by_bot] == ["B2"]
    assert [a["trader_id"] for a in client.get("/alerts?trader_id=A1", headers=BEARER).json["alerts"]] == ["A1"]
    assert client.get("/refused", headers=BEARER).json["refused"][0]["status"] == 401
    status = client.get("/status", headers=BEARER).json["service"]
    assert status["mode"] == "live" and status["base_url"] == okx.base_url and status["rate_limit"] == 20
    assert client.get("/alerts?bot=42", headers=BEARER).status_code == 422


def test_the_page_loads_nothing_from_elsewhere_and_cannot_be_framed(make_app):
    client = make_app().test_client()
    page = client.get("/admin")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    assert not re.search(r'(src|href)="(https?:)?//', page.text)
    script = client.get("/admin/static/admin.js")
    assert script.status_code == 200 and "fetch(" in script.text


def kinds_on_page(html: str) -> list[str]:
    return re.findall(r'<b class="kind k-[a-z_]+">([a-z_]+)</b>', html)


def test_a_dry_run_alerts_timeline_is_the_same_in_the_json_and_on_the_page(make_app, database_url):
    app = make_app(dry_run=True, database_url=database_url)
    client = app.test_client()
    alert_id = client.post("/webhook", json=make_alert(id=MARKER)).json["id"]
    timeline = client.get(f"/alerts/{alert_id}", headers=BEARER).json["timeline"]
    assert [step["kind"] for step in timeline] == ["received", "dry_run"]
    assert timeline[0]["detail"] == "add 10 for bot 581628185981813760" and timeline[0]["at"].endswith("Z")
    logged_in(client)
    page = client.get(f"/admin/alerts/{alert_id}").text
    assert kinds_on_page(page) == [step["kind"] for step in timeline]
    assert all(step["detail"] in page for step in timeline)
    assert "Would be sent to OKX (dry run)" in page and "Sent to OKX" not in page


def test_a_sent_alerts_request_is_labelled_sent(make_app):
    app = make_app()
    client = app.test_client()
    alert_id = client.post("/webhook", json=make_alert()).json["id"]
    logged_in(client)
    page = client.get(f"/admin/alerts/{alert_id}").text
    assert "<dt>Sent to OKX</dt>" in page and "dry run" not in page


def test_without_an_admin_token_the_page_says_how_to_turn_it_on(make_app):
    client = make_app(admin_token="").test_client()
    client.post("/webhook", json=make_alert(id=MARKER))
    page = client.get("/admin")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "ADMIN_TOKEN" in page.text and "off" in page.text and MARKER not in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert client.get("/alerts").mimetype == "application/json"  # scripts still get JSON


def test_a_favicon_is_served_within_the_policy(make_app):
    client = make_app().test_client()
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml" and icon.data.startswith(b"<svg")
    assert 'rel="icon"' in client.get("/admin").text


def test_the_refused_table_says_each_thing_once_and_links_the_duplicates_alert(make_app):
    app = make_app()
    client = app.test_client()
    first = client.post("/webhook", json=make_alert(id="dup-1")).json["id"]
    assert client.post("/webhook", json=make_alert(id="dup-1")).status_code == 409
    client.post("/webhook", json=make_alert(secret="wrong-" + WEBHOOK_SECRET))
    client.post("/webhook", data=b"{not json", content_type="application/json")
    app.extensions["webhook"].refusals.flush()
    logged_in(client)
    table = client.get("/admin/live").text.split('id="refused"')[1]
    assert f'<a href="/admin/alerts/{first}">alert {first}</a>' in table
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]:
        reason = re.search(r'<td[^>]* class="reason">(.*?)</td>', row, re.S).group(1)
        fields = re.search(r'<td[^>]* class="fields">(.*?)</td>', row, re.S).group(1)
        for message in re.findall(r"</code> ([^<]+)</div>", fields):
            assert message.strip() not in reason, row


def test_the_chart_legend_names_states(make_app):
    client = make_app().test_client()
    client.post("/webhook", json=make_alert())
    logged_in(client)
    legend = re.search(r'<p class="legend">(.*?)</p>', client.get("/admin/live").text, re.S).group(1)
    text = re.sub(r"<[^>]+>", " ", legend)
    assert "pending" not in text and "expired" in text and "queued" in text and "tallest" not in text


# -- OKX's records: the bots' states, and the evidence on an unknown alert (issue 14) ----------------


def status_bots(client) -> dict:
    return {bot["algoId"]: bot for bot in client.get("/status", headers=BEARER).json["service"]["bots"]}


def test_status_and_the_page_list_each_known_bot_with_its_state_once_read(make_app, okx):
    okx.add_bot("42", state="stopped", inst_ids=["ETH-USDT-SWAP"], avail_bal=Decimal("7.5"))
    app = make_app(allowed_algo_ids=frozenset({DEFAULT_BOT, "42"}))
    client = app.test_client()
    assert {bot: row["state"] for bot, row in status_bots(client).items()} == {"42": None, DEFAULT_BOT: None}
    browser = app.test_client()
    logged_in(browser)
    assert browser.get("/admin/live").text.count("not read yet") == 2

    app.extensions["webhook"].bots.refresh()
    bots = status_bots(client)
    assert {bot: (row["state"], row["instIds"]) for bot, row in bots.items()} == {
        "42": ("stopped", ["ETH-USDT-SWAP"]),
        DEFAULT_BOT: ("running", ["BTC-USDT-SWAP"]),
    }
    assert bots["42"]["availBal"] == "7.5" and bots[DEFAULT_BOT]["investAmt"] == "100"
    assert bots["42"]["fresh"] is True and bots["42"]["readAgo"] >= 0
    panel = browser.get("/admin/live").text.split('id="bots"')[1].split("</section>")[0]
    stopped = re.search(r'<tr data-bot="42">(.*?)</tr>', panel, re.S).group(1)
    assert "ETH-USDT-SWAP" in stopped and ">stopped</span>" in stopped and "7.5" in stopped
    assert "not read yet" not in panel and "stale" not in panel


def test_a_bot_read_longer_ago_than_its_bound_is_marked_stale(make_app, okx):
    app = make_app(bot_state_max_age=1)
    bots = app.extensions["webhook"].bots["default"]  # the one account's BotWatch
    bots.refresh()
    bots._clock = lambda: time.monotonic() + 5  # five seconds on: the read is older than its bound
    assert status_bots(app.test_client())[DEFAULT_BOT]["fresh"] is False
    browser = app.test_client()
    logged_in(browser)
    row = re.search(rf'<tr data-bot="{DEFAULT_BOT}">(.*?)</tr>', browser.get("/admin/live").text, re.S).group(1)
    assert re.search(r"\d+ s ago <span class=\"stale\"", row) and ">running</span>" in row


def test_in_dry_run_no_bot_is_read_or_listed(make_app):
    app = make_app(dry_run=True)
    client = app.test_client()
    assert client.get("/status", headers=BEARER).json["service"]["bots"] == []
    logged_in(client)
    assert "Dry run: the bots are not read from OKX." in client.get("/admin/live").text


def escaped(text: str) -> str:
    """As the page's templates write a value (Jinja's autoescape)."""
    return str(markupsafe.escape(text))


def investigated_alert(app, okx, behaviour) -> int:
    okx.play(behaviour)
    alert_id = app.test_client().post("/webhook", json=make_alert(**REINVESTED)).json["id"]
    assert wait_final(app, alert_id).state == "unknown"
    wait_proposal(app, alert_id, timeout=30.0)
    return alert_id


def pnl(change: str):
    return lambda stand_in, bot: stand_in.move_pnl(bot, Decimal(change))


@pytest.mark.parametrize(
    "behaviour, verdict, avail_after, delta, confirm",
    [
        (Drop(), "executed", "50", "+10", "Confirm: executed"),
        (DropUnexecuted(), "not_executed", "40", "0", "Confirm: not executed"),
        (Meanwhile(Drop(), pnl("-3.5")), "cant_tell", "46.5", "+6.5", None),
    ],
    ids=["dropped-after-executing", "dropped-before-executing", "pnl-moved-too"],
)
def test_an_unknown_alerts_json_and_page_show_okxs_records_and_the_proposal(
    make_app, okx, behaviour, verdict, avail_after, delta, confirm
):
    app = make_app(unknown_settle=0)
    alert_id = investigated_alert(app, okx, behaviour)
    client = app.test_client()
    alert = client.get(f"/alerts/{alert_id}", headers=BEARER).json["alert"]
    evidence = alert["evidence"]
    assert alert["proposal"] == evidence["proposal"] == verdict and evidence["reason"]
    changes = {row["field"]: row for row in evidence["changes"]}
    assert changes["availBal"] == {"field": "availBal", "before": "40", "after": avail_after, "delta": delta}
    assert evidence["events"] == [] and evidence["before"]["algoId"] == DEFAULT_BOT

    logged_in(client)
    page = client.get(f"/admin/alerts/{alert_id}").text
    words = verdict.replace("_", " ").replace("cant tell", "can't tell")
    assert "<h2>OKX's records" in page and f'id="verdict">{escaped(words)}</span>' in page
    assert escaped(evidence["reason"]) in page
    shown = re.search(r'<tr data-field="availBal">(.*?)</tr>', page, re.S).group(1)
    assert re.findall(r"<td[^>]*>([^<]*)</td>", shown) == ["availBal", "40", avail_after, delta]
    assert "No events in the window." in page
    buttons = re.findall(r'<button type="submit" id="(mark-[a-z-]+)"[^>]*>([^<]+)</button>', page)
    if confirm is None:  # nothing to confirm: both findings offered alike, as before
        assert buttons == [("mark-executed", "Mark executed"), ("mark-not-executed", "Mark not executed")]
        assert 'class="confirm"' not in page
    else:  # the proposed finding first, in one click; the other still offered
        assert buttons[0] == (f"mark-{verdict.replace('_', '-')}", confirm) and len(buttons) == 2
    listed = client.get("/admin/live").text
    assert f"OKX's records: {escaped(words)}" in listed


def test_an_event_in_the_window_is_shown_as_okx_gave_it_escaped_and_rules_out_a_verdict(make_app, okx):
    message = '<script>alert("x")</script> Margin added & more'
    app = make_app(unknown_settle=0)
    alert_id = investigated_alert(
        app, okx, Meanwhile(Drop(), lambda stand_in, bot: stand_in.add_event(bot, "system_action", message))
    )
    client = app.test_client()
    evidence = client.get(f"/alerts/{alert_id}", headers=BEARER).json["alert"]["evidence"]
    assert evidence["proposal"] == "cant_tell"
    assert [(e["eventType"], e["eventStatus"], e["eventProcessMsg"]) for e in evidence["events"]] == [
        ("system_action", "success", message)
    ]
    logged_in(client)
    page = client.get(f"/admin/alerts/{alert_id}").text
    events = page.split('id="events"')[1].split("</table>")[0]
    assert escaped(message) in events and "<script>alert" not in page
    assert evidence["events"][0]["eventCtime"].replace("T", " ").replace("Z", " UTC") in events
    assert "No events in the window." not in page and 'class="confirm"' not in page


def test_an_alert_the_service_marked_from_okxs_records_says_so(make_app, okx):
    app = make_app(unknown_settle=0, resolve_unknown="auto")
    alert_id = investigated_alert(app, okx, Drop())
    client = app.test_client()
    shown = client.get(f"/alerts/{alert_id}", headers=BEARER).json
    assert shown["alert"]["resolution"] == "executed" and shown["alert"]["proposal"] == "executed"
    assert shown["timeline"][-1]["detail"] == "marked executed by the service, from OKX's records"
    logged_in(client)
    page = client.get(f"/admin/alerts/{alert_id}").text
    assert '<span id="resolution">executed</span> <small id="marked-by">by the service, from OKX&#39;s records' in page
    assert "marked executed by the service, from OKX&#39;s records" in page  # on the timeline
    assert 'id="mark-executed"' not in page and 'id="mark-not-executed"' not in page


def stored_evidence(**changes) -> dict:
    """Evidence as the investigator stores it when no snapshot could be read after the send;
    each keyword changes one field."""
    evidence = {
        "before": None,
        "after": None,
        "window": None,
        "events": [],
        "otherEvents": 0,
        "changes": [],
        "proposal": "cant_tell",
        "reason": "no snapshot of the bot from before the send; the request asked to add 10",
    }
    return {**evidence, **changes}


@pytest.mark.parametrize(
    "evidence, shown, not_shown",
    [
        (stored_evidence(), ["No before/after comparison", "No events in the window."], ['id="changes"']),
        (
            stored_evidence(events=None, otherEvents=None),
            ["event history for the bot could not be read"],
            ["No events"],
        ),
        (stored_evidence(otherEvents=3), ["3 other event(s) of the bot fall outside the window"], ['id="events"']),
        (stored_evidence(proposal="executed"), ["Confirm: executed", 'id="mark-not-executed"'], ["v-cant_tell"]),
        (None, ['id="mark-executed">Mark executed'], ["OKX's records", "Confirm"]),
    ],
    ids=["no-snapshots", "events-unread", "events-outside", "executed", "only-the-snapshot-before"],
)
def test_the_alerts_page_says_what_okxs_records_lack(make_app, okx, evidence, shown, not_shown):
    app = make_app(unknown_settle=60)  # the service's own reading waits: this test stores the evidence
    alert_id = unknown_alert(app, okx)
    journal = app.extensions["webhook"].journal
    if evidence is None:  # not read yet: only the snapshot from before the send, kept when it went out
        assert set(json.loads(journal.get(alert_id).evidence)) == {"before"}
    else:
        assert journal.record_evidence(alert_id, json.dumps(evidence), evidence["proposal"], "read")
    client = app.test_client()
    logged_in(client)
    page = client.get(f"/admin/alerts/{alert_id}").text
    for text in shown:
        assert text in page, text
    for text in not_shown:
        assert text not in page, text


# -- several OKX accounts (issue 15): each alert's account shown and filtered on, only where there are several --

HEDGE_KEY, HEDGE_SECRET, HEDGE_PASSPHRASE = "hedge-key-5b1e0c", "hedge-secret-9d4f7a", "hedge-pass-3c8e21"


def two_accounts(okx) -> tuple[OkxAccount, OkxAccount]:
    """ "main" with the stand-in's key and bot 111; "hedge", a demo account with its own key, budget and bot 222."""
    main = OkxAccount(
        "main",
        api_key=okx.api_key,
        api_secret=okx.secret_key,
        passphrase=okx.passphrase,
        base_url=okx.base_url,
        algo_ids=frozenset({"111"}),
    )
    hedge = OkxAccount(
        "hedge",
        api_key=HEDGE_KEY,
        api_secret=HEDGE_SECRET,
        passphrase=HEDGE_PASSPHRASE,
        base_url=okx.base_url,
        demo=True,
        rate_limit=5,
        algo_ids=frozenset({"222"}),
    )
    return main, hedge


def journaled(app, account: str, algo_id: str, trader_id: str, state: str = "ok") -> int:
    """An alert of ``account`` already final in the journal: the page and the filters read it, nothing sends it."""
    journal = app.extensions["webhook"].journal
    record, created = journal.add(
        dedup_key=f"id:{algo_id}:{trader_id}",
        dedup_since=0.0,
        algo_id=algo_id,
        action="add",
        amount="5",
        request_body=json.dumps({"algoId": algo_id, "type": "add", "amt": "5"}),
        expires_at=journal.now() + 600,
        state=state,
        trader_id=trader_id,
        account=account,
    )
    assert created
    return record.id


@pytest.fixture
def two_account_app(make_app, okx):
    """Alert 1 for main's bot, alert 2 for hedge's."""
    app = make_app(okx_accounts=two_accounts(okx))
    journaled(app, "main", "111", "M1")
    journaled(app, "hedge", "222", "H1")
    return app


def alert_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-alert="(\d+)"', html)


@pytest.mark.parametrize(
    "query, listed",
    [
        ("?account=main", [("M1", "main")]),
        ("?account=hedge", [("H1", "hedge")]),
        ("", [("H1", "hedge"), ("M1", "main")]),
    ],
    ids=["main", "hedge", "any"],
)
def test_alerts_are_listed_by_account(two_account_app, query, listed):
    alerts = two_account_app.test_client().get(f"/alerts{query}", headers=BEARER).json["alerts"]
    assert [(a["trader_id"], a["account"]) for a in alerts] == listed


@pytest.mark.parametrize(
    "query, listed",
    [("account=hdge", []), ("account=default", []), ("account=HEDGE", [("H1", "hedge")])],
)
def test_an_account_filter_is_a_filter_an_account_the_service_lacks_finds_nothing(two_account_app, query, listed):
    """An empty list fits a filter (issue 24, item 12): an account since removed has no alerts now."""
    reply = two_account_app.test_client().get(f"/alerts?{query}", headers=BEARER)
    assert reply.status_code == 200, reply.json
    assert [(a["trader_id"], a["account"]) for a in reply.json["alerts"]] == listed


@pytest.mark.parametrize("query", ["account=", "account=my-acct", "acount=main"])
def test_a_malformed_account_filter_is_refused_naming_the_parameter(two_account_app, query):
    reply = two_account_app.test_client().get(f"/alerts?{query}", headers=BEARER)
    assert reply.status_code == 422
    assert reply.json["errors"][0]["field"] == query.split("=")[0]


def test_a_single_accounts_alerts_are_filtered_by_its_name_default(make_app):
    app = make_app()
    journaled(app, "default", DEFAULT_BOT, "D1")
    client = app.test_client()
    assert [a["account"] for a in client.get("/alerts?account=default", headers=BEARER).json["alerts"]] == ["default"]
    other = client.get("/alerts?account=main", headers=BEARER)
    assert other.status_code == 200 and other.json["alerts"] == []


def test_the_page_shows_each_alerts_account_and_filters_by_it(two_account_app):
    client = two_account_app.test_client()
    logged_in(client)
    page = client.get("/admin").text
    assert "<th>Account</th>" in page and alert_ids(page) == ["2", "1"]
    hedge_row = re.search(r'<tr data-alert="2">(.*?)</tr>', page, re.S).group(1)
    assert re.search(r'<td data-label="Account"[^>]*>hedge</td>', hedge_row)
    hedge_bot = re.search(r'<tr data-bot="222">(.*?)</tr>', page, re.S).group(1)  # the Bots panel too
    assert re.search(r'<td data-label="Account"[^>]*>hedge</td>', hedge_bot)
    form = page.split('id="filter-account"')[1].split("</select>")[0]
    assert re.findall(r'<option value="([a-z]*)"', form) == ["", "main", "hedge"]

    filtered = client.get("/admin?account=hedge").text
    assert alert_ids(filtered) == ["2"] and '<option value="hedge" selected>' in filtered
    assert 'data-refresh="/admin/live?account=hedge"' in filtered  # the live refresh keeps the filter
    assert alert_ids(client.get("/admin?account=").text) == ["2", "1"]  # the form's "any"
    nope = client.get("/admin?account=nope")
    assert nope.status_code == 200 and alert_ids(nope.text) == []
    detail = client.get("/admin/alerts/2").text
    assert '<dt>Account</dt><dd class="mono" id="account">hedge</dd>' in detail


def test_status_lists_each_account_with_its_own_rate_use_and_never_a_key(two_account_app, okx):
    held = two_account_app.extensions["webhook"].delivery.lanes["hedge"].pacer.acquire("test", 3)
    try:  # three requests to hedge in flight: its budget only
        client = two_account_app.test_client()
        status = client.get("/status", headers=BEARER)
        logged_in(client)
        live = client.get("/admin/live").text
    finally:
        two_account_app.extensions["webhook"].delivery.lanes["hedge"].pacer.cancel(held)
    assert status.json["service"]["accounts"] == [
        {"name": "main", "base_url": okx.base_url, "demo": False, "rate_limit": 20, "rate_used": 0},
        {"name": "hedge", "base_url": okx.base_url, "demo": True, "rate_limit": 5, "rate_used": 3},
    ]
    table = live.split('id="accounts"')[1].split("</table>")[0]
    hedge = re.search(r'<tr data-account="hedge">(.*?)</tr>', table, re.S).group(1)
    assert ">demo</span>" in hedge and "3 of 5 per" in hedge
    main = re.search(r'<tr data-account="main">(.*?)</tr>', table, re.S).group(1)
    assert ">live</span>" in main and "0 of 20 per" in main
    for secret in (okx.api_key, okx.secret_key, okx.passphrase, HEDGE_KEY, HEDGE_SECRET, HEDGE_PASSPHRASE):
        assert secret not in status.text and secret not in live


def test_a_single_accounts_page_shows_no_account(make_app, okx):
    app = make_app()
    alert_id = journaled(app, "default", DEFAULT_BOT, "D1")
    client = app.test_client()
    assert client.get("/status", headers=BEARER).json["service"]["accounts"] == [
        {"name": "default", "base_url": okx.base_url, "demo": False, "rate_limit": 20, "rate_used": 0}
    ]
    logged_in(client)
    page, detail = client.get("/admin").text, client.get(f"/admin/alerts/{alert_id}").text
    for text in ("Account", 'id="filter-account"', 'id="accounts"', "data-account"):
        assert text not in page and text not in detail, text
    assert "<dt>OKX</dt>" in page and "<dt>Rate use now</dt>" in page  # the service's one budget, as before


DEEP = b"[" * 20_000 + b"]" * 20_000


@pytest.mark.parametrize("path", ["/alerts/1/mark", "/lockouts/clear", "/webhook"])
@pytest.mark.parametrize(
    "body, problem",
    [
        (DEEP, "nested too deeply"),
        (b'{"resolution": ' + DEEP + b"}", "nested too deeply"),
        (b'{"resolution": "executed",', "not valid JSON"),
        (b"", "empty"),
        (b'["executed"]', "must be a JSON object"),
    ],
    ids=["deep-array", "deep-field", "cut-off", "empty", "not-an-object"],
)
def test_every_json_body_is_read_by_one_parser_and_a_bad_one_is_400(app, okx, caplog, path, body, problem):
    headers = {**BEARER, "Content-Type": "application/json"}
    reply = app.test_client().post(path, data=body, headers=headers)
    assert reply.status_code == 400, reply.text
    assert reply.json["status"] == "invalid_body"
    assert reply.json["errors"][0]["field"] == "body" and problem in reply.json["errors"][0]["message"]
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]  # a line, no traceback
    assert okx.margin_requests() == []


# -- what needs the operator, and amounts in the bot's currency (issue 24, item 9) -------------


@pytest.mark.parametrize(
    "inst_ids, currency",
    [
        (["BTC-USDT-SWAP"], "USDT"),
        (["BTC-USDT-SWAP", "ETH-USDT-SWAP"], "USDT"),
        (["BTC-USDC-SWAP"], "USDC"),
        (["BTC-USD-SWAP"], "BTC"),  # coin-margined: margin in the base currency
        (["BTC-USDT-SWAP", "BTC-USD-SWAP"], ""),  # two currencies: none said rather than a wrong one
        ([], ""),
        (["BTC-USDT"], ""),  # not a contract's id
    ],
)
def test_a_bots_margin_currency_is_read_from_its_instruments(inst_ids, currency):
    from webhook_app.surfaces.attention import margin_currency

    assert margin_currency(inst_ids) == currency


def test_an_account_not_ready_is_the_first_thing_the_page_says(make_app, okx):
    app = make_app(okx_api_secret="not-the-right-secret-key")  # OKX refuses the key
    app.extensions["webhook"].readiness.refresh()
    client = app.test_client()
    logged_in(client)
    page = client.get("/admin").text
    needs = page.split('id="attention"', 1)[1].split("</section>", 1)[0]
    assert 'data-needs="not_ready"' in needs and 'href="#status"' in needs, needs
    assert "not ready: api_key: OKX refused the key" in needs
    assert page.index('id="attention"') < page.index('id="filters"') < page.index('id="live"')


def test_nothing_needs_the_operator_says_so(make_app, okx):
    app = make_app()
    client = app.test_client()
    logged_in(client)
    client.post("/webhook", json=make_alert())
    live = client.get("/admin/live").text
    assert 'data-part="attention"' in live and "Nothing needs you now." in live
