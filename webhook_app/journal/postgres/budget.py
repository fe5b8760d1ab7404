"""The connection budget: how many PostgreSQL connections each process may hold, what the server
and the role allow, and the words for a formation that cannot fit or a refused connection.

Entry plans allow about 20 connections per role. A web instance holds at most
DATABASE_MAX_CONNECTIONS (its heartbeat's own connection, and two pools sharing the rest); a
flask command (the release phase's ``db upgrade``, ``alerts``...) at most COMMAND_CONNECTIONS.
The default fits the formation a deploy meets: two web instances (two dynos, or one and its
preboot), a release phase and a command: 2 x 7 + 3 + 3 = 20."""

from __future__ import annotations

import dataclasses

DEFAULT_CONNECTIONS = 7  # a web instance's budget, by default
COMMAND_CONNECTIONS = 3  # a flask command's (one per pool, one for a heartbeat it never sends)
MIN_CONNECTIONS = 3  # the heartbeat's, and one per pool
FORMATION = "two web instances, a release phase and a flask command"

# What PostgreSQL says when it refuses a connection for want of room (the role's CONNECTION LIMIT,
# max_connections, the slots reserved for superusers).
_NO_ROOM = ("too many connections", "too many clients", "remaining connection slots are reserved")


def formation_needs(per_instance: int) -> int:
    return 2 * per_instance + 2 * COMMAND_CONNECTIONS


def arithmetic(per_instance: int) -> str:
    """The formation's sum, in words: "2 x 7 + 3 + 3 = 20"."""
    return (
        f"{FORMATION} take 2 x {per_instance} + {COMMAND_CONNECTIONS} + {COMMAND_CONNECTIONS} = "
        f"{formation_needs(per_instance)}"
    )


def pool_sizes(budget: int) -> tuple[int, int]:
    """(durable, lazy) pools' largest sizes within ``budget``, one connection kept for the
    heartbeat: the durable pool carries every alert's insert and claim, so it gets two thirds."""
    shared = max(budget, MIN_CONNECTIONS) - 1
    lazy = max(1, shared // 3)
    return shared - lazy, lazy


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """What the server lets this role open: its CONNECTION LIMIT (None: unlimited) and the
    server's max_connections less the slots reserved for superusers (none reserved for one)."""

    role: str
    role_limit: int | None
    max_connections: int
    reserved: int

    @property
    def allowed(self) -> int:
        server = self.max_connections - self.reserved
        return server if self.role_limit is None else min(server, self.role_limit)

    def describe(self) -> str:
        server = f"the server's max_connections {self.max_connections}" + (
            f" less {self.reserved} reserved for superusers" if self.reserved else ""
        )
        if self.role_limit is not None and self.role_limit <= self.max_connections - self.reserved:
            return f"role {self.role} may open {self.allowed} (its CONNECTION LIMIT)"
        return f"role {self.role} may open {self.allowed} ({server})"

    def warning(self, per_instance: int) -> str | None:
        """A formation that cannot fit, in one line with the numbers; None when it fits."""
        if formation_needs(per_instance) <= self.allowed:
            return None
        fitting = (self.allowed - 2 * COMMAND_CONNECTIONS) // 2
        advice = (
            f"set DATABASE_MAX_CONNECTIONS={fitting} or lower"
            if fitting >= MIN_CONNECTIONS
            else "run one web instance, or a plan with more connections"
        )
        return (
            f"connection budget: DATABASE_MAX_CONNECTIONS={per_instance}: {arithmetic(per_instance)} connections, "
            f"but {self.describe()}: {advice}"
        )


READ_LIMITS = (
    "SELECT current_user, (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user), "
    "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
    "current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int, "
    "coalesce(current_setting('reserved_connections', true), '0')::int"
)


def read_limits(conn) -> ConnectionLimits:
    role, role_limit, superuser, max_connections, superuser_reserved, reserved = conn.execute(READ_LIMITS).fetchone()
    return ConnectionLimits(
        role=role,
        role_limit=None if role_limit is None or role_limit < 0 else role_limit,
        max_connections=max_connections,
        reserved=0 if superuser else superuser_reserved + reserved,
    )


def no_room(text: str) -> bool:
    """PostgreSQL refused a connection for want of room."""
    lowered = text.lower()
    return any(words in lowered for words in _NO_ROOM)


def refused(postgres_says: str, budget: int, per_instance: int, limits: ConnectionLimits | None) -> str:
    """A connection refused for want of room, named as the budget, with the numbers."""
    known = f"; {limits.describe()}" if limits is not None else ""
    return (
        f"the database refused a connection: {postgres_says}{known}. This process may hold {budget}; "
        f"{arithmetic(per_instance)} connections with DATABASE_MAX_CONNECTIONS={per_instance}: lower it, "
        "or stop what else holds connections to the database"
    )
