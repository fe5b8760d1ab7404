"""The PostgreSQL journal: any number of instances on one database keep every guarantee.

One ``PostgresDatabase`` (two pools, the migrations, the database's clock) under one store per
job: journaled alerts (``alerts.py``), the queue's claims, outcomes and upkeep (``claims.py``,
``outcomes.py``, ``upkeep.py``), timelines and evidence (``activity.py``), refused requests,
operator sessions, and the instances with OKX's shared rate ledger and the lockouts
(``instances.py``). Time is the database's (clock_timestamp()), never one host's.
"""

from __future__ import annotations

from webhook_app.journal.contracts import Journal
from webhook_app.journal.postgres.activity import PostgresActivity
from webhook_app.journal.postgres.alerts import PostgresAlertLog
from webhook_app.journal.postgres.budget import DEFAULT_CONNECTIONS
from webhook_app.journal.postgres.claims import PostgresClaims
from webhook_app.journal.postgres.database import PostgresDatabase, connection_url
from webhook_app.journal.postgres.instances import PostgresInstances, PostgresLockoutStore, PostgresPacer
from webhook_app.journal.postgres.migrations import MIGRATIONS, SCHEMA_VERSION
from webhook_app.journal.postgres.outcomes import PostgresOutcomes
from webhook_app.journal.postgres.refusals import PostgresRefusals
from webhook_app.journal.postgres.sessions import PostgresSessions
from webhook_app.journal.postgres.upkeep import PostgresUpkeep
from webhook_app.journal.shared import SharedNotifications

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "PostgresDatabase",
    "PostgresJournal",
    "PostgresLockoutStore",
    "PostgresPacer",
    "connection_url",
]


class PostgresJournal(Journal):
    poll_interval = 0.1  # other instances queue alerts too: look for them often

    def __init__(
        self,
        url: str,
        max_connections: int = DEFAULT_CONNECTIONS,
        connect_timeout: float = 5.0,
        instance_budget: int | None = None,
    ):
        db = PostgresDatabase(url, max_connections, connect_timeout, instance_budget)
        super().__init__(
            db,
            alerts=PostgresAlertLog(db),
            activity=PostgresActivity(db),
            notifications=SharedNotifications(db),
            claims=PostgresClaims(db),
            outcomes=PostgresOutcomes(db),
            upkeep=PostgresUpkeep(db),
            refusal_log=PostgresRefusals(db),
            sessions=PostgresSessions(db),
            instances=PostgresInstances(db),
        )

    @property
    def url(self) -> str:
        return self.database.url

    @property
    def display_url(self) -> str:
        return self.database.display_url
