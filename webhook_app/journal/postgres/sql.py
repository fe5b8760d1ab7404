"""SQL pieces every PostgreSQL module of the journal shares."""

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
