"""The operator page in a real browser: Debian's Chromium driven by Playwright, against the
service as the Procfile starts it (gunicorn) and the loopback OKX stand-in.

Chromium is never downloaded: it is /usr/bin/chromium (``apt-get install chromium``), or
CHROMIUM_PATH. Where it is missing these tests are skipped with the reason, except under
REQUIRE_BROWSER=1 (CI), where that is a failure. Screenshots of the main views go to
build/screenshots (or SCREENSHOT_DIR); the test run prints the folder."""

import os
import re
import time

import pytest
import requests

from tests.bot_orders import bot_order, client_of
from tests.conftest import ADMIN_TOKEN, REINVESTED, live_env, make_alert, screenshot_dir
from tests.okx_stand_in import DEFAULT_BOT, Drop, OkxReply, RawReply
from tests.service_process import ServiceProcess

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = screenshot_dir()
WAIT_MS = 15_000  # the page refreshes its live part every 5 s


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def service(okx, tmp_path):
    # One attempt: a "not executed" answer makes a failed alert at once.
    process = ServiceProcess(live_env(okx, tmp_path, ADMIN_TOKEN=ADMIN_TOKEN, OKX_MAX_ATTEMPTS="1")).start()
    yield process
    process.discard()


@pytest.fixture
def page(browser, service):
    context = browser.new_context(base_url=service.url, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # confirm every action (one test dismisses)
    yield page
    context.close()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def post_alert(service, **changes) -> dict:
    reply = requests.post(service.url + "/webhook", json=make_alert(**changes), timeout=10)
    assert reply.status_code in (200, 202, 503), reply.text
    return reply.json()


def arrived(page, selector: str) -> None:
    """The page a click led to, once ``selector`` is on it and it has loaded: its stylesheet
    applies before anything is measured (laid out without it, the page is wider than a phone)."""
    page.wait_for_selector(selector)
    page.wait_for_load_state("load")


def log_in(page) -> None:
    page.goto("/admin")
    page.fill("#token", ADMIN_TOKEN)
    page.click("#login")
    arrived(page, "#alerts")


def row(page, trader_id: str):
    return page.locator("#alerts tbody tr", has_text=trader_id)


def test_an_operator_follows_alerts_acts_on_them_and_logs_out(page, service, okx):
    post_alert(service, id="before-login", amount="1")
    page.goto("/admin")
    assert page.locator("#token").is_visible()
    assert "before-login" not in page.content()  # no alert data before logging in
    shot(page, "1-login")

    log_in(page)
    assert row(page, "before-login").locator(".state").inner_text() == "ok"

    # An alert posted now appears with its state through the page's own refresh, without a reload.
    post_alert(service, id="live-1", amount="2")
    row(page, "live-1").wait_for(timeout=WAIT_MS)
    assert row(page, "live-1").locator(".state").inner_text() == "ok"
    assert page.locator("#live").get_attribute("data-refreshed")
    assert page.locator(".chart svg rect.g-ok").count() >= 1
    shot(page, "2-alerts")

    # Filter by the trader's id.
    page.fill("#filter-id", "live-1")
    page.click("#apply-filters")
    page.wait_for_url(re.compile(r"trader_id=live-1"))
    assert page.locator("#alerts tbody tr").count() == 1

    # Its timeline: received, claimed, answered.
    row(page, "live-1").locator("a").first.click()
    page.wait_for_url(re.compile(r"/admin/alerts/\d+$"))
    timeline = page.locator("#timeline li")
    assert [k.inner_text() for k in page.locator("#timeline .kind").all()] == ["RECEIVED", "CLAIMED", "OK"]
    assert "attempt 1" in timeline.nth(1).inner_text()
    shot(page, "3-timeline")

    # An unknown alert: the operator checks the bot on OKX, then marks it.
    okx.play(RawReply(502))
    unknown = post_alert(service, id="maybe-1", amount="3")["id"]
    page.goto(f"/admin/alerts/{unknown}")
    assert page.inner_text("#alert-state") == "unknown"
    page.click("#mark-not-executed")
    arrived(page, "#resolution")
    assert page.inner_text("#resolution") == "not executed"
    assert re.search(r"marked not executed by session [0-9a-f]{8}", page.inner_text("#timeline"))
    shot(page, "4-marked")

    # A failed alert, sent again: a new alert linked to it, which OKX executes.
    okx.play(OkxReply("50013", "System is busy"))
    failed = post_alert(service, id="busy-1", amount="4")["id"]
    page.goto(f"/admin/alerts/{failed}")
    assert page.inner_text("#alert-state") == "failed"
    page.click("#resend")
    arrived(page, "#resent-from")
    assert page.inner_text("#resent-from") == f"alert {failed}"
    resent_id = int(re.search(r"/admin/alerts/(\d+)", page.url).group(1))
    assert resent_id != failed
    # A refused request shows up among the refused ones, without its secret.
    wrong = requests.post(service.url + "/webhook", json=make_alert(secret="wrong-secret-0123456789"), timeout=5)
    assert wrong.status_code == 401
    page.goto("/admin")
    page.locator("#refused tbody tr", has_text="unauthorized").wait_for(timeout=WAIT_MS)
    assert "wrong-secret-0123456789" not in page.content()
    resent = page.locator(f'#alerts tr[data-alert="{resent_id}"]')
    assert resent.locator(".state").inner_text() in ("ok", "queued", "sending")
    assert {"algoId": "581628185981813760", "type": "add", "amt": "4"} in okx.executed
    shot(page, "5-resent")

    page.click("#logout")
    arrived(page, "#token")
    assert "live-1" not in page.content()
    assert page.request.get("/admin/live").status == 401


def test_a_confirmation_dismissed_does_nothing(browser, service, okx):
    context = browser.new_context(base_url=service.url)
    page = context.new_page()
    okx.play(RawReply(502))
    unknown = post_alert(service, id="maybe-2")["id"]
    log_in(page)
    page.goto(f"/admin/alerts/{unknown}")
    posted = []
    page.on("request", lambda request: posted.append(request.post_data) if request.method == "POST" else None)
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#mark-executed")
    # Then the other mark, confirmed: the browser reports its requests in order, so a post the
    # dismissed click had made would be listed before this one (and would have marked it first).
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.click("#mark-not-executed")
    assert len(posted) == 1 and "resolution=not_executed" in posted[0], posted
    state = requests.get(
        f"{service.url}/alerts/{unknown}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5
    ).json()
    assert state["alert"]["resolution"] == "not_executed"
    context.close()


def test_a_form_posted_without_its_csrf_token_is_refused(page, service, okx):
    okx.play(RawReply(502))
    unknown = post_alert(service, id="maybe-3")["id"]
    log_in(page)
    page.goto(f"/admin/alerts/{unknown}")
    # The same form as the page's, from the logged-in browser, minus its CSRF token.
    status = page.evaluate(
        """async (url) => {
            const form = new FormData();
            form.append("resolution", "executed");
            const response = await fetch(url, {method: "POST", body: form, credentials: "same-origin"});
            return response.status;
        }""",
        f"/alerts/{unknown}/mark",
    )
    assert status == 403
    page.reload()
    assert page.locator("#resolution").count() == 0 and page.locator("#mark-executed").is_visible()


STRANGER = "203.0.113.9"


@pytest.fixture
def proxied_service(okx, tmp_path):
    """Behind one (pretend) router: a test's requests say which address they come from."""
    env = live_env(okx, tmp_path, ADMIN_TOKEN=ADMIN_TOKEN, TRUSTED_PROXY_HOPS="1", LOCKOUT_THRESHOLD="3")
    process = ServiceProcess(env).start()
    yield process
    process.discard()


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_reads_well_wide_and_on_a_phone_and_lifts_a_lockout(browser, proxied_service, width):
    url = proxied_service.url
    first = requests.post(url + "/webhook", json=make_alert(id="dup-a"), headers={"X-Forwarded-For": "192.0.2.1"})
    assert first.status_code == 200, first.text
    duplicate = requests.post(url + "/webhook", json=make_alert(id="dup-a"), headers={"X-Forwarded-For": "192.0.2.1"})
    assert duplicate.status_code == 409
    for _ in range(3):  # a trader testing with curl, with the wrong secret
        wrong = make_alert(secret="wrong-secret-0123456789")
        assert requests.post(url + "/webhook", json=wrong, headers={"X-Forwarded-For": STRANGER}).status_code == 401
    operator_there = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Forwarded-For": STRANGER}
    locked = requests.get(url + "/alerts", headers=operator_there, timeout=5)
    assert locked.status_code == 429 and "lockouts clear" in locked.json()["message"]

    context = browser.new_context(base_url=url, viewport={"width": width, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page)
    link = page.locator("#refused a", has_text=f"alert {first.json()['id']}")
    link.wait_for(timeout=WAIT_MS)  # refusals are stored in the background: shown by the page's refresh
    shot(page, f"6-page-{width}")
    legend = page.inner_text(".legend")
    assert "pending" not in legend and "expired" in legend and "queued or sending" in legend
    assert "tallest" not in page.inner_text(".chart")
    chart = page.locator(".chart svg").bounding_box()
    panel = page.locator(".chart").bounding_box()
    assert chart["width"] > 0.9 * (panel["width"] - 40), (chart, panel)  # the chart fills its panel
    assert link.count() == 1
    when = page.locator("#refused tbody tr td.when").first
    assert when.bounding_box()["height"] < 3 * 20  # the date on one line, "ago" on the next: no more
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing wider than the screen
    assert page.locator(f'#lockouts tr[data-lockout="{STRANGER}"]').count() == 1
    assert "3 wrong secrets or tokens" in page.inner_text("#lockouts")

    page.locator(f'#lockouts tr[data-lockout="{STRANGER}"] button.lift').click()
    page.wait_for_url(re.compile(r"/admin#lockouts$"))
    assert page.locator(f'#lockouts tr[data-lockout="{STRANGER}"]').count() == 0
    assert requests.get(url + "/alerts", headers=operator_there, timeout=5).status_code == 200

    link.click()
    arrived(page, "#timeline")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    shot(page, f"7-alert-{width}")
    assert page.request.get("/favicon.ico").status == 200
    context.close()


@pytest.fixture
def bots_service(okx, tmp_path):
    """A service that knows two bots by the allowlist (one of them stopped on OKX), reads them every
    second, and reads OKX's records at once after an ambiguous send."""
    okx.add_bot("42", state="stopped", inst_ids=["ETH-USDT-SWAP"])
    env = live_env(
        okx,
        tmp_path,
        ADMIN_TOKEN=ADMIN_TOKEN,
        OKX_MAX_ATTEMPTS="1",
        ALLOWED_ALGO_IDS=f"{DEFAULT_BOT},42",
        BOT_REFRESH_SECONDS="1",
        UNKNOWN_SETTLE_SECONDS="0",
    )
    process = ServiceProcess(env).start()
    yield process
    process.discard()


def proposal_of(service, alert_id: int, timeout: float = 30.0) -> dict:
    """The alert's JSON once OKX's records have been read and a verdict proposed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        alert = requests.get(
            f"{service.url}/alerts/{alert_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5
        ).json()["alert"]
        if alert["proposal"] is not None:
            return alert
        time.sleep(0.2)
    raise AssertionError(f"alert {alert_id} has no proposal after {timeout} s")


def test_the_page_shows_the_bots_and_an_unknown_alerts_evidence_confirmed_in_one_click(browser, bots_service, okx):
    context = browser.new_context(base_url=bots_service.url, viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page)
    stopped = page.locator('#bots tr[data-bot="42"]')
    stopped.locator(".bot-state", has_text="stopped").wait_for(timeout=WAIT_MS)  # read in the background
    assert stopped.locator(".instruments").inner_text() == "ETH-USDT-SWAP"
    running = page.locator(f'#bots tr[data-bot="{DEFAULT_BOT}"]')
    assert running.locator(".bot-state").inner_text() == "running"
    assert running.locator(".instruments").inner_text() == "BTC-USDT-SWAP"
    assert "ago" in running.locator(".when").inner_text()
    shot(page, "8-bots")

    okx.play(Drop())  # OKX adds the margin, then the connection drops: unknown
    alert_id = post_alert(bots_service, id="dropped-1", amount="10", **REINVESTED)["id"]
    assert proposal_of(bots_service, alert_id)["proposal"] == "executed"
    page.goto(f"/admin/alerts/{alert_id}")
    assert page.inner_text("#alert-state") == "unknown"
    assert page.inner_text("#verdict") == "executed"
    assert "rose by 10" in page.inner_text("#reason") and "asked to add 10" in page.inner_text("#reason")
    cells = page.locator('#changes tr[data-field="availBal"] td').all_inner_texts()
    assert cells == ["availBal", "40", "50", "+10"]
    assert page.inner_text("#no-events") == "No events in the window."
    assert page.inner_text("#mark-executed") == "Confirm: executed"
    assert page.inner_text("#mark-not-executed") == "Mark not executed"  # the other finding is still one click
    shot(page, "9-evidence")

    page.click("#mark-executed")
    arrived(page, "#resolution")
    assert page.inner_text("#resolution") == "executed"
    assert re.fullmatch(r"by session [0-9a-f]{8}", page.inner_text("#marked-by"))
    assert page.locator("#mark-executed").count() == 0
    assert "OKX's records: executed" in page.inner_text("#timeline")  # the evidence's entry
    shot(page, "10-confirmed")

    page.set_viewport_size({"width": 390, "height": 900})  # a phone: the evidence fits, as do the bots
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "11-evidence-390")
    page.goto("/admin")
    page.locator("#bots .bot-state", has_text="stopped").wait_for(timeout=WAIT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "12-bots-390")
    context.close()


def test_the_bot_list_shows_positions_and_tpsl_as_okx_last_reported_them(browser, bots_service, okx):
    """Positions opened at OKX and a TP/SL set through amendTPSL appear on the page's bot list (read
    in the background, shown by the page's own refresh), with when OKX reported them."""
    okx.open_position(DEFAULT_BOT, "BTC-USDT-SWAP", "0.3", avg_px="60000.5")
    client = client_of(okx)
    try:
        client.send(bot_order("tpsl", tpSlType="pnl", tpPct="0.05", slPct="0.02"))
    finally:
        client.close()
    context = browser.new_context(base_url=bots_service.url, viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    log_in(page)
    bot = page.locator(f'#bots tr[data-bot="{DEFAULT_BOT}"]')
    bot.locator(".positions", has_text="long 0.3 BTC-USDT-SWAP @ 60000.5").wait_for(timeout=WAIT_MS)
    bot.locator(".tpsl", has_text="TP 5% / SL 2% (pnl)").wait_for(timeout=WAIT_MS)
    assert re.search(r"read \d+ s ago", bot.locator(".positions").inner_text())
    assert re.search(r"read \d+ s ago", bot.locator(".tpsl").inner_text())
    assert page.locator('#bots tr[data-bot="42"] .tpsl').inner_text().startswith("none")
    shot(page, "13-bot-positions")

    okx.open_position(DEFAULT_BOT, "BTC-USDT-SWAP", "-0.3")  # closed at OKX: the page follows
    bot.locator(".positions", has_text="no position").wait_for(timeout=WAIT_MS)
    page.set_viewport_size({"width": 390, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "14-bot-positions-390")
    context.close()


@pytest.fixture
def troubled_service(okx, tmp_path):
    """A service with things that need its operator: bot 42 stopped on OKX, an alert whose outcome is
    unknown, one that failed; the bots read every second."""
    okx.add_bot("42", state="stopped", inst_ids=["ETH-USDT-SWAP"])
    env = live_env(
        okx,
        tmp_path,
        ADMIN_TOKEN=ADMIN_TOKEN,
        OKX_MAX_ATTEMPTS="1",
        ALLOWED_ALGO_IDS=f"{DEFAULT_BOT},42",
        BOT_REFRESH_SECONDS="1",
        UNKNOWN_SETTLE_SECONDS="0",
    )
    process = ServiceProcess(env).start()
    yield process
    process.discard()


def test_on_a_phone_what_needs_the_operator_comes_first_with_links(browser, troubled_service, okx):
    service = troubled_service
    post_alert(service, id="fine-1", amount="12.5")
    okx.play(RawReply(502))
    unknown = post_alert(service, id="maybe-phone", amount="7")["id"]
    okx.play(OkxReply("50013", "System is busy"))
    failed = post_alert(service, id="busy-phone", amount="3")["id"]

    context = browser.new_context(base_url=service.url, viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    log_in(page)
    needs = page.locator("#attention")
    needs.locator('li[data-needs="bot"]', has_text="42").wait_for(
        timeout=WAIT_MS
    )  # the bots are read in the background
    shot(page, "15-phone-attention")

    # At the top: above the filters, and the first thing on the screen.
    top = needs.bounding_box()
    assert top["y"] < page.locator("#filters").bounding_box()["y"] < page.locator("#alerts").bounding_box()["y"]
    assert top["y"] < 844
    links = {
        item.get_attribute("data-needs"): item.locator("a").get_attribute("href") for item in needs.locator("li").all()
    }
    assert links == {"unknown": f"/admin/alerts/{unknown}", "failed": f"/admin/alerts/{failed}", "bot": "#bots"}, links
    assert "add 7 USDT" in needs.locator('li[data-needs="unknown"]').inner_text()

    # Amounts with their currency, read from the bot's instrument (BTC-USDT-SWAP: USDT).
    assert row(page, "fine-1").locator('td[data-label="Amount"]').inner_text() == "12.5 USDT"
    assert page.locator(f'#bots tr[data-bot="{DEFAULT_BOT}"] td[data-label="availBal"]').inner_text().endswith(" USDT")

    # Every card's label in one font, whatever the cell's own (a bot's id is in monospace).
    fonts = page.evaluate(
        """() => [...document.querySelectorAll("table.cards td[data-label]")]
            .filter(td => td.offsetParent !== null)
            .map(td => getComputedStyle(td, "::before"))
            .map(s => [s.fontFamily, s.fontSize, s.fontWeight].join(" "))"""
    )
    assert len(fonts) > 20 and len(set(fonts)) == 1, set(fonts)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    # One tap: the unknown alert's page, where it is marked.
    needs.locator('li[data-needs="unknown"] a').click()
    arrived(page, "#alert-state")
    assert page.inner_text("#alert-state") == "unknown" and "7 USDT" in page.inner_text(".record")
    shot(page, "16-phone-unknown")

    # The operator page refreshes the list by itself: once marked, the alert no longer needs anyone.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#mark-not-executed")
    arrived(page, "#resolution")
    page.goto("/admin")
    arrived(page, "#attention")
    assert page.locator('#attention li[data-needs="unknown"]').count() == 0
    context.close()
