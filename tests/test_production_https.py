"""Production trust end to end: the worker in its own process against `localorg serve` over HTTPS, playing a
production org or a sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sfcleanup.localorg.seed import ScenarioInfo, seed
from sfcleanup.localorg.store import Store
from tests.support import serve, state_snapshot, worker_env


def _seeded(path: Path, *, production: bool) -> ScenarioInfo:
    store = Store(path)
    try:
        return seed(store, "demo", production=production)
    finally:
        store.close()


def _worker(endpoint: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sfcleanup", *args]
    command += ["--instance-url", endpoint["instance_url"], "--ca-bundle", endpoint["ca_bundle"]]
    command += ["--journal-dir", str(tmp_path / "journal"), "--log-level", "warning"]
    return subprocess.run(command, env=worker_env(endpoint), capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_org_identity_and_production_guard_over_https(tmp_path: Path) -> None:
    """Over HTTPS with an access token, the org is read (Organization, and the user through userinfo): the
    plan names it, writing without --production exits 2 with nothing written, and with it the run is cleaned
    and its journal's start entry names the org."""
    state = tmp_path / "prod.sqlite3"
    info = _seeded(state, production=True)
    run_id = info.runs["errors_run"]
    organization = state_snapshot(state)["Organization"][0]
    with serve("--state", str(state)) as endpoint:
        planned = _worker(endpoint, tmp_path, "plan", run_id)
        assert planned.returncode == 0, planned.stderr[-2000:]
        line = f"Org: Acme ({organization['Id']}, Production) as user integration@sfcleanup.local"
        assert planned.stdout.startswith(line)
        before = state_snapshot(state)
        refused = _worker(endpoint, tmp_path, "run", run_id, "--yes", "--json")
        assert refused.returncode == 2 and "pass --production" in refused.stderr
        assert refused.stderr.strip().count("\n") == 0
        assert state_snapshot(state) == before
        cleaned = _worker(endpoint, tmp_path, "run", run_id, "--yes", "--production", "--json")
    assert cleaned.returncode == 0, cleaned.stderr[-2000:]
    report = json.loads(cleaned.stdout)
    assert report["org"]["id"] == organization["Id"] and report["org"]["is_sandbox"] is False
    assert report["runs"][0]["status"] == "cleaned"
    journal = tmp_path / "journal" / f"{run_id}.jsonl"
    start = next(e for e in map(json.loads, journal.read_text().splitlines()) if e["type"] == "start")
    assert start["org"]["id"] == organization["Id"]


@pytest.mark.slow
def test_undo_refuses_another_org_and_caps_refuse_over_https(tmp_path: Path) -> None:
    """A journal written in a sandbox is refused by undo against production (exit 2, nothing written), and a
    sweep whose plan exceeds --max-changes exits 2 before writing."""
    sandbox, production = tmp_path / "sandbox.sqlite3", tmp_path / "prod.sqlite3"
    info = _seeded(sandbox, production=False)
    _seeded(production, production=True)
    run_id = info.runs["failed_run"]
    with serve("--state", str(sandbox)) as endpoint:
        capped = _worker(endpoint, tmp_path, "sweep", "--yes", "--max-changes", "10")
        assert capped.returncode == 2 and "more than the cap of 10" in capped.stderr
        assert not (tmp_path / "journal").exists()
        cleaned = _worker(endpoint, tmp_path, "run", run_id, "--yes", "--json")
        assert cleaned.returncode == 0, cleaned.stderr[-2000:]
    before = state_snapshot(production)
    journal = tmp_path / "journal" / f"{run_id}.jsonl"
    with serve("--state", str(production)) as endpoint:
        undone = _worker(endpoint, tmp_path, "undo", str(journal), "--yes", "--production")
    assert undone.returncode == 2, undone.stderr[-2000:]
    assert "undo applies a journal only to its own org" in undone.stderr
    assert state_snapshot(production) == before
