"""The one clock of local elapsed time: a test moves it, and what waits on it wakes."""

import queue
import threading
import time

import pytest

from webhook_app.clock import SYSTEM_CLOCK, ManualClock, elapsed
from webhook_app.workers.investigation import Investigator
from webhook_app.workers.membership import Membership


def in_thread(target, *args):
    """Runs ``target`` in a thread; returns the thread and a list that gets its result."""
    result = []
    thread = threading.Thread(target=lambda: result.append(target(*args)), daemon=True)
    thread.start()
    return thread, result


def test_a_manual_clock_moves_only_when_told():
    clock = ManualClock(50.0)
    assert clock() == clock.monotonic() == 50.0
    clock.advance(2.5)
    assert clock() == 52.5


def test_a_running_manual_clock_also_moves_with_the_host():
    clock = ManualClock(50.0, runs=True)
    clock.advance(10.0)
    host = time.monotonic()
    while time.monotonic() == host:  # until the host's clock has ticked
        pass
    assert clock() > 60.0


@pytest.mark.parametrize("waitable", [threading.Event(), threading.Condition()], ids=["event", "condition"])
def test_a_wait_times_out_once_the_clock_is_moved_past_its_timeout(waitable):
    clock = ManualClock()

    def wait():
        if isinstance(waitable, threading.Condition):
            with waitable:
                return clock.wait(waitable, 3.0)
        return clock.wait(waitable, 3.0)

    thread, result = in_thread(wait)
    clock.until_waiting(1)
    clock.advance(3.0)
    thread.join(5)
    assert result == [False]


def test_a_wait_ends_at_once_when_its_event_is_set_whatever_the_clock():
    clock, event = ManualClock(), threading.Event()
    thread, result = in_thread(clock.wait, event, 3600.0)
    clock.until_waiting(1)
    event.set()
    thread.join(5)
    assert result == [True] and clock() == 1000.0


def test_a_sleep_ends_when_the_clock_has_moved_that_far():
    clock = ManualClock()
    thread, _ = in_thread(clock.sleep, 2.0)
    clock.until_waiting(1)
    clock.advance(1.0)
    clock.advance(1.0)
    thread.join(5)
    assert not thread.is_alive()


@pytest.mark.parametrize("left, past", [(5.0, False), (-0.5, True)])
def test_a_deadline_past_on_the_manual_clock_is_past_on_the_hosts(left, past):
    clock = ManualClock()
    deadline = clock() + 1.0
    clock.advance(1.0 - left)
    assert (elapsed() >= clock.host_deadline(deadline)) is past


def test_the_system_clock_is_the_hosts_elapsed_time_counting_a_suspension():
    assert SYSTEM_CLOCK.host_deadline(123.0) == 123.0
    before = elapsed()
    assert before <= SYSTEM_CLOCK() <= elapsed()
    if hasattr(time, "CLOCK_BOOTTIME"):  # Linux: boot time, which a suspension does not stop
        assert before <= time.clock_gettime(time.CLOCK_BOOTTIME) <= elapsed()
    condition = threading.Condition()
    with condition:
        assert SYSTEM_CLOCK.wait(condition, 0.0) is False


class SharedJournal:
    """Just what membership uses of a journal several instances share."""

    shared = True

    def __init__(self):
        self.beats = queue.Queue()

    def register(self, instance):
        pass

    def heartbeat(self, instance):
        self.beats.put(instance)

    def deregister(self, instance):
        pass


def test_heartbeats_go_at_their_pace_on_the_clock():
    clock, journal = ManualClock(), SharedJournal()
    # Longer than a test waits in real time: only the clock can bring a heartbeat.
    membership = Membership(journal, "me", heartbeat_every=30.0, clock=clock)
    membership.join()
    try:
        clock.until_waiting(1)
        clock.advance(29.9)
        clock.until_waiting(1)
        assert journal.beats.empty()  # 29.9 s on: none due yet
        clock.advance(0.1)
        assert journal.beats.get(timeout=5) == "me"
        clock.until_waiting(1)
        clock.advance(30.0)
        assert journal.beats.get(timeout=5) == "me" and journal.beats.empty()
    finally:
        membership.leave()


class RecordingInvestigator(Investigator):
    def investigate(self, record):
        self.investigated += 1
        self.done.set()


class NothingLeftJournal:
    """A journal where no unknown alert waits for a proposal or a second read (the investigator's
    sweep finds none)."""

    def now(self):
        return 0.0

    def awaiting_evidence(self, since):
        return []

    def awaiting_second_read(self, since, before):
        return []


def test_an_unknown_alert_is_read_on_okx_once_its_settle_time_has_passed():
    clock = ManualClock()
    investigator = RecordingInvestigator(NothingLeftJournal(), bots={}, settle=30.0, clock=clock)
    investigator.done = threading.Event()
    investigator.submit(object())
    try:
        clock.until_waiting(1)
        clock.advance(29.0)
        clock.until_waiting(1)
        assert investigator.investigated == 0
        clock.advance(1.0)
        assert investigator.done.wait(5) and investigator.investigated == 1
    finally:
        investigator.stop()
