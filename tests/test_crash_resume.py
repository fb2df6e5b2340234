"""Crash and resume: the worker is killed with SIGKILL at many points of a run against the local org over
HTTPS, then run again. The run converges, the journal stays consistent with the org, and no record is
processed by two Bulk API jobs."""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from sfcleanup.localorg.seed import seed
from sfcleanup.localorg.store import Store
from tests.oracle import differences, expected_after, journal_consistent, released_too_early
from tests.support import serve, state_snapshot, worker_env

# (kill after this many API calls, route): spread over reading, the lease, each phase and the end.
KILL_POINTS = [(3, "composite"), (8, "composite"), (11, "composite"), (6, "bulk"), (10, "bulk"), (16, "bulk")]


def _session(endpoint: dict[str, str]) -> requests.Session:
    session = requests.Session()
    session.verify = endpoint["ca_bundle"]
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    session.headers["Authorization"] = f"Bearer {endpoint['access_token']}"
    return session


def _api_calls(session: requests.Session, endpoint: dict[str, str]) -> int:
    return int(session.get(endpoint["instance_url"] + "/_localorg/stats", timeout=10).json()["api_calls"])


def _worker(endpoint: dict[str, str], run_id: str, journal: Path, route: str) -> subprocess.Popen[str]:
    env = {**worker_env(endpoint), "SFCLEANUP_WRITE__BULK_POLL_MAX_S": "0.2"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sfcleanup",
            "run",
            run_id,
            "--yes",
            "--json",
            "--route",
            route,
            "--instance-url",
            endpoint["instance_url"],
            "--ca-bundle",
            endpoint["ca_bundle"],
            "--journal-dir",
            str(journal),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _processed_ids(session: requests.Session, endpoint: dict[str, str]) -> list[list[str]]:
    """For every ingest job in the org, the ids it updated successfully."""
    base = endpoint["instance_url"] + "/services/data/v62.0/jobs/ingest/"
    jobs = session.get(base, timeout=30).json().get("records", [])
    out = []
    for job in jobs:
        text = session.get(f"{base}{job['id']}/successfulResults/", timeout=30).text
        out.append([row["sf__Id"] for row in csv.DictReader(io.StringIO(text))])
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("kill_after", "route"), KILL_POINTS)
def test_sigkill_then_resume_converges(tmp_path: Path, kill_after: int, route: str) -> None:
    """Killed after `kill_after` API calls and run again, the worker reaches the oracle state with a journal
    consistent with the org and no record written by two bulk jobs."""
    state = tmp_path / "org.sqlite3"
    store = Store(state)
    run_id = seed(store, "demo").runs["failed_run"]
    before = store.snapshot()
    store.close()
    journal = tmp_path / "journal"
    with serve("--scenario", "demo", "--state", str(state), "--latency", "cloud") as endpoint:
        session = _session(endpoint)
        start = _api_calls(session, endpoint)
        victim = _worker(endpoint, run_id, journal, route)
        deadline = time.monotonic() + 60
        while _api_calls(session, endpoint) - start < kill_after and victim.poll() is None:
            assert time.monotonic() < deadline, "the worker never reached the kill point"
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        assert victim.returncode == -signal.SIGKILL, "the worker finished before the kill point: move it earlier"
        assert released_too_early(before, state_snapshot(state), run_id) == []
        codes: list[Any] = []
        for _ in range(2):
            again = _worker(endpoint, run_id, journal, route)
            _, err = again.communicate(timeout=300)
            codes.append(again.returncode)
            if again.returncode == 0:
                break
        assert codes[-1] == 0, (codes, err[-2000:])
        processed = _processed_ids(session, endpoint)
    every = [record_id for ids in processed for record_id in ids]
    assert len(every) == len(set(every)), "a record was written by two bulk jobs"
    store = Store(state)
    after = store.snapshot()
    store.close()
    assert differences(expected_after(before, run_id), after, skip={run_id}) == []
    assert journal_consistent(journal / f"{run_id}.jsonl", before, after) == []
    assert released_too_early(before, after, run_id) == []
