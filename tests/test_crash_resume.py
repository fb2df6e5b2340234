"""Crash and resume: the worker is killed with SIGKILL at chosen steps of a run against the local org over
HTTPS, then run again. The run converges, the journal stays consistent with the org, and no record is
processed by two Bulk API jobs.

Each kill point is the moment the org's answer to one request arrives (`tests.killed_worker`): the org has
done what was asked and the worker never learns it, the hardest moment to crash at, and the same step of
the run every time.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import requests

from sfcleanup.localorg.bulk.jobs import USER_ID
from sfcleanup.localorg.seed import seed
from sfcleanup.localorg.store import Store
from tests.oracle import differences, expected_after, journal_consistent, released_too_early
from tests.support import serve, state_snapshot, worker_env

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class KillPoint:
    """The answer to the `nth` request of `method` whose path matches `path` (and whose body holds `body`)."""

    method: str
    path: str
    nth: int = 1
    body: str = ""


# Spread over the lease, each kind of write and the end, on both routes (ids name the step killed after).
KILL_POINTS = {
    "composite-lease-created": ("composite", KillPoint("POST", r"/sobjects/blng__ErrorLog__c/$")),
    "composite-second-write-applied": ("composite", KillPoint("POST", r"/composite$", 2, "composite/sobjects")),
    "composite-final-status-applied": (
        "composite",
        KillPoint("POST", r"/composite$", 1, '"blng__CleanUpStatus__c": "Completed'),
    ),
    "bulk-job-created": ("bulk", KillPoint("POST", r"/jobs/ingest/$")),
    "bulk-job-closed": ("bulk", KillPoint("PATCH", r"/jobs/ingest/[^/]+/$", 1, "UploadComplete")),
    "bulk-results-read": ("bulk", KillPoint("GET", r"/successfulResults/$")),
}


def _session(endpoint: dict[str, str]) -> requests.Session:
    session = requests.Session()
    session.verify = endpoint["ca_bundle"]
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    session.headers["Authorization"] = f"Bearer {endpoint['access_token']}"
    return session


def _worker(
    endpoint: dict[str, str], run_id: str, journal: Path, route: str, kill: KillPoint | None = None
) -> subprocess.Popen[str]:
    """`sfcleanup run`, or with `kill` the same killed at that point. The readiness section that ends `run` is
    read-only and comes after the journal's end: skipped."""
    env = {**worker_env(endpoint), "SFCLEANUP_WRITE__BULK_POLL_MAX_S": "0.05"}
    start = ["-m", "tests.killed_worker", json.dumps(asdict(kill))] if kill else ["-m", "sfcleanup"]
    return subprocess.Popen(
        [
            sys.executable,
            *start,
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
            "--no-readiness",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _processed_ids(session: requests.Session, endpoint: dict[str, str]) -> list[list[str]]:
    """For every ingest job of the org's own user (the worker's), the ids it updated successfully.

    The listing holds other users' and Bulk API 1.0 jobs too, a thousand a page: each page is followed."""
    base = endpoint["instance_url"] + "/services/data/v62.0/jobs/ingest/"
    jobs: list[dict[str, object]] = []
    url: str | None = base
    while url:
        page = session.get(url, timeout=30).json()
        jobs += page.get("records", [])
        following = page.get("nextRecordsUrl")
        url = endpoint["instance_url"] + following if following and not page.get("done") else None
    out = []
    for job in jobs:
        if job.get("createdById") != USER_ID or job.get("jobType") != "V2Ingest":
            continue
        text = session.get(f"{base}{job['id']}/successfulResults/", timeout=30).text
        out.append([row["sf__Id"] for row in csv.DictReader(io.StringIO(text))])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_then_resume_converges(tmp_path: Path, point: str) -> None:
    """Killed at `point` and run again, the worker reaches the oracle state with a journal consistent with the
    org and no record written by two bulk jobs."""
    route, kill = KILL_POINTS[point]
    state = tmp_path / "org.sqlite3"
    store = Store(state)
    run_id = seed(store, "demo").runs["failed_run"]
    before = store.snapshot()
    store.close()
    journal = tmp_path / "journal"
    with serve("--scenario", "demo", "--state", str(state)) as endpoint:
        session = _session(endpoint)
        victim = _worker(endpoint, run_id, journal, route, kill)
        _, err = victim.communicate(timeout=120)
        assert victim.returncode == -signal.SIGKILL, ("the worker never reached the kill point", err[-2000:])
        assert released_too_early(before, state_snapshot(state), run_id) == []
        codes: list[int] = []
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
