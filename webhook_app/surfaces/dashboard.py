"""What the operator page shows, computed from the journal and the services: no Flask here,
so it is read and tested without a request."""

from __future__ import annotations

import dataclasses
import re
import time

from webhook_app.intake.orders import MARGIN_ACTIONS
from webhook_app.journal import QueueClaims, Record, iso_time
from webhook_app.okx.margin.evidence import VERDICT_WORDS
from webhook_app.okx.records import okx_decimal
from webhook_app.surfaces.attention import margin_currency, with_currency

HOUR = 3600
# The chart's outcome groups, bottom to top, and the states each one counts (the legend names them).
CHART_GROUPS = (
    ("ok", ("ok",)),
    ("dry_run", ("dry_run",)),
    ("queued", ("queued", "sending")),
    ("unknown", ("unknown",)),
    ("rejected", ("rejected",)),
    ("failed", ("failed",)),
    ("expired", ("expired",)),
)
CHART_WIDTH, CHART_HEIGHT, CHART_BARS = 720, 150, 24


def ago(epoch: float | None, now: float) -> str:
    """ "12 s ago", "5 min ago", "3 h ago", "2 d ago"."""
    if epoch is None:
        return ""
    seconds = max(now - epoch, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def when(epoch: float | None, now: float) -> dict:
    """A time as shown: UTC to the second, and relative."""
    return {"utc": (iso_time(epoch) or "")[:19].replace("T", " ") + " UTC" if epoch else "", "ago": ago(epoch, now)}


@dataclasses.dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    group: str
    count: int
    hour: str


def hourly_chart(counts: list[tuple[int, str, int]], now: float) -> dict:
    """Bars for the last 24 hours, stacked by outcome group, with the tallest hour's total."""
    first_hour = int(now // HOUR) * HOUR - (CHART_BARS - 1) * HOUR
    by_hour: dict[int, dict[str, int]] = {}
    group_of = {state: group for group, states in CHART_GROUPS for state in states}
    for hour, state, count in counts:
        if hour >= first_hour:
            groups = by_hour.setdefault(hour, {})
            group = group_of.get(state, "failed")
            groups[group] = groups.get(group, 0) + count
    tallest = max((sum(g.values()) for g in by_hour.values()), default=0)
    slot = CHART_WIDTH / CHART_BARS
    bars = []
    for index in range(CHART_BARS):
        hour = first_hour + index * HOUR
        label = (iso_time(hour) or "")[11:16]
        y = CHART_HEIGHT
        for group, _ in CHART_GROUPS:
            count = by_hour.get(hour, {}).get(group, 0)
            if count:
                height = CHART_HEIGHT * count / tallest
                y -= height
                bars.append(Bar(round(index * slot + 2, 1), round(y, 1), round(height, 1), group, count, label))
    labels = [
        {"x": round(index * slot + slot / 2, 1), "text": (iso_time(first_hour + index * HOUR) or "")[11:13]}
        for index in range(0, CHART_BARS, 3)
    ]
    return {
        "bars": bars,
        "bar_width": round(slot - 4, 1),
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "tallest": tallest,
        "total": sum(c for h, _, c in counts if h >= first_hour),
        "labels": labels,
        "groups": [{"group": group, "label": " or ".join(states)} for group, states in CHART_GROUPS],
    }


def alert_row(record: Record, now: float, currency: str = "") -> dict:
    """One alert as the table shows it; ``currency``: its bot's margin currency, when known (a
    margin call's amount is in it; an order's size is in contracts, said by its summary)."""
    margin = record.action in MARGIN_ACTIONS
    return {
        "record": record,
        "amount": with_currency(record.amount, currency) if margin else record.amount,
        "summary": f"{record.action} {with_currency(record.amount, currency)}" if margin else record.summary,
        "received": when(record.received_at, now),
        "okx": " ".join(x for x in (record.okx_code, record.okx_msg) if x),
        "latency": f"{record.latency_ms:.0f} ms" if record.latency_ms is not None else "",
        "proposal": VERDICT_WORDS.get(record.proposal or "", ""),  # what OKX's records say, in words
        "order": order_rows(record),
    }


# The alert's fields as its page names them, in this order (``journal.orders.alert_fields``' names).
ORDER_LABELS = {
    "instId": "Instrument",
    "size": "Size (contracts)",
    "orderType": "Order type",
    "price": "Price",
    "reduceOnly": "Reduce-only",
    "amount": "Margin",
    "investmentType": "Investment type",
    "allowReinvest": "Reinvest",
    "tpSlType": "TP/SL by",
    "tpPct": "Take-profit (fraction)",
    "slPct": "Stop-loss (fraction)",
}


def order_rows(record: Record) -> list[dict]:
    """What the alert asks of its bot, field by field, as its page shows it: the side of a buy or
    sell, then each field the alert gave (a boolean as yes/no)."""
    fields = record.to_json()["order"]
    rows = [{"label": "Side", "value": record.action}] if record.action in ("buy", "sell") else []
    for name, label in ORDER_LABELS.items():
        if name in fields:
            value = fields[name]
            rows.append({"label": label, "value": ("yes" if value else "no") if isinstance(value, bool) else value})
    return rows


def timeline(record: Record, events: list) -> list[dict]:
    """Received, then each claim, answer, outcome and action, oldest first: ``at`` (epoch
    seconds), ``kind``, ``detail``. The page and the JSON both show this one."""
    steps = [
        {
            "at": record.received_at,
            "kind": "received",
            "detail": f"{record.summary} for bot {record.algo_id}",
        }
    ]
    steps += [{"at": event.at, "kind": event.kind, "detail": event.detail} for event in events]
    if record.state == "dry_run" and not any(event.kind == "dry_run" for event in events):
        steps.append({"at": record.received_at, "kind": "dry_run", "detail": "dry run: signed, journaled, not sent"})
    return steps


def step_json(step: dict) -> dict:
    return {"at": iso_time(step["at"]), "kind": step["kind"], "detail": step["detail"]}


_ALERT_REFERENCE = re.compile(r"^(.*) \(alert (\d+)\)$", re.S)


def refused_row(refusal, now: float) -> dict:
    """One refused request as the table shows it: its reason once (a field's message that only
    repeats the reason is left out, the field named), and the alert a duplicate repeats, linked."""
    message, alert_id = refusal.message, None
    found = _ALERT_REFERENCE.match(message)
    if found:
        message, alert_id = found.group(1), int(found.group(2))
    fields = [
        {"field": e.get("field", ""), "message": "" if e.get("message", "") in refusal.message else e.get("message")}
        for e in refusal.errors
    ]
    return {"refusal": refusal, "at": when(refusal.at, now), "message": message, "alert_id": alert_id, "fields": fields}


def lockout_row(entry: dict, now: float) -> dict:
    """One locked-out address as the page shows it."""
    left = max(entry["until"] - now, 0)
    return {
        **entry,
        "since_at": when(entry["since"], now),
        "until_at": when(entry["until"], now),
        "left": f"{int(left // 60)} min {int(left % 60)} s left" if left >= 60 else f"{int(left)} s left",
    }


def lockout_json(entry: dict) -> dict:
    return {**entry, "since": iso_time(entry["since"]), "until": iso_time(entry["until"])}


def status(config, readiness, delivery, queue: QueueClaims, refusals, bots=None) -> dict:
    """The service's state: mode, where it sends, readiness, rate use, queue, and the bots as OKX
    last reported them (``bots``: the BotWatch; None in dry-run, where nothing is read)."""
    first = config.okx.accounts[0]  # "the" site and budget: the first account's (each account's below)
    mode = "dry-run" if config.okx.dry_run else "demo" if first.demo else "live"
    pacer = delivery.pacer
    now = queue.now()
    return {
        "mode": mode,
        "base_url": first.base_url,
        "ready": None if readiness.results is None else readiness.ready,
        "checked": when(readiness.checked_at, time.time()) if readiness.results is not None else None,
        "checks": readiness.results or [],
        "rate_used": pacer.busy() if pacer is not None else 0,
        "rate_limit": first.rate_limit,
        "rate_window": config.okx.rate_window,
        "queued": queue.count_due(now, in_turn=False),
        "refused_counted": refusals.counted,
        "notifications": len(config.notify.urls),
        "client_certs": config.tls.checked_where,  # TradingView's client certificate: "off", "tls", "proxy"
        "bots": bots.table() if bots is not None else [],
        "accounts": [account_status(account, config, delivery) for account in config.okx.accounts],
    }


def account_status(account, config, delivery) -> dict:
    """One OKX account as the page and /status show it: where it sends and its rate budget in use.
    Never its key, secret or passphrase (not even part of the key).

    ``rate_used`` is the account's own pacer's count now (0 in dry-run, where nothing is sent);
    None where the delivery keeps no per-account pacer to ask."""
    lanes = getattr(delivery, "lanes", None)  # one lane (client, pacer) per account
    if lanes is not None:
        lane = lanes.get(account.name)
        pacer, known = getattr(lane, "pacer", None), lane is not None
    else:  # a delivery with one pacer: it is the only account's
        pacer, known = delivery.pacer, len(config.okx.accounts) == 1
    known = known or config.okx.dry_run  # nothing is sent in dry-run: no budget in use
    return {
        "name": account.name,
        "base_url": account.base_url,
        "demo": account.demo,
        "rate_limit": account.rate_limit,
        "rate_used": (pacer.busy() if pacer is not None else 0) if known else None,
    }


# The bot states OKX documents, each with the colour the page gives it; any other is shown as it came.
BOT_STATE_CLASSES = {"running": "s-ok", "starting": "s-queued", "stopping": "s-failed", "stopped": "s-rejected"}


def bot_row(bot: dict, now: float) -> dict:
    """One bot of ``BotWatch.table()`` as the page shows it: never read, or its state, instruments,
    balances and how long ago it was read (stale when older than the bound that lets it refuse alerts),
    and its positions and TP/SL as OKX last reported them (``trading_cells``)."""
    state = bot.get("state")
    read_ago = bot.get("readAgo")
    currency = margin_currency(bot.get("instIds"))
    return {
        "account": bot.get("account", ""),  # named by BotWatches only when there are several accounts
        "algo_id": bot["algoId"],
        "instruments": ", ".join(bot.get("instIds") or []),
        "state": "not read yet" if state is None else "not known to OKX" if state == "missing" else state,
        "state_class": "s-unread" if state is None else BOT_STATE_CLASSES.get(state, "s-rejected"),
        "read": _ago_of(read_ago, now),
        "stale": read_ago is not None and bot.get("fresh") is False,
        "avail_bal": with_currency(bot.get("availBal"), currency),
        "invest_amt": with_currency(bot.get("investAmt"), currency),
        **trading_cells(bot, now),
    }


def trading_cells(bot: dict, now: float) -> dict:
    """The bot's positions ("long 0.3 BTC-USDT-SWAP @ 60000.5" each; None until read) with how long
    ago they were read and the failed read since (``positions_failed``), and its TP/SL ("TP 5% /
    SL 2% (pnl)", "none"; None until read) with how long ago it was read."""
    positions, tpsl = bot.get("positions") or {}, bot.get("tpsl")
    failed = positions.get("failed")
    opened = positions.get("open")
    return {
        "positions": None if opened is None else [position_text(p) for p in opened],
        "positions_read": _ago_of(positions.get("readAgo"), now),
        "positions_failed": failed and {"ago": _ago_of(failed["ago"], now), "error": failed["error"]},
        "tpsl": None if tpsl is None else tpsl_text(tpsl),
        "tpsl_okx": None if tpsl is None else ", ".join(f'{k} "{tpsl[k]}"' for k in ("tpSlType", "tpPct", "slPct")),
        "tpsl_read": _ago_of(tpsl and tpsl["readAgo"], now),
    }


def position_text(position: dict) -> str:
    """ "long 0.3 BTC-USDT-SWAP @ 60000.5": the size in contracts and the average price as OKX wrote
    them (the size without pos's sign, which the side says)."""
    side, pos = position["side"], position["pos"]
    size = f"{side} {pos.lstrip('+-')}" if side else pos
    return f"{size} {position['instId']} @ {position['avgPx'] or '?'}"


def tpsl_text(tpsl: dict) -> str:
    """ "TP 5% / SL 2% (pnl)", the one set alone, or "none". OKX's tpPct and slPct are fractions
    (0.05 is 5%, as its examples have them ⚠): multiplied exactly, never rounded."""
    parts = [f"{name} {_percent(tpsl[key])}" for name, key in (("TP", "tpPct"), ("SL", "slPct")) if tpsl[key]]
    if not parts:
        return "none"
    return " / ".join(parts) + (f" ({tpsl['tpSlType']})" if tpsl["tpSlType"] else "")


def _percent(fraction: str) -> str:
    number = okx_decimal(fraction)
    return fraction if number is None else format((number * 100).normalize(), "f") + "%"


def _ago_of(seconds: float | None, now: float) -> str:
    return ago(now - seconds, now) if seconds is not None else ""


def okx_records(record: Record) -> dict | None:
    """What OKX's records say about an unknown alert, as its page shows them; None until they were
    read and a verdict proposed (before that the evidence holds only the snapshot from before the send)."""
    try:
        evidence = record.evidence_data
    except ValueError:
        return None
    if not isinstance(evidence, dict) or evidence.get("proposal") not in VERDICT_WORDS:
        return None
    verdict = evidence["proposal"]
    window = evidence.get("window") or {}
    return {
        "verdict": verdict,
        "verdict_words": VERDICT_WORDS[verdict],
        "reason": evidence.get("reason") or "",
        "window": {"from": _clock_text(window.get("from")), "to": _clock_text(window.get("to"))} if window else None,
        "changes": [
            {name: _or_dash(row.get(name)) for name in ("field", "before", "after", "delta")}
            | ({"delta": f"{row['delta']} ms"} if row.get("field") == "uTime" and row.get("delta") else {})
            for row in evidence.get("changes") or []
        ],  # uTime is OKX's epoch milliseconds: its change is said in ms
        "events": None
        if evidence.get("events") is None
        else [{**event, "at": _clock_text(event.get("eventCtime"))} for event in evidence["events"]],
        "other_events": evidence.get("otherEvents") or 0,
        "events_unread": evidence.get("events") is None or bool(evidence.get("eventsUnread")),
        # A "not executed" proposal the second read withdrew: what it said, and what moved since.
        "withdrawn": _withdrawn(evidence),
    }


def _withdrawn(evidence: dict) -> dict | None:
    withdrawn, recheck = evidence.get("withdrawn"), evidence.get("recheck") or {}
    if not isinstance(withdrawn, dict) or withdrawn.get("proposal") not in VERDICT_WORDS:
        return None
    return {
        "verdict_words": VERDICT_WORDS[withdrawn["proposal"]],
        "reason": withdrawn.get("reason") or "",
        "moved": ", ".join(recheck.get("moved") or []),
    }


def _clock_text(iso: str | None) -> str:
    """An OKX time ("2026-11-30T12:00:01.234Z") as "2026-11-30 12:00:01.234 UTC": OKX's clock, to the ms."""
    return iso.replace("T", " ").replace("Z", " UTC") if isinstance(iso, str) else ""


def _or_dash(value) -> str:
    return "—" if value is None else str(value)
