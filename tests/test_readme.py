"""README.md against the code: the reply table lists every status the webhook sends, each with the
HTTP status it is sent with."""

from __future__ import annotations

import re
from pathlib import Path

from webhook_app.intake.alerts import InvalidAlert, InvalidBody, Unauthorized
from webhook_app.intake.pipeline import AccountRefused, BotNotSendable, DuplicateAlert
from webhook_app.intake.protection import LockedOut, StaleAlert
from webhook_app.journal.records import DailyCapExceeded
from webhook_app.surfaces.web import STATE_STATUS

REPO = Path(__file__).resolve().parents[1]

# Every (status, HTTP) the webhook answers with: the alert's states, the refusals it raises, and
# the web layer's own (web.py: journal outage, body too large, wrong method).
WEBHOOK_REPLIES = {
    *STATE_STATUS.items(),
    *((refusal.kind, refusal.status) for refusal in (InvalidBody, Unauthorized, InvalidAlert)),
    *((refusal.kind, refusal.status) for refusal in (StaleAlert, LockedOut, DailyCapExceeded)),
    *((refusal.kind, refusal.status) for refusal in (AccountRefused, BotNotSendable, DuplicateAlert)),
    ("forbidden_source", 403),  # protection.Forbidden, whose kind is the instance's
    ("forbidden_bot", 403),
    ("unavailable", 503),
    ("too_large", 413),
    ("method_not_allowed", 405),
}


def readme() -> str:
    return (REPO / "README.md").read_text()


def reply_table_rows() -> list[tuple[str, str]]:
    """(HTTP cell, `status` cell) of each row of README's reply table: the one table whose header
    has the columns HTTP and `status`."""
    lines = readme().splitlines()
    header = next(i for i, line in enumerate(lines) if re.match(r"\|.*\| HTTP \| `status` \|", line))
    columns = [cell.strip() for cell in lines[header].strip("|").split("|")]
    http, status = columns.index("HTTP"), columns.index("`status`")
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((cells[http], cells[status]))
    return rows


def test_the_reply_table_lists_every_status_the_webhook_sends_with_its_http_status():
    listed = set()
    for http, status in reply_table_rows():
        names = re.findall(r"`([a-z_]+)`", status.split(",")[0])  # "`queued` or `sending`, with ..."
        code = re.match(r"\d{3}", http)
        assert bool(names) == bool(code), (http, status)
        listed |= {(name, int(code.group())) for name in names}
    assert listed - WEBHOOK_REPLIES == set(), "listed but never sent"
    assert WEBHOOK_REPLIES - listed == set(), "sent but not listed"
