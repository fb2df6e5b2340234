"""The calls that start a clean-up: the org's identity, the describes and the runs' record in one Composite call
(`guard.org_of` with what preflight reads next), and the lease created and first listed in one more.

Each refusal reads as it did when each piece was a call of its own: the same error, message and exit code,
whichever piece failed, compared with the unbundled path on a copy of the same org.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from sfcleanup import billing, ids, preflight
from sfcleanup.commands.guard import org_of
from sfcleanup.config import load_settings
from sfcleanup.errors import AmbiguousWrite, SfCleanupError
from sfcleanup.lease import LEASE_CODE, RELEASED_CODE, LeaseHeld, Leases
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.worker import Worker
from tests.support import brief_sleep, make_client, make_org
from tests.test_localorg_rest import spec

Mutation = Callable[[LocalOrg, ScenarioInfo], list[str]]


def _calls(org: LocalOrg) -> int:
    return org.stats.api_calls


def _connected(org: LocalOrg) -> SalesforceClient:
    """A client whose user id is already known, so that only the reads under test are counted."""
    client = make_client(org)
    client.user_id()
    return client


def test_identity_describes_and_runs_are_one_call_and_read_once(demo: tuple[LocalOrg, ScenarioInfo]) -> None:
    """org_of with what preflight reads next costs one call; preflight then finds the describes and the runs
    without a call; a later read of the runs asks the org again (nothing is served twice)."""
    org, info = demo
    run_id = info.runs["failed_run"]
    client = _connected(org)
    used = _calls(org)
    identity = org_of(client, describe=True, run_ids=[run_id])
    assert _calls(org) - used == 1
    assert identity.id == org.store.first_id("Organization")
    readiness = preflight.check_org(client)
    assert readiness.problems == () and readiness.run_key_prefix == "a1A"
    assert set(preflight.read_runs(client, [run_id])) == {run_id}
    assert _calls(org) - used == 1
    assert set(preflight.read_runs(client, [run_id])) == {run_id}
    assert _calls(org) - used == 2
    preflight.check_org(client)
    assert _calls(org) - used == 3


def test_identity_alone_is_one_call_without_reading_ahead(demo: tuple[LocalOrg, ScenarioInfo]) -> None:
    """A command that needs only the org (undo) reads nothing else."""
    org, _ = demo
    client = _connected(org)
    used = _calls(org)
    org_of(client)
    assert _calls(org) - used == 1
    preflight.check_org(client)
    assert _calls(org) - used == 2


def _nothing(org: LocalOrg, info: ScenarioInfo) -> list[str]:
    return [info.runs["failed_run"]]


def _missing_run(org: LocalOrg, info: ScenarioInfo) -> list[str]:
    return [ids.to18("a1A5g0000000099")]


def _wrong_prefix(org: LocalOrg, info: ScenarioInfo) -> list[str]:
    return [str(org.store.first_id("Account"))]


def _malformed(org: LocalOrg, info: ScenarioInfo) -> list[str]:
    return [info.runs["failed_run"][:15] + "AAA"]


def _running(org: LocalOrg, info: ScenarioInfo) -> list[str]:
    return [info.runs["running_run"], info.runs["failed_run"]]


def _completed(org: LocalOrg, info: ScenarioInfo) -> list[str]:
    return [info.runs["completed_run"]]


def _value_missing(org: LocalOrg, info: ScenarioInfo) -> list[str]:
    org.store.removed_picklist_values[(billing.INVOICE_RUN, billing.CLEANUP_STATUS)] = frozenset({"Started"})
    return [info.runs["failed_run"]]


def _no_organization(org: LocalOrg, info: ScenarioInfo) -> list[str]:
    org.store.mark_deleted(spec("Organization"), str(org.store.first_id("Organization")))
    return [info.runs["failed_run"]]


def _held(org: LocalOrg, info: ScenarioInfo) -> list[str]:
    run_id = info.runs["failed_run"]
    client = make_client(org)
    Leases(client, "worker-A", 900).acquire(run_id)
    client.update_record(billing.INVOICE_RUN, run_id, {billing.CLEANUP_STATUS: "Started"})
    return [run_id]


def _outcome(org: LocalOrg, raw: Sequence[str], tmp_path: Path, *, bundled: bool) -> tuple[str, int]:
    """What preparing `raw` ends in (the error's type, message and exit code, or the plans), and its calls."""
    client = _connected(org)
    used = _calls(org)
    settings = load_settings(None, journal_dir=tmp_path / ("bundled" if bundled else "alone"), worker_id="worker-B")
    try:
        identity = org_of(client, describe=True, run_ids=raw) if bundled else org_of(client)
        prepared = Worker(client, settings, org=identity, sleep=brief_sleep).prepare(raw)
        result = f"planned {[p.run.id for p in prepared.plans]} {prepared.total_changes}"
    except SfCleanupError as exc:
        # The two orgs are seeded a moment apart: the times a message names (a lease last seen) may differ.
        result = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+(\+00:00)?", "<time>", f"{type(exc).__name__} {exc.exit_code}: {exc}")
    return result, _calls(org) - used


@pytest.mark.parametrize(
    "mutation",
    [
        _nothing,
        _missing_run,
        _wrong_prefix,
        _malformed,
        _running,
        _completed,
        _value_missing,
        _no_organization,
        _held,
    ],
)
def test_every_refusal_reads_as_before(mutation: Mutation, tmp_path: Path) -> None:
    """The bundled start refuses exactly as the unbundled one (same error, message, exit code) and never
    costs more calls; where both read the runs, it saves the two calls it folds in."""
    outcomes = []
    for bundled in (False, True):
        org, info = make_org("demo")
        raw = mutation(org, info)
        outcomes.append(_outcome(org, raw, tmp_path, bundled=bundled))
    (alone, alone_calls), (bundled_result, bundled_calls) = outcomes
    assert bundled_result == alone
    assert bundled_calls <= alone_calls
    if mutation in (_nothing, _missing_run, _running, _completed, _held):
        assert bundled_calls == alone_calls - 2


def test_lease_is_created_then_listed_in_two_calls(demo: tuple[LocalOrg, ScenarioInfo]) -> None:
    """Acquiring a free run's lease costs two calls (the create, then the election's read: listing in the create's
    own Composite call would rest on undocumented visibility); the record is held by this worker, and released."""
    org, info = demo
    run_id = info.runs["failed_run"]
    client = _connected(org)
    leases = Leases(client, "worker-A", 900)
    used = _calls(org)
    lease = leases.acquire(run_id)
    assert _calls(org) - used == 2
    rows = {r["Id"]: r for r in org.store.snapshot()[billing.ERROR_LOG]}
    assert rows[lease.record_id]["blng__ErrorCode__c"] == LEASE_CODE
    assert rows[lease.record_id]["blng__ErrorName__c"] == "worker-A"
    leases.release(lease)
    assert {r["Id"]: r for r in org.store.snapshot()[billing.ERROR_LOG]}[lease.record_id][
        "blng__ErrorCode__c"
    ] == RELEASED_CODE


def test_a_live_rival_lease_is_refused_and_the_own_record_withdrawn(demo: tuple[LocalOrg, ScenarioInfo]) -> None:
    """Worker B, finding worker A's live lease in the listing after its create, withdraws and raises LeaseHeld
    naming A; A's lease stays held."""
    org, info = demo
    run_id = info.runs["failed_run"]
    Leases(make_client(org), "worker-A", 900).acquire(run_id)
    with pytest.raises(LeaseHeld, match=r"another worker \(worker-A\)"):
        Leases(_connected(org), "worker-B", 900, sleep=brief_sleep).acquire(run_id)
    codes = {r["blng__ErrorName__c"]: r["blng__ErrorCode__c"] for r in org.store.snapshot()[billing.ERROR_LOG]}
    assert codes["worker-A"] == LEASE_CODE and codes["worker-B"] == RELEASED_CODE


def test_a_lost_answer_finds_the_lease_by_its_nonce_and_creates_it_once(
    demo: tuple[LocalOrg, ScenarioInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create is applied but its answer lost: the record is found by its nonce (one read, which also serves as
    the election's first read), not created again."""
    org, info = demo
    run_id = info.runs["failed_run"]
    client = _connected(org)
    create_record = client.create_record

    def applied_then_lost(sobject: str, fields: dict[str, object]) -> str:
        create_record(sobject, fields)
        raise AmbiguousWrite("create blng__ErrorLog__c: connection lost after the request was sent")

    monkeypatch.setattr(client, "create_record", applied_then_lost)
    used = _calls(org)
    lease = Leases(client, "worker-A", 900).acquire(run_id)
    assert _calls(org) - used == 2
    mine = [r for r in org.store.snapshot()[billing.ERROR_LOG] if r["blng__ErrorName__c"] == "worker-A"]
    assert [r["Id"] for r in mine] == [lease.record_id]
