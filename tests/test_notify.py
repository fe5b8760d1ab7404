"""Notifications through Apprise to a loopback JSON receiver (json://127.0.0.1:PORT/...)."""

import dataclasses
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, make_alert, wait_final
from tests.okx_stand_in import OkxReply, RawReply
from webhook_app.journal import Record
from webhook_app.workers.notify import EVENTS, Notifier


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that keeps every JSON message posted to it."""

    def __init__(self):
        self.messages: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.messages.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/notify"

    def wait_for(self, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages

    def text(self) -> str:
        return json.dumps(self.messages)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.mark.parametrize(
    "behaviour, state, words, apprise_type",
    [
        (OkxReply("51000", "Parameter amt error"), "rejected", ["51000", "Parameter amt error", "refused"], "failure"),
        (RawReply(502), "unknown", ["may have acted", "Check the bot"], "failure"),
        (OkxReply("50013", "Systems busy"), "failed", ["50013", "did not act"], "failure"),
        (None, "ok", ["OKX said 0", "Nothing to do"], "success"),
    ],
    ids=["rejected", "unknown", "failed", "ok"],
)
def test_each_outcome_is_notified_with_the_bot_what_okx_said_and_what_to_do(
    make_app, okx, receiver, behaviour, state, words, apprise_type
):
    events = frozenset({"ok", "failed", "unknown", "rejected", "expired"})
    app = make_app(notify_urls=(receiver.url,), notify_on=events, okx_max_attempts=1)
    if behaviour is not None:
        okx.play(behaviour)
    reply = app.test_client().post("/webhook", json=make_alert(amount="25"))
    wait_final(app, reply.json["id"])
    (message,) = receiver.wait_for(1)
    assert f"Alert {reply.json['id']} {state}: bot 581628185981813760, add 25" in message["title"]
    for word in words:
        assert word in message["message"], message
    assert message["type"] == apprise_type, message
    assert WEBHOOK_SECRET not in receiver.text() and okx.secret_key not in receiver.text()


def test_ok_is_not_notified_unless_asked(make_app, okx, receiver):
    app = make_app(notify_urls=(receiver.url,))  # the default events
    client = app.test_client()
    ok = client.post("/webhook", json=make_alert(amount="1"))
    assert wait_final(app, ok.json["id"]).state == "ok"
    # Then one that is notified: the notifier sends in order, so the ok one, had it been told, came first.
    okx.play(OkxReply("51000", "Parameter amt error"))
    rejected = client.post("/webhook", json=make_alert(amount="2"))
    (message,) = receiver.wait_for(1)
    assert message["title"].startswith(f"Alert {rejected.json['id']} rejected"), message


def test_an_expired_alert_is_notified(make_app, okx, receiver):
    app = make_app(notify_urls=(receiver.url,), okx_rate_limit=1, reply_deadline=0.2)
    client = app.test_client()
    client.post("/webhook", json=make_alert(amount="1"))
    late = client.post("/webhook", json=make_alert(amount="2", maxLag=1))
    assert wait_final(app, late.json["id"]).state == "expired"
    (message,) = receiver.wait_for(1)
    assert message["title"].startswith(f"Alert {late.json['id']} expired") and "not sent" in message["message"]
    assert message["type"] == "failure", message


def test_a_lockout_and_readiness_turning_red_are_notified(make_app, okx, receiver):
    app = make_app(notify_urls=(receiver.url,), lockout_threshold=2, allowed_algo_ids=frozenset({"581628185981813760"}))
    client = app.test_client()
    for _ in range(2):
        client.post(
            "/webhook", json=make_alert(secret="guess-0123456789abcdef"), environ_base={"REMOTE_ADDR": "203.0.113.7"}
        )
    okx.bots.clear()
    app.extensions["webhook"].readiness.refresh()
    messages = receiver.wait_for(2)
    titles = sorted(m["title"] for m in messages)
    assert titles == ["Address 203.0.113.7 locked out", "Not ready to move money"]
    assert [m["type"] for m in messages] == ["failure", "failure"], messages
    assert "ALLOWED_ALGO_IDS" in next(m["message"] for m in messages if m["title"].startswith("Not ready"))
    assert "guess-0123456789abcdef" not in receiver.text() and ADMIN_TOKEN not in receiver.text()


def record(n, state="failed"):
    return Record(
        id=n,
        received_at=0,
        dedup_key="",
        algo_id="7",
        action="add",
        amount="5",
        request_body="{}",
        expires_at=0,
        state=state,
        okx_code="50013",
        okx_msg="Systems busy",
        detail="gave up",
    )


def test_a_burst_of_50_failures_is_coalesced_into_two_messages(receiver):
    notifier = Notifier((receiver.url,), coalesce=0.5)
    for n in range(1, 51):
        notifier.alert_finished(record(n))
    messages = receiver.wait_for(2, timeout=5)
    assert messages[0]["title"].startswith("Alert 1 failed")
    assert messages[1]["title"] == "49 more failed event(s) in the last 0.5 s"
    assert len(receiver.messages) == 2  # 1 + 49: every event is in these two, so no third can follow
    assert "Alert 2 failed" in messages[1]["message"] and "... and 29 more:" in messages[1]["message"]
    # Every alert is named once, in full or by its title beyond the first 20 (the fault test counts them).
    named = re.findall(r"Alert (\d+) failed", json.dumps(messages))
    assert sorted(map(int, set(named))) == list(range(1, 51))
    assert all(named.count(str(n)) <= 2 for n in range(1, 51))  # its title and its body, at most


def test_a_dead_receiver_changes_no_outcome_and_holds_up_no_reply(make_app, okx, caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    app = make_app(notify_urls=(f"json://127.0.0.1:{dead}/x",))
    okx.play(OkxReply("51000", "Parameter amt error"))
    reply = app.test_client().post("/webhook", json=make_alert())
    assert reply.status_code == 424 and reply.json["status"] == "rejected"  # the outcome, as without notifications
    notifier = app.extensions["webhook"].notifier
    deadline = time.monotonic() + 10
    while notifier.undelivered == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert notifier.undelivered == 1 and notifier.delivered == 0
    assert "could not be delivered" in caplog.text


def record_with(**changes):
    return dataclasses.replace(record(1), **changes)


@pytest.mark.parametrize(
    "event, apprise_type",
    [
        (lambda n: n.alert_finished(record_with(state="ok", okx_code="0", okx_msg="", detail=None)), "success"),
        (lambda n: n.alert_finished(record_with(state="failed")), "failure"),
        (lambda n: n.alert_finished(record_with(state="rejected", okx_code="51000")), "failure"),
        (lambda n: n.alert_finished(record_with(state="unknown", okx_code=None)), "failure"),
        (lambda n: n.alert_finished(record_with(state="expired", okx_code=None)), "failure"),
        (lambda n: n.lockout("203.0.113.7", 10), "failure"),
        (lambda n: n.readiness_changed(False, ["OKX: key refused"]), "failure"),
        (lambda n: n.late_answer(record_with(state="unknown"), "OKX said 0"), "warning"),
    ],
    ids=["ok", "failed", "rejected", "unknown", "expired", "lockout", "readiness", "late-answer"],
)
def test_each_event_has_the_apprise_type_of_what_happened(receiver, event, apprise_type):
    notifier = Notifier((receiver.url,), events=frozenset(EVENTS))
    event(notifier)
    (message,) = receiver.wait_for(1)
    assert message["type"] == apprise_type, message


def test_a_coalesced_summary_keeps_the_type_of_its_events(receiver):
    notifier = Notifier((receiver.url,), coalesce=0.3)
    for n in range(1, 4):
        notifier.alert_finished(record(n))
    messages = receiver.wait_for(2, timeout=5)
    assert [m["type"] for m in messages] == ["failure", "failure"], messages


@pytest.mark.parametrize("detail", [None, ""])
def test_see_the_detail_is_never_written_when_there_is_no_detail(receiver, detail):
    notifier = Notifier((receiver.url,))
    notifier.alert_finished(
        record_with(state="rejected", okx_code="51000", okx_msg="Parameter amt error", detail=detail)
    )
    (message,) = receiver.wait_for(1)
    assert "see the detail" not in message["message"], message
    assert "Parameter amt error" in message["message"] and "refused" in message["message"]


def test_see_the_detail_points_at_a_detail_that_is_there(receiver):
    notifier = Notifier((receiver.url,))
    notifier.alert_finished(record_with(state="rejected", okx_code="50113", detail="check OKX_API_SECRET"))
    (message,) = receiver.wait_for(1)
    assert "check OKX_API_SECRET" in message["message"] and "see the detail" in message["message"]


# -- several OKX accounts (issue 15): a message names the alert's account where there is a choice --


@pytest.mark.parametrize(
    "show_account, event, title",
    [
        (True, lambda n: n.alert_finished(record_with(state="unknown", account="hedge", id=12)),
         "Alert 12 unknown: account hedge, bot 7, add 5"),
        (False, lambda n: n.alert_finished(record_with(state="unknown", id=12)), "Alert 12 unknown: bot 7, add 5"),
        (True, lambda n: n.late_answer(record_with(state="unknown", account="hedge"), "OKX said 0"),
         "Alert 1: late answer from OKX after take-over (account hedge, bot 7)"),
        (False, lambda n: n.late_answer(record_with(state="unknown"), "OKX said 0"),
         "Alert 1: late answer from OKX after take-over (bot 7)"),
    ],
    ids=["finished-several", "finished-one", "late-several", "late-one"],
)  # fmt: skip
def test_a_message_names_the_account_only_when_the_service_has_several(receiver, show_account, event, title):
    notifier = Notifier((receiver.url,), events=frozenset(EVENTS), show_account=show_account)
    event(notifier)
    (message,) = receiver.wait_for(1)
    assert message["title"] == title and message["message"].startswith(title)


PUBLIC_URL = "https://my-relay.example.com"


@pytest.mark.parametrize(
    "behaviour, state",
    [(OkxReply("51000", "Parameter amt error"), "rejected"), (OkxReply("50013", "Systems busy"), "failed")],
    ids=["rejected", "failed"],
)
def test_a_notification_links_to_the_alerts_page_at_public_url(make_app, okx, receiver, behaviour, state):
    """A trader reads it on a phone: one tap on the alert's page, at the service's public address."""
    app = make_app(notify_urls=(receiver.url,), okx_max_attempts=1, public_url=PUBLIC_URL)
    okx.play(behaviour)
    alert_id = app.test_client().post("/webhook", json=make_alert()).json["id"]
    wait_final(app, alert_id)
    (message,) = receiver.wait_for(1)
    assert state in message["title"] and f"{PUBLIC_URL}/admin/alerts/{alert_id}" in message["message"], message


def test_without_the_operator_page_a_notification_carries_no_link(make_app, okx, receiver):
    app = make_app(notify_urls=(receiver.url,), okx_max_attempts=1, public_url=PUBLIC_URL, admin_token="")
    okx.play(OkxReply("51000", "Parameter amt error"))
    wait_final(app, app.test_client().post("/webhook", json=make_alert()).json["id"])
    (message,) = receiver.wait_for(1)
    assert "/admin/alerts/" not in message["message"], message
