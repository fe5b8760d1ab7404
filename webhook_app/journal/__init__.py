"""The journal: where every alert is written before anything is sent, and what follows it.

Every valid alert is written here before anything is sent, and its state follows it:
queued -> sending -> ok | rejected | unknown | failed, queued -> expired, and dry_run for
alerts that were never meant to leave; sending -> queued (a retry, or a claim that lapsed
before its request left) and sending -> expired (such a claim, too old to send again). The
queue itself lives here (``claim_due``), so several instances on one database share it; an
alert is claimed by exactly one instance. Each alert names the OKX account that sends it, and
the queue can be taken one account at a time (``claim_due(account=...)``), so a burst to one
account never holds up another's; duplicates, the daily cap and each bot's order are kept per
bot, and a bot belongs to one account.

Layout: ``records.py`` (records, states, errors, detail texts), ``contracts.py`` (one contract per
job: ``AlertLog``, ``Activity`` (both reading ``AlertRecords``), the queue's ``QueueClaims``,
``QueueOutcomes`` and ``QueueUpkeep`` (together ``AlertQueue``), ``NotificationLog``, ``RefusalStore``,
``SessionStore``, ``Instances``; and the ``Journal`` composing them), ``shared.py`` (the SQL both
engines say alike, and the store methods built on it), and one package per engine: ``sqlite/`` (one
process; the default, no setup) and ``postgres/`` (any number of instances on one database), each
with its database object and one store per job. ``open_journal`` picks one from ``DATABASE_URL``;
everything callers import is re-exported here.
"""

from __future__ import annotations

from webhook_app.journal.contracts import (
    Activity,
    AlertLog,
    AlertQueue,
    AlertRecords,
    Database,
    Instances,
    Journal,
    JournalJob,
    NotificationLog,
    QueueClaims,
    QueueOutcomes,
    QueueUpkeep,
    RefusalStore,
    SendingQueue,
    SessionStore,
)
from webhook_app.journal.records import (
    CAP_STATES,
    CLAIMED_DETAIL_FORMAT,
    COLUMNS,
    EXPIRED_DETAIL,
    FINAL_STATES,
    INTERRUPTED_DETAIL,
    NEVER_SENT_DETAIL,
    NEVER_SENT_EXPIRED_DETAIL,
    NOT_MARKABLE,
    REFUSAL_COLUMNS,
    RESOLUTIONS,
    STATES,
    UNCLAIMED_DETAIL,
    ActionRefused,
    Claim,
    ClaimedAtOnce,
    DailyCapExceeded,
    Event,
    JournalInUse,
    JournalUnavailable,
    NoConnectionRoom,
    PacedClaim,
    Record,
    Refusal,
    SendNow,
    answer_detail,
    claimed_detail,
    iso_time,
    marked_detail,
    refusal_from_row,
    refusal_row,
    resend_details,
    retry_detail,
)

__all__ = [
    "CAP_STATES",
    "CLAIMED_DETAIL_FORMAT",
    "COLUMNS",
    "EXPIRED_DETAIL",
    "FINAL_STATES",
    "INTERRUPTED_DETAIL",
    "NEVER_SENT_DETAIL",
    "NEVER_SENT_EXPIRED_DETAIL",
    "NOT_MARKABLE",
    "REFUSAL_COLUMNS",
    "RESOLUTIONS",
    "STATES",
    "UNCLAIMED_DETAIL",
    "ActionRefused",
    "Activity",
    "AlertLog",
    "AlertQueue",
    "SendingQueue",
    "AlertRecords",
    "Claim",
    "ClaimedAtOnce",
    "DailyCapExceeded",
    "Database",
    "Event",
    "Instances",
    "Journal",
    "JournalInUse",
    "JournalJob",
    "JournalUnavailable",
    "NoConnectionRoom",
    "NotificationLog",
    "PacedClaim",
    "Record",
    "QueueClaims",
    "QueueOutcomes",
    "QueueUpkeep",
    "Refusal",
    "RefusalStore",
    "SendNow",
    "SessionStore",
    "answer_detail",
    "claimed_detail",
    "iso_time",
    "marked_detail",
    "open_journal",
    "refusal_from_row",
    "refusal_row",
    "resend_details",
    "retry_detail",
]


def open_journal(url: str, max_connections: int | None = None, instance_budget: int | None = None) -> Journal:
    """The backend for ``DATABASE_URL``: sqlite:///PATH, or postgres(ql)://... With PostgreSQL,
    ``max_connections``: this process's connection budget (a web instance's by default);
    ``instance_budget``: a web instance's (DATABASE_MAX_CONNECTIONS), for the formation's sums."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteJournal

        return SqliteJournal(url[len("sqlite:///") :])
    if url.startswith(("postgres://", "postgresql://")):
        from .postgres import PostgresJournal
        from .postgres.budget import DEFAULT_CONNECTIONS

        return PostgresJournal(url, max_connections or DEFAULT_CONNECTIONS, instance_budget=instance_budget)
    raise JournalUnavailable("DATABASE_URL must be sqlite:///PATH, postgres://… or postgresql://…")
