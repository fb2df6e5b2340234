"""Who the local org is and who the worker logs in as: one Organization record and one User.

Every scenario has them, as every real org does. The org plays a sandbox unless asked to play production
(`seed(..., production=True)`, `localorg serve --production`, `--org local-production`); the two get different
org ids, as a full-copy sandbox does, so a journal or plan made against one is told apart from the other.
"""

from __future__ import annotations

from sfcleanup.localorg import idgen, schema
from sfcleanup.localorg.sql import quote
from sfcleanup.localorg.store import Store

ORG_NAME = "Acme"
USERNAME = "integration@sfcleanup.local"
# (row number of the Organization record, instance name): a sandbox runs on a CS instance, production on NA.
_PRODUCTION = (1, "NA224")
_SANDBOX = (2, "CS42")


def seed_identity(store: Store, *, production: bool) -> tuple[str, str]:
    """Insert the org's Organization and User records; returns their ids."""
    row, instance = _PRODUCTION if production else _SANDBOX
    organization = schema.BY_NAME["organization"]
    user = schema.BY_NAME["user"]
    org_id = idgen.record_id(organization.key_prefix, row)
    user_id = idgen.record_id(user.key_prefix, row)
    stamp = store.now()
    system = {"IsDeleted": 0, "CreatedDate": stamp, "LastModifiedDate": stamp, "SystemModstamp": stamp}
    org_values = {
        "Id": org_id,
        **system,
        "Name": ORG_NAME,
        "IsSandbox": 0 if production else 1,
        "OrganizationType": "Enterprise Edition",
        "InstanceName": instance,
    }
    user_values = {"Id": user_id, **system, "Username": USERNAME if production else f"{USERNAME}.uat"}
    with store.transaction() as conn:
        for spec, values in ((organization, org_values), (user, user_values)):
            names = ", ".join(quote(k) for k in values)
            marks = ", ".join("?" for _ in values)
            conn.execute(
                f"INSERT INTO {quote(spec.name)} (_rowid, {names}) VALUES (?, {marks})", (row, *values.values())
            )
    return org_id, user_id
