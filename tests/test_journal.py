"""The journal's contract, against each backend: SQLite on a file, PostgreSQL over a real
connection (CI's server on 127.0.0.1:5432; skipped with the reason elsewhere)."""

import hashlib
import inspect
import json
import os
import sqlite3
import threading
import time
import unittest.mock
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg
import pytest

from webhook_app.journal import (
    COLUMNS,
    ActionRefused,
    Activity,
    AlertLog,
    AlertRecords,
    Claim,
    DailyCapExceeded,
    Database,
    Instances,
    Journal,
    JournalInUse,
    JournalUnavailable,
    NotificationLog,
    QueueClaims,
    QueueOutcomes,
    QueueUpkeep,
    Record,
    Refusal,
    RefusalStore,
    SessionStore,
    open_journal,
)
from webhook_app.journal import postgres as postgres_journal
from webhook_app.journal import sqlite as sqlite_journal
from webhook_app.journal.postgres import SCHEMA_VERSION as PG_SCHEMA_VERSION
from webhook_app.journal.postgres import PostgresJournal
from webhook_app.journal.postgres import database as postgres_database
from webhook_app.journal.postgres.sql import CLAIMED, LOCK_RECOVERY, NOW
from webhook_app.journal.records import UNROUTED_DETAIL
from webhook_app.workers.pacing import MemoryPacer

BODY = '{"algoId":"1","type":"add","amt":"1"}'


def opened_journals(url):
    """A factory of journals on one database, each as another instance would open it; all closed after."""
    opened = []

    def make():
        journal = open_journal(url)
        opened.append(journal)
        return journal

    yield make
    for journal in opened:
        journal.close()


@pytest.fixture
def journals(database_url):
    yield from opened_journals(database_url)


def add(journal, key="fp:1", amount="1", since=0.0, expires_in=600.0, cap=None, algo_id="1", action="add", **extra):
    now = journal.now()
    return journal.add(
        dedup_key=key,
        dedup_since=since,
        algo_id=algo_id,
        action=action,
        amount=amount,
        request_body=BODY,
        expires_at=now + expires_in,
        daily_cap=cap,
        **extra,
    )


def eventually(condition, timeout=5.0):
    """``condition()``'s first truthy answer, asked until ``timeout`` s have passed: a wait on what
    the journal's clock decides (a lease, a lag, a slot's window), with no margin to guess."""
    deadline = time.monotonic() + timeout
    while not (answer := condition()):
        assert time.monotonic() < deadline, f"still not so after {timeout} s"
        time.sleep(0.02)
    return answer


def test_an_alert_is_added_once_and_a_repeat_returns_the_original(journals):
    journal = journals()
    first, created = add(journal, key="id:1:Long", trader_id="Long")
    again, created_again = add(journal, key="id:1:Long")
    assert created and not created_again and again.id == first.id and again.trader_id == "Long"
    other, created_other = add(journal, key="id:7:Long")
    assert created_other and other.id > first.id


def test_a_failed_alert_does_not_count_as_a_duplicate(journals):
    journal = journals()
    first, _ = add(journal)
    journal.finish(first.id, "failed", detail="not executed")
    assert add(journal)[1] is True


def test_the_window_bounds_duplicates(journals):
    journal = journals()
    add(journal)
    assert add(journal, since=journal.now() + 1)[1] is True  # the earlier one is outside the window


def test_ten_identical_alerts_through_two_instances_at_once_make_one(journals):
    instances = [journals(), journals()]
    barrier = threading.Barrier(10)

    def one(i):
        barrier.wait()
        return add(instances[i % 2], key="fp:same")[1]

    with ThreadPoolExecutor(10) as pool:
        created = list(pool.map(one, range(10)))
    assert created.count(True) == 1


def test_the_daily_cap_holds_across_two_instances(journals):
    instances = [journals(), journals()]
    barrier = threading.Barrier(20)

    def one(i):
        barrier.wait()
        try:
            return add(instances[i % 2], key=f"fp:{i}", amount="10", cap=Decimal("100"))[1]
        except DailyCapExceeded:
            return False

    with ThreadPoolExecutor(20) as pool:
        accepted = list(pool.map(one, range(20)))
    assert accepted.count(True) == 10


def test_add_returns_the_row_as_the_journal_reads_it_for_a_new_alert_and_for_a_repeat(journals):
    journal = journals()
    new, created = add(journal, key="fp:row", trader_id="T1", secret_name="second", account="hedge")
    assert created and new == journal.get(new.id)
    assert (new.state, new.trader_id, new.secret_name, new.account) == ("queued", "T1", "second", "hedge")
    (claimed,) = journal.claim_due("a", 1, journal.now())
    repeat, created_again = add(journal, key="fp:row", trader_id="T2")
    # A repeat is the earlier alert as it is now (being sent), never the repeat's own fields.
    assert not created_again and repeat == journal.get(new.id) == claimed
    assert (repeat.state, repeat.claimed_by, repeat.trader_id) == ("sending", "a", "T1")


@pytest.mark.parametrize(
    ("key", "amount", "outcome"),
    [
        ("fp:next", "30", "added"),  # 70 + 30: up to the cap
        ("fp:next", "30.5", "refused"),  # past it by half a unit; 30 remains
        ("fp:used", "70", "repeat"),  # a repeat is the earlier alert, never counted twice nor refused
    ],
)
def test_the_daily_cap_takes_alerts_up_to_it_and_refuses_one_past_it_naming_what_remains(
    journals, key, amount, outcome
):
    journal = journals()
    used, _ = add(journal, key="fp:used", amount="70", cap=Decimal("100"))
    if outcome == "refused":
        with pytest.raises(DailyCapExceeded) as refused:
            add(journal, key=key, amount=amount, cap=Decimal("100"))
        assert refused.value.remaining == Decimal("30") and "30 remains" in str(refused.value)
        assert [r.id for r in journal.recent()] == [used.id]
        return
    record, created = add(journal, key=key, amount=amount, cap=Decimal("100"))
    assert (created, record.amount) == (outcome == "added", amount)
    assert record == journal.get(record.id) and (record.id == used.id) is (outcome == "repeat")


def test_claims_take_due_alerts_oldest_first_and_mark_who_claimed(journals):
    journal = journals()
    ids = [add(journal, key=f"fp:{n}", algo_id=str(n))[0].id for n in range(5)]
    now = journal.now()
    assert journal.count_due(now) == 5 and journal.count_due(now, before_id=ids[2]) == 2
    claimed = journal.claim_due("instance-a", 2, now)
    assert [r.id for r in claimed] == ids[:2]
    assert {(r.state, r.attempts, r.claimed_by) for r in claimed} == {("sending", 1, "instance-a")}
    assert journal.count_due(now) == 3


def test_a_paced_claim_takes_as_many_due_alerts_as_the_budget_allows_each_with_its_slot(journals):
    journal = journals()
    pacer = journal.pacer("key-a", 2, 2.0) or MemoryPacer(2, 2.0)
    ids = [add(journal, key=f"fp:{n}", algo_id=str(n))[0].id for n in range(3)]
    add(journal, key="fp:behind", algo_id="0")  # behind ids[0] for its bot: not due in turn
    taken = journal.claim_paced("a", pacer, 20, 30.0, "default")
    assert (taken.due, taken.granted) == (3, 2)
    assert [record.id for record, _ in taken.claims] == ids[:2]
    assert {record.claimed_by for record, _ in taken.claims} == {"a"}
    assert len({slot for _, slot in taken.claims}) == 2 and pacer.busy() == 2
    spent = journal.claim_paced("a", pacer, 20, 30.0, "default")
    assert (spent.due, spent.granted, spent.claims) == (1, 0, [])  # the budget is spent: nothing claimed
    idle = journal.claim_paced("a", pacer, 20, 30.0, "hedge")
    assert (idle.due, idle.granted, idle.claims) == (0, 0, [])  # another account's queue is empty
    assert pacer.busy() == 2


def test_claims_no_sender_holds_are_queued_again_and_their_slots_given_back(journals):
    # A claim whose reply was lost: the claimant names the claims its senders hold (live); the others
    # are found. Never sent: queued again, the attempt still counted (the lost claim can never
    # confirm), its slot removed. Confirmed (may have left): left to the lease; its slot ended.
    journal = journals()
    pacer = journal.pacer("key-a", 20, 2.0) or MemoryPacer(20, 2.0)
    for n in range(3):
        add(journal, key=f"fp:{n}", algo_id=str(n))
    (live, live_slot), (lost, lost_slot), (sent, sent_slot) = journal.claim_paced(
        "a", pacer, 20, 30.0, "default"
    ).claims
    assert journal.confirm_send(Claim.of(sent))
    (requeued,) = journal.free_orphans("a", [Claim.of(live)])
    assert (requeued.id, requeued.state, requeued.attempts, requeued.claimed_by) == (lost.id, "queued", 1, None)
    assert [e.kind for e in journal.events(lost.id)] == ["claimed", "requeued"]
    assert journal.free_orphans("b", []) == [] and journal.free_orphans("a", [Claim.of(live)]) == []
    assert (journal.get(live.id).state, journal.get(sent.id).state) == ("sending", "sending")
    assert not journal.confirm_send(Claim.of(lost))
    (again,) = journal.claim_due("a", 1, journal.now())
    assert (again.id, again.attempts) == (lost.id, 2) and not journal.confirm_send(Claim.of(lost))
    if pacer.shares_journal:
        slots = dict(
            journal.database.all("SELECT id, ended_at IS NULL FROM okx_pacing WHERE account = %s", (pacer.account,))
        )
        assert slots == {live_slot: True, sent_slot: False}  # the lost claim's slot is gone, as never taken


def test_a_waiting_reply_learns_what_is_ahead_of_its_alert_and_the_slots_in_use(journals):
    journal = journals()
    pacer = journal.pacer("key-a", 20, 2.0) or MemoryPacer(20, 2.0)
    first, _ = add(journal, key="fp:1", algo_id="1")
    add(journal, key="fp:2", algo_id="1")  # its bot's turn has not come: it still takes a slot first
    add(journal, key="fp:other-account", algo_id="3", account="hedge")  # another account's budget
    mine, _ = add(journal, key="fp:3", algo_id="2")
    pacer.acquire("a", 3)
    current, ahead, busy = journal.reply_outlook(mine, pacer)
    assert (current, ahead, busy) == (journal.get(mine.id), 2, 3)
    (claimed,) = journal.claim_due("a", 1, journal.now())
    assert claimed.id == first.id
    assert journal.reply_outlook(first, pacer) == (journal.get(first.id), 0, 0)  # sending: nothing ahead counts


def test_a_paced_claim_takes_each_bot_reads_slot_and_the_confirmation_ends_it(pg_journals, round_trips):
    journal = pg_journals()
    pacer, reads = journal.pacer("key-a", 20, 2.0), journal.pacer("key-a/details", 2, 2.0)
    for n in range(3):
        add(journal, key=f"fp:{n}", algo_id=str(n))
    round_trips()
    taken = journal.claim_paced("a", pacer, 20, 30.0, "default", read_pacer=reads)
    assert round_trips() == ["statement"]
    (first, _), (second, _), (third, _) = taken.claims
    assert set(taken.read_slots) == {first.id, second.id}  # the reads' budget had room for two
    assert reads.busy() == 2
    round_trips()
    assert journal.confirm_send(Claim.of(first), read_slot=taken.read_slots[first.id])
    assert not journal.confirm_send(Claim(second.id, "b", 1), read_slot=taken.read_slots[second.id])  # fenced
    assert round_trips() == ["statement", "statement"]
    open_reads = journal.database.one("SELECT count(*) FROM okx_pacing WHERE ended_at IS NULL")[0]
    assert open_reads == 3  # the three margin slots; both reads ended, confirmed or not


def test_a_paced_claim_gives_back_the_slots_no_alert_took(pg_journals):
    journal = pg_journals()
    pacer = journal.pacer("key-a", 20, 2.0)
    (held, _), (free, _) = add(journal, key="fp:held", algo_id="1"), add(journal, key="fp:free", algo_id="2")
    with psycopg.connect(journal.database.url, autocommit=True) as other, other.transaction():
        other.execute("SELECT id FROM alerts WHERE id = %s FOR UPDATE", (held.id,))  # another claim, under way
        taken = journal.claim_paced("a", pacer, 20, 30.0, "default")
    assert (taken.due, taken.granted) == (2, 2)
    assert [record.id for record, _ in taken.claims] == [free.id]
    assert pacer.busy() == 1  # the slot taken for the held alert was given back in the same statement


def test_an_outcome_closes_its_rate_slot_in_the_same_statement_even_when_fenced_out(pg_journals, round_trips):
    journal = pg_journals()
    pacer = journal.pacer("key-a", 20, 2.0)
    for n in range(3):
        add(journal, key=f"fp:{n}", algo_id=str(n))
    now = journal.now()
    round_trips()
    taken = journal.claim_paced("a", pacer, 20, 30.0, "default", now)
    assert round_trips() == ["statement"]  # count, slots, claims and the unused slots back: one round trip
    assert journal.reply_outlook(taken.claims[0][0], pacer)[1:] == (0, 0)
    assert round_trips() == ["statement"]  # the alert, what is ahead of it, the slots in use
    (first, slot_1), (second, slot_2), (third, slot_3) = taken.claims
    done = journal.finish(first.id, "ok", okx_code="0", claim=Claim.of(first), slot=slot_1)
    assert journal.requeue(second.id, "50013", "busy", "retry", now + 1, claim=Claim.of(second), slot=slot_2)
    fenced = journal.finish(third.id, "ok", claim=Claim(third.id, "someone-else", 1), slot=slot_3)
    assert round_trips() == ["statement"] * 3  # each outcome with its slot's end and its timeline entry
    assert done.state == "ok" and fenced is None
    open_slots = journal.database.one("SELECT count(*) FROM okx_pacing WHERE ended_at IS NULL")[0]
    assert (open_slots, pacer.busy()) == (0, 3)  # all three ended (a late answer's too), counted a window
    assert [e.kind for e in journal.events(first.id)] == ["claimed", "ok"]
    later = journal.claim_paced("a", pacer, 20, 30.0, "default")  # the retry is due a second after ``now``
    assert (later.due, later.queued, later.claims) == (0, 1, []) and 0 < later.next_in <= 1


def test_a_send_never_starts_before_its_alert_was_received(journals):
    journal = journals()
    read_clock_at = journal.now()  # the sender read its clock; the alert arrived just after
    time.sleep(0.01)
    received = add(journal)[0]
    (claimed,) = journal.claim_due("instance-a", 1, read_clock_at)
    assert claimed.first_sent_at >= received.received_at


def test_two_claimants_never_claim_one_alert(journals):
    instances = [journals(), journals()]
    ids = {add(instances[0], key=f"fp:{n}", algo_id=str(n))[0].id for n in range(60)}
    claimed = {0: [], 1: []}

    def drain(i):
        while True:
            got = instances[i].claim_due(f"instance-{i}", 3, instances[i].now())
            if not got:
                return
            claimed[i].extend(r.id for r in got)

    threads = [threading.Thread(target=drain, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(claimed[0]) | set(claimed[1]) == ids
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 60


def test_a_requeued_alert_waits_for_its_time_and_an_unclaimed_one_is_as_before(journals):
    journal = journals()
    record, _ = add(journal)
    (claimed,) = journal.claim_due("a", 1, journal.now())
    journal.requeue(claimed.id, "50013", "busy", "attempt 1 not executed", not_before=journal.now() + 60)
    assert journal.count_due(journal.now()) == 0
    assert journal.next_due_at() == pytest.approx(journal.now() + 60, abs=1)
    (again,) = journal.claim_due("a", 1, journal.now() + 61)
    assert again.attempts == 2
    journal.unclaim([Claim.of(claimed)])  # attempt 1's claim is not the current one: nothing changes
    assert (journal.get(record.id).state, journal.get(record.id).attempts) == ("sending", 2)
    journal.unclaim([Claim.of(again)])
    back = journal.get(record.id)
    assert (back.state, back.attempts, back.claimed_by) == ("queued", 1, None)


def test_alerts_past_their_lag_expire_and_are_never_claimed(journals):
    journal = journals()
    late, _ = add(journal, key="fp:late", expires_in=-1)
    fresh, _ = add(journal, key="fp:fresh")
    now = journal.now()
    assert [r.id for r in journal.claim_due("a", 5, now)] == [fresh.id]
    assert [(r.id, r.state) for r in journal.expire_overdue(now)] == [(late.id, "expired")]


def test_prune_removes_finished_alerts_only(journals):
    journal = journals()
    done, _ = add(journal, key="fp:done")
    journal.finish(done.id, "ok")
    waiting, _ = add(journal, key="fp:waiting")
    assert journal.prune(before=journal.now() + 1) == 1
    assert [r.id for r in journal.recent()] == [waiting.id]


def test_recent_filters_by_state_and_trader_id(journals):
    journal = journals()
    a, _ = add(journal, key="fp:a", trader_id="A")
    b, _ = add(journal, key="fp:b", trader_id="B")
    journal.finish(b.id, "ok")
    assert [r.id for r in journal.recent()] == [b.id, a.id]
    assert [r.id for r in journal.recent(state="ok")] == [b.id]
    assert [r.id for r in journal.recent(trader_id="A")] == [a.id]
    assert journal.get(2**70) is None


def test_the_schema_version_is_recorded(journals):
    journal = journals()
    assert journal.schema_version() >= 1


# -- PostgreSQL: several instances ---------------------------------------------------------------


@pytest.fixture
def pg_journals(pg_url):
    yield from opened_journals(pg_url)


def test_an_alert_is_failed_for_its_account_only_once_no_instance_may_send_for_it(pg_journals):
    # A deploy overlapping two configurations: an alert is never failed while a running instance has
    # its account, or has not said which accounts it has (an older release, or one just started).
    a, b = pg_journals(), pg_journals()
    a.register("a")
    b.register("b")
    queued, _ = add(a, key="fp:hedge", account="hedge")
    assert a.fail_unrouted("a", ["main"]) == []  # b has not said: it may send for hedge
    assert b.fail_unrouted("b", ["main", "hedge"]) == []  # b sends for hedge
    assert a.fail_unrouted("a", ["main"]) == []
    (failed,) = b.fail_unrouted("b", ["main"])  # b restarted without hedge: nobody has it now
    assert (failed.id, failed.state) == (queued.id, "failed")
    assert failed.detail == UNROUTED_DETAIL.format(account="hedge")
    assert [(e.kind, e.detail) for e in a.events(queued.id)] == [("failed", failed.detail)]


def test_recovery_never_touches_a_current_claim_even_of_an_instance_that_looks_dead(pg_journals):
    a, b = pg_journals(), pg_journals()
    a.register("a")
    add(a)
    (sending,) = a.claim_due("a", 1, a.now(), lease=3.0)
    assert a.confirm_send(Claim.of(sending))
    b.register("b")
    time.sleep(1.1)  # a falls silent (a paused process looks just like a dead one)...
    b.heartbeat("b")
    assert b.recover("b", dead_after=0.5) == []  # ...but its lease runs: its send is its own
    assert b.database.one("SELECT count(*) FROM instances WHERE id = 'a'")[0] == 0  # a was found dead
    assert b.get(sending.id).state == "sending"
    (taken_over,) = eventually(lambda: b.recover("b", dead_after=0.5))  # once the lease lapses
    assert (taken_over.id, taken_over.state, taken_over.claimed_by) == (sending.id, "unknown", "a")
    assert "stopped while it was being sent" in b.get(sending.id).detail


def test_migrations_run_once_when_instances_start_together(pg_url):
    with ThreadPoolExecutor(4) as pool:
        journals = list(pool.map(lambda _: PostgresJournal(pg_url), range(4)))
    assert {j.schema_version() for j in journals} == {PG_SCHEMA_VERSION}
    for journal in journals:
        journal.close()


def test_the_rate_budget_is_one_for_all_instances(pg_journals):
    a, b = pg_journals(), pg_journals()
    pacer_a, pacer_b = a.pacer("the-api-key", 5, 2.0), b.pacer("the-api-key", 5, 2.0)
    first = pacer_a.acquire("a", 3)
    second = pacer_b.acquire("b", 3)
    assert (len(first), len(second)) == (3, 2)
    assert pacer_a.acquire("a", 1) == [] and pacer_b.opens_in() is None  # all in flight
    pacer_b.cancel(second)
    assert len(pacer_a.acquire("a", 5)) == 2
    assert b.pacer("another-key", 5, 2.0).acquire("b", 5) != []  # each API key has its own budget


def test_a_slot_is_held_until_the_window_after_the_reply(pg_journals):
    journal = pg_journals()
    pacer = journal.pacer("k", 1, 0.5)
    (slot,) = pacer.acquire("a", 1)
    pacer.release(slot)
    assert pacer.acquire("a", 1) == [] and 0 < pacer.opens_in() <= 0.52
    assert len(eventually(lambda: pacer.acquire("a", 1))) == 1  # once the window after the reply passed


def test_hold_off_stops_every_instance(pg_journals):
    a, b = pg_journals(), pg_journals()
    a.pacer("k", 5, 0.3).hold_off(1.5)
    assert b.pacer("k", 5, 0.3).acquire("b", 1) == []
    assert 0.5 < b.pacer("k", 5, 0.3).opens_in() <= 1.5
    assert len(eventually(lambda: b.pacer("k", 5, 0.3).acquire("b", 5))) == 5


def test_lockouts_are_shared_and_survive_a_restart(pg_journals):
    a, b = pg_journals(), pg_journals()
    for _ in range(2):
        assert a.lockout_store().failure("203.0.113.9", 3, 60, 120) is False
    assert b.lockout_store().failure("203.0.113.9", 3, 60, 120) is True  # the third, through another instance
    assert 110 < pg_journals().lockout_store().remaining("203.0.113.9") <= 120
    assert a.lockout_store().remaining("198.51.100.1") == 0


def test_the_generated_secret_is_one_for_all_instances(pg_journals):
    a, b = pg_journals(), pg_journals()
    assert a.stored_secret("webhook_secret", lambda: "first-secret-0123456789") == "first-secret-0123456789"
    assert b.stored_secret("webhook_secret", lambda: "second-secret-0123456789") == "first-secret-0123456789"


def test_an_unreachable_server_is_named_without_its_password():
    with pytest.raises(JournalUnavailable) as failure:
        PostgresJournal("postgres://app:s3cret-pw@127.0.0.1:1/db", connect_timeout=1)
    assert "s3cret-pw" not in str(failure.value) and "127.0.0.1:1/db" in str(failure.value)


# -- SQLite: one sender per file -----------------------------------------------------------------


def test_a_second_sender_on_one_sqlite_file_is_refused(tmp_path):
    first, second = open_journal(f"sqlite:///{tmp_path}/j.db"), open_journal(f"sqlite:///{tmp_path}/j.db")
    first.register("a")
    with pytest.raises(JournalInUse, match="SQLite serves one process"):
        second.register("b")
    assert second.recent() == []  # reading is fine: the CLI does it while the service runs
    first.deregister("a")
    second.register("b")  # once the first has stopped
    first.close()
    second.close()


# -- what operators see and do ---------------------------------------------------------------


def test_the_timeline_follows_each_claim_answer_and_outcome(journals):
    journal = journals()
    record = add(journal)[0]
    journal.claim_due("instance-a", 1, journal.now())
    journal.requeue(record.id, "50011", "Too Many Requests", "rate limited; not executed", journal.now())
    journal.claim_due("instance-b", 1, journal.now())
    journal.finish(record.id, "ok", okx_code="0", okx_msg="")
    events = journal.events(record.id)
    assert [e.kind for e in events] == ["claimed", "retry", "claimed", "ok"]
    assert events[0].detail == "attempt 1, claimed by instance-a"
    assert "OKX 50011: Too Many Requests" in events[1].detail and events[2].detail.startswith("attempt 2")
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert journal.events(record.id + 1) == []


def test_an_unknown_alert_is_marked_once_and_only_an_unknown_one(journals):
    journal = journals()
    unknown, done = add(journal, key="fp:u")[0], add(journal, key="fp:o")[0]
    journal.claim_due("a", 2, journal.now())
    journal.finish(unknown.id, "unknown", detail="timed out")
    journal.finish(done.id, "ok", okx_code="0")
    marked = journal.resolve(unknown.id, "not_executed", by="session 1a2b")
    assert marked.state == "unknown" and marked.resolution == "not_executed"
    assert journal.events(unknown.id)[-1].detail == "marked not executed by session 1a2b"
    for alert_id in (unknown.id, done.id):  # a finding is final; an ok alert needs none
        with pytest.raises(ActionRefused):
            journal.resolve(alert_id, "executed", by="session 1a2b")


def test_a_resend_is_linked_both_ways(journals):
    journal = journals()
    original, resend = add(journal, key="fp:1")[0], add(journal, key="resend:1")[0]
    journal.link_resend(original.id, resend.id, by="token")
    assert journal.get(original.id).resent_as == resend.id and journal.get(resend.id).resent_from == original.id
    assert journal.events(original.id)[-1].detail == f"sent again as alert {resend.id} by token"
    assert journal.events(resend.id)[-1].detail == f"a resend of alert {original.id} by token"


def test_hourly_counts_group_alerts_by_hour_and_state(journals):
    journal = journals()
    for n in range(3):
        add(journal, key=f"fp:{n}")
    journal.finish(1, "rejected")
    hour = int(journal.now() // 3600 * 3600)
    assert sorted(journal.hourly_counts(journal.now() - 3600)) == [(hour, "queued", 2), (hour, "rejected", 1)]
    assert journal.hourly_counts(journal.now() + 1) == []


def test_refused_requests_are_kept_newest_first_and_pruned(journals):
    journal = journals()
    first = Refusal(at=journal.now() - 100, status=401, kind="unauthorized", message="wrong secret", client="1.2.3.4")
    second = Refusal(
        at=journal.now(),
        status=422,
        kind="invalid",
        message="bad fields",
        errors=({"field": "amount", "message": "must be positive"},),
        algo_id="58",
        trader_id="Long",
        count=3,
    )
    journal.add_refusals([first, second])
    newest, oldest = journal.refusals(10)
    assert (newest.kind, newest.errors, newest.count, newest.trader_id) == ("invalid", second.errors, 3, "Long")
    assert (oldest.client, oldest.errors, oldest.count) == ("1.2.3.4", (), 1)
    assert journal.refusal_rows() == 2
    assert journal.prune_refusals(journal.now() - 50) == 1 and [r.kind for r in journal.refusals()] == ["invalid"]


def test_an_operator_session_is_open_until_it_ends_or_ages(journals):
    journal, other_instance = journals(), journals()
    journal.start_session("s1", "203.0.113.9")
    journal.start_session("s2", None)
    assert other_instance.session_active("s1", 3600) and journal.session_active("s2", 3600)
    assert not journal.session_active("s1", 0)  # older than max_age
    other_instance.end_session("s1")
    assert not journal.session_active("s1", 3600) and journal.session_active("s2", 3600)
    assert not journal.session_active("never", 3600)


# -- fenced claims and each bot's order -------------------------------------------------------------


def test_a_claim_is_confirmed_only_while_it_is_current(journals):
    journal = journals()
    add(journal, key="fp:a", algo_id="a")
    (claimed,) = journal.claim_due("a", 1, journal.now(), lease=1.0)
    assert claimed.lease_until == pytest.approx(journal.now() + 1.0, abs=0.5)
    claim = Claim.of(claimed)
    assert not journal.confirm_send(Claim(claimed.id, "b", claimed.attempts))  # another instance
    assert not journal.confirm_send(Claim(claimed.id, "a", claimed.attempts + 1))  # another attempt
    assert journal.confirm_send(claim)
    assert journal.get(claimed.id).sent_at is not None
    eventually(lambda: not journal.confirm_send(claim))  # the lease lapses, by the journal's clock

    add(journal, key="fp:b", algo_id="b", expires_in=1.0)
    (short,) = journal.claim_due("a", 1, journal.now(), lease=30)
    assert journal.confirm_send(Claim.of(short))
    eventually(lambda: not journal.confirm_send(Claim.of(short)))  # past its lag: never sent late


def test_a_lapsed_claim_that_never_sent_is_queued_again_and_one_that_may_have_is_unknown(journals):
    journal = journals()
    never, _ = add(journal, key="fp:never", algo_id="x")
    maybe, _ = add(journal, key="fp:maybe", algo_id="y")
    old, _ = add(journal, key="fp:old", algo_id="z", expires_in=0.6)
    claims = journal.claim_due("gone", 3, journal.now(), lease=0.6)
    assert len(claims) == 3
    assert journal.confirm_send(Claim.of(next(r for r in claims if r.id == maybe.id)))
    time.sleep(1.2)  # the leases lapsed, and old's lag ended, 0.6 s ago
    recovered = {r.id: r.state for r in journal.recover("survivor", dead_after=15)}
    assert recovered == {never.id: "queued", maybe.id: "unknown", old.id: "expired"}
    again = journal.claim_due("survivor", 3, journal.now())
    assert [(r.id, r.attempts) for r in again] == [(never.id, 2)]
    kinds = [e.kind for e in journal.events(never.id)]
    assert kinds == ["claimed", "requeued", "claimed"]


def test_every_write_after_a_send_is_fenced_by_its_claim(journals):
    journal = journals()
    record, _ = add(journal)
    (first,) = journal.claim_due("a", 1, journal.now(), lease=1.0)
    assert journal.confirm_send(Claim.of(first))
    (taken,) = eventually(lambda: journal.recover("b", dead_after=15))  # once the lease lapses
    assert taken.state == "unknown"
    journal.resolve(record.id, "not_executed", "operator")
    stale = Claim.of(first)
    assert journal.finish(record.id, "ok", okx_code="0", claim=stale) is None  # a late answer changes nothing
    assert not journal.requeue(record.id, "50013", "busy", "not executed", journal.now(), claim=stale)
    after = journal.get(record.id)
    assert (after.state, after.resolution) == ("unknown", "not_executed")

    other, _ = add(journal, key="fp:2", algo_id="2")
    (claimed,) = journal.claim_due("a", 1, journal.now())
    assert journal.finish(other.id, "ok", okx_code="0", claim=Claim.of(claimed)).state == "ok"


def test_one_bots_alerts_are_claimed_one_at_a_time_in_order(journals):
    journal = journals()
    x1, x2, x3 = (add(journal, key=f"fp:x{n}", algo_id="x")[0] for n in range(3))
    y1, _ = add(journal, key="fp:y1", algo_id="y")
    now = journal.now()
    assert journal.count_due(now) == 2
    assert [r.id for r in journal.claim_due("a", 10, now)] == [x1.id, y1.id]
    assert journal.claim_due("a", 10, journal.now()) == []  # x2 waits while x1 is being sent
    journal.requeue(x1.id, "50013", "busy", "not executed", not_before=journal.now() + 1.0, claim=Claim(x1.id, "a", 1))
    assert journal.claim_due("a", 10, journal.now()) == []  # ...and while x1 waits for its retry
    assert journal.next_due_at() == pytest.approx(journal.now() + 1.0, abs=0.5)
    assert [r.id for r in eventually(lambda: journal.claim_due("a", 10, journal.now()))] == [x1.id]
    journal.finish(x1.id, "ok", claim=Claim(x1.id, "a", 2))
    assert [r.id for r in journal.claim_due("a", 10, journal.now())] == [x2.id]
    journal.finish(x2.id, "failed", claim=Claim(x2.id, "a", 1))
    assert [r.id for r in journal.claim_due("a", 10, journal.now())] == [x3.id]


def test_an_earlier_alert_past_its_lag_does_not_hold_up_its_bot(journals):
    journal = journals()
    add(journal, key="fp:late", algo_id="x", expires_in=-1)
    later, _ = add(journal, key="fp:later", algo_id="x")
    assert [r.id for r in journal.claim_due("a", 10, journal.now())] == [later.id]


def test_bot_order_holds_between_instances_claiming_at_once(pg_journals):
    instances = [pg_journals(), pg_journals()]
    for n in range(40):
        add(instances[0], key=f"fp:{n}", algo_id=str(n % 4))
    order: list[tuple[str, int]] = []
    lock = threading.Lock()
    overlaps = 0

    def drain(i):
        nonlocal overlaps
        journal = instances[i]
        idle = 0
        while idle < 20:
            got = journal.claim_due(f"i{i}", 3, journal.now())
            if not got:
                idle += 1
                time.sleep(0.005)
                continue
            idle = 0
            for r in got:  # the journal itself: is anything else of this bot being sent now?
                overlaps += len(journal.recent(state="sending", algo_id=r.algo_id)) > 1
            with lock:
                order.extend((r.algo_id, r.id) for r in got)
            time.sleep(0.002)
            for r in got:
                journal.finish(r.id, "ok", claim=Claim.of(r))

    threads = [threading.Thread(target=drain, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == 0 and len(order) == 40
    for bot in "0123":
        ids = [i for b, i in order if b == bot]
        assert ids == sorted(ids), bot


def test_a_heartbeat_never_waits_for_a_busy_pool(pg_url):
    # Senders holding every pooled connection must not make a live instance look dead.
    journal = PostgresJournal(pg_url, max_connections=3, connect_timeout=1)  # one per pool, one for the heartbeat
    try:
        journal.register("a")
        with journal.database.pool.connection(), journal.database.lazy_pool.connection():
            started = time.monotonic()
            journal.heartbeat("a")
            waited = time.monotonic() - started
        assert waited < 0.5, waited  # a pool checkout would have waited 1 s and failed
    finally:
        journal.close()


def test_a_dead_instances_rate_slot_counts_until_its_request_can_no_longer_be_under_way(pg_journals):
    a, b = pg_journals(), pg_journals()
    a.register("a")
    pacer = a.pacer("key", limit=1, window=2.0)
    (slot,) = pacer.acquire("a", 1)
    b.register("b")
    time.sleep(1.1)
    b.heartbeat("b")
    b.recover("b", dead_after=0.5, lease=20.0)  # a is found dead; its slot's request may still be under way
    assert pacer.acquire("b", 1) == []  # the take-over did not give its slot to someone else
    pacer.release(slot)  # a resumes and says its exchange ended: the later end stands
    ended = b.database.one("SELECT ended_at - started_at FROM okx_pacing WHERE id = %s", (slot,))[0]
    assert ended == pytest.approx(20.0, abs=0.5)


def test_recovery_never_waits_for_an_instance_frozen_inside_its_own(pg_journals, pg_url):
    journal = pg_journals()
    with psycopg.connect(pg_url) as frozen:  # holds the recovery lock in an open transaction
        frozen.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_RECOVERY,))
        started = time.monotonic()
        assert journal.recover("b", dead_after=15) == []
        assert time.monotonic() - started < 1
    # ...and a transaction left open by a frozen process ends on the server's side.
    assert journal.database.one("SHOW idle_in_transaction_session_timeout")[0] == "5s"


def test_one_alert_the_journal_cannot_store_never_sinks_the_others_committed_with_it(tmp_path):
    # Parsing refuses such text first; this is the journal's own guard for whatever slips through.
    journal = open_journal(f"sqlite:///{tmp_path}/j.db")
    barrier = threading.Barrier(12)

    def one(n):
        barrier.wait()
        try:
            return add(journal, key=f"fp:{n}", algo_id=str(n), trader_id="\ud800" if n == 5 else None)[1]
        except JournalUnavailable:
            return "refused"

    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one, range(12)))
        assert results.count(True) == 11 and results[5] == "refused"
    finally:
        journal.close()


# -- OKX's records on an unknown outcome ------------------------------------------------------------

SNAPSHOT = '{"before": {"algoId": "1", "state": "running", "availBal": "40"}}'
GATHERED = '{"before": {"availBal": "40"}, "after": {"availBal": "90"}, "events": [], "proposal": "executed"}'


def unknown_alert(journal, key="fp:u", algo_id="u", finished_at=None, evidence=SNAPSHOT):
    """An alert sent with ``evidence`` and never answered: it ends unknown, as the sender leaves it."""
    add(journal, key=key, algo_id=algo_id)
    (claimed,) = journal.claim_due("a", 1, journal.now())
    assert journal.confirm_send(Claim.of(claimed), evidence=evidence)
    return journal.finish(claimed.id, "unknown", detail="timed out", now=finished_at, claim=Claim.of(claimed))


def test_a_confirmed_send_stores_the_snapshot_taken_before_it_and_a_refused_one_stores_nothing(journals):
    journal = journals()
    record, _ = add(journal)
    (claimed,) = journal.claim_due("a", 1, journal.now())
    assert not journal.confirm_send(Claim(claimed.id, "b", claimed.attempts), evidence=SNAPSHOT)  # another instance
    assert (journal.get(record.id).evidence, journal.get(record.id).sent_at) == (None, None)
    assert journal.confirm_send(Claim.of(claimed), evidence=SNAPSHOT)
    assert journal.get(record.id).evidence == SNAPSHOT
    # A retry's confirm stores its own attempt's snapshot, none included: never the previous attempt's.
    journal.requeue(record.id, "50013", "busy", "not executed", journal.now(), claim=Claim.of(claimed))
    (again,) = journal.claim_due("a", 1, journal.now())
    assert journal.confirm_send(Claim.of(again))
    assert journal.get(record.id).evidence is None and journal.get(record.id).sent_at is not None


def test_evidence_is_recorded_once_on_an_unknown_alert_with_one_timeline_entry(journals):
    journal = journals()
    unknown = unknown_alert(journal)
    recorded = journal.record_evidence(unknown.id, GATHERED, "executed", "OKX's records: executed")
    assert (recorded.id, recorded.state, recorded.evidence, recorded.proposal) == (
        unknown.id,
        "unknown",
        GATHERED,
        "executed",
    )
    # Another instance got there second: nothing changes, and the first evidence stands.
    assert journal.record_evidence(unknown.id, SNAPSHOT, "cant_tell", "a second reading") is None
    stored = journal.get(unknown.id)
    assert (stored.evidence, stored.proposal) == (GATHERED, "executed")
    evidence_entries = [e for e in journal.events(unknown.id) if e.kind == "evidence"]
    assert [e.detail for e in evidence_entries] == ["OKX's records: executed"]
    assert journal.events(unknown.id)[-1].kind == "evidence"


def test_a_second_read_revises_the_proposal_it_rests_on_and_keeps_the_finding(journals):
    journal = journals()
    unknown = unknown_alert(journal)
    journal.record_evidence(unknown.id, GATHERED, "not_executed", "OKX's records: not executed")
    journal.resolve(unknown.id, "not_executed", "session 1a2b")
    revised = '{"proposal": "cant_tell", "withdrawn": {"proposal": "not_executed"}}'
    # Only while the proposal is still the one read again: a stale revision changes nothing.
    assert journal.revise_evidence(unknown.id, revised, "cant_tell", "read again: withdrawn", was="executed") is None
    recorded = journal.revise_evidence(unknown.id, revised, "cant_tell", "read again: withdrawn", was="not_executed")
    assert (recorded.evidence, recorded.proposal, recorded.resolution) == (revised, "cant_tell", "not_executed")
    stored = journal.get(unknown.id)
    assert (stored.evidence, stored.proposal, stored.resolution) == (revised, "cant_tell", "not_executed")
    assert [e.detail for e in journal.events(unknown.id) if e.kind == "evidence"] == [
        "OKX's records: not executed",
        "read again: withdrawn",
    ]


@pytest.mark.parametrize("state", ["ok", "rejected", "failed", "expired"])
def test_evidence_is_never_recorded_on_an_alert_whose_outcome_is_known(journals, state):
    journal = journals()
    record, _ = add(journal)
    journal.claim_due("a", 1, journal.now())
    journal.finish(record.id, state, okx_code="0")
    assert journal.record_evidence(record.id, GATHERED, "executed", "OKX's records: executed") is None
    stored = journal.get(record.id)
    assert (stored.evidence, stored.proposal) == (None, None)
    assert "evidence" not in [e.kind for e in journal.events(record.id)]


def test_evidence_is_never_recorded_on_an_alert_still_queued(journals):
    journal = journals()
    record, _ = add(journal)
    assert journal.record_evidence(record.id, GATHERED, "executed", "OKX's records: executed") is None
    assert journal.get(record.id).proposal is None


def test_awaiting_evidence_lists_the_unknown_alerts_without_a_proposal_since_oldest_first(journals):
    journal = journals()
    since = journal.now()
    too_early = unknown_alert(journal, key="fp:early", algo_id="e", finished_at=since - 60)
    later = unknown_alert(journal, key="fp:later", algo_id="l", finished_at=since + 20)
    # Journaled after ``later``, finished before it: "oldest" is by when the outcome became unknown.
    earlier = unknown_alert(journal, key="fp:earlier", algo_id="r", finished_at=since + 10)
    answered = unknown_alert(journal, key="fp:answered", algo_id="n", finished_at=since + 5)
    journal.record_evidence(answered.id, GATHERED, "not_executed", "OKX's records: not executed")
    ok, _ = add(journal, key="fp:ok", algo_id="o")
    journal.claim_due("a", 1, journal.now())
    journal.finish(ok.id, "ok", okx_code="0", now=since + 1)
    add(journal, key="fp:queued", algo_id="q")
    assert [r.id for r in journal.awaiting_evidence(since)] == [earlier.id, later.id]
    assert [r.id for r in journal.awaiting_evidence(since, limit=1)] == [earlier.id]
    assert [r.id for r in journal.awaiting_evidence(since - 120)] == [too_early.id, earlier.id, later.id]
    assert journal.awaiting_evidence(since + 30) == []


def test_untold_lists_the_finished_alerts_no_delivered_notification_named_until_told(journals):
    journal = journals()
    since = journal.now()
    proposed = unknown_alert(journal, key="fp:proposed", algo_id="p", finished_at=since + 1)
    journal.record_evidence(proposed.id, GATHERED, "executed", "OKX's records: executed")
    unknown_alert(journal, key="fp:unread", algo_id="u", finished_at=since + 2)  # its first look tells it
    failed, _ = add(journal, key="fp:failed", algo_id="f")
    journal.claim_due("a", 1, journal.now())
    journal.finish(failed.id, "failed", okx_code="50013", now=since + 3)
    assert [r.id for r in journal.untold(("unknown", "failed"), since, since + 10)] == [proposed.id, failed.id]
    assert [r.id for r in journal.untold(("failed",), since, since + 10)] == [failed.id]
    assert [r.id for r in journal.untold(("unknown", "failed"), since, since + 2)] == [proposed.id]
    journal.told([proposed.id, failed.id])
    assert journal.untold(("unknown", "failed"), since, since + 10) == []


def test_awaiting_second_read_lists_not_executed_proposals_never_read_again_marked_or_not(journals):
    journal = journals()
    since = journal.now()
    unread = unknown_alert(journal, key="fp:unread", algo_id="u", finished_at=since + 1)
    read = unknown_alert(journal, key="fp:read", algo_id="r", finished_at=since + 2)
    settled = unknown_alert(journal, key="fp:settled", algo_id="s", finished_at=since + 3)
    executed = unknown_alert(journal, key="fp:executed", algo_id="e", finished_at=since + 4)
    for record in (unread, read, settled):
        journal.record_evidence(record.id, GATHERED, "not_executed", "OKX's records: not executed")
    journal.record_evidence(executed.id, GATHERED, "executed", "OKX's records: executed")
    kept = json.dumps({**json.loads(GATHERED), "recheck": {"snapshot": None, "moved": None}})
    journal.revise_evidence(read.id, kept, "not_executed", "read again", was="not_executed")
    journal.resolve(settled.id, "executed", "session 1a2b")  # a late execution matters whoever settled it
    assert [r.id for r in journal.awaiting_second_read(since, since + 10)] == [unread.id, settled.id]
    assert [r.id for r in journal.awaiting_second_read(since + 2, since + 10)] == [settled.id]
    assert journal.awaiting_second_read(since, since + 2) == [journal.get(unread.id)]


def test_a_journal_upgraded_counts_its_finished_unknown_and_failed_alerts_as_told(database_url, monkeypatch):
    old_id = previous_release_journal(database_url, monkeypatch, before="told")
    finish = "UPDATE alerts SET state = 'failed', finished_at = received_at WHERE id = ?"
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url[len("sqlite:///") :]) as db:
            db.execute(finish, (old_id,))
    else:
        with psycopg.connect(database_url, autocommit=True) as db:
            db.execute(finish.replace("?", "%s"), (old_id,))
    journal = open_journal(database_url)
    try:
        assert journal.untold(("failed",), 0.0, journal.now() + 1) == []  # told by the release that failed it
        newer, _ = add(journal, key="fp:new", algo_id="2")
        journal.claim_due("a", 1, journal.now())
        journal.finish(newer.id, "failed", okx_code="50013")
        assert [r.id for r in journal.untold(("failed",), 0.0, journal.now() + 1)] == [newer.id]
    finally:
        journal.close()


def test_the_records_json_shows_the_evidence_parsed_and_the_proposal(journals):
    journal = journals()
    unknown = unknown_alert(journal)
    assert journal.get(unknown.id).to_json()["evidence"] == json.loads(SNAPSHOT)
    journal.record_evidence(unknown.id, GATHERED, "executed", "OKX's records: executed")
    shown = journal.get(unknown.id).to_json()
    assert (shown["evidence"], shown["proposal"]) == (json.loads(GATHERED), "executed")


@pytest.mark.parametrize(
    ("evidence", "proposal", "shown"),
    [
        (None, None, None),
        ("{}", None, {}),
        ('{"changes": [{"delta": "+50"}], "events": []}', "cant_tell", {"changes": [{"delta": "+50"}], "events": []}),
    ],
)
def test_to_json_parses_the_evidence_and_shows_the_proposal_as_stored(evidence, proposal, shown):
    record = Record(1, 0.0, "fp:1", "1", "add", "1", BODY, 60.0, "unknown", evidence=evidence, proposal=proposal)
    assert (record.to_json()["evidence"], record.to_json()["proposal"]) == (shown, proposal)


# Columns the evidence, the accounts and the actions releases added: the release before evidence knows none of them.
ADDED_BY_RELEASE = (("evidence", "proposal"), ("account",), ("endpoint",))
# Each engine's first migration of a release: the schemas before it are the older releases'.
FIRST_MIGRATION_OF = {
    "evidence": {"sqlite": 6, "postgres": 5},
    "accounts": {"sqlite": 7, "postgres": 6},
    "one-round-trip add": {"postgres": 7},
    "told": {"sqlite": 8, "postgres": 10},
    "endpoints": {"sqlite": 9, "postgres": 11},
}


def previous_release_journal(url, monkeypatch, before: str) -> int:
    """The journal as the release before ``before`` (a key of FIRST_MIGRATION_OF) left it: that
    release's schema, and one alert journaled by SQL naming only its columns. Returns the alert's id."""
    engine = sqlite_journal if url.startswith("sqlite") else postgres_journal
    first_new = FIRST_MIGRATION_OF[before]["sqlite" if engine is sqlite_journal else "postgres"]
    older = tuple((version, script) for version, script in engine.MIGRATIONS if version < first_new)
    monkeypatch.setattr(engine.migrations, "MIGRATIONS", older)
    monkeypatch.setattr(engine.migrations, "SCHEMA_VERSION", older[-1][0])
    open_journal(url).close()
    monkeypatch.undo()
    insert = (
        "INSERT INTO alerts (received_at, dedup_key, algo_id, action, amount, request_body, expires_at, state) "
        "VALUES (?, 'fp:old', '1', 'add', '1', ?, ?, 'queued')"
    )
    now = time.time()
    if engine is sqlite_journal:
        with sqlite3.connect(url[len("sqlite:///") :]) as db:
            return db.execute(insert, (now, BODY, now + 600)).lastrowid
    with psycopg.connect(url, autocommit=True) as db:
        return db.execute(insert.replace("?", "%s") + " RETURNING id", (now, BODY, now + 600)).fetchone()[0]


def test_a_journal_of_the_previous_schema_is_upgraded_and_its_alerts_gain_evidence(database_url, monkeypatch):
    old_id = previous_release_journal(database_url, monkeypatch, before="evidence")
    journal = open_journal(database_url)
    try:
        expected = (sqlite_journal if database_url.startswith("sqlite") else postgres_journal).SCHEMA_VERSION
        assert journal.schema_version() == expected
        old = journal.get(old_id)
        assert (old.state, old.evidence, old.proposal) == ("queued", None, None)
        (claimed,) = journal.claim_due("a", 1, journal.now())
        assert journal.confirm_send(Claim.of(claimed), evidence=SNAPSHOT)
        journal.finish(old_id, "unknown", claim=Claim.of(claimed))
        assert [r.id for r in journal.awaiting_evidence(0)] == [old_id]
        assert journal.record_evidence(old_id, GATHERED, "executed", "OKX's records: executed").proposal == "executed"
    finally:
        journal.close()
    again = open_journal(database_url)  # opening it again migrates nothing twice
    try:
        assert again.schema_version() == expected and again.get(old_id).evidence == GATHERED
    finally:
        again.close()


def test_an_older_release_keeps_claiming_and_confirming_while_the_new_one_migrates(pg_url, monkeypatch):
    # A deploy overlaps both releases on one database: the old one's claims name only its own columns.
    previous_release_journal(pg_url, monkeypatch, before="evidence")
    newer = sum(ADDED_BY_RELEASE, ())
    old_columns = ", ".join(c for c in COLUMNS if c not in newer)
    with psycopg.connect(pg_url, autocommit=True) as old_release:
        claim_sql = f"SELECT {old_columns} FROM journal_claim(%s, 10, %s, 30)"
        old_release.execute(claim_sql, ("old", time.time()))  # its plan, cached before the upgrade
        new = open_journal(pg_url)
        try:
            add(new, key="fp:new", algo_id="2")
            (row,) = old_release.execute(claim_sql, ("old", new.now())).fetchall()
            assert len(row) == len(COLUMNS) - len(newer) and row[COLUMNS.index("claimed_by")] == "old"
            confirmed = old_release.execute(
                "UPDATE alerts SET sent_at = %s WHERE id = %s AND state = 'sending' AND claimed_by = 'old'",
                (new.now(), row[0]),
            ).rowcount
            assert confirmed == 1 and new.get(row[0]).evidence is None
        finally:
            new.close()


# -- several OKX accounts ---------------------------------------------------------------------------


def two_accounts_queued(journal) -> dict[str, list[int]]:
    """Alerts for two accounts, interleaved as they arrive, two bots each: ids by account, oldest first."""
    ids: dict[str, list[int]] = {"main": [], "hedge": []}
    for n in range(3):
        for account, bot in (("main", f"m{n % 2}"), ("hedge", f"h{n % 2}")):
            ids[account].append(add(journal, key=f"fp:{account}:{n}", algo_id=bot, account=account)[0].id)
    return ids


def test_an_alert_keeps_the_account_it_was_added_for_and_one_added_without_is_default(journals):
    journal = journals()
    hedge, _ = add(journal, key="fp:hedge", algo_id="7", account="hedge")
    unnamed, _ = add(journal, key="fp:unnamed", algo_id="8")
    assert (hedge.account, journal.get(hedge.id).account, hedge.to_json()["account"]) == ("hedge", "hedge", "hedge")
    assert (unnamed.account, journal.get(unnamed.id).account) == ("default", "default")
    # A repeat is the earlier alert, its account with it: duplicates are per bot, as before.
    again, created = add(journal, key="fp:hedge", algo_id="7", account="hedge")
    assert (created, again.id, again.account) == (False, hedge.id, "hedge")


def test_a_claim_for_one_account_takes_only_its_alerts_and_leaves_the_others_queued(journals):
    journal = journals()
    ids = two_accounts_queued(journal)
    now = journal.now()
    # Each bot's first alert is due; its second waits its turn (h0's n=2 behind n=0).
    hedge = journal.claim_due("a", 10, now, account="hedge")
    assert [r.id for r in hedge] == ids["hedge"][:2] and {r.account for r in hedge} == {"hedge"}
    assert [r.state for r in journal.recent(account="main")] == ["queued"] * 3
    assert journal.claim_due("a", 10, journal.now(), account="hedge") == []  # hedge's third waits for h0
    assert journal.claim_due("a", 10, journal.now(), account="demo") == []
    main = journal.claim_due("a", 10, journal.now(), account="main")
    assert [r.id for r in main] == ids["main"][:2] and {r.account for r in main} == {"main"}


def test_a_claim_without_an_account_takes_every_accounts_alerts_as_before(journals):
    journal = journals()
    ids = two_accounts_queued(journal)
    claimed = journal.claim_due("a", 10, journal.now())
    assert [r.id for r in claimed] == sorted(ids["main"][:2] + ids["hedge"][:2])


@pytest.mark.parametrize(
    ("account", "in_turn", "before_third", "expected"),
    [
        (None, True, False, 4),  # each bot's first alert
        (None, False, False, 6),
        ("main", True, False, 2),
        ("main", False, False, 3),
        ("hedge", False, False, 3),
        ("hedge", False, True, 2),  # ahead of hedge's third alert: hedge's own, not main's
        (None, False, True, 5),  # every account's alerts ahead of it
        ("demo", False, False, 0),
    ],
)
def test_count_due_counts_one_accounts_alerts_or_every_accounts(journals, account, in_turn, before_third, expected):
    journal = journals()
    ids = two_accounts_queued(journal)
    before_id = ids["hedge"][2] if before_third else None
    assert journal.count_due(journal.now(), before_id=before_id, in_turn=in_turn, account=account) == expected


def test_one_bots_alerts_go_in_order_within_its_account_and_never_hold_up_another_account(journals):
    journal = journals()
    x1, x2 = (add(journal, key=f"fp:x{n}", algo_id="x", account="hedge")[0] for n in (1, 2))
    m1, _ = add(journal, key="fp:m1", algo_id="m", account="main")
    assert [r.id for r in journal.claim_due("a", 10, journal.now(), account="hedge")] == [x1.id]
    assert journal.claim_due("a", 10, journal.now(), account="hedge") == []  # x2 waits while x1 is sent
    assert [r.id for r in journal.claim_due("a", 10, journal.now(), account="main")] == [m1.id]
    journal.requeue(x1.id, "50013", "busy", "not executed", not_before=journal.now() + 60, claim=Claim(x1.id, "a", 1))
    assert journal.claim_due("a", 10, journal.now(), account="hedge") == []  # ...and while x1 waits for its retry
    (again,) = journal.claim_due("a", 10, journal.now() + 61, account="hedge")
    assert again.id == x1.id
    journal.finish(x1.id, "ok", claim=Claim.of(again))
    assert [r.id for r in journal.claim_due("a", 10, journal.now(), account="hedge")] == [x2.id]


def test_recent_filters_by_account(journals):
    journal = journals()
    ids = two_accounts_queued(journal)
    unnamed, _ = add(journal, key="fp:unnamed", algo_id="d")
    assert [r.id for r in journal.recent(account="hedge")] == ids["hedge"][::-1]
    assert [r.id for r in journal.recent(account="main", limit=1)] == ids["main"][-1:]
    assert [r.id for r in journal.recent(account="default")] == [unnamed.id]
    assert journal.recent(account="demo") == []
    assert len(journal.recent()) == 7


def test_a_journal_from_before_accounts_is_upgraded_and_its_alerts_are_the_default_accounts(database_url, monkeypatch):
    old_id = previous_release_journal(database_url, monkeypatch, before="accounts")
    journal = open_journal(database_url)
    try:
        expected = (sqlite_journal if database_url.startswith("sqlite") else postgres_journal).SCHEMA_VERSION
        assert journal.schema_version() == expected and journal.get(old_id).account == "default"
        hedge, _ = add(journal, key="fp:hedge", algo_id="2", account="hedge")
        assert journal.count_due(journal.now(), account="default") == 1
        assert [r.id for r in journal.claim_due("a", 10, journal.now(), account="default")] == [old_id]
        assert [r.id for r in journal.recent(account="hedge")] == [hedge.id]
    finally:
        journal.close()


# Migration 4's journal_add as the release before accounts calls it: 13 arguments, no account.
OLD_ADD = (
    "SELECT created, used, alert_id "
    "FROM journal_add(%s, 0, %s, 'add', '1', %s, %s, 'queued', NULL, NULL, NULL, NULL, %s)"
)


def test_an_older_release_adds_and_claims_through_its_own_functions_after_the_accounts_migration(pg_url, monkeypatch):
    # A deploy overlaps both releases on one database: the old one adds and claims through migration 4's
    # functions, naming only its own columns; its alerts are the default account's, and so are the only
    # ones its claims take: it knows one key, and another account's alert must never go with it.
    previous_release_journal(pg_url, monkeypatch, before="accounts")
    newer = ("account", "endpoint")  # the accounts release's column, and those of the releases after it
    old_columns = ", ".join(c for c in COLUMNS if c not in newer)
    claim_sql = f"SELECT {old_columns} FROM journal_claim(%s, 10, %s, 30)"
    with psycopg.connect(pg_url, autocommit=True) as old_release:
        old_release.execute(claim_sql, ("old", time.time()))  # its plan, cached before the upgrade
        new = open_journal(pg_url)
        try:
            new.claim_due("new", 10, new.now())  # the alert journaled before the upgrade: out of the way
            (created, _, old_id) = old_release.execute(
                OLD_ADD, ("fp:old-release", "5", BODY, new.now() + 600, ["queued"])
            ).fetchone()
            hedge, _ = add(new, key="fp:hedge", algo_id="6", account="hedge")
            assert created and new.get(old_id).account == "default"
            rows = old_release.execute(claim_sql, ("old", new.now())).fetchall()
            assert sorted(row[0] for row in rows) == [old_id]
            assert new.get(hedge.id).state == "queued"  # left for this release, which sends it with hedge's key
            assert all(len(row) == len(COLUMNS) - len(newer) for row in rows)
            assert all(row[COLUMNS.index("claimed_by")] == "old" for row in rows)
        finally:
            new.close()


# Migration 6's journal_add as the release before migration 7 calls it: 14 arguments, the id alone.
PREVIOUS_ADD = (
    "SELECT created, used, alert_id "
    "FROM journal_add(%s, 0, %s, 'add', %s, %s, %s, 'queued', NULL, %s, NULL, NULL, %s, %s)"
)


def test_the_two_releases_before_add_through_their_own_functions_after_the_one_round_trip_migration(
    pg_url, monkeypatch
):
    # A deploy overlaps this release with older ones on one database: each checks duplicates and the
    # cap against every release's alerts, under the same locks, through its own journal_add.
    previous_release_journal(pg_url, monkeypatch, before="one-round-trip add")
    cap, queued = Decimal("100"), ["queued"]
    with psycopg.connect(pg_url, autocommit=True) as old_release:
        new = open_journal(pg_url)
        try:
            assert new.schema_version() == PG_SCHEMA_VERSION
            expires = new.now() + 600
            mine, _ = add(new, key="fp:new", algo_id="9", amount="60", cap=cap, account="hedge")
            repeat = old_release.execute(PREVIOUS_ADD, ("fp:new", "9", "1", BODY, expires, None, queued, "hedge"))
            assert repeat.fetchone() == (False, None, mine.id)
            over = old_release.execute(PREVIOUS_ADD, ("fp:prev", "9", "41", BODY, expires, cap, queued, "hedge"))
            assert over.fetchone() == (False, Decimal("60"), None)
            created, _, previous_id = old_release.execute(
                PREVIOUS_ADD, ("fp:prev", "9", "40", BODY, expires, cap, queued, "hedge")
            ).fetchone()
            (created_by_oldest, _, oldest_id) = old_release.execute(
                OLD_ADD, ("fp:oldest-release", "8", BODY, expires, queued)
            ).fetchone()
            assert created and created_by_oldest
            assert (new.get(previous_id).account, new.get(oldest_id).account) == ("hedge", "default")
            again, created_again = add(new, key="fp:prev", algo_id="9", account="hedge")
            assert (created_again, again) == (False, new.get(previous_id))
            with pytest.raises(DailyCapExceeded) as refused:  # 60 of this release's, 40 of the older one's
                add(new, key="fp:more", algo_id="9", amount="0.01", cap=cap, account="hedge")
            assert refused.value.remaining == 0
        finally:
            new.close()


@pytest.fixture
def round_trips(tmp_path, monkeypatch):
    """Watches the wire of every PostgreSQL connection opened from now on (libpq's trace): each call
    returns what ended a round trip since the last call, in order: "check" for the pool's check of
    a connection it hands out (an empty simple query), "statement" for anything else."""
    traces = []
    connect = psycopg.Connection.connect.__func__

    def traced(cls, *args, **kwargs):
        conn = connect(cls, *args, **kwargs)
        path = tmp_path / f"wire-{len(traces)}.txt"
        written = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # libpq writes, the test reads by name
        traces.append([path, written, 0])
        conn.pgconn.trace(written)
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        return conn

    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(traced))

    def since_last_call() -> list[str]:
        seen = []
        for entry in traces:
            path, _, read = entry
            text = path.read_bytes()
            entry[2] = len(text)
            for line in text[read:].decode(errors="replace").splitlines():
                direction, _, message, query = (line.split("\t", 3) + ["", "", "", ""])[:4]
                if direction == "F" and message in ("Sync", "Query"):
                    seen.append("check" if message == "Query" and query.strip() == '""' else "statement")
        return seen

    yield since_last_call
    for _, written, _ in traces:
        os.close(written)


@pytest.mark.parametrize(
    ("key", "amount", "outcome"),
    [("fp:new", "1", "added"), ("fp:used", "1", "repeat"), ("fp:over", "91", "refused"), ("fp:up-to", "90", "added")],
)
def test_an_alert_costs_one_statement_whether_added_repeated_or_refused(pg_url, round_trips, key, amount, outcome):
    journal = open_journal(pg_url)
    try:
        add(journal, key="fp:used", amount="10", cap=Decimal("100"))
        now = journal.now()
        round_trips()
        try:
            record, created = journal.add(
                dedup_key=key,
                dedup_since=0.0,
                algo_id="1",
                action="add",
                amount=amount,
                request_body=BODY,
                expires_at=now + 600,
                daily_cap=Decimal("100"),
            )
            assert (created, outcome) in ((True, "added"), (False, "repeat"))
        except DailyCapExceeded:
            assert outcome == "refused"
        # No check of a healthy connection: only a connection the server spoke to is checked.
        assert round_trips() == ["statement"]
    finally:
        journal.close()


def test_connections_the_server_ended_are_replaced_before_a_statement_needs_them(pg_url, round_trips):
    journal = open_journal(pg_url)
    try:
        record, _ = add(journal, key="fp:before")
        with psycopg.connect(pg_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (f"okx-relay:{os.getpid()}",),
            ).fetchone()[0]
        assert ended >= 2  # at least one connection in each pool
        round_trips()
        # Every call succeeds: each ended connection is found out by its full check and replaced.
        assert journal.get(record.id) == record
        assert add(journal, key="fp:after")[1] is True
        journal.finish(record.id, "failed", detail="test")
        seen = round_trips()
        print("round trips after the termination:", seen)
        assert "check" in seen  # the branch that looks closer at a suspect connection ran
    finally:
        journal.close()


def test_a_connection_unused_for_a_while_is_checked_before_it_is_handed_out(pg_url, round_trips, monkeypatch):
    journal = open_journal(pg_url)
    try:
        add(journal, key="fp:first")
        monkeypatch.setattr(postgres_database, "CHECK_AFTER_IDLE", -1.0)  # every connection has been idle too long
        round_trips()
        add(journal, key="fp:second")
        assert round_trips() == ["check", "statement"]  # the add (the clock was read at the first)
    finally:
        journal.close()


def test_the_database_clock_is_read_once_every_few_seconds_and_followed_in_between(pg_url, round_trips):
    journal = open_journal(pg_url)
    try:
        with psycopg.connect(pg_url, autocommit=True) as other:
            database_now = lambda: other.execute(f"SELECT {NOW}").fetchone()[0]  # noqa: E731
            journal.now()
            round_trips()
            gaps = []
            for _ in range(20):
                before, ours, after = database_now(), journal.now(), database_now()
                gaps.append(max(before - ours, ours - after, 0.0))
                time.sleep(0.01)
        assert round_trips() == []  # 20 reads of the clock in 0.2 s, no round trip of the journal's
        print("furthest outside the database's clock:", max(gaps))
        assert max(gaps) < 0.05  # within half the first reading's round trip (a loaded machine's, too)
    finally:
        journal.close()


Offset = postgres_database._ClockOffset


@pytest.mark.parametrize(
    ("kept", "reading", "replaced"),
    [
        (Offset(100.0, 0.001, 0.0, 0.0), Offset(100.0005, 0.003, 5.0, 5.0), False),  # a slower reading agreeing
        (Offset(100.0, 0.001, 0.0, 0.0), Offset(100.0, 0.0005, 5.0, 5.0), True),  # a more certain one
        (Offset(100.0, 0.001, 0.0, 0.0), Offset(100.002, 0.003, 30.0, 30.0), True),  # the kept one is too old
        (Offset(100.0, 0.001, 0.0, 0.0), Offset(220.0, 0.003, 5.0, 5.0), True),  # 120 s suspended, uncounted
        (Offset(100.0, 0.001, 0.0, 0.0), Offset(99.0, 0.003, 5.0, 5.0), True),  # the database's clock stepped back
        (Offset(100.0, 0.001, 0.0, 0.0), Offset(100.01, 0.003, 5.0, 5.0), True),  # beyond both and the drift
    ],
)
def test_a_new_reading_of_the_database_clock_replaces_the_offset_only_when_it_should(kept, reading, replaced):
    assert kept.gives_way_to(reading) is replaced


def test_a_host_clock_that_missed_a_suspension_is_caught_at_the_next_reading(pg_url, monkeypatch):
    journal = open_journal(pg_url)
    try:
        journal.now()  # the first reading
        elapsed = postgres_database._elapsed
        monkeypatch.setattr(postgres_database, "_elapsed", lambda: elapsed() - 120.0)  # 120 s it did not count
        monkeypatch.setattr(postgres_database, "CLOCK_READ_EVERY", float("-inf"))  # the next reading is due
        journal.now()  # ...and disagrees by 120 s
        monkeypatch.setattr(postgres_database, "CLOCK_READ_EVERY", 5.0)
        with psycopg.connect(pg_url, autocommit=True) as other:
            database_now = other.execute(f"SELECT {NOW}").fetchone()[0]
        assert abs(journal.now() - database_now) < 0.05
    finally:
        journal.close()


@pytest.mark.parametrize(("address", "locked"), [("203.0.113.9", True), ("198.51.100.1", False)])
def test_a_webhook_requests_lockout_check_costs_one_statement(pg_url, round_trips, address, locked):
    journal = open_journal(pg_url)
    try:
        lockouts = journal.lockout_store()
        for _ in range(3):
            lockouts.failure("203.0.113.9", 3, 60, 120)
        round_trips()
        assert (lockouts.remaining(address) > 110) is locked
        assert round_trips() == ["statement"]  # no BEGIN and COMMIT around the one read, no check
    finally:
        journal.close()


def claim_waits(conn, account: str | None, old_signature: bool = False) -> bool:
    """Whether a claim on ``conn`` would wait for a lock another transaction holds (lock_timeout ends
    the wait at once instead); a claim that does not wait finds nothing due and changes nothing."""
    call = "journal_claim('probe', 10, 0, 30)" if old_signature else "journal_claim('probe', 10, 0, 30, %s)"
    try:
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '100ms'")
            conn.execute(f"SELECT id FROM {call}", () if old_signature else (account,))
        return False
    except psycopg.errors.LockNotAvailable:
        return True


@pytest.mark.parametrize(
    ("probe", "old_signature", "waits"),
    [
        ("hedge", False, False),  # another account's claim never waits for main's
        ("main", False, True),  # main's claims take turns (each bot's order)
        (None, False, True),  # a claim for every account waits for every claim
        (None, True, False),  # an older release's claims the default account's only: it never waits for main's
    ],
)
def test_claims_for_different_accounts_never_wait_for_each_other(pg_url, probe, old_signature, waits):
    open_journal(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as holder, psycopg.connect(pg_url, autocommit=True) as prober:
        with holder.transaction():  # a claim for main, under way
            holder.execute("SELECT id FROM journal_claim('holder', 10, 0, 30, 'main')")
            assert claim_waits(prober, probe, old_signature) is waits
        assert claim_waits(prober, probe, old_signature) is False  # ...and once it committed, nothing waits


@pytest.mark.parametrize(
    ("holder_claim", "waiting"),
    [
        ("journal_claim('holder', 10, 0, 30, NULL)", {"hedge": True, "main": True, "default": True}),
        ("journal_claim('holder', 10, 0, 30)", {"hedge": False, "main": False, "default": True}),  # an older release's
    ],
)
def test_a_claim_for_every_account_holds_up_each_accounts_claims(pg_url, holder_claim, waiting):
    open_journal(pg_url).close()
    with (
        psycopg.connect(pg_url, autocommit=True) as holder,
        psycopg.connect(pg_url, autocommit=True) as prober,
        holder.transaction(),
    ):
        holder.execute(f"SELECT id FROM {holder_claim}")
        assert {account: claim_waits(prober, account) for account in waiting} == waiting


def test_bot_order_holds_between_instances_claiming_for_accounts_and_for_every_account_at_once(pg_journals):
    instances = [pg_journals(), pg_journals(), pg_journals()]
    for n in range(48):
        account = ("main", "hedge")[n % 2]
        add(instances[0], key=f"fp:{n}", algo_id=f"{account}-{n % 3}", account=account)
    claimants = [("main", instances[0]), ("hedge", instances[1]), (None, instances[2])]
    order: list[tuple[str, int]] = []
    lock = threading.Lock()
    overlaps = 0

    def drain(i):
        nonlocal overlaps
        account, journal = claimants[i]
        idle = 0
        while idle < 20:
            got = journal.claim_due(f"i{i}", 3, journal.now(), account=account)
            if not got:
                idle += 1
                time.sleep(0.005)
                continue
            idle = 0
            assert account is None or {r.account for r in got} == {account}
            for r in got:
                overlaps += len(journal.recent(state="sending", algo_id=r.algo_id)) > 1
            with lock:
                order.extend((r.algo_id, r.id) for r in got)
            time.sleep(0.002)
            for r in got:
                journal.finish(r.id, "ok", claim=Claim.of(r))

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == 0 and len(order) == 48
    for bot in {b for b, _ in order}:
        ids = [i for b, i in order if b == bot]
        assert ids == sorted(ids), bot


# -- every signal-bot action (issue 23): each alert names its endpoint ----------------------------

# Each action's journaled alert: (action, endpoint, amount, request body), as the intake journals them.
ACTION_ROWS = [
    ("add", "margin-balance", "10", '{"algoId":"1","type":"add","amt":"10"}'),
    ("reduce", "margin-balance", "2.5", '{"algoId":"1","type":"reduce","amt":"2.5"}'),
    (
        "buy",
        "sub-order",
        "2",
        '{"instId":"BTC-USDT-SWAP","algoId":"1","side":"buy","ordType":"limit","sz":"2","px":"60000","reduceOnly":false}',
    ),
    (
        "sell",
        "sub-order",
        "0.5",
        '{"instId":"ETH-USDT-SWAP","algoId":"1","side":"sell","ordType":"market","sz":"0.5","reduceOnly":true}',
    ),
    ("close", "close-position", "", '{"algoId":"1","instId":"BTC-USDT-SWAP"}'),
    ("cancel", "cancel-sub-order", "", '{"algoId":"1","instId":"BTC-USDT-SWAP"}'),
    ("tpsl", "amendTPSL", "", '{"algoId":"1","exitSettingParam":{"tpSlType":"price","slPct":"0.02"}}'),
    ("stop", "stop-order-algo", "", '[{"algoId":"1"}]'),
]
SUMMARIES = {
    "add": "add 10",
    "reduce": "reduce 2.5",
    "buy": "buy 2 contracts of BTC-USDT-SWAP limit 60000",
    "sell": "sell 0.5 contracts of ETH-USDT-SWAP at market, reduce-only",
    "close": "close the BTC-USDT-SWAP position at market",
    "cancel": "cancel the live sub-orders of BTC-USDT-SWAP",
    "tpsl": "tpsl by price: stop-loss 0.02",
    "stop": "stop the bot",
}


def add_action(journal, action, endpoint, amount, body, key=None):
    return journal.add(
        dedup_key=key or f"fp:{action}",
        dedup_since=0.0,
        algo_id="1",
        action=action,
        amount=amount,
        request_body=body,
        expires_at=journal.now() + 600,
        endpoint=endpoint,
    )


@pytest.mark.parametrize(("action", "endpoint", "amount", "body"), ACTION_ROWS, ids=[row[0] for row in ACTION_ROWS])
def test_each_actions_alert_is_journaled_and_read_back_as_it_was_added(journals, action, endpoint, amount, body):
    journal = journals()
    added, created = add_action(journal, action, endpoint, amount, body)
    read = journal.get(added.id)
    assert created and read == added
    assert (read.action, read.endpoint, read.amount, read.request_body) == (action, endpoint, amount, body)
    assert read.summary == SUMMARIES[action]
    shown = read.to_json()
    assert (shown["action"], shown["endpoint"], shown["request"]) == (action, endpoint, json.loads(body))
    assert shown["order"]["summary"] == SUMMARIES[action]
    assert journal.recent(1) == [read]
    (claimed,) = journal.claim_due("a", 1, journal.now())  # the queue hands it on whole, endpoint and all
    assert (claimed.endpoint, claimed.request_body) == (endpoint, body)


def test_an_alert_added_without_an_endpoint_is_a_margin_call(journals):
    assert add(journals())[0].endpoint == "margin-balance"


def test_a_journal_from_before_the_endpoints_is_upgraded_and_its_alerts_are_margin_calls(database_url, monkeypatch):
    old_id = previous_release_journal(database_url, monkeypatch, before="endpoints")
    journal = open_journal(database_url)
    try:
        expected = (sqlite_journal if database_url.startswith("sqlite") else postgres_journal).SCHEMA_VERSION
        assert journal.schema_version() == expected
        old = journal.get(old_id)
        assert (old.action, old.endpoint, old.state) == ("add", "margin-balance", "queued")
        buy, _ = add_action(journal, *ACTION_ROWS[2])
        assert journal.get(buy.id).endpoint == "sub-order"
        assert [r.id for r in journal.claim_due("a", 10, journal.now())] == [old_id]  # the bot's older alert first
    finally:
        journal.close()


def test_the_release_before_adds_through_its_own_function_after_the_endpoints_migration(pg_url, monkeypatch):
    # A deploy overlaps both releases: the older one adds through migration 7's journal_add_row (14
    # arguments), naming only its columns; its alerts are margin calls, duplicates are one for both.
    previous_release_journal(pg_url, monkeypatch, before="endpoints")
    old_add = f"SELECT created, (alert).id FROM journal_add_row({', '.join(['%s'] * 14)})"
    with psycopg.connect(pg_url, autocommit=True) as old_release:
        new = open_journal(pg_url)
        try:
            expires = new.now() + 600
            args = (
                "fp:older",
                0,
                "5",
                "add",
                "1",
                BODY,
                expires,
                "queued",
                None,
                None,
                None,
                None,
                ["queued"],
                "default",
            )
            created, old_id = old_release.execute(old_add, args).fetchone()
            assert created and new.get(old_id).endpoint == "margin-balance"
            close, _ = add_action(new, *ACTION_ROWS[4], key="fp:close")
            repeat = old_release.execute(old_add, ("fp:close", *args[1:])).fetchone()
            assert repeat == (False, close.id) and new.get(close.id).endpoint == "close-position"
        finally:
            new.close()


# -- the journal by job: the same texts on both engines, shipped migrations untouched -------------


def test_every_timeline_text_is_the_same_on_both_engines(journals):
    # Known answers: each engine writes these texts from the one constant (PostgreSQL's claim from
    # its shipped journal_claim, generated from CLAIMED_DETAIL_FORMAT); an edit to one shows here.
    journal = journals()
    sent, dropped = add(journal, key="fp:s")[0], add(journal, key="fp:d", algo_id="2")[0]
    old = add(journal, key="fp:o", algo_id="3", expires_in=-1)[0]
    journal.claim_due("instance-a", 2, journal.now())
    journal.unclaim([Claim(dropped.id, "instance-a", 1)])
    journal.requeue(sent.id, "50011", "Too Many Requests", "rate limited", 1_800_000_000.0)
    journal.expire_overdue(journal.now())
    journal.finish(sent.id, "unknown", detail="no answer")
    journal.resolve(sent.id, "not_executed", "token")
    resend = add(journal, key="fp:r")[0]
    journal.link_resend(sent.id, resend.id, "token")
    assert [(e.kind, e.detail) for e in journal.events(sent.id)] == [
        ("claimed", "attempt 1, claimed by instance-a"),
        ("retry", "not executed: OKX 50011: Too Many Requests; rate limited; due again 2027-01-15T08:00:00.000Z"),
        ("unknown", "unknown: no answer from OKX; no answer"),
        ("marked", "marked not executed by token"),
        ("resent", f"sent again as alert {resend.id} by token"),
    ]
    assert [(e.kind, e.detail) for e in journal.events(dropped.id)] == [
        ("claimed", "attempt 1, claimed by instance-a"),
        ("unclaimed", "back in the queue: the send never started"),
    ]
    assert [(e.kind, e.detail) for e in journal.events(old.id)] == [
        ("expired", "too old to send: it waited past its lag; not sent")
    ]
    assert journal.events(resend.id)[-1].detail == f"a resend of alert {sent.id} by token"


# sha256 of each shipped migration's text: they ran on deployed databases and are never edited.
SHIPPED_MIGRATIONS = {
    ("postgres", 1): "c8952ecddd3f452e78e72041906c8361218f52a612bdf8598522fa51bb4d88d4",
    ("postgres", 2): "792af26be033115753a6aaf74926628f565be6531bfe16bfb6f172b98c7f79b8",
    ("postgres", 3): "6820ad526594e5e9a2df3f15e3f0f1ace78aa4d7ec9552dad26d58829e99b484",
    ("postgres", 4): "aee527945db8300d718cd60eceddb37a647fa0d605fd46f8d26059081d456fbf",
    ("postgres", 5): "3b124d332605c4394fad7d48eee7b6ded093a3508f0d950ffad066561415a8e3",
    ("postgres", 6): "23d461f400529d9d97b7344db90625b26209db26252eb495682571c46b32159c",
    ("postgres", 7): "299b0b7bf193dd819242c0e3e4ffe1af1294079aa04297d100cdd1001a9611d3",
    ("postgres", 8): "a9057c7fa6b8ed401d25e37501354c425da3bb9b5f658bef641cb44f8c2f957c",
    ("postgres", 9): "4652c8f880c8a25d5bf656a2ffe3db038f32858d9cecd8484a0f056a842594fb",
    ("postgres", 10): "951ae43fe3701f5f558fed3b88e96bedb749550237de4c00b71318df121b31f1",
    ("postgres", 11): "9ca6c7429a188d7c91f74cbfd4bf07808f4258c0b37e74bd36e21790f3380915",
    ("postgres", 12): "a8ed1c7fae68b313567985cac1a77d5638bbebcd0a29149f946e4b06eb965176",
    ("postgres", 13): "ffdfe78e3cc6d2786cf134937fe1e36a5142b831219a8952251ae16b72d2edf3",
    ("sqlite", 1): "5ffe9c22591547187e41273986b8579e903ed321d3b256e8fb5fc5a820818a53",
    ("sqlite", 2): "37dc8e4bbbadcd1ccc1fc5d48f16d40b06b57f5ee948ed09e23bb13a932e0978",
    ("sqlite", 3): "407c3808c44507a79b09ce87d66cdf32610e2b351f7fa4d126ada10c92d325ce",
    ("sqlite", 4): "93e9109df2dcc926dac1f3ec982cd6162c778a0d061443651b2f2aef3473dbd7",
    ("sqlite", 5): "3c9bb9d342ab428dc5ccaccf43b4dda59f8c4bdcd5e9ffdab0415befdb11caf2",
    ("sqlite", 6): "7265794ffbcd302bb759d2bea681799238972c3119f72d9daf89c6a9e226e281",
    ("sqlite", 7): "7684682ea1ea62ae1298a877307fe38651ed0d84d617c51350ef4125775f0c47",
    ("sqlite", 8): "eb63d0980d4f3316e805da1d0dc03ca12d87c02fe79accd004453c56b6785ff7",
    ("sqlite", 9): "db1dc90f234f2097479371b18a5b25014d3c4c8656399e7ec4130d49ad12ad61",
    ("sqlite", 10): "2d86919c87d9cb85eb82f92756765711777a8512ac7f43b90dacc44a8ab9e5ed",
}


@pytest.mark.parametrize(("engine", "version"), sorted(SHIPPED_MIGRATIONS))
def test_a_shipped_migration_is_byte_for_byte_what_databases_ran(engine, version):
    module = sqlite_journal if engine == "sqlite" else postgres_journal
    script = dict(module.MIGRATIONS)[version]
    assert hashlib.sha256(script.encode()).hexdigest() == SHIPPED_MIGRATIONS[engine, version]


JOBS = (
    (AlertRecords, "alerts"),  # what the alert log and the activity both answer: the journal asks the log
    (AlertLog, "alerts"),
    (Activity, "activity"),
    (NotificationLog, "notifications"),
    (QueueClaims, "claims"),
    (QueueOutcomes, "outcomes"),
    (QueueUpkeep, "upkeep"),
    (RefusalStore, "refusal_log"),
    (SessionStore, "sessions"),
    (Instances, "instances"),
)


@pytest.mark.parametrize(
    ("contract", "store", "method"),
    [
        (contract, store, name)
        for contract, store in JOBS
        for name, member in vars(contract).items()
        if callable(member) and not name.startswith("_") and name != "close"
    ],
)
def test_the_journal_asks_the_store_whose_job_a_method_is(contract, store, method):
    stores = {name: unittest.mock.create_autospec(job, instance=True) for job, name in JOBS}
    journal = Journal(unittest.mock.Mock(spec=Database), **stores)
    asked = getattr(stores[store], method)
    parameters = list(inspect.signature(getattr(contract, method)).parameters.values())[1:]
    arguments = {p.name: object() for p in parameters if p.default is inspect.Parameter.empty}
    assert getattr(journal, method)(**arguments) is asked.return_value
    asked.assert_called_once_with(**arguments)
    assert all(not other.method_calls for name, other in stores.items() if name != store)


@pytest.mark.parametrize("contract", [contract for contract, _ in JOBS])
def test_a_contract_asks_for_a_dozen_methods_at_most(contract):
    methods = [name for name in dir(contract) if not name.startswith("_") and callable(getattr(contract, name))]
    assert len(methods) <= 12, methods


def test_each_engine_gives_every_job_its_own_store_on_one_database(journals):
    journal = journals()
    for contract, store in JOBS:
        assert isinstance(getattr(journal, store), contract)
        assert getattr(journal, store).db is journal.database


def test_a_confirmation_committed_while_recovery_runs_is_never_queued_again(pg_url, pg_journals):
    # The double the long fault run found: a sender's confirmation judged its lease current, then
    # committed late (held up behind a lock); recovery, running as the lease lapsed, had already
    # passed its "maybe sent" statement and queued the alert again, sent. Under READ COMMITTED each
    # of recovery's statements must judge "never sent" itself: an UPDATE waiting on the row's lock
    # re-reads the committed row, and finds sent_at.
    journal, survivor = pg_journals(), pg_journals()
    alert, _ = add(journal)
    (claimed,) = journal.claim_due("paused", 1, journal.now(), lease=1.0)
    confirming = psycopg.connect(pg_url, autocommit=False)
    try:
        # The confirmation's UPDATE has judged the claim current and holds the row, uncommitted.
        assert (
            confirming.execute(
                f"UPDATE alerts SET sent_at = {NOW} WHERE {CLAIMED} AND lease_until > {NOW}",
                (claimed.id, "paused", claimed.attempts),
            ).rowcount
            == 1
        )
        eventually(
            lambda: survivor.database.one(f"SELECT lease_until < {NOW} FROM alerts WHERE id = %s", (alert.id,))[0]
        )
        recovered = []
        recovery = threading.Thread(target=lambda: recovered.extend(survivor.recover("survivor", dead_after=15)))
        recovery.start()
        # Recovery reaches the row and waits for its lock (only a statement that matched it waits).
        waits = eventually(
            lambda: survivor.database.one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )[0]
        )
        print(f"recovery waited on the confirmation's lock ({waits} waiting)")
        confirming.commit()
        recovery.join(10)
    finally:
        confirming.close()
    assert not recovery.is_alive()
    assert [r.id for r in recovered if r.state == "queued"] == []  # never back in the queue once sent
    (settled,) = eventually(lambda: survivor.recover("survivor", dead_after=15))  # the next look
    assert (settled.id, settled.state) == (alert.id, "unknown")


def test_a_claim_for_one_endpoint_takes_only_its_actions_and_waits_for_the_bots_others(journals):
    # One bot, one order across endpoints: bot 1's buy waits for its earlier add, whichever
    # endpoint's claim looks first; another bot's buy goes at once.
    journal = journals()
    added, _ = add(journal, key="fp:add", algo_id="1")
    bought, _ = add(journal, key="fp:buy", algo_id="1", action="buy")
    other, _ = add(journal, key="fp:other", algo_id="2", action="buy")
    orders = ("buy", "sell")
    assert journal.count_due(journal.now(), actions=orders) == 1
    assert [r.id for r in journal.claim_due("a", 5, journal.now(), actions=orders)] == [other.id]
    assert [r.id for r in journal.claim_due("a", 5, journal.now(), actions=("add", "reduce"))] == [added.id]
    assert journal.claim_due("a", 5, journal.now(), actions=orders) == []  # bot 1's add is being sent
    journal.finish(added.id, "ok")
    assert [r.id for r in journal.claim_due("a", 5, journal.now(), actions=orders)] == [bought.id]
