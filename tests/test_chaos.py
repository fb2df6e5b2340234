"""Chaos: invocations of `sfcleanup run` on two runs at once, over HTTPS, under heavy seeded faults (locks up to
70%, connections reset after writes, 503 bursts), some killed with SIGKILL part-way, then faults dropped to
everyday rates. After *every* invocation: no source was released while a line or invoice that billed it is not
cancelled, each journal agrees with the org, and a finished invocation's report says what the org holds. Once
the faults drop, both runs converge within five invocations."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sfcleanup.localorg.seed import seed
from sfcleanup.localorg.store import Store
from tests.oracle import by_id, differences, expected_after, journal_consistent, released_too_early
from tests.support import serve, state_snapshot, worker_env

ROLES = ("failed_run", "errors_run")
# Rates an everyday org shows (the fault matrix's lightest profiles).
EVERYDAY = {"lock_failure_rate": 0.10, "unavailable_rate": 0.05, "unavailable_burst": 2, "reset_after_write_rate": 0.05}
CONVERGE_WITHIN = 5


def _chaos(rng: random.Random) -> dict[str, Any]:
    return {
        "lock_failure_rate": rng.choice((0.3, 0.5, 0.7)),
        "reset_after_write_rate": rng.choice((0.0, 0.15)),
        "unavailable_rate": rng.choice((0.0, 0.1, 0.15)),
        "unavailable_burst": 3,
    }


def _profile(path: Path, seed_: int, rates: dict[str, Any]) -> Path:
    lines = [f"seed = {seed_}", "lock_wait_s = 0.05", *(f"{k} = {v}" for k, v in rates.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def _worker(
    endpoint: dict[str, str], run_ids: list[str], journal: Path, route: str, kill_after: int | None
) -> subprocess.Popen[str]:
    # Short pauses: the faults are the point, not the wall time the retries' backoff would take.
    env = {
        **worker_env(endpoint),
        "SFCLEANUP_WRITE__BULK_POLL_MAX_S": "0.1",
        "SFCLEANUP_WRITE__LOCK_RETRY_PAUSE_S": "0.01",
        "SFCLEANUP_RETRY__BACKOFF_INITIAL_S": "0.02",
        "SFCLEANUP_RETRY__BACKOFF_MAX_S": "0.2",
    }
    # Killed (SIGKILL) when the worker's `kill_after`th answer from the org arrives: see tests.killed_worker.
    start = ["tests.killed_worker", json.dumps({"nth": kill_after})] if kill_after else ["sfcleanup"]
    command = [sys.executable, "-m", *start, "run", *run_ids, "--yes", "--json", "--route", route]
    command += ["--instance-url", endpoint["instance_url"], "--ca-bundle", endpoint["ca_bundle"]]
    command += ["--journal-dir", str(journal), "--log-level", "error"]
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root)


def _invoke(
    state: Path, profile: Path, run_ids: list[str], journal: Path, route: str, kill_after: int | None
) -> dict[str, Any] | None:
    """One invocation against the org in `state`; its JSON report, or None when it was killed."""
    with serve("--state", str(state), "--faults", str(profile)) as endpoint:
        worker = _worker(endpoint, run_ids, journal, route, kill_after)
        out, err = worker.communicate(timeout=600)
        if worker.returncode == -signal.SIGKILL:
            return None
        assert worker.returncode in (0, 1, 3), err[-2000:]
        document: dict[str, Any] = json.loads(out)
        return document


def _check_invocation(
    before: dict[str, list[dict[str, Any]]],
    previous: dict[str, list[dict[str, Any]]],
    now: dict[str, list[dict[str, Any]]],
    run_ids: list[str],
    journal: Path,
    report: dict[str, Any] | None,
) -> None:
    for run_id in run_ids:
        assert released_too_early(before, now, run_id) == []
    # Both runs' journals together account for every record the org changed.
    both = journal / "both.jsonl.check"
    both.write_text("".join(p.read_text() for p in sorted(journal.glob("*.jsonl"))))
    assert journal_consistent(both, before, now) == []
    if report is None:
        return
    org = by_id(now)
    old = by_id(previous)
    for run in report["runs"]:
        assert run["cleanup_status"] == org["blng__InvoiceRun__c"][run["id"]]["blng__CleanUpStatus__c"], run
        if run["status"] not in ("cleaned", "cleaned_with_failures"):
            continue
        for sobject, counts in run["objects"].items():
            changed = sum(
                1 for i, r in org[sobject].items() if r != old[sobject][i] and _linked(old, sobject, i, run["id"])
            )
            assert counts["updated"] == changed, (run["id"], sobject, counts, changed)


def _linked(data: dict[str, dict[str, dict[str, Any]]], sobject: str, record_id: str, run_id: str) -> bool:
    field = "blng__InvoiceRunCreatedBy__c" if sobject == "blng__Invoice__c" else "blng__InvoiceRun__c"
    return bool(data[sobject][record_id][field] == run_id)


@pytest.mark.slow
@pytest.mark.parametrize(("chaos_seed", "route"), [(7, "composite"), (8, "bulk")])
def test_chaos_then_everyday_faults_converge(tmp_path: Path, chaos_seed: int, route: str) -> None:
    """Under chaos every invocation keeps the invariants and reports the truth; at everyday rates both runs
    reach the oracle state within five invocations."""
    rng = random.Random(chaos_seed)
    state = tmp_path / "org.sqlite3"
    store = Store(state)
    runs = seed(store, "demo").runs
    before = store.snapshot()
    store.close()
    run_ids = [runs[role] for role in ROLES]
    journal = tmp_path / "journal"
    previous = before
    killed = unfinished = 0
    for index in range(4):
        # The first invocation meets locks that never clear, so at least one ends with work left whatever the
        # draws; every other one is killed early.
        rates = {**_chaos(rng), "lock_failure_rate": 1.0} if index == 0 else _chaos(rng)
        profile = _profile(tmp_path / f"chaos-{index}.toml", chaos_seed * 10 + index, rates)
        kill_after = rng.randint(4, 12) if index % 2 else None
        report = _invoke(state, profile, run_ids, journal, route, kill_after)
        now = state_snapshot(state)
        _check_invocation(before, previous, now, run_ids, journal, report)
        previous = now
        killed += report is None
        unfinished += report is not None and report["exit_code"] != 0
    # The chaos did what it is for: some invocations were killed, some ended with work left.
    assert killed and unfinished, (killed, unfinished)
    codes = []
    for index in range(CONVERGE_WITHIN):
        profile = _profile(tmp_path / f"everyday-{index}.toml", chaos_seed * 100 + index, EVERYDAY)
        report = _invoke(state, profile, run_ids, journal, route, None)
        assert report is not None
        now = state_snapshot(state)
        _check_invocation(before, previous, now, run_ids, journal, report)
        previous = now
        codes.append(report["exit_code"])
        if report["exit_code"] == 0:
            break
    assert codes[-1] == 0, codes
    expected: dict[str, list[dict[str, Any]]] = before
    for run_id in run_ids:
        expected = {sobject: list(rows.values()) for sobject, rows in expected_after(expected, run_id).items()}
    assert differences(by_id(expected), previous, skip=set(run_ids)) == []
