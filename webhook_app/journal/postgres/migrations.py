"""The PostgreSQL journal's schema, one step per release. A step that has shipped is never
edited: it ran on deployed databases (tests pin each one's text by its hash)."""

from webhook_app.journal.postgres.sql import (
    LOCK_BOT,
    LOCK_CAP,
    LOCK_CLAIM,
    LOCK_CLAIM_ACCOUNT,
    LOCK_DEDUP,
    LOCK_PACING,
    NOW,
)
from webhook_app.journal.records import CLAIMED_AT_ONCE_FORMAT, CLAIMED_DETAIL_FORMAT

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
        SELECT c.id, {NOW}, 'claimed', format('{CLAIMED_DETAIL_FORMAT}', c.attempts, c.claimed_by)  -- claimed_detail
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
        SELECT c.id, {NOW}, 'claimed', format('{CLAIMED_DETAIL_FORMAT}', c.attempts, c.claimed_by)  -- claimed_detail
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
    # One round trip per accepted alert: migration 6's journal_add, under the same locks in the same
    # order, returning the whole row it stored (or the earlier alert a duplicate repeats, read under
    # the key's lock) instead of its id, so no read follows. A new name: an overload may not differ
    # by its result alone, and an older release still running keeps calling migration 4's and 6's
    # journal_add, left as they are. ``alert`` is of the table's type, resolved at each call: a
    # column a later migration adds comes with it, and callers name the columns they read. A cap
    # refusal returns ``alert`` NULL and what the cap has used.
    (
        7,
        f"""
CREATE FUNCTION journal_add_row(p_dedup_key TEXT, p_since DOUBLE PRECISION, p_algo_id TEXT, p_action TEXT,
    p_amount TEXT, p_body TEXT, p_expires DOUBLE PRECISION, p_state TEXT, p_secret_name TEXT, p_cap NUMERIC,
    p_trader_id TEXT, p_now DOUBLE PRECISION, p_cap_states TEXT[], p_account TEXT,
    OUT created BOOLEAN, OUT used NUMERIC, OUT alert alerts)
LANGUAGE plpgsql AS $$
DECLARE v_at DOUBLE PRECISION;
BEGIN
    created := FALSE;
    PERFORM pg_advisory_xact_lock({LOCK_DEDUP}, hashtext(p_dedup_key));
    SELECT a.* INTO alert FROM alerts a WHERE a.dedup_key = p_dedup_key AND a.received_at >= p_since
        AND a.state <> 'failed' ORDER BY a.id DESC LIMIT 1;
    IF FOUND THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock({LOCK_BOT}, hashtext(p_algo_id));
    v_at := COALESCE(p_now, {NOW});
    IF p_cap IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock({LOCK_CAP}, hashtext(p_algo_id || ':' || p_action));
        SELECT COALESCE(sum(a.amount::NUMERIC), 0) INTO used FROM alerts a WHERE a.algo_id = p_algo_id
            AND a.action = p_action AND a.received_at >= v_at - 86400
            AND a.state = ANY(p_cap_states);
        IF used + p_amount::NUMERIC > p_cap THEN
            RETURN;
        END IF;
        used := NULL;
    END IF;
    INSERT INTO alerts (received_at, dedup_key, algo_id, action, amount, request_body, expires_at, state,
        secret_name, trader_id, account)
    VALUES (v_at, p_dedup_key, p_algo_id, p_action, p_amount, p_body, p_expires, p_state, p_secret_name,
        p_trader_id, p_account)
    RETURNING * INTO alert;
    created := TRUE;
END $$;
""",
    ),
    # One round trip per look at an account's queue: what was count_due, next_due_at,
    # pacing_acquire, journal_claim and the giving back of unused slots, under the same locks in the
    # same order (the pacing ledger's, then the claims'), each alert returned with the slot it goes
    # on. The slots and the claims commit together, so no instance ever sees slots taken for alerts
    # not yet claimed. With ``p_read_ledger``, each claimed alert also gets a slot of that ledger (the
    # budget of the bot read before its send; NULL when it is spent). Every row carries what the look
    # found: ``due`` (in their bot's turn now), ``queued`` (all the account's queued alerts),
    # ``next_in`` (seconds until the next one in turn is due, NULL if none) and ``granted`` (slots
    # taken); a look that claims nothing returns one row with ``slot`` and ``alert`` NULL. ``p_now``
    # NULL: the database's clock. Functions of migrations 2-7 stay for an older release.
    (
        8,
        f"""
CREATE FUNCTION journal_claim_paced(p_instance TEXT, p_wanted INTEGER, p_now DOUBLE PRECISION,
    p_lease DOUBLE PRECISION, p_account TEXT, p_ledger TEXT, p_limit INTEGER, p_window DOUBLE PRECISION,
    p_read_ledger TEXT, p_read_limit INTEGER, p_read_window DOUBLE PRECISION,
    OUT due INTEGER, OUT queued INTEGER, OUT next_in DOUBLE PRECISION, OUT granted INTEGER,
    OUT slot BIGINT, OUT read_slot BIGINT, OUT alert alerts)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE v_slots BIGINT[]; v_reads BIGINT[]; v_claimed alerts[]; v_used INTEGER := 0;
BEGIN
    p_now := COALESCE(p_now, {NOW});
    granted := 0;
    -- In its bot's turn: no other alert for the bot is being sent, and no earlier one is queued inside its lag.
    SELECT count(*) FILTER (WHERE a.not_before <= p_now AND turn.come), count(*),
        min(a.not_before - p_now) FILTER (WHERE a.not_before > p_now AND turn.come)
        INTO due, queued, next_in
        FROM alerts a CROSS JOIN LATERAL (SELECT NOT EXISTS (SELECT 1 FROM alerts b
            WHERE b.algo_id = a.algo_id AND b.id <> a.id AND b.state IN ('queued', 'sending')
            AND (b.state = 'sending' OR (b.id < a.id AND b.expires_at >= p_now))) AS come) turn
        WHERE a.state = 'queued' AND a.expires_at >= p_now AND a.account = p_account;
    IF due > 0 AND p_wanted > 0 THEN
        v_slots := ARRAY(SELECT pacing_acquire(p_ledger, p_instance, LEAST(due, p_wanted), p_limit, p_window));
        granted := cardinality(v_slots);
    END IF;
    IF granted > 0 THEN
        v_claimed := ARRAY(SELECT c FROM journal_claim(p_instance, granted, p_now, p_lease, p_account) c
            ORDER BY c.id);
        v_used := cardinality(v_claimed);
        IF v_used < granted THEN
            DELETE FROM okx_pacing WHERE id = ANY(v_slots[v_used + 1:granted]);
        END IF;
        IF v_used > 0 AND p_read_ledger IS NOT NULL THEN
            v_reads := ARRAY(SELECT pacing_acquire(p_read_ledger, p_instance, v_used, p_read_limit, p_read_window));
        END IF;
        FOR i IN 1..v_used LOOP
            slot := v_slots[i];
            read_slot := v_reads[i];
            alert := v_claimed[i];
            RETURN NEXT;
        END LOOP;
    END IF;
    IF v_used = 0 THEN
        RETURN NEXT;
    END IF;
END $$;
""",
    ),
    # A rate slot carries its claim (the alert and the attempt it was taken for), so slots whose
    # claim's reply never reached the claimant (a connection cut after the commit) can be found by
    # the claimant, which knows which claims its senders hold, and given back within seconds
    # (``free_orphans``), not only by pacing_acquire's 90-second rule. Migration 8's
    # journal_claim_paced, same arguments and results, tagging each claimed alert's slots (both
    # ledgers') in the same statement. Nullable columns without a default: a catalogue change; an
    # older release still running calls the same function and ignores the tags.
    # And the accounts each instance sends for (``fail_unrouted``): NULL, as an older release leaves
    # it, stands for any account, so no alert is failed that a running instance may still send.
    (
        9,
        f"""
ALTER TABLE okx_pacing ADD COLUMN IF NOT EXISTS alert_id BIGINT, ADD COLUMN IF NOT EXISTS attempt INTEGER;
ALTER TABLE instances ADD COLUMN IF NOT EXISTS accounts TEXT[];
CREATE OR REPLACE FUNCTION journal_claim_paced(p_instance TEXT, p_wanted INTEGER, p_now DOUBLE PRECISION,
    p_lease DOUBLE PRECISION, p_account TEXT, p_ledger TEXT, p_limit INTEGER, p_window DOUBLE PRECISION,
    p_read_ledger TEXT, p_read_limit INTEGER, p_read_window DOUBLE PRECISION,
    OUT due INTEGER, OUT queued INTEGER, OUT next_in DOUBLE PRECISION, OUT granted INTEGER,
    OUT slot BIGINT, OUT read_slot BIGINT, OUT alert alerts)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE v_slots BIGINT[]; v_reads BIGINT[]; v_claimed alerts[]; v_used INTEGER := 0;
BEGIN
    p_now := COALESCE(p_now, {NOW});
    granted := 0;
    -- In its bot's turn: no other alert for the bot is being sent, and no earlier one is queued inside its lag.
    SELECT count(*) FILTER (WHERE a.not_before <= p_now AND turn.come), count(*),
        min(a.not_before - p_now) FILTER (WHERE a.not_before > p_now AND turn.come)
        INTO due, queued, next_in
        FROM alerts a CROSS JOIN LATERAL (SELECT NOT EXISTS (SELECT 1 FROM alerts b
            WHERE b.algo_id = a.algo_id AND b.id <> a.id AND b.state IN ('queued', 'sending')
            AND (b.state = 'sending' OR (b.id < a.id AND b.expires_at >= p_now))) AS come) turn
        WHERE a.state = 'queued' AND a.expires_at >= p_now AND a.account = p_account;
    IF due > 0 AND p_wanted > 0 THEN
        v_slots := ARRAY(SELECT pacing_acquire(p_ledger, p_instance, LEAST(due, p_wanted), p_limit, p_window));
        granted := cardinality(v_slots);
    END IF;
    IF granted > 0 THEN
        v_claimed := ARRAY(SELECT c FROM journal_claim(p_instance, granted, p_now, p_lease, p_account) c
            ORDER BY c.id);
        v_used := cardinality(v_claimed);
        IF v_used < granted THEN
            DELETE FROM okx_pacing WHERE id = ANY(v_slots[v_used + 1:granted]);
        END IF;
        IF v_used > 0 AND p_read_ledger IS NOT NULL THEN
            v_reads := ARRAY(SELECT pacing_acquire(p_read_ledger, p_instance, v_used, p_read_limit, p_read_window));
        END IF;
        -- Each slot carries its claim: the alert and its attempt.
        UPDATE okx_pacing p SET alert_id = (v_claimed[t.i]).id, attempt = (v_claimed[t.i]).attempts
            FROM generate_series(1, v_used) t(i) WHERE p.id = v_slots[t.i] OR p.id = v_reads[t.i];
        FOR i IN 1..v_used LOOP
            slot := v_slots[i];
            read_slot := v_reads[i];
            alert := v_claimed[i];
            RETURN NEXT;
        END LOOP;
    END IF;
    IF v_used = 0 THEN
        RETURN NEXT;
    END IF;
END $$;
""",
    ),
    # When a delivered notification named the alert (``told``): a sweep tells again the unknown and
    # failed alerts no notification was recorded for (one lost with its instance's memory). Nullable,
    # no default: a catalogue change; an older release still running leaves it NULL, so what it
    # finishes during a deploy may be told twice. The unknown and failed alerts already finished were
    # told by the release that finished them, as far as anyone can know: they count as told, so the
    # upgrade tells nothing again.
    (
        10,
        "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS told_at DOUBLE PRECISION; "
        "UPDATE alerts SET told_at = finished_at WHERE state IN ('unknown', 'failed') AND told_at IS NULL;",
    ),
    # Every signal-bot action, each OKX endpoint with its own rate budget: a claim takes one
    # endpoint's alerts (``p_actions``, the actions it carries; NULL: every action) against that
    # endpoint's ledger, under the account's claim lock as before. A bot's turn still counts every
    # alert of the bot, whatever its action: one bot, one order, across endpoints. Migration 6's
    # journal_claim and migration 9's journal_claim_paced become the NULL case of the new ones, so
    # an older release still running claims as it did (every action it knows is margin's).
    (
        11,
        f"""
CREATE FUNCTION journal_claim(p_instance TEXT, p_limit INTEGER, p_now DOUBLE PRECISION, p_lease DOUBLE PRECISION,
    p_account TEXT, p_actions TEXT[])
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
            AND (p_account IS NULL OR a.account = p_account) AND (p_actions IS NULL OR a.action = ANY(p_actions))
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
        SELECT c.id, {NOW}, 'claimed', format('{CLAIMED_DETAIL_FORMAT}', c.attempts, c.claimed_by)  -- claimed_detail
        FROM claimed c)
    SELECT * FROM claimed;
END $$;

CREATE OR REPLACE FUNCTION journal_claim(p_instance TEXT, p_limit INTEGER, p_now DOUBLE PRECISION,
    p_lease DOUBLE PRECISION, p_account TEXT)
RETURNS SETOF alerts LANGUAGE sql AS $$
    SELECT * FROM journal_claim(p_instance, p_limit, p_now, p_lease, p_account, NULL::TEXT[])
$$;

CREATE FUNCTION journal_claim_paced(p_instance TEXT, p_wanted INTEGER, p_now DOUBLE PRECISION,
    p_lease DOUBLE PRECISION, p_account TEXT, p_ledger TEXT, p_limit INTEGER, p_window DOUBLE PRECISION,
    p_read_ledger TEXT, p_read_limit INTEGER, p_read_window DOUBLE PRECISION, p_actions TEXT[],
    OUT due INTEGER, OUT queued INTEGER, OUT next_in DOUBLE PRECISION, OUT granted INTEGER,
    OUT slot BIGINT, OUT read_slot BIGINT, OUT alert alerts)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE v_slots BIGINT[]; v_reads BIGINT[]; v_claimed alerts[]; v_used INTEGER := 0;
BEGIN
    p_now := COALESCE(p_now, {NOW});
    granted := 0;
    -- In its bot's turn (whatever the other alerts' actions): no other alert for the bot is being
    -- sent, and no earlier one is queued inside its lag.
    SELECT count(*) FILTER (WHERE a.not_before <= p_now AND turn.come), count(*),
        min(a.not_before - p_now) FILTER (WHERE a.not_before > p_now AND turn.come)
        INTO due, queued, next_in
        FROM alerts a CROSS JOIN LATERAL (SELECT NOT EXISTS (SELECT 1 FROM alerts b
            WHERE b.algo_id = a.algo_id AND b.id <> a.id AND b.state IN ('queued', 'sending')
            AND (b.state = 'sending' OR (b.id < a.id AND b.expires_at >= p_now))) AS come) turn
        WHERE a.state = 'queued' AND a.expires_at >= p_now AND a.account = p_account
            AND (p_actions IS NULL OR a.action = ANY(p_actions));
    IF due > 0 AND p_wanted > 0 THEN
        v_slots := ARRAY(SELECT pacing_acquire(p_ledger, p_instance, LEAST(due, p_wanted), p_limit, p_window));
        granted := cardinality(v_slots);
    END IF;
    IF granted > 0 THEN
        v_claimed := ARRAY(SELECT c FROM journal_claim(p_instance, granted, p_now, p_lease, p_account, p_actions) c
            ORDER BY c.id);
        v_used := cardinality(v_claimed);
        IF v_used < granted THEN
            DELETE FROM okx_pacing WHERE id = ANY(v_slots[v_used + 1:granted]);
        END IF;
        IF v_used > 0 AND p_read_ledger IS NOT NULL THEN
            v_reads := ARRAY(SELECT pacing_acquire(p_read_ledger, p_instance, v_used, p_read_limit, p_read_window));
        END IF;
        -- Each slot carries its claim: the alert and its attempt.
        UPDATE okx_pacing p SET alert_id = (v_claimed[t.i]).id, attempt = (v_claimed[t.i]).attempts
            FROM generate_series(1, v_used) t(i) WHERE p.id = v_slots[t.i] OR p.id = v_reads[t.i];
        FOR i IN 1..v_used LOOP
            slot := v_slots[i];
            read_slot := v_reads[i];
            alert := v_claimed[i];
            RETURN NEXT;
        END LOOP;
    END IF;
    IF v_used = 0 THEN
        RETURN NEXT;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION journal_claim_paced(p_instance TEXT, p_wanted INTEGER, p_now DOUBLE PRECISION,
    p_lease DOUBLE PRECISION, p_account TEXT, p_ledger TEXT, p_limit INTEGER, p_window DOUBLE PRECISION,
    p_read_ledger TEXT, p_read_limit INTEGER, p_read_window DOUBLE PRECISION,
    OUT due INTEGER, OUT queued INTEGER, OUT next_in DOUBLE PRECISION, OUT granted INTEGER,
    OUT slot BIGINT, OUT read_slot BIGINT, OUT alert alerts)
RETURNS SETOF record LANGUAGE sql AS $$
    SELECT * FROM journal_claim_paced(p_instance, p_wanted, p_now, p_lease, p_account, p_ledger, p_limit,
        p_window, p_read_ledger, p_read_limit, p_read_window, NULL::TEXT[])
$$;
""",
    ),
    # Every signal-bot action: each alert names the OKX endpoint its request goes to ("margin-balance",
    # "sub-order", ...). A constant default is a catalogue change, no rewrite: every earlier alert, and
    # every alert an older release still running inserts through migration 7's journal_add_row (left as
    # it is, 14 arguments), is a margin call, the only action it knows. This release calls the overload
    # below: migration 7's, under the same locks in the same order, storing the endpoint too.
    (
        12,
        f"""
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS endpoint TEXT NOT NULL DEFAULT 'margin-balance';
CREATE FUNCTION journal_add_row(p_dedup_key TEXT, p_since DOUBLE PRECISION, p_algo_id TEXT, p_action TEXT,
    p_amount TEXT, p_body TEXT, p_expires DOUBLE PRECISION, p_state TEXT, p_secret_name TEXT, p_cap NUMERIC,
    p_trader_id TEXT, p_now DOUBLE PRECISION, p_cap_states TEXT[], p_account TEXT, p_endpoint TEXT,
    OUT created BOOLEAN, OUT used NUMERIC, OUT alert alerts)
LANGUAGE plpgsql AS $$
DECLARE v_at DOUBLE PRECISION;
BEGIN
    created := FALSE;
    PERFORM pg_advisory_xact_lock({LOCK_DEDUP}, hashtext(p_dedup_key));
    SELECT a.* INTO alert FROM alerts a WHERE a.dedup_key = p_dedup_key AND a.received_at >= p_since
        AND a.state <> 'failed' ORDER BY a.id DESC LIMIT 1;
    IF FOUND THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock({LOCK_BOT}, hashtext(p_algo_id));
    v_at := COALESCE(p_now, {NOW});
    IF p_cap IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock({LOCK_CAP}, hashtext(p_algo_id || ':' || p_action));
        SELECT COALESCE(sum(a.amount::NUMERIC), 0) INTO used FROM alerts a WHERE a.algo_id = p_algo_id
            AND a.action = p_action AND a.received_at >= v_at - 86400
            AND a.state = ANY(p_cap_states);
        IF used + p_amount::NUMERIC > p_cap THEN
            RETURN;
        END IF;
        used := NULL;
    END IF;
    INSERT INTO alerts (received_at, dedup_key, algo_id, action, amount, request_body, expires_at, state,
        secret_name, trader_id, account, endpoint)
    VALUES (v_at, p_dedup_key, p_algo_id, p_action, p_amount, p_body, p_expires, p_state, p_secret_name,
        p_trader_id, p_account, p_endpoint)
    RETURNING * INTO alert;
    created := TRUE;
END $$;
""",
    ),
    # An alert that can go at once: accepted, claimed and confirmed in one statement (one durable
    # write before the first byte leaves), then handed to a sender. It goes at once only in its bot's
    # turn, with nothing due ahead of it in its queue (account and endpoint), a slot of its endpoint's
    # budget free (its lock free within 100 ms: a paused holder never holds a reply), and a claimant that
    # asked (p_instance); otherwise it is left queued, exactly as migration 12's journal_add_row leaves
    # it, for the dispatcher. ``receipt`` names the request that claimed it, so that request, should
    # the statement's reply be lost, can find its claim and put it back (no sender ever had it).
    # No claim lock is needed: an earlier alert of the bot was inserted and committed before this
    # one (the bot's lock in journal_add_row), so this statement sees it queued or sending; and a
    # later one waits on that lock until this commit, then sees this one sending.
    (
        13,
        f"""
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS receipt TEXT;

-- A budget's lock (as pacing_acquire takes it), waited for at most p_wait: FALSE when it was not free
-- by then. Held to the end of the transaction, as pacing_acquire's own.
CREATE FUNCTION budget_lock_within(p_ledger TEXT, p_wait TEXT) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE v_was TEXT := current_setting('lock_timeout');
BEGIN
    PERFORM set_config('lock_timeout', p_wait, true);
    BEGIN
        PERFORM pg_advisory_xact_lock({LOCK_PACING}, hashtext(p_ledger));
    EXCEPTION WHEN lock_not_available THEN
        PERFORM set_config('lock_timeout', v_was, true);
        RETURN FALSE;
    END;
    PERFORM set_config('lock_timeout', v_was, true);
    RETURN TRUE;
END $$;

CREATE FUNCTION journal_add_claimed(p_dedup_key TEXT, p_since DOUBLE PRECISION, p_algo_id TEXT, p_action TEXT,
    p_amount TEXT, p_body TEXT, p_expires DOUBLE PRECISION, p_state TEXT, p_secret_name TEXT, p_cap NUMERIC,
    p_trader_id TEXT, p_now DOUBLE PRECISION, p_cap_states TEXT[], p_account TEXT, p_endpoint TEXT,
    p_instance TEXT, p_lease DOUBLE PRECISION, p_ledger TEXT, p_limit INTEGER, p_window DOUBLE PRECISION,
    p_read_ledger TEXT, p_read_limit INTEGER, p_read_window DOUBLE PRECISION, p_actions TEXT[], p_evidence TEXT,
    p_receipt TEXT, OUT created BOOLEAN, OUT used NUMERIC, OUT alert alerts, OUT slot BIGINT, OUT read_slot BIGINT)
LANGUAGE plpgsql AS $$
DECLARE v_now DOUBLE PRECISION; v_added RECORD;
BEGIN
    SELECT * INTO v_added FROM journal_add_row(p_dedup_key, p_since, p_algo_id, p_action, p_amount, p_body,
        p_expires, p_state, p_secret_name, p_cap, p_trader_id, p_now, p_cap_states, p_account, p_endpoint);
    created := v_added.created;
    used := v_added.used;
    alert := v_added.alert;
    IF NOT created OR p_instance IS NULL OR (alert).state <> 'queued' THEN
        RETURN;
    END IF;
    v_now := {NOW};
    IF (alert).expires_at < v_now OR EXISTS (SELECT 1 FROM alerts b WHERE b.algo_id = p_algo_id
            AND b.id <> (alert).id AND b.state IN ('queued', 'sending')
            AND (b.state = 'sending' OR (b.id < (alert).id AND b.expires_at >= v_now))) THEN
        RETURN;  -- not its bot's turn
    END IF;
    IF EXISTS (SELECT 1 FROM alerts q WHERE q.state = 'queued' AND q.account = p_account AND q.id < (alert).id
            AND q.action = ANY(p_actions) AND q.not_before <= v_now AND q.expires_at >= v_now
            AND NOT EXISTS (SELECT 1 FROM alerts b WHERE b.algo_id = q.algo_id AND b.id <> q.id
                AND b.state IN ('queued', 'sending')
                AND (b.state = 'sending' OR (b.id < q.id AND b.expires_at >= v_now)))) THEN
        RETURN;  -- others are due first: it waits its turn in the queue
    END IF;
    IF NOT budget_lock_within(p_ledger, '100ms') THEN
        RETURN;  -- the budget's lock is held longer than a claim takes (a paused holder): the dispatcher sends it
    END IF;
    SELECT s INTO slot FROM pacing_acquire(p_ledger, p_instance, 1, p_limit, p_window) s;
    IF slot IS NULL THEN
        RETURN;  -- the endpoint's budget is spent: the dispatcher sends it when a slot frees
    END IF;
    IF p_read_ledger IS NOT NULL AND budget_lock_within(p_read_ledger, '100ms') THEN
        SELECT s INTO read_slot FROM pacing_acquire(p_read_ledger, p_instance, 1, p_read_limit, p_read_window) s;
    END IF;
    UPDATE alerts SET state = 'sending', attempts = attempts + 1, claimed_by = p_instance, sent_at = {NOW},
        lease_until = {NOW} + p_lease, first_sent_at = GREATEST(v_now, received_at), evidence = p_evidence,
        receipt = p_receipt WHERE id = (alert).id RETURNING * INTO alert;
    UPDATE okx_pacing SET alert_id = (alert).id, attempt = (alert).attempts WHERE id IN (slot, read_slot);
    INSERT INTO alert_events (alert_id, at, kind, detail)
        VALUES ((alert).id, {NOW}, 'claimed', format('{CLAIMED_AT_ONCE_FORMAT}', (alert).attempts, p_instance));
END $$;
""",
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
