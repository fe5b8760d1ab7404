"""The PostgreSQL journal: any number of instances on one database keep every guarantee.

- Duplicates and the daily cap: the check and the insert run under a transaction-scoped
  advisory lock on the dedup key and on (bot, direction), so under READ COMMITTED two
  instances cannot both pass a check and both insert.
- The queue: ``claim_due`` takes due alerts with FOR UPDATE SKIP LOCKED: one claimant each.
- Claims: fenced leases on the database's clock (``journal_claim``, ``confirm_send``); any live
  instance settles a lapsed one. Heartbeats in ``instances`` only say whose rate slots to close.
- OKX's rate budget: one ledger of slots per API key (``PostgresPacer``).
- Time is the database's (clock_timestamp()), never one host's.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from decimal import Decimal
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from ..config import redacted_url
from . import (
    CAP_STATES,
    COLUMNS,
    FINAL_STATES,
    INTERRUPTED_DETAIL,
    NEVER_SENT_DETAIL,
    NEVER_SENT_EXPIRED_DETAIL,
    Claim,
    DailyCapExceeded,
    Journal,
    JournalUnavailable,
    Record,
    answer_detail,
    iso_time,
)
from .postgres_activity import PostgresActivity
from .postgres_shared import PostgresLockoutStore, PostgresPacer
from .postgres_sql import (
    LOCK_BOT,
    LOCK_CAP,
    LOCK_CLAIM,
    LOCK_CLAIM_ACCOUNT,
    LOCK_DEDUP,
    LOCK_MIGRATION,
    LOCK_PACING,
    LOCK_RECOVERY,
    NOW,
)

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM alerts"
_RETURNING = f"RETURNING {', '.join(COLUMNS)}"

MIGRATIONS = (
    (
        1,
        f"""
CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    received_at DOUBLE PRECISION NOT NULL,
    dedup_key TEXT NOT NULL,
    algo_id TEXT NOT NULL,
    action TEXT NOT NULL,
    amount TEXT NOT NULL,
    request_body TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    okx_code TEXT,
    okx_msg TEXT,
    detail TEXT,
    secret_name TEXT,
    first_sent_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    latency_ms DOUBLE PRECISION,
    trader_id TEXT,
    claimed_by TEXT,
    not_before DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX alerts_dedup ON alerts (dedup_key, received_at);
CREATE INDEX alerts_queue ON alerts (state, not_before, id);
CREATE INDEX alerts_received ON alerts (received_at);
CREATE INDEX alerts_bot ON alerts (algo_id, action, received_at);
CREATE INDEX alerts_trader ON alerts (trader_id, id);
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL DEFAULT {NOW},
    heartbeat_at DOUBLE PRECISION NOT NULL DEFAULT {NOW}
);
CREATE TABLE okx_pacing (
    id BIGSERIAL PRIMARY KEY,
    account TEXT NOT NULL,
    instance TEXT,
    started_at DOUBLE PRECISION NOT NULL DEFAULT {NOW},
    ended_at DOUBLE PRECISION
);
CREATE INDEX okx_pacing_account ON okx_pacing (account, ended_at);
CREATE TABLE lockouts (
    address TEXT PRIMARY KEY,
    failures DOUBLE PRECISION[] NOT NULL DEFAULT '{{}}',
    locked_until DOUBLE PRECISION
);
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
""",
    ),
    # The two hot paths as functions: one round trip each instead of five or six.
    (
        2,
        f"""
CREATE FUNCTION journal_add(p_dedup_key TEXT, p_since DOUBLE PRECISION, p_algo_id TEXT, p_action TEXT,
    p_amount TEXT, p_body TEXT, p_expires DOUBLE PRECISION, p_state TEXT, p_secret_name TEXT, p_cap NUMERIC,
    p_trader_id TEXT, p_now DOUBLE PRECISION, p_cap_states TEXT[])
RETURNS TABLE (created BOOLEAN, used NUMERIC, alert_id BIGINT) LANGUAGE plpgsql AS $$
DECLARE v_id BIGINT; v_used NUMERIC; v_at DOUBLE PRECISION;
BEGIN
    -- Every writer of this key waits here, so the check and the insert are one step.
    PERFORM pg_advisory_xact_lock({LOCK_DEDUP}, hashtext(p_dedup_key));
    SELECT a.id INTO v_id FROM alerts a WHERE a.dedup_key = p_dedup_key AND a.received_at >= p_since
        AND a.state <> 'failed' ORDER BY a.id DESC LIMIT 1;
    IF v_id IS NOT NULL THEN
        RETURN QUERY SELECT FALSE, NULL::NUMERIC, v_id;
        RETURN;
    END IF;
    v_at := COALESCE(p_now, {NOW});
    IF p_cap IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock({LOCK_CAP}, hashtext(p_algo_id || ':' || p_action));
        -- numeric: exact, whatever the number of decimals
        SELECT COALESCE(sum(a.amount::NUMERIC), 0) INTO v_used FROM alerts a WHERE a.algo_id = p_algo_id
            AND a.action = p_action AND a.received_at >= v_at - 86400
            AND a.state = ANY(p_cap_states);
        IF v_used + p_amount::NUMERIC > p_cap THEN
            RETURN QUERY SELECT FALSE, v_used, NULL::BIGINT;
            RETURN;
        END IF;
    END IF;
    INSERT INTO alerts (received_at, dedup_key, algo_id, action, amount, request_body, expires_at, state,
        secret_name, trader_id)
    VALUES (v_at, p_dedup_key, p_algo_id, p_action, p_amount, p_body, p_expires, p_state, p_secret_name,
        p_trader_id)
    RETURNING id INTO v_id;
    RETURN QUERY SELECT TRUE, NULL::NUMERIC, v_id;
END $$;

CREATE FUNCTION pacing_acquire(p_account TEXT, p_instance TEXT, p_wanted INTEGER, p_limit INTEGER,
    p_window DOUBLE PRECISION)
RETURNS SETOF BIGINT LANGUAGE plpgsql AS $$
DECLARE v_now DOUBLE PRECISION; v_free INTEGER;
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_PACING}, hashtext(p_account));
    v_now := {NOW};
    -- No request is in flight longer than 60 s (the longest read time-out): one that seems to be
    -- lost its end to an error; count it as ended then, so the budget is never lost for good.
    UPDATE okx_pacing SET ended_at = started_at + 60
        WHERE account = p_account AND ended_at IS NULL AND started_at < v_now - 60;
    DELETE FROM okx_pacing WHERE account = p_account AND ended_at IS NOT NULL AND ended_at + p_window <= v_now;
    SELECT LEAST(p_wanted, p_limit - count(*)) INTO v_free FROM okx_pacing WHERE account = p_account;
    IF v_free > 0 THEN
        RETURN QUERY INSERT INTO okx_pacing (account, instance, started_at)
            SELECT p_account, p_instance, v_now FROM generate_series(1, v_free) RETURNING id;
    END IF;
END $$;
""",
    ),
    # What operators see and do: each alert's timeline, their findings and resends, refused requests.
    (
        3,
        """
ALTER TABLE alerts ADD COLUMN resolution TEXT, ADD COLUMN resent_from BIGINT, ADD COLUMN resent_as BIGINT;
CREATE TABLE alert_events (
    id BIGSERIAL PRIMARY KEY,
    alert_id BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);
CREATE INDEX alert_events_at ON alert_events (at);
CREATE TABLE refused (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
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
    started_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION
);
""",
    ),
    # Fenced claims: a lease by the database's clock, and when the attempt was cleared to go on the
    # wire. Claims go through one function that keeps each bot's alerts in order across instances.
    (
        4,
        f"""
ALTER TABLE alerts ADD COLUMN lease_until DOUBLE PRECISION, ADD COLUMN sent_at DOUBLE PRECISION;
CREATE INDEX alerts_open_bot ON alerts (algo_id, id) WHERE state IN ('queued', 'sending');
CREATE FUNCTION journal_claim(p_instance TEXT, p_limit INTEGER, p_now DOUBLE PRECISION, p_lease DOUBLE PRECISION)
RETURNS SETOF alerts LANGUAGE plpgsql AS $$
BEGIN
    -- One claimant at a time, and the claim below reads a snapshot taken after the lock: an
    -- earlier alert for the bot that another instance just claimed is seen as sending.
    PERFORM pg_advisory_xact_lock({LOCK_CLAIM}, 0);
    RETURN QUERY
    WITH picked AS MATERIALIZED (
        SELECT a.id FROM alerts a WHERE a.state = 'queued' AND a.not_before <= p_now AND a.expires_at >= p_now
            AND NOT EXISTS (SELECT 1 FROM alerts b WHERE b.algo_id = a.algo_id AND b.id <> a.id
                AND b.state IN ('queued', 'sending')
                AND (b.state = 'sending' OR (b.id < a.id AND b.expires_at >= p_now)))
        ORDER BY a.id LIMIT p_limit FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE alerts SET state = 'sending', attempts = attempts + 1, claimed_by = p_instance, sent_at = NULL,
            lease_until = {NOW} + p_lease,
            first_sent_at = COALESCE(first_sent_at, GREATEST(p_now, received_at))  -- never before it arrived
        FROM picked WHERE alerts.id = picked.id RETURNING alerts.*),
    logged AS (
        INSERT INTO alert_events (alert_id, at, kind, detail)
        SELECT c.id, {NOW}, 'claimed', format('attempt %s, claimed by %s', c.attempts, c.claimed_by)  -- claimed_detail
        FROM claimed c)
    SELECT * FROM claimed;
END $$;

-- Inserts for one bot take their ids in the order they commit (a per-bot lock), so "earlier" in
-- the claim above means received earlier; the rest is migration 2's journal_add, repeated because
-- a migration that ran on deployed databases is never edited.
CREATE OR REPLACE FUNCTION journal_add(p_dedup_key TEXT, p_since DOUBLE PRECISION, p_algo_id TEXT, p_action TEXT,
    p_amount TEXT, p_body TEXT, p_expires DOUBLE PRECISION, p_state TEXT, p_secret_name TEXT, p_cap NUMERIC,
    p_trader_id TEXT, p_now DOUBLE PRECISION, p_cap_states TEXT[])
RETURNS TABLE (created BOOLEAN, used NUMERIC, alert_id BIGINT) LANGUAGE plpgsql AS $$
DECLARE v_id BIGINT; v_used NUMERIC; v_at DOUBLE PRECISION;
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_DEDUP}, hashtext(p_dedup_key));
    SELECT a.id INTO v_id FROM alerts a WHERE a.dedup_key = p_dedup_key AND a.received_at >= p_since
        AND a.state <> 'failed' ORDER BY a.id DESC LIMIT 1;
    IF v_id IS NOT NULL THEN
        RETURN QUERY SELECT FALSE, NULL::NUMERIC, v_id;
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock({LOCK_BOT}, hashtext(p_algo_id));
    v_at := COALESCE(p_now, {NOW});
    IF p_cap IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock({LOCK_CAP}, hashtext(p_algo_id || ':' || p_action));
        SELECT COALESCE(sum(a.amount::NUMERIC), 0) INTO v_used FROM alerts a WHERE a.algo_id = p_algo_id
            AND a.action = p_action AND a.received_at >= v_at - 86400
            AND a.state = ANY(p_cap_states);
        IF v_used + p_amount::NUMERIC > p_cap THEN
            RETURN QUERY SELECT FALSE, v_used, NULL::BIGINT;
            RETURN;
        END IF;
    END IF;
    INSERT INTO alerts (received_at, dedup_key, algo_id, action, amount, request_body, expires_at, state,
        secret_name, trader_id)
    VALUES (v_at, p_dedup_key, p_algo_id, p_action, p_amount, p_body, p_expires, p_state, p_secret_name,
        p_trader_id)
    RETURNING id INTO v_id;
    RETURN QUERY SELECT TRUE, NULL::NUMERIC, v_id;
END $$;

-- No request is under way longer than the longest lease (3 + 10 + 60 + 5 s): a slot still open
-- after 90 s lost its end to an error, and counts as ended then.
CREATE OR REPLACE FUNCTION pacing_acquire(p_account TEXT, p_instance TEXT, p_wanted INTEGER, p_limit INTEGER,
    p_window DOUBLE PRECISION)
RETURNS SETOF BIGINT LANGUAGE plpgsql AS $$
DECLARE v_now DOUBLE PRECISION; v_free INTEGER;
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_PACING}, hashtext(p_account));
    v_now := {NOW};
    UPDATE okx_pacing SET ended_at = started_at + 90
        WHERE account = p_account AND ended_at IS NULL AND started_at < v_now - 90;
    DELETE FROM okx_pacing WHERE account = p_account AND ended_at IS NOT NULL AND ended_at + p_window <= v_now;
    SELECT LEAST(p_wanted, p_limit - count(*)) INTO v_free FROM okx_pacing WHERE account = p_account;
    IF v_free > 0 THEN
        RETURN QUERY INSERT INTO okx_pacing (account, instance, started_at)
            SELECT p_account, p_instance, v_now FROM generate_series(1, v_free) RETURNING id;
    END IF;
END $$;
""",
    ),
    # OKX's own records on an unknown outcome, and the verdict proposed from them. Nullable, no default:
    # a catalogue change, no rewrite, and an older release still running reads and writes as before
    # (journal_claim returns SETOF alerts, resolved at each call: the new columns come with it and
    # callers name the columns they read).
    (5, "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS evidence TEXT, ADD COLUMN IF NOT EXISTS proposal TEXT;"),
    # Several OKX accounts: each alert names the one that sends it. A constant default is a catalogue
    # change (PostgreSQL 11+), no rewrite: every earlier alert, and every alert an older release still
    # running inserts through migration 4's journal_add, is "default", the one account there was. This
    # release calls the overloads below, one more argument each. The older release's journal_claim now
    # claims account default's alerts only: it knows one key, and must never send another account's
    # alerts with it while a deploy that adds OKX_ACCOUNTS overlaps it.
    # alerts_account serves the operator's filter; claims find the few queued alerts by alerts_queue.
    (
        6,
        f"""
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS account TEXT NOT NULL DEFAULT 'default';
CREATE INDEX alerts_account ON alerts (account, id);

-- Migration 4's journal_add, storing the account.
CREATE FUNCTION journal_add(p_dedup_key TEXT, p_since DOUBLE PRECISION, p_algo_id TEXT, p_action TEXT,
    p_amount TEXT, p_body TEXT, p_expires DOUBLE PRECISION, p_state TEXT, p_secret_name TEXT, p_cap NUMERIC,
    p_trader_id TEXT, p_now DOUBLE PRECISION, p_cap_states TEXT[], p_account TEXT)
RETURNS TABLE (created BOOLEAN, used NUMERIC, alert_id BIGINT) LANGUAGE plpgsql AS $$
DECLARE v_id BIGINT; v_used NUMERIC; v_at DOUBLE PRECISION;
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_DEDUP}, hashtext(p_dedup_key));
    SELECT a.id INTO v_id FROM alerts a WHERE a.dedup_key = p_dedup_key AND a.received_at >= p_since
        AND a.state <> 'failed' ORDER BY a.id DESC LIMIT 1;
    IF v_id IS NOT NULL THEN
        RETURN QUERY SELECT FALSE, NULL::NUMERIC, v_id;
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock({LOCK_BOT}, hashtext(p_algo_id));
    v_at := COALESCE(p_now, {NOW});
    IF p_cap IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock({LOCK_CAP}, hashtext(p_algo_id || ':' || p_action));
        SELECT COALESCE(sum(a.amount::NUMERIC), 0) INTO v_used FROM alerts a WHERE a.algo_id = p_algo_id
            AND a.action = p_action AND a.received_at >= v_at - 86400
            AND a.state = ANY(p_cap_states);
        IF v_used + p_amount::NUMERIC > p_cap THEN
            RETURN QUERY SELECT FALSE, v_used, NULL::BIGINT;
            RETURN;
        END IF;
    END IF;
    INSERT INTO alerts (received_at, dedup_key, algo_id, action, amount, request_body, expires_at, state,
        secret_name, trader_id, account)
    VALUES (v_at, p_dedup_key, p_algo_id, p_action, p_amount, p_body, p_expires, p_state, p_secret_name,
        p_trader_id, p_account)
    RETURNING id INTO v_id;
    RETURN QUERY SELECT TRUE, NULL::NUMERIC, v_id;
END $$;

-- Migration 4's journal_claim, for one account (p_account) or, NULL, for every account as before.
-- Claims that could take alerts of one bot must run one at a time (see migration 4); a bot belongs
-- to one account, so only claims for the same account, or for every account, need to: one for an
-- account holds the claim lock shared and its account's lock exclusively, and claims for two
-- accounts never wait for each other; one for every account (an older release's, too) holds the
-- claim lock exclusively and waits for, and holds up, all of them for the moment it takes.
CREATE FUNCTION journal_claim(p_instance TEXT, p_limit INTEGER, p_now DOUBLE PRECISION, p_lease DOUBLE PRECISION,
    p_account TEXT)
RETURNS SETOF alerts LANGUAGE plpgsql AS $$
BEGIN
    IF p_account IS NULL THEN
        PERFORM pg_advisory_xact_lock({LOCK_CLAIM}, 0);
    ELSE
        PERFORM pg_advisory_xact_lock_shared({LOCK_CLAIM}, 0);
        PERFORM pg_advisory_xact_lock({LOCK_CLAIM_ACCOUNT}, hashtext(p_account));
    END IF;
    RETURN QUERY
    WITH picked AS MATERIALIZED (
        SELECT a.id FROM alerts a WHERE a.state = 'queued' AND a.not_before <= p_now AND a.expires_at >= p_now
            AND (p_account IS NULL OR a.account = p_account)
            AND NOT EXISTS (SELECT 1 FROM alerts b WHERE b.algo_id = a.algo_id AND b.id <> a.id
                AND b.state IN ('queued', 'sending')
                AND (b.state = 'sending' OR (b.id < a.id AND b.expires_at >= p_now)))
        ORDER BY a.id LIMIT p_limit FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE alerts SET state = 'sending', attempts = attempts + 1, claimed_by = p_instance, sent_at = NULL,
            lease_until = {NOW} + p_lease,
            first_sent_at = COALESCE(first_sent_at, GREATEST(p_now, received_at))  -- never before it arrived
        FROM picked WHERE alerts.id = picked.id RETURNING alerts.*),
    logged AS (
        INSERT INTO alert_events (alert_id, at, kind, detail)
        SELECT c.id, {NOW}, 'claimed', format('attempt %s, claimed by %s', c.attempts, c.claimed_by)  -- claimed_detail
        FROM claimed c)
    SELECT * FROM claimed;
END $$;

-- An older release's claims: account default's alerts only, under that account's lock.
CREATE OR REPLACE FUNCTION journal_claim(p_instance TEXT, p_limit INTEGER, p_now DOUBLE PRECISION,
    p_lease DOUBLE PRECISION)
RETURNS SETOF alerts LANGUAGE sql AS $$
    SELECT * FROM journal_claim(p_instance, p_limit, p_now, p_lease, 'default')
$$;
""",
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
# Its bot's turn: no other alert for the bot is being sent, and no earlier one is queued inside its lag.
_BOTS_TURN = (
    "NOT EXISTS (SELECT 1 FROM alerts b WHERE b.algo_id = alerts.algo_id AND b.id <> alerts.id "
    "AND b.state IN ('queued', 'sending') AND (b.state = 'sending' OR (b.id < alerts.id AND b.expires_at >= clock.t)))"
)
# The current attempt's claim, as a fence on every write after a send.
_CLAIMED = "id = %s AND state = 'sending' AND claimed_by = %s AND attempts = %s"


def _configure(conn) -> None:
    # A process frozen inside a transaction (a pause, a cut network) must not hold its locks, and with
    # them every other instance's recovery or hold-off, for longer than this: the server ends it.
    conn.execute("SET idle_in_transaction_session_timeout = '5s'")


def connection_url(url: str) -> str:
    """PaaS add-ons write postgres://; libpq takes both, but say postgresql:// everywhere."""
    return "postgresql://" + url[len("postgres://") :] if url.startswith("postgres://") else url


class PostgresJournal(PostgresActivity, Journal):
    shared = True
    poll_interval = 0.1  # other instances queue alerts too: look for them often

    def __init__(self, url: str, pool_size: int = 10, connect_timeout: float = 5.0):
        self.url = connection_url(url)
        self.display_url = redacted_url(self.url)
        # application_name: an operator (or a fault test) can tell which process a session belongs to.
        self._connect_kwargs = {
            "autocommit": True,
            "connect_timeout": max(int(connect_timeout), 1),
            "application_name": f"okx-relay:{os.getpid()}",
        }
        self._heartbeat_conn: psycopg.Connection | None = None
        self._heartbeat_lock = threading.Lock()
        # One plain connection first: libpq's answer names the cause at once (refused, no such
        # host or database, authentication, TLS), where the pools would retry it for
        # ``connect_timeout`` seconds and log each try.
        try:
            psycopg.connect(self.url, **self._connect_kwargs).close()
        except psycopg.Error as exc:
            raise JournalUnavailable(f"cannot open the journal at {self.display_url}: {self._cause(exc)}") from None
        # Should the pools still fail (the server went away since), the start says so once, not per retry.
        pool_notices = logging.getLogger("psycopg.pool")
        level = pool_notices.level
        pool_notices.setLevel(logging.ERROR)
        try:
            self._pool = ConnectionPool(
                self.url,
                min_size=1,
                max_size=pool_size,
                kwargs=self._connect_kwargs,
                configure=_configure,
                # A connection the server ended (a restart, a fail-over, pg_terminate_backend) is
                # replaced when it is handed out, not discovered by the write that needed it.
                check=ConnectionPool.check_connection,
                timeout=connect_timeout,
                open=False,
            )
            self._pool.open(wait=True, timeout=connect_timeout)
            # Writes whose loss in a database crash is safe skip the commit's WAL flush: an outcome
            # not recorded leaves the alert "sending", which reads as unknown, never resent; a pacing
            # slot is only ever over-counted. What must survive (the alert, its claim) uses _pool.
            self._lazy_pool = ConnectionPool(
                self.url,
                min_size=1,
                max_size=pool_size,
                kwargs=self._connect_kwargs,
                configure=lambda conn: (_configure(conn), conn.execute("SET synchronous_commit TO off")),
                check=ConnectionPool.check_connection,
                timeout=connect_timeout,
                open=False,
            )
            self._lazy_pool.open(wait=True, timeout=connect_timeout)
            self.migrate()
        except Exception as exc:  # psycopg errors, OS errors, and the pool's own PoolTimeout
            self._close_quietly()
            raise JournalUnavailable(f"cannot open the journal at {self.display_url}: {self._describe(exc)}") from None
        finally:
            pool_notices.setLevel(level)

    def _cause(self, exc: BaseException) -> str:
        """A failed first connection, in words: its cause named where libpq's message tells it."""
        text = str(exc)
        lowered = text.lower()
        parts = urlsplit(self.url)
        where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
        if "connection refused" in lowered:
            return f"connection refused at {where}: is PostgreSQL running there, on that port?"
        if "could not translate host name" in lowered or "failed to resolve host" in lowered:
            return f"host not found: {parts.hostname!r} does not resolve"
        if "password authentication failed" in lowered or "no password supplied" in lowered:
            return "authentication failed: check the user name and password in DATABASE_URL"
        if "no encryption" in lowered or ("ssl" in lowered and "off" in lowered and "pg_hba.conf" in lowered):
            return "the server requires TLS: add ?sslmode=require to DATABASE_URL"
        if "does not support ssl" in lowered:
            return f"TLS required (sslmode in DATABASE_URL) but the server at {where} does not offer it"
        if "does not exist" in lowered and "database" in lowered:
            first = next((line for line in text.splitlines() if "does not exist" in line), text)
            return f"{first.split('FATAL:')[-1].strip()} on {where}"
        if "timeout expired" in lowered:
            return f"no answer from {where} within {self._connect_kwargs['connect_timeout']} s"
        return self._describe(exc)

    def _describe(self, exc: BaseException) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text

    def _close_quietly(self) -> None:
        for pool in (getattr(self, "_pool", None), getattr(self, "_lazy_pool", None)):
            try:
                if pool is not None:
                    pool.close()
            except Exception:
                pass

    def migrate(self) -> int:
        """Bring the database to SCHEMA_VERSION under a session advisory lock, so instances
        starting together (or the release phase beside them) do not race. Returns the version."""
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s, 0)", (LOCK_MIGRATION,))
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
                version = row[0] or 0
                if version > SCHEMA_VERSION:
                    raise JournalUnavailable(
                        f"the database is at schema version {version}, newer than this release's "
                        f"{SCHEMA_VERSION}: run the newer release"
                    )
                for target, script in MIGRATIONS:
                    if target > version:
                        with conn.transaction():
                            conn.execute(script)
                            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (target,))
                        version = target
                return version
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, 0)", (LOCK_MIGRATION,))

    def schema_version(self) -> int:
        return self._one("SELECT max(version) FROM schema_version")[0]

    def close(self) -> None:
        self._pool.close()
        self._lazy_pool.close()
        with self._heartbeat_lock:
            if self._heartbeat_conn is not None:
                self._heartbeat_conn.close()

    def now(self) -> float:
        return self._one(f"SELECT {NOW}")[0]

    # -- alerts ---------------------------------------------------------------------------

    def add(
        self,
        *,
        dedup_key,
        dedup_since,
        algo_id,
        action,
        amount,
        request_body,
        expires_at,
        state="queued",
        secret_name=None,
        daily_cap: Decimal | None = None,
        trader_id=None,
        now=None,
        cap_states=CAP_STATES,
        account="default",
    ) -> tuple[Record, bool]:
        # journal_add (migration 6) checks and inserts under advisory locks, in one statement.
        created, used, alert_id = self._one(
            "SELECT created, used, alert_id FROM journal_add(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                dedup_key,
                dedup_since,
                algo_id,
                action,
                amount,
                request_body,
                expires_at,
                state,
                secret_name,
                daily_cap,
                trader_id,
                now,
                list(cap_states),
                account,
            ),
        )
        if alert_id is None:
            raise DailyCapExceeded(daily_cap, Decimal(used))
        return self.get(alert_id), created

    def get(self, alert_id: int) -> Record | None:
        if not 0 <= alert_id < 2**63:
            return None
        row = self._one(f"{_SELECT} WHERE id = %s", (alert_id,))
        return Record(*row) if row else None

    def recent(self, limit=50, state=None, trader_id=None, algo_id=None, account=None) -> list[Record]:
        filters = [
            (c, v)
            for c, v in (("state", state), ("trader_id", trader_id), ("algo_id", algo_id), ("account", account))
            if v is not None
        ]
        where = " AND ".join(f"{column} = %s" for column, _ in filters)
        rows = self._all(
            f"{_SELECT} {'WHERE ' + where if where else ''} ORDER BY id DESC LIMIT %s",
            (*[value for _, value in filters], limit),
        )
        return [Record(*row) for row in rows]

    def count_due(
        self, now: float | None = None, before_id: int | None = None, in_turn: bool = True, account: str | None = None
    ) -> int:
        of_account = "" if account is None else "AND account = %s"
        return self._one(
            f"SELECT count(*) FROM alerts, (SELECT COALESCE(%s, {NOW}) AS t) clock WHERE state = 'queued' "
            f"AND not_before <= clock.t AND expires_at >= clock.t AND id < %s {of_account} "
            f"{'AND ' + _BOTS_TURN if in_turn else ''}",
            (now, 2**63 - 1 if before_id is None else before_id, *(() if account is None else (account,))),
        )[0]

    def next_due_at(self) -> float | None:
        # Alerts waiting behind one that is being sent have no time of their own: its outcome wakes them.
        return self._one(
            f"SELECT min(not_before) FROM alerts, (SELECT {NOW} AS t) clock WHERE state = 'queued' "
            f"AND expires_at >= clock.t AND {_BOTS_TURN}"
        )[0]

    def claim_due(
        self, instance: str, limit: int, now: float, lease: float = 30.0, account: str | None = None
    ) -> list[Record]:
        if limit <= 0:
            return []
        # journal_claim (migration 6): the claim and its timeline entries, one statement, one round trip.
        rows = self._all(
            f"SELECT {', '.join(COLUMNS)} FROM journal_claim(%s, %s, %s, %s, %s)",
            (instance, limit, now, lease, account),
        )
        return sorted((Record(*row) for row in rows), key=lambda r: r.id)

    def confirm_send(self, claim: Claim, evidence: str | None = None) -> bool:
        # Durable (_pool): once this says yes the request may leave, and a crash must not forget that it may have.
        return bool(
            self._statement(
                f"UPDATE alerts SET sent_at = {NOW}, evidence = %s "
                f"WHERE {_CLAIMED} AND lease_until > {NOW} AND expires_at >= {NOW}",
                (evidence, claim.alert_id, claim.instance, claim.attempt),
            ).rowcount
        )

    def note(self, alert_id: int, kind: str, detail: str) -> None:
        self._statement(
            f"INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (%s, {NOW}, %s, %s)",
            (alert_id, kind, detail),
            durable=False,
        )

    def expire_overdue(self, now: float) -> list[Record]:
        def step(conn):
            rows = conn.execute(
                "WITH picked AS MATERIALIZED (SELECT id FROM alerts WHERE state = 'queued' AND expires_at < %s "
                "FOR UPDATE SKIP LOCKED) UPDATE alerts SET state = 'expired', finished_at = %s, "
                "detail = 'too old to send: it waited past its lag; not sent' FROM picked WHERE alerts.id = picked.id "
                f"RETURNING {', '.join('alerts.' + c for c in COLUMNS)}",
                (now, now),
            ).fetchall()
            records = [Record(*row) for row in rows]
            _log_events(conn, [(r.id, "expired", r.detail) for r in records])
            return records

        return self._transaction(step, durable=False)

    def unclaim(self, claims: list[Claim]) -> None:
        for claim in claims:
            self._statement(
                "WITH undone AS (UPDATE alerts SET state = 'queued', attempts = attempts - 1, claimed_by = NULL, "
                "lease_until = NULL, first_sent_at = CASE WHEN attempts = 1 THEN NULL ELSE first_sent_at END "
                f"WHERE {_CLAIMED} RETURNING id) "
                f"INSERT INTO alert_events (alert_id, at, kind, detail) SELECT id, {NOW}, 'unclaimed', "
                "'back in the queue: the send never started' FROM undone",
                (claim.alert_id, claim.instance, claim.attempt),
            )

    def requeue(self, alert_id: int, okx_code, okx_msg, detail: str, not_before: float, claim=None) -> bool:
        retry = f"{answer_detail('not executed', okx_code, okx_msg, detail)}; due again {iso_time(not_before)}"
        fence, fence_params = _fence(alert_id, claim)
        return bool(
            self._statement(
                "WITH requeued AS (UPDATE alerts SET state = 'queued', okx_code = %s, okx_msg = %s, detail = %s, "
                f"not_before = %s, lease_until = NULL WHERE {fence} RETURNING id) "
                f"INSERT INTO alert_events (alert_id, at, kind, detail) SELECT id, {NOW}, 'retry', %s FROM requeued",
                (okx_code, okx_msg, detail, not_before, *fence_params, retry),
            ).rowcount
        )

    def finish(
        self, alert_id, state, *, okx_code=None, okx_msg=None, detail=None, latency_ms=None, now=None, claim=None
    ):
        assert state in FINAL_STATES, state
        fence, fence_params = _fence(alert_id, claim)
        if claim is None:
            fence = "id = %s"
        row = self._transaction(
            lambda conn: conn.execute(
                "WITH done AS (UPDATE alerts SET state = %s, okx_code = COALESCE(%s, okx_code), "
                "okx_msg = COALESCE(%s, okx_msg), detail = %s, latency_ms = COALESCE(%s, latency_ms), "
                f"finished_at = COALESCE(%s, {NOW}), lease_until = NULL WHERE {fence} {_RETURNING}), "
                "logged AS (INSERT INTO alert_events (alert_id, at, kind, detail) "
                f"SELECT id, finished_at, %s, %s FROM done) SELECT {', '.join(COLUMNS)} FROM done",
                (
                    state,
                    okx_code,
                    okx_msg,
                    detail,
                    latency_ms,
                    now,
                    *fence_params,
                    state,
                    answer_detail(state, okx_code, okx_msg, detail),
                ),
            ).fetchone(),
            atomic=False,
            durable=False,
        )
        return Record(*row) if row else None

    def prune(self, before: float) -> int:
        def step(conn):
            removed = conn.execute(
                "DELETE FROM alerts WHERE received_at < %s AND state NOT IN ('queued', 'sending')", (before,)
            ).rowcount
            conn.execute(
                "DELETE FROM alert_events e WHERE e.at < %s "
                "AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.id = e.alert_id)",
                (before,),
            )
            return removed

        return self._transaction(step)

    # -- instances ------------------------------------------------------------------------

    def register(self, instance: str) -> None:
        self._transaction(
            lambda conn: conn.execute(
                f"INSERT INTO instances (id, host) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET heartbeat_at = {NOW}",
                (instance, socket.gethostname()[:200]),
            ),
            atomic=False,
        )

    def heartbeat(self, instance: str) -> None:
        # On a connection of its own: a pool busy with sends must never make a live instance look dead.
        with self._heartbeat_lock:
            try:
                if self._heartbeat_conn is None or self._heartbeat_conn.closed:
                    self._heartbeat_conn = psycopg.connect(self.url, **self._connect_kwargs)
                self._heartbeat_conn.execute(
                    f"INSERT INTO instances (id, host) VALUES (%s, %s) "
                    f"ON CONFLICT (id) DO UPDATE SET heartbeat_at = {NOW}",  # back after a long pause: alive again
                    (instance, socket.gethostname()[:200]),
                )
            except (psycopg.Error, OSError) as exc:
                if self._heartbeat_conn is not None:
                    self._heartbeat_conn.close()
                self._heartbeat_conn = None
                raise JournalUnavailable(f"journal error: {self._describe(exc)}") from None

    def deregister(self, instance: str) -> None:
        self._transaction(lambda conn: conn.execute("DELETE FROM instances WHERE id = %s", (instance,)), atomic=False)

    def recover(self, instance: str, dead_after: float, lease: float = 30.0) -> list[Record]:
        # Only a lapsed lease, by the database's clock, ends a claim: an instance that merely looks dead
        # (a paused process) may still hold a current claim, and its sender checks it before sending.
        # A claim without a lease was made by an earlier release: it lapses when its claimant stops
        # heartbeating, as that release's own rule says (a deploy that overlaps both keeps working).
        lapsed = (
            f"state = 'sending' AND (lease_until < {NOW} OR (lease_until IS NULL "
            "AND (claimed_by IS NULL OR claimed_by NOT IN (SELECT id FROM instances))))"
        )

        def step(conn):
            # One instance at a time, and never waiting: another one recovering now does the same work.
            if not conn.execute("SELECT pg_try_advisory_xact_lock(%s, 0)", (LOCK_RECOVERY,)).fetchone()[0]:
                return []
            conn.execute(f"DELETE FROM instances WHERE heartbeat_at < {NOW} - %s AND id != %s", (dead_after, instance))
            rows = conn.execute(
                f"UPDATE alerts SET state = 'unknown', finished_at = {NOW}, detail = %s, lease_until = NULL "
                f"WHERE {lapsed} AND (sent_at IS NOT NULL OR lease_until IS NULL) {_RETURNING}",
                (INTERRUPTED_DETAIL,),
            ).fetchall()
            rows += conn.execute(
                f"UPDATE alerts SET state = 'expired', finished_at = {NOW}, detail = %s, lease_until = NULL "
                f"WHERE {lapsed} AND expires_at < {NOW} {_RETURNING}",
                (NEVER_SENT_EXPIRED_DETAIL,),
            ).fetchall()
            rows += conn.execute(
                "UPDATE alerts SET state = 'queued', claimed_by = NULL, lease_until = NULL, detail = %s "
                f"WHERE {lapsed} {_RETURNING}",
                (NEVER_SENT_DETAIL,),
            ).fetchall()
            records = [Record(*row) for row in rows]
            _log_events(conn, [(r.id, r.state if r.final else "requeued", r.detail) for r in records])
            # A dead instance's requests: none leaves later than a lease after its slot was taken
            # (its sender gives up first), so the slot counts until then, never less.
            conn.execute(
                f"UPDATE okx_pacing SET ended_at = GREATEST({NOW}, started_at + %s) WHERE ended_at IS NULL "
                "AND (instance IS NULL OR instance NOT IN (SELECT id FROM instances))",
                (lease,),
            )
            return records

        return sorted(self._transaction(step), key=lambda r: r.id)

    # -- shared state -------------------------------------------------------------------------

    def stored_secret(self, name, make):
        def step(conn):
            conn.execute(
                "INSERT INTO settings (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (name, make())
            )
            return conn.execute("SELECT value FROM settings WHERE name = %s", (name,)).fetchone()[0]

        return self._transaction(step)

    def pacer(self, account: str, limit: int, window: float) -> PostgresPacer:
        return PostgresPacer(self, account, limit, window)

    def lockout_store(self) -> PostgresLockoutStore:
        return PostgresLockoutStore(self)

    # -- plumbing ---------------------------------------------------------------------------

    def _transaction(self, step, atomic: bool = True, durable: bool = True):
        """Run ``step`` on a pooled connection: in a transaction, or (``atomic=False``, for one
        statement, atomic by itself) without BEGIN and COMMIT, two round trips fewer. ``durable=False``:
        committed without waiting for the WAL flush (see ``_lazy_pool``)."""
        try:
            with (self._pool if durable else self._lazy_pool).connection() as conn:
                if not atomic:
                    return step(conn)
                with conn.transaction():
                    return step(conn)
        except (psycopg.Error, OSError) as exc:
            raise JournalUnavailable(f"journal error: {self._describe(exc)}") from None
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg_pool"):  # PoolTimeout: no connection in time
                raise JournalUnavailable(f"journal error: {self._describe(exc)}") from None
            raise

    def _one(self, sql, params=()):
        return self._transaction(lambda conn: conn.execute(sql, params).fetchone(), atomic=False)

    def _all(self, sql, params=()):
        return self._transaction(lambda conn: conn.execute(sql, params).fetchall(), atomic=False)

    def _statement(self, sql, params=(), durable: bool = True):
        return self._transaction(lambda conn: conn.execute(sql, params), atomic=False, durable=durable)


def _fence(alert_id: int, claim: Claim | None) -> tuple[str, tuple]:
    """The WHERE clause that makes a write conditional on a claim (or on the alert still sending)."""
    if claim is None:
        return "id = %s AND state = 'sending'", (alert_id,)
    return _CLAIMED, (claim.alert_id, claim.instance, claim.attempt)


def _log_events(conn, events: list[tuple[int, str, str]]) -> None:
    """Timeline entries, written in the transaction that made them true, at the database's time."""
    if events:
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO alert_events (alert_id, at, kind, detail) VALUES (%s, {NOW}, %s, %s)", events
            )
