"""The SQLite journal's schema, one step per release; shipped steps are never edited."""

# Schema versions, kept in SQLite's user_version; each step runs once, in order, at open.
# Version 1 is the first release's schema (IF NOT EXISTS: a file from before versions were
# kept is at version 0 and already has it).
MIGRATIONS = (
    (
        1,
        """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    dedup_key TEXT NOT NULL,
    algo_id TEXT NOT NULL,
    action TEXT NOT NULL,
    amount TEXT NOT NULL,
    request_body TEXT NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    okx_code TEXT,
    okx_msg TEXT,
    detail TEXT,
    secret_name TEXT,
    first_sent_at REAL,
    finished_at REAL,
    latency_ms REAL
);
CREATE INDEX IF NOT EXISTS alerts_dedup ON alerts (dedup_key, received_at);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, id);
CREATE INDEX IF NOT EXISTS alerts_received ON alerts (received_at);
CREATE INDEX IF NOT EXISTS alerts_bot ON alerts (algo_id, action, received_at);
""",
    ),
    # The trader's own "id", shown and searchable (the dedup key holds it only in a prefixed form).
    (2, "ALTER TABLE alerts ADD COLUMN trader_id TEXT; CREATE INDEX alerts_trader ON alerts (trader_id, id);"),
    # The queue lives in the journal: who claimed an alert, and when a retry is due.
    (
        3,
        "ALTER TABLE alerts ADD COLUMN claimed_by TEXT; "
        "ALTER TABLE alerts ADD COLUMN not_before REAL NOT NULL DEFAULT 0; "
        "CREATE INDEX alerts_queue ON alerts (state, not_before, id);",
    ),
    # What operators see and do: each alert's timeline, their findings and resends, refused requests.
    (
        4,
        """
ALTER TABLE alerts ADD COLUMN resolution TEXT;
ALTER TABLE alerts ADD COLUMN resent_from INTEGER;
ALTER TABLE alerts ADD COLUMN resent_as INTEGER;
CREATE TABLE alert_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);
CREATE INDEX alert_events_at ON alert_events (at);
CREATE TABLE refused (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    status INTEGER NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    client TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    algo_id TEXT,
    trader_id TEXT,
    count INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX refused_at ON refused (at);
CREATE TABLE admin_sessions (
    sid TEXT PRIMARY KEY,
    client TEXT,
    started_at REAL NOT NULL,
    ended_at REAL
)
""",
    ),
    # Fenced claims (a lease, and when the attempt was cleared to go on the wire), and each bot's
    # open alerts found fast (one bot's alerts go in order).
    (
        5,
        "ALTER TABLE alerts ADD COLUMN lease_until REAL; "
        "ALTER TABLE alerts ADD COLUMN sent_at REAL; "
        "CREATE INDEX alerts_open_bot ON alerts (algo_id, id) WHERE state IN ('queued', 'sending')",
    ),
    # OKX's own records on an unknown outcome, and the verdict proposed from them. Nullable columns
    # only: an older release still running on the file reads and writes it as before.
    (6, "ALTER TABLE alerts ADD COLUMN evidence TEXT; ALTER TABLE alerts ADD COLUMN proposal TEXT"),
    # Several OKX accounts: each alert names the one that sends it. Every alert journaled before, and
    # any an older release still running inserts without naming it, belongs to the single account
    # there was, "default". The index serves the operator's filter by account; claims find the few
    # queued alerts through alerts_queue and filter those.
    (
        7,
        "ALTER TABLE alerts ADD COLUMN account TEXT NOT NULL DEFAULT 'default'; "
        "CREATE INDEX alerts_account ON alerts (account, id)",
    ),
    # When a delivered notification named the alert (``told``), as PostgreSQL's migration 10: the
    # unknown and failed alerts already finished count as told, so the upgrade tells nothing again.
    (
        8,
        "ALTER TABLE alerts ADD COLUMN told_at REAL; "
        "UPDATE alerts SET told_at = finished_at WHERE state IN ('unknown', 'failed') AND told_at IS NULL",
    ),
    # Every signal-bot action, as PostgreSQL's migration 11: each alert names the OKX endpoint its
    # request goes to. Every alert journaled before, and any an older release still running inserts
    # without naming it, is a margin call.
    (9, "ALTER TABLE alerts ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'margin-balance'"),
    # Wrong-secret lockouts in the journal, where ``flask lockouts clear`` reaches them while the
    # service runs (they were in its memory). An older release still running keeps its own in memory.
    (
        10,
        "CREATE TABLE lockouts (address TEXT PRIMARY KEY, failures TEXT NOT NULL DEFAULT '[]', "
        "last_failure REAL NOT NULL, locked_until REAL)",
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
