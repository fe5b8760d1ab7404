"""README.md against the code: the reply table lists every status the webhook sends, each with the
HTTP status it is sent with."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from webhook_app.intake.alerts import InvalidAlert, InvalidBody, Unauthorized
from webhook_app.intake.pipeline import AccountRefused, BotNotSendable, DuplicateAlert
from webhook_app.intake.protection import Forbidden, LockedOut, StaleAlert
from webhook_app.intake.sizing import InstrumentsRefused
from webhook_app.journal.records import DailyCapExceeded
from webhook_app.surfaces.web import STATE_STATUS

REPO = Path(__file__).resolve().parents[1]

# Every (status, HTTP) the webhook answers with: the alert's states, the refusals it raises, and
# the web layer's own (web.py: journal outage, body too large, wrong method).
FORBIDDEN_KINDS = {
    kind
    for path in (REPO / "webhook_app" / "intake").glob("*.py")
    for kind in re.findall(r'"(forbidden_[a-z_]+)"', path.read_text())
}  # protection.Forbidden's kind is the instance's: every one the intake raises
WEBHOOK_REPLIES = {
    *STATE_STATUS.items(),
    *((refusal.kind, refusal.status) for refusal in (InvalidBody, Unauthorized, InvalidAlert)),
    *((refusal.kind, refusal.status) for refusal in (StaleAlert, LockedOut, DailyCapExceeded)),
    *((refusal.kind, refusal.status) for refusal in (AccountRefused, BotNotSendable, DuplicateAlert)),
    (InstrumentsRefused.kind, InstrumentsRefused.status),
    *((kind, Forbidden.status) for kind in FORBIDDEN_KINDS),
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


# -- README for the person who owns the OKX account (issue 24, item 6) --------------------------

TWO_COMMANDS = [
    "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt && PORT=8000 .venv/bin/gunicorn "
    "--config gunicorn.conf.py wsgi:app",
    "python3 -m venv .venv && .venv/bin/pip install -q -r requirements-dev.txt && .venv/bin/python -m pytest -q",
]


def sections() -> dict[str, str]:
    """Each ## or ### heading of README and the text under it (to the next heading)."""
    parts = re.split(r"^(#{2,3} .*)$", readme(), flags=re.M)
    return {heading.lstrip("#").strip(): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_readme_is_short_and_opens_with_the_two_commands():
    text = readme()
    assert len(text.splitlines()) <= 250
    first_block = re.search(r"```sh\n(.*?)```", text, re.S).group(1).splitlines()
    assert first_block == TWO_COMMANDS


def test_readme_has_the_traders_sections_in_order():
    headings = list(sections())
    order = ["Try it: two commands", "Alert messages", "Replies", "Going live", "Deploying", "Operating"]
    assert [h for h in headings if h in order] == order, headings
    # Where the messages of further actions go: one ### per action under "Alert messages".
    assert headings[headings.index("Alert messages") + 1] == "Add or remove margin"


def test_going_live_says_where_the_algo_id_is_how_to_make_the_key_and_what_to_check():
    parts = sections()
    assert "algoId" in parts["Where to find a bot's algoId"] and "Bots" in parts["Where to find a bot's algoId"]
    key = parts["The API key"]
    assert "**Trade**" in key and "never Withdraw" in key and "IP allowlist" in key and "PaaS" in key
    checklist = parts["Checklist"]
    for must in (
        "demo",
        "flask --app webhook_app check",
        "ALLOWED_ALGO_IDS",
        "MAX_AMOUNT",
        "MAX_AMOUNT_PER_DAY",
        "REQUIRE_TIMESTAMP=1",
        "test alert",
    ):
        assert must.lower() in checklist.lower(), must
    assert ".venv/bin/python -m tests.okx_stand_in" in parts["Rehearse the live path locally"]


def test_the_engineering_depth_is_in_docs_and_every_page_there_is_linked():
    linked = set(re.findall(r"\]\((docs/[^)#]+)", readme()))
    pages = {f"docs/{page.name}" for page in (REPO / "docs").glob("*.md")}
    assert linked == pages, linked ^ pages
    for page in (REPO / "docs").glob("*.md"):  # and their own links resolve
        for target in re.findall(r"\]\(([^)#]+)", page.read_text()):
            assert "://" in target or (page.parent / target).exists(), (page.name, target)
    for heading in ("Delivery guarantees", "Architecture", "Benchmarks", "Several accounts"):
        assert heading not in sections(), heading


def test_a_fresh_clone_serves_with_the_first_command(tmp_path):
    """What git holds is enough for the first command (this venv stands in for the one it makes: no
    download): the service starts in dry-run from a fresh clone, and says its secret."""
    from tests.service_process import ServiceProcess

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], check=True, timeout=60)
    service = ServiceProcess({}, cwd=clone)
    try:
        service.start()
        assert "Generated a webhook secret for this dry run" in service.log(), service.log()
        assert (clone / "instance" / "webhook_secret").exists()
    finally:
        service.discard()
