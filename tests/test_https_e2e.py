"""The worker and the local org in two separate processes, over real HTTPS with the org's test CA."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sfcleanup.localorg.seed import seed
from sfcleanup.localorg.store import Store
from tests.oracle import differences, expected_after, journal_consistent
from tests.support import serve, worker_env


@pytest.mark.slow
def test_clean_over_https_from_another_process(tmp_path: Path) -> None:
    """`sfcleanup run` in its own process cleans a run served by `localorg serve` in another, reaching the
    oracle state, with the access token taken from the environment and the CA from --ca-bundle."""
    state = tmp_path / "org.sqlite3"
    store = Store(state)
    info = seed(store, "demo")
    before = store.snapshot()
    store.close()
    run_id = info.runs["errors_run"]
    with serve("--scenario", "demo", "--state", str(state)) as endpoint:
        env = worker_env(endpoint)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "sfcleanup",
                "run",
                run_id,
                "--yes",
                "--json",
                "--instance-url",
                endpoint["instance_url"],
                "--ca-bundle",
                endpoint["ca_bundle"],
                "--journal-dir",
                str(tmp_path / "journal"),
                "--log-format",
                "json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["runs"][0]["status"] == "cleaned"
    assert endpoint["access_token"] not in result.stdout + result.stderr
    store = Store(state)
    after = store.snapshot()
    store.close()
    assert differences(expected_after(before, run_id), after, skip={run_id}) == []
    assert journal_consistent(tmp_path / "journal" / f"{run_id}.jsonl", before, after) == []


@pytest.mark.slow
def test_rehearse_an_org_missing_a_picklist_value(tmp_path: Path) -> None:
    """`localorg serve --without-picklist-value` serves an org whose admin never added CleanUp Status
    "Completed with errors"; the worker's preflight names the value and exits 2; a value the field does not
    have is refused by serve itself with exit 2."""
    bad = subprocess.run(
        [sys.executable, "-m", "sfcleanup.localorg.server", "--without-picklist-value", "OrderItem.Quantity=x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "OBJECT.FIELD=VALUE" in bad.stderr
    missing = "blng__InvoiceRun__c.blng__CleanUpStatus__c=Completed with errors"
    with serve("--scenario", "demo", "--without-picklist-value", missing) as endpoint:
        env = worker_env(endpoint)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "sfcleanup",
                "plan",
                "a1A5g0000000001EAA",
                "--instance-url",
                endpoint["instance_url"],
                "--ca-bundle",
                endpoint["ca_bundle"],
                "--log-level",
                "error",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    assert "'Completed with errors' is missing from blng__InvoiceRun__c.blng__CleanUpStatus__c" in result.stderr
