"""What the operator page shows, computed from the journal and the services: no Flask here,
so it is read and tested without a request."""

from __future__ import annotations

import dataclasses
import re
import time

from .journal import Journal, Record, iso_time

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


def alert_row(record: Record, now: float) -> dict:
    """One alert as the table shows it."""
    return {
        "record": record,
        "received": when(record.received_at, now),
        "okx": " ".join(x for x in (record.okx_code, record.okx_msg) if x),
        "latency": f"{record.latency_ms:.0f} ms" if record.latency_ms is not None else "",
    }


def timeline(record: Record, events: list) -> list[dict]:
    """Received, then each claim, answer, outcome and action, oldest first: ``at`` (epoch
    seconds), ``kind``, ``detail``. The page and the JSON both show this one."""
    steps = [
        {
            "at": record.received_at,
            "kind": "received",
            "detail": f"{record.action} {record.amount} for bot {record.algo_id}",
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


def status(config, readiness, delivery, journal: Journal, refusals) -> dict:
    """The service's state: mode, where it sends, readiness, rate use and queue."""
    mode = "dry-run" if config.dry_run else "demo" if config.okx_demo else "live"
    pacer = delivery.pacer
    now = journal.now()
    return {
        "mode": mode,
        "base_url": config.okx_base_url,
        "ready": None if readiness.results is None else readiness.ready,
        "checked": when(readiness.checked_at, time.time()) if readiness.results is not None else None,
        "checks": readiness.results or [],
        "rate_used": pacer.busy() if pacer is not None else 0,
        "rate_limit": config.okx_rate_limit,
        "rate_window": config.okx_rate_window,
        "queued": journal.count_due(now, in_turn=False),
        "refused_counted": refusals.counted,
        "notifications": len(config.notify_urls),
    }
