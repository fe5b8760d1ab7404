"""No secret in any log line, reply or error page, failures and tracebacks included."""

import datetime
import logging
import types

from gunicorn.config import Config
from gunicorn.glogging import Logger, SafeAtoms

from tests.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, make_alert
from tests.okx_stand_in import Drop, OkxReply, RawReply
from webhook_app.logs import REDACTED, GunicornLogger, scrubber


def test_requests_of_every_outcome_leave_no_secret_in_logs_or_replies(client, okx, caplog):
    caplog.set_level(logging.DEBUG)
    okx.play(
        OkxReply("0"),
        OkxReply("50113", "Invalid Sign", 401),
        RawReply(502),
        Drop(),
        OkxReply("51000", "Parameter error"),
    )
    bodies = [make_alert(amount=str(n)) for n in range(1, 6)] + [
        make_alert(secret=WEBHOOK_SECRET[:-1] + "!"),
        make_alert(amount="-1"),
        make_alert(allowReinvest=True),
        {"secret": WEBHOOK_SECRET},
    ]
    replies = [client.post("/webhook", json=b) for b in bodies]
    replies.append(client.post("/webhook", data=b'{"secret": "' + WEBHOOK_SECRET.encode() + b'"'))
    replies.append(client.get("/alerts", headers={"Authorization": "Bearer " + ADMIN_TOKEN}))
    assert {r.status_code for r in replies} >= {200, 202, 401, 422, 424, 400}
    signatures = [r.headers["OK-ACCESS-SIGN"] for r in okx.margin_requests()]
    exposed = caplog.text + "".join(r.get_data(as_text=True) for r in replies)
    for secret in (WEBHOOK_SECRET, okx.secret_key, okx.passphrase, ADMIN_TOKEN, *signatures):
        assert secret not in exposed


def test_a_traceback_carrying_a_secret_is_scrubbed(app, caplog):
    log = logging.getLogger("webhook_app")
    try:
        raise RuntimeError(f"boom with {WEBHOOK_SECRET} inside")
    except RuntimeError:
        log.exception("failed while handling %s", WEBHOOK_SECRET)
    assert WEBHOOK_SECRET not in caplog.text
    assert REDACTED in caplog.text and "RuntimeError" in caplog.text


def test_an_unexpected_error_reply_shows_nothing_of_it(app, caplog):
    @app.get("/explode")
    def explode():
        raise ValueError(WEBHOOK_SECRET)

    response = app.test_client().get("/explode")
    assert response.status_code == 500
    assert response.json["status"] == "error"
    assert WEBHOOK_SECRET not in response.get_data(as_text=True) + caplog.text


def test_scrubber_hides_the_longest_match_first():
    scrubber.add(["abcdefghijklmnop", "abcdefghijklmnopqrstuvwxyz"])
    assert scrubber.scrub("x abcdefghijklmnopqrstuvwxyz y") == f"x {REDACTED} y"


ACCESS_ENVIRON = {
    "REMOTE_ADDR": "10.0.0.7",
    "REQUEST_METHOD": "POST",
    "RAW_URI": "/webhook?x=1",
    "PATH_INFO": "/webhook",
    "QUERY_STRING": "x=1",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_USER_AGENT": 'agent "quoted"',
    "HTTP_X_SIGNAL": "long",
}


def _access_line(logger_class, access_log_format: str, **environ) -> str:
    """The access line ``logger_class`` writes for one request (its atoms, formatted as gunicorn does)."""
    cfg = Config()
    cfg.set("access_log_format", access_log_format)
    environ = {**ACCESS_ENVIRON, **environ}
    request = types.SimpleNamespace(headers=[("USER-AGENT", environ["HTTP_USER_AGENT"]), ("X-SIGNAL", "long")])
    response = types.SimpleNamespace(status="200 OK", sent=42, headers=[("Content-Type", "application/json")])
    atoms = logger_class(cfg).atoms(response, request, environ, datetime.timedelta(milliseconds=3))
    return access_log_format % SafeAtoms(atoms)


def test_the_access_line_is_gunicorns_own_without_the_header_atoms_it_does_not_use():
    """The deployed format reads no header: its atoms skip them, and the line is the same."""
    deployed = '%(h)s "%(m)s %(U)s" %(s)s %(B)sB %(M)sms %(a)s %(q)s %(r)s'
    ours = _access_line(GunicornLogger, deployed)
    assert ours == '10.0.0.7 "POST /webhook" 200 42B 3ms agent \\"quoted\\" x=1 POST /webhook?x=1 HTTP/1.1'
    assert ours == _access_line(Logger, deployed)


def test_an_access_format_naming_a_header_or_the_user_still_gets_it():
    line = _access_line(GunicornLogger, "%({x-signal}i)s %({content-type}o)s %({path_info}e)s")
    assert line == "long application/json /webhook"
    assert _access_line(GunicornLogger, "%(u)s", HTTP_AUTHORIZATION="Basic dHJhZGVyOnB3") == "trader"
