"""Which org the worker is connected to, and as whom: read once, shown above every plan, in the confirmation
prompt, the JSON report, every journal's `start` entry and the failures CSV's name.

A full-copy sandbox has the same record ids as production, so the org's own id (`Organization.Id`, 00D...) is
what tells a journal or a plan of one org from another, and `IsSandbox` is what the production guard reads.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from sfcleanup import queries
from sfcleanup.errors import ConfigError
from sfcleanup.salesforce.api import DescribeApi
from sfcleanup.salesforce.composite import query_path
from sfcleanup.salesforce.shapes import query_records


class OrgIdentity(BaseModel):
    """The org and the user, as the org itself says."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: str = Field(alias="Id", min_length=15, max_length=18)
    name: str = Field(alias="Name")
    is_sandbox: bool = Field(alias="IsSandbox")
    organization_type: str | None = Field(default=None, alias="OrganizationType")
    instance_name: str | None = Field(default=None, alias="InstanceName")
    user_id: str | None = None
    username: str | None = None

    @property
    def kind(self) -> str:
        return "Sandbox" if self.is_sandbox else "Production"

    @property
    def production(self) -> bool:
        return not self.is_sandbox

    def line(self) -> str:
        """`Org: Acme (00D..., Production) as user x@y`: the line every plan and prompt starts with."""
        return f"Org: {self.name} ({self.id}, {self.kind}) as user {self.username or 'unknown'}"

    def as_json(self) -> dict[str, object]:
        """The `org` object of the JSON report and of journal `start` entries."""
        return {
            "id": self.id,
            "name": self.name,
            "is_sandbox": self.is_sandbox,
            "type": self.organization_type,
            "instance": self.instance_name,
            "user_id": self.user_id,
            "username": self.username,
        }


def identity_paths(user_id: str | None) -> list[str]:
    """The two queries `read_identity` sends: the Organization record and, when its id is known, the user."""
    paths = [query_path(queries.render("organization"))]
    if user_id:
        paths.append(query_path(queries.render("user_by_id", user_id=user_id)))
    return paths


def read_identity(client: DescribeApi, user_id: str | None) -> OrgIdentity:
    """The Organization record and the running user's username, in one Composite call (two queries), or from
    what `SalesforceClient.prefetch` read along with other startup reads.

    `user_id` comes from the login's identity URL; with a bare access token the client asks
    `/services/oauth2/userinfo` for it first (one call more, once per client). Without it the username is unknown.
    """
    pages = client.get_many("org identity", identity_paths(user_id))
    organizations = query_records(pages[0])
    if not organizations:
        raise ConfigError(
            "the org returned no Organization record: the integration user cannot read it; grant it "
            '"View Setup and Configuration" or check the login'
        )
    users = query_records(pages[1]) if len(pages) > 1 else []
    username = str(users[0].get("Username")) if users else None
    return OrgIdentity.model_validate({**organizations[0], "user_id": user_id, "username": username})
