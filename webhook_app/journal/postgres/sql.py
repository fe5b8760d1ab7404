"""SQL pieces every PostgreSQL module of the journal shares."""

from __future__ import annotations

# Time is the database's, never one host's.
NOW = "extract(epoch from clock_timestamp())::double precision"
# Advisory-lock namespaces (first key of pg_advisory_xact_lock(int, int)). Claims: a claim for
# every account holds (LOCK_CLAIM, 0) exclusively; a claim for one account holds it shared and
# (LOCK_CLAIM_ACCOUNT, hashtext(name)) exclusively, so claims for different accounts run side by side.
LOCK_DEDUP, LOCK_CAP, LOCK_PACING, LOCK_RECOVERY, LOCK_MIGRATION, LOCK_CLAIM, LOCK_BOT, LOCK_CLAIM_ACCOUNT = (
    7101,
    7102,
    7103,
    7104,
    7105,
    7106,
    7107,
    7108,
)

# The current attempt's claim (params: alert, instance, attempt), as a fence on every write after a send.
CLAIMED = "id = %s AND state = 'sending' AND claimed_by = %s AND attempts = %s"
# Closes rate slots in the statement that carries them (an outcome: its request's, and a claim at
# receipt's bot read; a confirmation: the bot read's): a CTE runs whether or not the fenced UPDATE
# beside it changes a row (a late answer still ends its request). Its parameter is ``slot_ids(...)``.
CLOSE_SLOTS = f"closed AS (UPDATE okx_pacing SET ended_at = {NOW} WHERE id = ANY(%s) AND ended_at IS NULL)"


def slot_ids(slot) -> list[int]:
    """An outcome's ``slot`` (None, one slot, or a tuple of them) as the list CLOSE_SLOTS takes."""
    if slot is None:
        return []
    return [s for s in slot if s is not None] if isinstance(slot, tuple) else [slot]


def log_events(conn, events: list[tuple[int, str, str]]) -> None:
    """Timeline entries, written in the transaction that made them true, at the database's time."""
    if events:
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (%s, {NOW}, %s, %s)", events
            )
