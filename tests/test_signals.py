"""Signals: SIGINT (Ctrl-C) and SIGTERM (what Kubernetes sends) sent to a real worker process mid-phase, against
the local org over HTTPS. The worker stops at a safe point: the batch in flight is journaled, the lease
released, CleanUp Status set, the journal ends `interrupted`, exit 3 with one line; running again finishes.
And the signal handling itself, in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sfcleanup.errors import Interrupted
from sfcleanup.interrupts import Interrupts
from sfcleanup.lease import LEASE_CODE
from sfcleanup.localorg.seed import seed
from sfcleanup.localorg.store import Store
from tests.oracle import by_id, differences, expected_after, journal_consistent, journal_entries
from tests.support import serve, state_snapshot, worker_env


def _worker(endpoint: dict[str, str], run_id: str, journal: Path, *, small: bool = False) -> subprocess.Popen[str]:
    env = worker_env(endpoint)
    if small:
        # Small batches, so the signal lands mid-phase with more batches to come.
        env |= {
            "SFCLEANUP_WRITE__BATCH_SIZE": "20",
            "SFCLEANUP_WRITE__COLLECTIONS_PER_CALL": "1",
            "SFCLEANUP_WRITE__MAX_IN_FLIGHT": "2",
        }
    command = [sys.executable, "-m", "sfcleanup", "run", run_id, "--yes", "--json", "--route", "composite"]
    command += ["--instance-url", endpoint["instance_url"], "--ca-bundle", endpoint["ca_bundle"]]
    command += ["--journal-dir", str(journal), "--log-level", "info", "--log-format", "json"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _signal_at_first_phase(victim: subprocess.Popen[str], number: int) -> tuple[str, str]:
    """Wait (on the worker's own log, no polling) until it starts writing invoice lines, then signal it."""
    assert victim.stderr is not None
    for line in victim.stderr:
        if '"phase.start"' in line:
            victim.send_signal(number)
            break
    out, err = victim.communicate(timeout=120)
    return out, err


def _unanswered(entries: list[dict[str, Any]]) -> list[str]:
    """Ids journaled as pending in the last invocation with no outcome after them: a batch cut in half."""
    last = entries[-1]["invocation"]
    pending = {e["id"] for e in entries if e["invocation"] == last and e["type"] == "pending"}
    answered = {e["id"] for e in entries if e["invocation"] == last and e["type"] == "outcome"}
    return sorted(pending - answered)


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_phase_stops_at_a_safe_point(tmp_path: Path, number: int) -> None:
    """SIGINT or SIGTERM mid-phase: exit 3 with one line, report and journal `interrupted`, every batch sent
    answered in the journal, lease released, CleanUp Status "Completed with errors"; a second run finishes."""
    name = signal.Signals(number).name
    state = tmp_path / "org.sqlite3"
    store = Store(state)
    run_id = seed(store, "demo").runs["failed_run"]
    before = store.snapshot()
    store.close()
    journal = tmp_path / "journal"
    with serve("--scenario", "demo", "--state", str(state), "--latency", "cloud") as endpoint:
        victim = _worker(endpoint, run_id, journal, small=True)
        out, err = _signal_at_first_phase(victim, number)
        assert victim.returncode == 3, err[-2000:]
        said = [line for line in err.splitlines() if line.startswith("sfcleanup:")]
        assert len(said) == 1 and f"stopped on {name}" in said[0]
        outcome = json.loads(out)["runs"][0]
        assert outcome["status"] == "interrupted" and name in outcome["message"]
        updated = sum(c["updated"] for c in outcome["objects"].values())
        assert 0 < updated < sum(c["planned"] for c in outcome["objects"].values())
        entries = journal_entries(journal / f"{run_id}.jsonl")
        assert (entries[-1]["type"], entries[-1]["status"], entries[-1]["exit_code"]) == ("end", "interrupted", 3)
        assert _unanswered(entries) == []
        assert sum(1 for e in entries if e["type"] == "outcome" and e["outcome"] == "updated") == updated
        middle = state_snapshot(state)
        run = by_id(middle)["blng__InvoiceRun__c"][run_id]
        assert run["blng__CleanUpStatus__c"] == "Completed with errors"
        leases = [r for r in middle["blng__ErrorLog__c"] if r["blng__InvoiceRun__c"] == run_id]
        assert not [r for r in leases if r["blng__ErrorCode__c"] == LEASE_CODE]
        assert journal_consistent(journal / f"{run_id}.jsonl", before, middle) == []
        again = _worker(endpoint, run_id, journal)
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err[-2000:]
    after = state_snapshot(state)
    assert differences(expected_after(before, run_id), after, skip={run_id}) == []
    assert by_id(after)["blng__InvoiceRun__c"][run_id]["blng__CleanUpStatus__c"] == "Completed"


@pytest.mark.slow
def test_sigterm_while_a_sweep_plans_reports_every_run_not_started(tmp_path: Path) -> None:
    """SIGTERM while the sweep reads and plans stops it at once: every run found is reported not_started,
    exit 3 with one line, and nothing is written."""
    state = tmp_path / "org.sqlite3"
    store = Store(state)
    runs = seed(store, "demo").runs
    store.close()
    before = state_snapshot(state)
    with serve("--scenario", "demo", "--state", str(state), "--latency", "cloud") as endpoint:
        command = [sys.executable, "-m", "sfcleanup", "sweep", "--yes", "--json"]
        command += ["--instance-url", endpoint["instance_url"], "--ca-bundle", endpoint["ca_bundle"]]
        command += ["--journal-dir", str(tmp_path / "journal"), "--log-level", "info", "--log-format", "json"]
        victim = subprocess.Popen(
            command, env=worker_env(endpoint), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert victim.stderr is not None
        for line in victim.stderr:
            if '"sweep.found"' in line:
                victim.send_signal(signal.SIGTERM)
                break
        out, err = victim.communicate(timeout=120)
    assert victim.returncode == 3, err[-2000:]
    said = [line for line in err.splitlines() if line.startswith("sfcleanup:")]
    assert len(said) == 1 and "SIGTERM" in said[0]
    report = json.loads(out)
    assert {r["id"]: r["status"] for r in report["runs"]} == {
        runs["failed_run"]: "not_started",
        runs["errors_run"]: "not_started",
    }
    assert state_snapshot(state) == before
    assert not (tmp_path / "journal").exists()


def test_a_signal_while_not_writing_stops_at_once() -> None:
    """Outside writing, SIGTERM interrupts at once, like Ctrl-C always does."""
    interrupts = Interrupts()
    with interrupts.installed(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
    assert interrupts.received == "SIGTERM"


def test_a_signal_while_writing_waits_for_the_safe_point_and_a_second_one_does_not() -> None:
    """While writing, the first signal is raised as Interrupted at the next check, once; a second signal
    stops at once."""
    interrupts = Interrupts()
    with interrupts.installed(), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupts.received == "SIGINT"
        with pytest.raises(Interrupted, match="SIGINT received"):
            interrupts.check()
        interrupts.check()  # once only: winding down goes on
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_a_reading_stretch_inside_writing_stops_at_once() -> None:
    """Inside a deferred block, `immediate` stops at once, for a signal that arrives in it or one that came
    before it."""
    interrupts = Interrupts()
    with interrupts.installed(), interrupts.deferred():
        with pytest.raises(KeyboardInterrupt), interrupts.immediate():
            os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt), interrupts.immediate():
            pass


def test_handlers_are_restored_afterwards() -> None:
    """Leaving the block puts back the handlers that were there before."""
    previous = signal.getsignal(signal.SIGTERM)
    with Interrupts().installed():
        assert signal.getsignal(signal.SIGTERM) is not previous
    assert signal.getsignal(signal.SIGTERM) is previous
