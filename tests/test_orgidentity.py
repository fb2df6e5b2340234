"""Which org: the local org's Organization and User records and its UserInfo endpoint (docs/localorg-fidelity.md
rows 97-101), and the worker's one read of them (`orgidentity.read_identity`)."""

from __future__ import annotations

import pytest

from sfcleanup.errors import ApiError, SfCleanupError
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.seed import seed
from sfcleanup.localorg.store import Store
from sfcleanup.orgidentity import read_identity
from tests.support import make_client


def _org(*, production: bool) -> LocalOrg:
    store = Store()
    seed(store, "empty", production=production)
    return LocalOrg(store)


@pytest.mark.parametrize("production", [True, False])
def test_read_identity_is_one_call(production: bool) -> None:
    """One Composite call reads the Organization and the running user: name, id, sandbox or production, user."""
    org = _org(production=production)
    client = make_client(org)
    user_id = client.user_id()
    used = org.api_used
    identity = read_identity(client, user_id)
    assert org.api_used - used == 1
    assert identity.id == org.store.first_id("Organization") and identity.id.startswith("00D")
    assert identity.is_sandbox is not production and identity.name == "Acme"
    assert identity.kind == ("Production" if production else "Sandbox")
    assert identity.username == ("integration@sfcleanup.local" + ("" if production else ".uat"))
    assert identity.line() == f"Org: Acme ({identity.id}, {identity.kind}) as user {identity.username}"


def test_production_and_sandbox_have_different_org_ids() -> None:
    """A sandbox keeps production's record ids but has an org id of its own: the local org's two do too."""
    production, sandbox = _org(production=True), _org(production=False)
    assert production.store.first_id("Organization") != sandbox.store.first_id("Organization")


def test_organization_and_user_are_read_only() -> None:
    """Row 97: updating the Organization's name or a user's Username through the API is refused."""
    org = _org(production=True)
    client = make_client(org)
    for sobject, field in (("Organization", "Name"), ("User", "Username")):
        record_id = org.store.first_id(sobject)
        assert record_id is not None
        with pytest.raises(SfCleanupError, match=r"INVALID_FIELD_FOR_INSERT_UPDATE|Unable to update") as caught:
            client.update_record(sobject, record_id, {field: "Other"})
        assert isinstance(caught.value, ApiError)


def test_userinfo_answers_in_the_documented_shape() -> None:
    """Rows 100-101: the token's `id` names the seeded org and user; `/services/oauth2/userinfo` answers with
    `user_id`, `organization_id` and `preferred_username` for the session's user, and 401 without a session."""
    org = _org(production=False)
    client = make_client(org)
    org_id, user_id = org.store.first_id("Organization"), org.store.first_id("User")
    assert client.user_id() == user_id
    url = f"{client.instance_url}/services/oauth2/userinfo"
    answer = client.http.get(url, headers={"Authorization": f"Bearer {client.sf.session_id}"}, timeout=10)
    body = answer.json()
    assert answer.status_code == 200
    assert body["user_id"] == user_id and body["organization_id"] == org_id
    assert body["preferred_username"] == "integration@sfcleanup.local.uat"
    assert body["sub"].endswith(f"/id/{org_id}/{user_id}")
    refused = client.http.get(url, timeout=10)
    assert refused.status_code == 401


def test_organization_has_no_is_deleted_field() -> None:
    """Row 99: like Salesforce's, the local org's Organization has no IsDeleted: describe leaves it out and a
    query naming it is INVALID_FIELD."""
    client = make_client(_org(production=False))
    names = {f["name"] for f in client.describe("Organization")["fields"]}
    assert {"Id", "Name", "IsSandbox", "OrganizationType", "InstanceName"} <= names and "IsDeleted" not in names
    with pytest.raises(ApiError, match="INVALID_FIELD"):
        client.query_all("SELECT IsDeleted FROM Organization")
