"""The PostgreSQL journal's database: two pools (durable commits, and commits that may skip the
WAL flush) and a heartbeat's own connection, all within the process's connection budget
(``budget``), the migrations, and the clock (the database's, never one host's). Every PostgreSQL
store runs its statements through one ``PostgresDatabase``."""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import threading
import time
import weakref
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from webhook_app.clock import elapsed
from webhook_app.config import redacted_url
from webhook_app.journal.contracts import Database
from webhook_app.journal.postgres import budget, migrations
from webhook_app.journal.postgres.sql import LOCK_MIGRATION, NOW
from webhook_app.journal.records import JournalUnavailable, NoConnectionRoom

# A connection handed out after this long unused gets the full check whatever its socket says: a
# peer or a middlebox that dropped it silently (a fail-over, a NAT's idle reap) leaves nothing to read.
CHECK_AFTER_IDLE = 30.0
# A pool grown by a burst gives back one connection unused for this long per this long: an idle
# instance holds one connection per pool (and its heartbeat's), leaving room for the others.
MAX_IDLE = 10.0
_handed_out: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> time.monotonic()


def _configure(conn) -> None:
    # A process frozen inside a transaction (a pause, a cut network) must not hold its locks, and with
    # them every other instance's recovery or hold-off, for longer than this: the server ends it.
    conn.execute("SET idle_in_transaction_session_timeout = '5s'")
    _handed_out[conn] = time.monotonic()  # just opened: as good as checked


def check_if_suspect(conn) -> None:
    """The pools' check of a connection they hand out, at no round trip while it looks healthy.

    An idle connection has nothing to read: the server speaks first only to end it (a restart, a
    fail-over, pg_terminate_backend all send a FATAL message, or the socket closes). So a readable
    socket, one psycopg already knows is gone, or one unused for CHECK_AFTER_IDLE
    gets the full check (an empty query), which raises and makes the pool hand out another. TCP
    keepalives (``PostgresDatabase``) make a silently dead peer readable too."""
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    now = time.monotonic()
    last, _handed_out[conn] = _handed_out.get(conn), now
    if last is None or now - last > CHECK_AFTER_IDLE or not hasattr(select, "poll"):
        ConnectionPool.check_connection(conn)
        return
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):  # POLLERR, POLLHUP and POLLNVAL come whether asked for or not
        ConnectionPool.check_connection(conn)


# now(): the database's clock is read again this often (s), and an offset measured longer ago than
# CLOCK_TRUSTED_FOR gives way to any new one; a clock slewed by NTP drifts at most CLOCK_DRIFT s per s.
CLOCK_READ_EVERY = 5.0
CLOCK_TRUSTED_FOR = 30.0
CLOCK_DRIFT = 0.0005


# This host's elapsed time, counting time suspended (Linux's boot time; elsewhere the monotonic
# clock, and a reading that disagrees after a suspension replaces the offset).
_elapsed = elapsed


@dataclasses.dataclass(frozen=True)
class _ClockOffset:
    """The database's clock minus this host's elapsed time, as measured by one reading."""

    offset: float
    uncertainty: float  # half the reading's round trip
    read_at: float  # elapsed time of the last reading, or of the one under way
    measured_at: float  # elapsed time of this reading

    def gives_way_to(self, reading: _ClockOffset) -> bool:
        age = reading.measured_at - self.measured_at
        allowed = self.uncertainty + reading.uncertainty + CLOCK_DRIFT * age
        return (
            reading.uncertainty <= self.uncertainty
            or age >= CLOCK_TRUSTED_FOR
            or abs(reading.offset - self.offset) > allowed
        )


def connection_url(url: str) -> str:
    """PaaS add-ons write postgres://; libpq takes both, but say postgresql:// everywhere."""
    return "postgresql://" + url[len("postgres://") :] if url.startswith("postgres://") else url


class PostgresDatabase(Database):
    placeholder = "%s"

    def __init__(
        self,
        url: str,
        max_connections: int = budget.DEFAULT_CONNECTIONS,
        connect_timeout: float = 5.0,
        instance_budget: int | None = None,
    ):
        """At most ``max_connections`` connections (``budget.pool_sizes``); ``instance_budget``:
        a web instance's (DATABASE_MAX_CONNECTIONS), for the formation's sums in messages."""
        self.url = connection_url(url)
        self.display_url = redacted_url(self.url)
        self.max_connections = max_connections
        self.instance_budget = instance_budget or max_connections
        self.limits: budget.ConnectionLimits | None = None  # what the server and the role allow
        # application_name: an operator (or a fault test) can tell which process a session belongs to.
        self._connect_kwargs = {
            "autocommit": True,
            "connect_timeout": max(int(connect_timeout), 1),
            "application_name": f"okx-relay:{os.getpid()}",
            # A peer gone without a word (a fail-over, a NAT's reap) shows within about a minute.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        self._alone: psycopg.Connection | None = None  # see execute_alone
        self._clock: _ClockOffset | None = None  # see now()
        self._clock_lock = threading.Lock()
        self._alone_lock = threading.Lock()
        # One plain connection first: libpq's answer names the cause at once (refused, no such
        # host or database, authentication, TLS, no room), where the pools would retry it for
        # ``connect_timeout`` seconds and log each try. It reads the server's and the role's limits.
        self._first_connection()
        # Should the pools still fail (the server went away since), the start says so once, not per retry.
        pool_notices = logging.getLogger("psycopg.pool")
        level = pool_notices.level
        pool_notices.setLevel(logging.ERROR)
        durable, lazy = budget.pool_sizes(max_connections)
        try:
            self.pool = self._new_pool(durable, connect_timeout, _configure)
            self.pool.open(wait=True, timeout=connect_timeout)
            # Writes whose loss in a database crash is safe skip the commit's WAL flush: an outcome
            # not recorded leaves the alert "sending", which reads as unknown, never resent; a pacing
            # slot is only ever over-counted. What must survive (the alert, its claim) uses pool.
            self.lazy_pool = self._new_pool(
                lazy,
                connect_timeout,
                lambda conn: (_configure(conn), conn.execute("SET synchronous_commit TO off")),
            )
            self.lazy_pool.open(wait=True, timeout=connect_timeout)
            self.migrate()
        except Exception as exc:  # psycopg errors, OS errors, and the pool's own PoolTimeout
            self._close_quietly()
            self._first_connection()  # a pool that could not connect: a plain connection says why
            raise JournalUnavailable(f"cannot open the journal at {self.display_url}: {self._describe(exc)}") from None
        finally:
            pool_notices.setLevel(level)

    def _first_connection(self) -> None:
        """Connect once, outside the pools, and read the limits; raise what refused it, in words
        (``NoConnectionRoom`` when the server had no room: the budget's problem)."""
        try:
            with psycopg.connect(self.url, **self._connect_kwargs) as conn:
                try:
                    self.limits = budget.read_limits(conn)
                except psycopg.Error:  # the limits are for messages only
                    pass
        except psycopg.Error as exc:
            cause = self._cause(exc)
            if budget.no_room(str(exc)):
                said = next((line for line in str(exc).splitlines() if budget.no_room(line)), cause)
                raise NoConnectionRoom(
                    budget.refused(
                        said.split("FATAL:")[-1].strip(), self.max_connections, self.instance_budget, self.limits
                    )
                ) from None
            raise JournalUnavailable(f"cannot open the journal at {self.display_url}: {cause}") from None

    def connection_warning(self) -> str | None:
        """The formation this instance's budget is sized for does not fit the server's or the
        role's limits: a warning with the numbers (None when it fits, or the limits are unknown)."""
        return self.limits.warning(self.instance_budget) if self.limits is not None else None

    def _new_pool(self, size: int, connect_timeout: float, configure) -> ConnectionPool:
        """A pool of ``size`` connections, not opened yet (``_close_quietly`` closes it if opening fails)."""
        return ConnectionPool(
            self.url,
            min_size=1,
            max_size=size,
            kwargs=self._connect_kwargs,
            configure=configure,
            # A connection the server ended (a restart, a fail-over, pg_terminate_backend) is
            # replaced when it is handed out, not discovered by the write that needed it.
            check=check_if_suspect,
            timeout=connect_timeout,
            max_idle=MAX_IDLE,
            open=False,
        )

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
        for pool in (getattr(self, "pool", None), getattr(self, "lazy_pool", None)):
            try:
                if pool is not None:
                    pool.close()
            except Exception:
                pass

    def migrate(self) -> int:
        """Bring the database to ``migrations.SCHEMA_VERSION`` under a session advisory lock, so instances
        starting together (or the release phase beside them) do not race. Returns the version."""
        with self.pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s, 0)", (LOCK_MIGRATION,))
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
                version = row[0] or 0
                self.found_version = version
                if version > migrations.SCHEMA_VERSION:
                    raise JournalUnavailable(
                        f"the database is at schema version {version}, newer than this release's "
                        f"{migrations.SCHEMA_VERSION}: run the newer release"
                    )
                for target, script in migrations.MIGRATIONS:
                    if target > version:
                        with conn.transaction():
                            conn.execute(script)
                            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (target,))
                        version = target
                return version
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, 0)", (LOCK_MIGRATION,))

    def schema_version(self) -> int:
        return self.one("SELECT max(version) FROM schema_version")[0]

    def close(self) -> None:
        self.pool.close()
        self.lazy_pool.close()
        with self._alone_lock:
            if self._alone is not None:
                self._alone.close()

    def execute_alone(self, sql: str, params=()) -> None:
        """One statement on a connection of its own, outside the pools: what must never wait for
        a pool busy with sends (a heartbeat). Reconnects on the next call after an error."""
        with self._alone_lock:
            try:
                if self._alone is None or self._alone.closed:
                    self._alone = psycopg.connect(self.url, **self._connect_kwargs)
                self._alone.execute(sql, params)
            except (psycopg.Error, OSError) as exc:
                if self._alone is not None:
                    self._alone.close()
                self._alone = None
                raise JournalUnavailable(f"journal error: {self._describe(exc)}") from None

    def now(self) -> float:
        """The database's clock, mostly without a round trip: this host's elapsed-time clock plus
        the offset measured at the last read of the database's clock, read again every
        CLOCK_READ_EVERY s. A new reading replaces the offset when it is at least as certain (half
        its round trip), when the offset is CLOCK_TRUSTED_FOR old, or when it disagrees with the
        offset by more than both uncertainties and the drift allowed since: a suspended host, or a
        database clock that was stepped, is caught at the next reading. Statements that judge
        leases and claims read the database's clock themselves."""
        local = _elapsed()
        with self._clock_lock:
            known = self._clock
            if known is not None and local - known.read_at < CLOCK_READ_EVERY:
                return local + known.offset
            if known is not None:  # one caller reads; the others go on with the offset in use
                self._clock = dataclasses.replace(known, read_at=local)

        def read(conn):  # timed around the statement only: a wait for a pooled connection is no uncertainty
            started = _elapsed()
            value = conn.execute(f"SELECT {NOW}").fetchone()[0]
            return started, value, _elapsed()

        before, database_now, after = self.transaction(read, atomic=False)
        reading = _ClockOffset(database_now - (before + after) / 2, (after - before) / 2, after, after)
        with self._clock_lock:
            known = self._clock
            if known is None or known.gives_way_to(reading):
                self._clock = reading
        return database_now

    def transaction(self, step, atomic: bool = True, durable: bool = True):
        """Run ``step`` on a pooled connection: in a transaction, or (``atomic=False``, for one
        statement, atomic by itself) without BEGIN and COMMIT, two round trips fewer. ``durable=False``:
        committed without waiting for the WAL flush (see ``lazy_pool``)."""
        try:
            with (self.pool if durable else self.lazy_pool).connection() as conn:
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

    def one(self, sql, params=()):
        return self.transaction(lambda conn: conn.execute(sql, params).fetchone(), atomic=False)

    def all(self, sql, params=()):
        return self.transaction(lambda conn: conn.execute(sql, params).fetchall(), atomic=False)

    def statement(self, sql, params=(), durable: bool = True) -> int:
        return self.transaction(lambda conn: conn.execute(sql, params).rowcount, atomic=False, durable=durable)
