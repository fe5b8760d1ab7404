"""What the operator page shows, computed from the journal and the services: no Flask here,
so it is read and tested without a request."""

from __future__ import annotations

import dataclasses
import time

from .journal import Journal, Record, iso_time

HOUR = 3600
# The chart's outcome groups, bottom to top, and the states each one counts.
CHART_GROUPS = (
    ("ok", ("ok",)),
    ("dry_run", ("dry_run",)),
    ("pending", ("queued", "sending")),
    ("unknown", ("unknown",)),
    ("rejected", ("rejected",)),
    ("failed", ("failed", "expired")),
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
        "groups": [group for group, _ in CHART_GROUPS],
    }


def alert_row(record: Record, now: float) -> dict:
    """One alert as the table shows it."""
    return {
        "record": record,
        "received": when(record.received_at, now),
        "okx": " ".join(x for x in (record.okx_code, record.okx_msg) if x),
        "latency": f"{record.latency_ms:.0f} ms" if record.latency_ms is not None else "",
    }


def timeline(record: Record, events: list, now: float) -> list[dict]:
    """Received, then each claim, answer, outcome and action, oldest first."""
    steps = [{"kind": "received", "detail": f"{record.action} {record.amount} for bot {record.algo_id}"}]
    steps[0].update(when(record.received_at, now))
    for event in events:
        steps.append({"kind": event.kind, "detail": event.detail, **when(event.at, now)})
    if record.state == "dry_run":
        steps.append(
            {"kind": "dry_run", "detail": "dry run: signed, journaled, not sent", **when(record.received_at, now)}
        )
    return steps


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
