"""Connecting the worker to an in-process local org: `--org local`.

The org is built in this process (the demo scenario, or a `--state FILE`), its adapter is mounted on the
worker's HTTP session, and the worker logs in through the org's OAuth endpoint with client credentials, so
session expiry and re-login behave as against a real org.
"""

from __future__ import annotations

from pathlib import Path

import requests
from pydantic import SecretStr

from sfcleanup.config import AuthMode, OrgSettings
from sfcleanup.errors import ConfigError
from sfcleanup.localorg import schema
from sfcleanup.localorg.adapter import mount
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.seed import ScenarioInfo, seed
from sfcleanup.localorg.store import Store
from sfcleanup.salesforce.connect import Connector, client_credentials_login


def open_local_org(
    state: Path | None = None, *, scenario: str = "demo", production: bool = False
) -> tuple[LocalOrg, ScenarioInfo | None]:
    """A fresh in-memory org seeded with `scenario`, or the org persisted in `state` (seeded if it is new); a
    sandbox unless `production` (which only a new org takes: a state file keeps what it was seeded as)."""
    store = Store(state)
    fresh = state is None or store.count_all() == 0
    info = seed(store, scenario, production=production) if fresh else None
    if production and not fresh and _is_sandbox(store):
        store.close()
        # Asked to rehearse production on a file seeded as a sandbox: it would write without the guard.
        raise ConfigError(f"--state {state} holds a local org seeded as a sandbox: use a new file to play production")
    return LocalOrg(store), info


def _is_sandbox(store: Store) -> bool:
    organization = store.first_id("Organization")
    spec = schema.sobject("Organization")
    if organization is None or spec is None:
        return True
    row = store.get_fields(spec, organization, ("IsSandbox",))
    return bool(row and row["IsSandbox"])


def local_connector(org: LocalOrg, settings: OrgSettings | None = None) -> Connector:
    http = mount(requests.Session(), org)
    local = OrgSettings(
        auth=AuthMode.CLIENT_CREDENTIALS,
        login_url=org.instance_url,
        consumer_key=org.credentials.consumer_key,
        consumer_secret=SecretStr(org.credentials.consumer_secret),
        api_version=settings.api_version if settings else OrgSettings().api_version,
    )
    return Connector(local, http, lambda: client_credentials_login(local, http))
