"""PostgreSQL's shared lockouts table is pruned of rows that no longer lock out or count."""

import psycopg

from webhook_app.journal import open_journal

WINDOW, DURATION = 300.0, 900.0
NOW = "extract(epoch from clock_timestamp())"

# address -> (failures, locked_until), as SQL relative to the database's clock
ROWS = {
    "192.0.2.1": (f"ARRAY[{NOW} - 1000, {NOW} - 400]", "NULL"),  # every failure out of the window: gone
    "192.0.2.2": ("'{}'", f"{NOW} - 10"),  # lockout over, no failures since: gone
    "192.0.2.3": (f"ARRAY[{NOW} - 2000]", f"{NOW} - 1000"),  # lockout over, old failures only: gone
    "192.0.2.4": ("'{}'", f"{NOW} + 600"),  # still locked out: stays
    "192.0.2.5": (f"ARRAY[{NOW} - 1000, {NOW} - 10]", "NULL"),  # one failure in the window: stays
    "192.0.2.6": (f"ARRAY[{NOW} - 10]", f"{NOW} - 5"),  # lockout over, a failure since: stays
}
LIVE = {"192.0.2.4", "192.0.2.5", "192.0.2.6"}


def addresses(pg_url) -> set[str]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT address FROM lockouts")}


def insert(pg_url, rows) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for address, (failures, locked_until) in rows.items():
            conn.execute(
                f"INSERT INTO lockouts (address, failures, locked_until) VALUES (%s, {failures}, {locked_until})",
                (address,),
            )


def test_a_failure_prunes_lockouts_that_ended_and_failures_out_of_the_window(pg_url):
    journal = open_journal(pg_url)
    try:
        insert(pg_url, ROWS)
        store = journal.lockout_store()
        assert store.failure("198.51.100.1", 10, WINDOW, DURATION) is False
        assert addresses(pg_url) == LIVE | {"198.51.100.1"}
        assert store.remaining("192.0.2.4") > 500  # what stays still works
    finally:
        journal.close()


def test_pruning_runs_at_most_once_a_minute_and_on_demand(pg_url):
    journal = open_journal(pg_url)
    try:
        store = journal.lockout_store()
        store.failure("198.51.100.1", 10, WINDOW, DURATION)
        insert(pg_url, ROWS)
        store.failure("198.51.100.1", 10, WINDOW, DURATION)  # within the minute: no second pruning
        assert addresses(pg_url) == set(ROWS) | {"198.51.100.1"}
        assert store.prune(WINDOW) == 3
        assert addresses(pg_url) == LIVE | {"198.51.100.1"}
    finally:
        journal.close()
