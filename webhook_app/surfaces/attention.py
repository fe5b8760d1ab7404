"""What needs the operator, first on the operator page (a phone shows it before anything else):
alerts whose outcome is unknown and not yet marked, alerts that failed and were not sent again,
bots OKX reports stopped or gone, accounts (or the journal) not ready. Each with a link to where
it is dealt with. And the money in the bots' own currency. No Flask here."""

from __future__ import annotations

import dataclasses

from webhook_app.okx.margin.evidence import VERDICT_WORDS

SHOWN = 5  # items of one kind; the rest are counted, with a link to them all
FAILED_WITHIN = 24 * 3600  # a failed alert older than this no longer asks for a decision
BOT_TROUBLE = {"stopped": "stopped", "stopping": "stopping", "missing": "not known to OKX"}


@dataclasses.dataclass(frozen=True)
class Need:
    kind: str  # "unknown", "failed", "bot", "not_ready", "more"
    text: str
    href: str
    link: str  # the link's words


def margin_currency(inst_ids) -> str:
    """The currency a bot's margin is in, from its instruments' ids as OKX names them: a linear
    swap settles in its quote currency (BTC-USDT-SWAP: USDT), an inverse one in its base
    (BTC-USD-SWAP: BTC). "" when unknown, or when the instruments disagree."""
    found = set()
    for inst_id in inst_ids or ():
        parts = str(inst_id).split("-")
        if len(parts) != 3 or parts[2] not in ("SWAP", "FUTURES") and not parts[2].isdigit():
            return ""
        found.add(parts[0] if parts[1] == "USD" else parts[1])
    return found.pop() if len(found) == 1 else ""


def currencies(bot_rows: list[dict]) -> dict[str, str]:
    """algoId -> its margin currency, for each bot OKX reported with its instruments."""
    return {row["algoId"]: ccy for row in bot_rows if (ccy := margin_currency(row.get("instIds")))}


def with_currency(amount, currency: str) -> str:
    return f"{amount} {currency}" if currency and amount not in (None, "") else str(amount or "")


def needs(journal, readiness, bot_rows: list[dict], page_of, now: float) -> list[Need]:
    """Everything that waits for the operator, most urgent first (``page_of``: an alert's page)."""
    ccy = currencies(bot_rows)
    unknown = [r for r in journal.recent(50, "unknown") if r.resolution is None]
    failed = [r for r in journal.recent(50, "failed") if r.resent_as is None and r.received_at > now - FAILED_WITHIN]
    items = _alerts(unknown, "unknown", page_of, ccy) + _alerts(failed, "failed", page_of, ccy)
    troubled = set()
    for row in bot_rows:
        if row.get("state") in BOT_TROUBLE:
            troubled.add(f"bot {row['algoId']}")
            account = f" (account {row['account']})" if row.get("account") else ""
            text = f"Bot {row['algoId']}{account} is {BOT_TROUBLE[row['state']]} on OKX: its alerts are refused."
            items.append(Need("bot", text, "#bots", "see the bots"))
    for check in readiness.results or []:
        if not check.ok and check.name not in troubled:  # a stopped bot is said once, above
            who = f"Account {check.account}" if check.account else "The service"
            hint = f" ({check.hint})" if check.hint else ""
            text = f"{who} not ready: {check.name}: {check.detail}{hint}."
            items.append(Need("not_ready", text, "#status", "checks"))
    return items


def _alerts(records, state: str, page_of, ccy: dict[str, str]) -> list[Need]:
    items = [_alert(record, page_of, ccy.get(record.algo_id, "")) for record in records[:SHOWN]]
    if len(records) > SHOWN:
        more = f"{len(records) - SHOWN} more {state} alert(s)."
        items.append(Need("more", more, f"/admin?state={state}", f"all {state}"))
    return items


def _alert(record, page_of, currency: str) -> Need:
    if record.action in ("add", "reduce"):  # a margin call, in the bot's margin currency
        what = f"Alert {record.id}: {record.action} {with_currency(record.amount, currency)} to bot {record.algo_id}"
    else:  # an order: its own words (contracts, instrument)
        what = f"Alert {record.id}: {record.summary}, bot {record.algo_id}"
    if record.state == "unknown":
        proposal = VERDICT_WORDS.get(record.proposal or "")
        found = f" OKX's records propose: {proposal}." if proposal else " OKX's records are being read."
        text = f"{what}, outcome unknown: OKX may have acted.{found} Check the bot, then mark it."
        link = "mark it"
    else:
        text = f"{what} failed: OKX did not act. Send it again if it is still wanted."
        link = "send again"
    return Need(record.state, text, page_of(record.id), link)
