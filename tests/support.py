"""Helpers for tests: a seeded local org and a worker client connected to it in-process."""

from __future__ import annotations

from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.connect import local_connector
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.seed import ScenarioInfo, seed
from sfcleanup.localorg.store import Store
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.retry import no_wait_policy


def make_org(
    scenario: str = "demo", faults: FaultProfile | None = None, **seed_options: int
) -> tuple[LocalOrg, ScenarioInfo]:
    store = Store()
    info = seed(store, scenario, **seed_options)  # type: ignore[arg-type]
    return LocalOrg(store, faults=faults or FaultProfile(lock_wait_s=0.2)), info


def make_client(org: LocalOrg, attempts: int = 6) -> SalesforceClient:
    return SalesforceClient(local_connector(org), api_version="62.0", retry=no_wait_policy(attempts), timeout_s=30)
