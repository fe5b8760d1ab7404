"""SQL pieces every PostgreSQL module of the journal shares."""

# Time is the database's, never one host's.
NOW = "extract(epoch from clock_timestamp())::double precision"
# Advisory-lock namespaces (first key of pg_advisory_xact_lock(int, int)).
LOCK_DEDUP, LOCK_CAP, LOCK_PACING, LOCK_RECOVERY, LOCK_MIGRATION, LOCK_CLAIM, LOCK_BOT = (
    7101,
    7102,
    7103,
    7104,
    7105,
    7106,
    7107,
)
