"""Break the service on purpose, one way per guarantee, and show that a test fails for each.

Each mutation edits a copy of the repository (never this one) and runs the test that must catch
it: the fault test's short form with two seeds for the guarantees it judges (exactly once, in
order, paced, never stuck, told, judged against OKX's record), a named test for the others. A
mutation survives when a run passes; the table is printed and the exit status is 1 if any did.

    python -m bench.mutations [--jobs N] [--only TEXT] [--seeds 1,2] [--check]

``--check`` only verifies that every mutation still applies to the code (tests/test_mutations.py
runs it in CI, so the table moves with the code); ``bench/mutants`` is the full run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAULT_TEST = ("tests/test_faults.py",)


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    edits: tuple[tuple[str, str, str], ...]  # (file, text that must occur once, its replacement)
    tests: tuple[str, ...] = FAULT_TEST

    @property
    def by_fault_test(self) -> bool:
        return self.tests == FAULT_TEST


def _m(name: str, *edits: tuple[str, str, str], tests: tuple[str, ...] = FAULT_TEST) -> Mutation:
    return Mutation(name, tuple(edits), tests)


ATTEMPT = "webhook_app/workers/delivery/attempt.py"
UPKEEP = "webhook_app/workers/delivery/upkeep.py"
OUTCOMES = "webhook_app/workers/outcomes.py"
INVESTIGATION = "webhook_app/workers/investigation.py"
EVIDENCE = "webhook_app/okx/margin/evidence.py"
PG_OUTCOMES = "webhook_app/journal/postgres/outcomes.py"
PG_SQL = "webhook_app/journal/postgres/sql.py"
JOURNAL_SHARED = "webhook_app/journal/shared.py"
PG_MIGRATIONS = "webhook_app/journal/postgres/migrations.py"

MUTATIONS: tuple[Mutation, ...] = (
    _m(
        "one alert in seven recorded ok without being sent",
        (
            ATTEMPT,
            "            ack = deliver(",
            "            ack = (lambda *a, **k: type('Ack', (), {'dry_run': False})()) if record.id % 7 == 0 "
            "else deliver\n            ack = ack(",
        ),
    ),
    _m(
        "an unknown answer recorded as rejected",
        (
            OUTCOMES,
            "            return Outcome(failure.state, code, message, detail)",
            "            return Outcome('rejected' if failure.state == 'unknown' else failure.state, code, message, "
            "detail)",
        ),
    ),
    _m(
        "an unknown answer recorded as failed",
        (
            OUTCOMES,
            "            return Outcome(failure.state, code, message, detail)",
            "            return Outcome('failed' if failure.state == 'unknown' else failure.state, code, message, "
            "detail)",
        ),
    ),
    _m(
        "every proposal executed",
        (
            INVESTIGATION,
            '        proposal, reason = evidence["proposal"], evidence["reason"]',
            '        evidence["proposal"] = "executed"\n'
            '        proposal, reason = evidence["proposal"], evidence["reason"]',
        ),
    ),
    _m(
        "half of the unknown alerts never notified",
        # In the notifier, where the first telling and the sweep's telling again both pass.
        (
            "webhook_app/workers/notify.py",
            "        if record.state not in self.events:\n            return\n        okx = ",
            "        if record.state not in self.events or (record.state == 'unknown' and record.id % 2):\n"
            "            return\n        okx = ",
        ),
    ),
    _m(
        "no claim fence on the writes after a send",
        (
            PG_OUTCOMES,
            "    return CLAIMED, (claim.alert_id, claim.instance, claim.attempt)",
            '    return "id = %s AND %s::text IS NOT NULL AND %s::int IS NOT NULL", '
            "(claim.alert_id, claim.instance, claim.attempt)",
        ),
    ),
    _m(
        "a dropped connection after the send retried as not executed",
        (
            "webhook_app/okx/client.py",
            '            raise OkxOutcomeUnknown("the connection dropped after the request was sent") from None',
            '            raise OkxNotExecuted("the connection dropped after the request was sent") from None',
        ),
    ),
    _m(
        "no recovery of lapsed claims",
        (
            UPKEEP,
            "            records = self.queue.recover("
            "self.membership.instance, self.membership.dead_after, self.terms.lease)",
            "            records = []",
        ),
    ),
    _m(
        "a lapsed claim whose request may have left queued again",
        (
            JOURNAL_SHARED,
            "(sent_at IS NOT NULL OR lease_until IS NULL)",
            "(false)",
        ),
        (JOURNAL_SHARED, 'NEVER_LEFT = "sent_at IS NULL AND lease_until IS NOT NULL"', 'NEVER_LEFT = "TRUE"'),
    ),
    _m(
        "recovery judges never-sent by its statements' order (a confirmation commits between them)",
        (JOURNAL_SHARED, 'NEVER_LEFT = "sent_at IS NULL AND lease_until IS NOT NULL"', 'NEVER_LEFT = "TRUE"'),
        tests=("tests/test_journal.py::test_a_confirmation_committed_while_recovery_runs_is_never_queued_again",),
    ),
    _m(
        "a rate of 25 requests per 2 s",
        (
            "webhook_app/config/accounts.py",
            'rate_limit=reader.whole(variable("rate_limit"), 20,',
            'rate_limit=reader.whole(variable("rate_limit"), 25,',
        ),
        (
            "webhook_app/config/environment.py",
            'reader.whole("OKX_RATE_LIMIT", 20,',
            'reader.whole("OKX_RATE_LIMIT", 25,',
        ),
    ),
    _m(
        "two alerts of one bot claimed together",
        (
            PG_MIGRATIONS,
            # Migration 11's journal_claim, the one every claim goes through (6's is an older release's).
            "            AND (p_account IS NULL OR a.account = p_account) "
            "AND (p_actions IS NULL OR a.action = ANY(p_actions))\n"
            "            AND NOT EXISTS (SELECT 1 FROM alerts b WHERE b.algo_id = a.algo_id AND b.id <> a.id\n"
            "                AND b.state IN ('queued', 'sending')\n"
            "                AND (b.state = 'sending' OR (b.id < a.id AND b.expires_at >= p_now)))",
            "            AND (p_account IS NULL OR a.account = p_account) "
            "AND (p_actions IS NULL OR a.action = ANY(p_actions))\n"
            "            AND NOT EXISTS (SELECT 1 FROM alerts b WHERE b.algo_id = a.algo_id AND b.id <> a.id\n"
            "                AND b.state = 'sending')",
        ),
    ),
    _m(
        "a send that the journal did not confirm goes anyway",
        (ATTEMPT, "                if confirmed:\n", "                if True:\n"),
        # The fault test cannot reach this: a resumed sender's local deadline (3 s) always ends before
        # the lease (10.5 s) lets another instance take its claim, so it stops before asking.
        tests=("tests/test_attempt.py::test_a_refused_confirmation_sends_nothing_and_gives_the_slot_back",),
    ),
    _m(
        "TradingView's resends of one alert not recognised as duplicates",
        (
            "webhook_app/intake/alerts.py",
            '        return f"id:{algo_id}:{alert_id}"',
            "        return f\"id:{algo_id}:{alert_id}:{__import__('uuid').uuid4()}\"",
        ),
    ),
    _m(
        "a rate slot never given back by the outcome's write",
        (
            PG_SQL,
            'CLOSE_SLOTS = f"closed AS (UPDATE okx_pacing SET ended_at = {NOW} '
            'WHERE id = ANY(%s) AND ended_at IS NULL)"',
            'CLOSE_SLOTS = "closed AS (SELECT %s::bigint[] AS id)"',
        ),
        # The fault test no longer sees it: the upkeep's orphan sweep closes, within 2 s, a slot no
        # sender holds (an over-count, never a 50011). The write's own promise is its test's.
        tests=(
            "tests/test_journal.py::test_an_outcome_closes_its_rate_slot_in_the_same_statement_even_when_fenced_out",
        ),
    ),
    _m(
        "a finding of not executed kept after the second read saw the bot move",
        (
            INVESTIGATION,
            '            elif moved := moved_fields(evidence.get("after") or {}, later):',
            '            elif moved := [] and moved_fields(evidence.get("after") or {}, later):',
        ),
        # Its double in the fault test rests on one late execution landing between the two reads,
        # which a seed may not play: the second read's own tests are the judge.
        tests=(
            "tests/test_unknown_outcomes.py::test_a_not_executed_finding_is_not_marked_when_the_bot_moves_before_the_second_read",
            "tests/test_unknown_outcomes.py::test_a_not_executed_proposal_the_second_read_contradicts_is_withdrawn",
        ),
    ),
    # The guarantees issue 21 added, each caught by its own test.
    _m(
        "a claim whose reply was lost keeps its rate slots",
        (
            UPKEEP,
            "            self._free_orphans()\n            self._fail_unrouted()",
            "            self._fail_unrouted()",
        ),
        tests=("tests/test_never_stuck.py::test_a_claim_whose_reply_is_lost_gives_its_rate_slots_back_within_seconds",),
    ),
    _m(
        "an alert under a removed account holds its bot",
        (
            UPKEEP,
            "            self._free_orphans()\n            self._fail_unrouted()",
            "            self._free_orphans()",
        ),
        tests=(
            "tests/test_account_routing.py::"
            "test_an_alert_under_an_account_no_longer_configured_fails_at_once_and_holds_its_bot_no_longer",
        ),
    ),
    _m(
        "readiness reads the bots outside the reads' ledger",
        (
            "webhook_app/workers/readiness.py",
            "                if pacer.busy() + 1 <= pacer.limit * READ_SHARE and "
            "(slots := pacer.acquire(self.instance, 1)):",
            "                if slots := [None]:",
        ),
        tests=("tests/test_readiness.py",),
    ),
    _m(
        "PnL of exactly the amount read as executed",
        (EVIDENCE, "        if not allow_reinvest:  # PnL", "        if False:  # PnL"),
        tests=("tests/test_evidence.py",),
    ),
    _m(
        "a resend of an alert found not executed goes without reading the bot again",
        ("webhook_app/surfaces/admin.py", "    if doubt is not None and not insist:", "    if False:"),
        tests=(
            "tests/test_admin.py::test_a_late_execution_after_the_finding_refuses_the_resend_until_the_operator_insists",
        ),
    ),
    _m(
        "the send deadline on a clock that stops while the host is suspended",
        (
            "webhook_app/okx/client.py",
            "        if send_by is not None and elapsed() >= send_by:",
            "        if send_by is not None and time.monotonic() >= send_by:",
        ),
        tests=(
            "tests/test_never_stuck.py::"
            "test_a_host_suspended_between_the_confirmation_and_the_send_never_sends_on_that_claim",
        ),
    ),
    _m(
        "a chunked body over the limit taken as cut",
        (
            "webhook_app/surfaces/context.py",
            "        raise RequestEntityTooLarge()  # the server's own stream had more",
            "        pass",
        ),
        tests=("tests/test_deployed.py::test_a_body_over_the_limit_is_413_chunked_or_not",),
    ),
    _m(
        "an OKX sub-code (50013_1000) not read as its code",
        ("webhook_app/okx/errors.py", '    base = code.split("_", 1)[0]', "    base = code"),
        tests=("tests/test_okx_client.py",),
    ),
    _m(
        "an ambiguous answer to a close left unknown without reading whether the position is closed",
        (
            "webhook_app/workers/delivery/sending.py",
            "        if order.action not in STATED_TARGETS:\n            raise",
            "        if True:\n            raise",
        ),
        tests=("tests/test_attempt_actions.py",),
    ),
    _m(
        "a sub-order sent without OKX's expTime (OKX may execute it late)",
        (
            "webhook_app/workers/delivery/sending.py",
            "    if record.action not in EXPIRING:\n        return None",
            "    if True:\n        return None",
        ),
        tests=("tests/test_attempt_actions.py",),
    ),
    _m(
        "a cancel's further POSTs (one per pending sub-order) spend no rate slot",
        (
            ATTEMPT,
            "            further = FurtherPosts(self.pacer, self.claim.instance, host_deadline)",
            "            further = None",
        ),
        tests=("tests/test_attempt_actions.py",),
    ),
    _m(
        "a secret pasted into an alert's id journaled and echoed",
        (
            "webhook_app/intake/alerts.py",
            "        if isinstance(payload.get(field), str) and holds_secret(payload[field], secrets)",
            "        if False and isinstance(payload.get(field), str) and holds_secret(payload[field], secrets)",
        ),
        tests=("tests/test_webhook.py::test_a_secret_pasted_into_a_field_shown_back_is_422_naming_it_never_echoed",),
    ),
    _m(
        "an alert claimed at receipt out of its bot's turn",
        (PG_MIGRATIONS, "        RETURN;  -- not its bot's turn", "        NULL;  -- not its bot's turn"),
        tests=("tests/test_at_once.py",),
    ),
    _m(
        "a claim made at receipt sent after its deadline (a paused process acting late)",
        (
            ATTEMPT,
            "        if self.desk.terms.clock() < self.send_by:\n            return True",
            "        if True:\n            return True",
        ),
        tests=("tests/test_attempt.py::test_a_claim_confirmed_at_receipt_and_resumed_past_its_deadline_is_never_sent",),
    ),
    _m(
        "a claim at receipt whose write's reply was lost left to its lease (a request that never left ends unknown)",
        (
            "webhook_app/intake/pipeline.py",
            "                record = at_once and self._put_back_at_receipt(at_once)",
            "                record = None",
        ),
        tests=("tests/test_at_once.py::test_a_claim_whose_writes_reply_was_lost_is_put_back_and_sent_once",),
    ),
    _m(
        "the intake waiting on a budget's lock held elsewhere (a reply held past its deadline)",
        (
            PG_MIGRATIONS,
            "    PERFORM set_config('lock_timeout', p_wait, true);",
            "    PERFORM set_config('lock_timeout', '0', true);",
        ),
        tests=("tests/test_at_once.py::test_the_intake_waits_for_a_budgets_lock_only_briefly_then_the_alert_queues",),
    ),
)


# -- running them -------------------------------------------------------------------------------


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name]


def apply(mutation: Mutation, root: Path) -> None:
    for file, old, new in mutation.edits:
        path = root / file
        text = path.read_text()
        found = text.count(old)
        if found != 1:
            raise LookupError(f"{mutation.name}: {file} has the text to change {found} times, not once")
        path.write_text(text.replace(old, new))


def check() -> list[str]:
    """The mutations that no longer apply to this code, each with the reason."""
    problems = []
    for mutation in MUTATIONS:
        texts = {file: (REPO / file).read_text() for file, _, _ in mutation.edits}
        for file, old, _ in mutation.edits:
            if texts[file].count(old) != 1:
                problems.append(f"{mutation.name}: {file} has its text {texts[file].count(old)} times")
    return problems


def copy_repo(into: Path) -> Path:
    for name in tracked_files():
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, target)
    return into


def run_once(mutation: Mutation | None, seed: int, tests: tuple[str, ...]) -> dict:
    """Apply ``mutation`` (None: the code as it is) to a fresh copy and run ``tests`` with ``seed``."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        root = copy_repo(Path(tmp))
        if mutation is not None:
            apply(mutation, root)
        env = {**os.environ, "FAULT_SEED": str(seed), "FAULT_ROUNDS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-x", "-p", "no:cacheprovider", *tests],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    report = _fault_report(result.stdout)
    return {
        "passed": result.returncode == 0,
        "seconds": time.monotonic() - started,
        "report": report,
        "tail": result.stdout[-3000:] + result.stderr[-2000:],
    }


def _fault_report(output: str) -> dict:
    match = re.search(r"fault injection: (\{.*?\n\})", output, re.S)
    return json.loads(match.group(1)) if match else {}


def row(name: str, seed: int | str, outcome: dict) -> str:
    r = outcome["report"]
    acc = r.get("accounting", {})
    cells = [
        name,
        str(seed),
        str(acc.get("doubles", "")),
        str(acc.get("misreported", "")),
        str(acc.get("wrong proposals", "")),
        str(r.get("out-of-order", "")),
        str(r.get("stuck", "")),
        str(r.get("expired (stalled past MAX_LAG)", "")),
        str(r.get("untold", "")),
        str(r.get("OKX 50011 answers", "")),
        f"{r.get('OKX executions', '')} of {r.get('alerts posted by TradingView', '')}" if r else "",
        "passed (survived)" if outcome["passed"] else "failed (caught)",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| broken on purpose | seed | doubles | misreported | wrong proposals | out of order | stuck | expired | "
    "untold | 50011 | OKX executions of posted | test |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--only", default="", help="run the mutations whose name contains this text")
    parser.add_argument("--check", action="store_true", help="only check that every mutation applies")
    args = parser.parse_args()
    problems = check()
    if problems or args.check:
        print("\n".join(problems) or f"all {len(MUTATIONS)} mutations apply")
        return 1 if problems else 0
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(None, seed, FAULT_TEST) for seed in seeds]  # the code as it is must pass first
    for mutation in MUTATIONS:
        if args.only.lower() in mutation.name.lower():
            jobs += [(mutation, seed, mutation.tests) for seed in (seeds if mutation.by_fault_test else seeds[:1])]
    print(HEADER, flush=True)
    survived = 0
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_once, *job): job for job in jobs}
        for future in concurrent.futures.as_completed(futures):
            mutation, seed, tests = futures[future]
            outcome = future.result()
            name = mutation.name if mutation else "(nothing broken: must pass)"
            seed_cell = seed if mutation is None or mutation.by_fault_test else f"{', '.join(tests)}"
            print(row(name, seed_cell, outcome), flush=True)
            wrong = outcome["passed"] if mutation is not None else not outcome["passed"]
            if wrong:
                survived += 1
                print(outcome["tail"], file=sys.stderr)
    print(f"\n{survived} wrong of {len(jobs)} runs (a mutation that passed, or the unbroken code that failed)")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
