"""The least-privilege permission set grants what the worker reads and writes, and nothing more."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from sfcleanup import billing, queries
from sfcleanup.localorg import schema
from sfcleanup.readiness import READINESS_FIELDS_READ, READINESS_NOT_PERMISSIONABLE

ROOT = Path(__file__).resolve().parent.parent
PERMISSION_SET = ROOT / "config" / "permissionset" / "sfcleanup.permissionset-meta.xml"
NS = "http://soap.sforce.com/2006/04/metadata"
Q = {"md": NS}

# Fields the worker reads that a permission set cannot list: the platform rejects field permissions on required
# and master-detail fields, and access to them comes with read on the object. Name is the run's (required) name
# field; the other four are master-detail links (test_exceptions_are_the_local_orgs_master_detail_fields checks
# them against the local org's model).
NOT_PERMISSIONABLE: frozenset[tuple[str, str]] = frozenset(
    {
        (billing.INVOICE_RUN, "Name"),
        (billing.INVOICE, "blng__Account__c"),
        (billing.INVOICE_LINE, "blng__Invoice__c"),
        (billing.ORDER_PRODUCT, "OrderId"),
        (billing.USAGE_SUMMARY, "blng__OrderProduct__c"),
    }
)
# Record id and audit fields: readable on every object the user can read, never in field permissions.
SYSTEM_FIELDS = frozenset({"Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "IsDeleted"})

# Granted beyond billing.FIELDS_READ / FIELDS_WRITTEN: the error-log fields the worker writes (failed rows and
# its lease record), and the order's account, read through the order product as the lock point.
ERROR_LOG_FIELDS = frozenset(
    {"blng__InvoiceRun__c", "blng__ErrorCode__c", "blng__ErrorName__c", "blng__Summary__c", "blng__FullErrorLog__c"}
)
EXTRA_READ: frozenset[tuple[str, str]] = frozenset(
    {("Order", "AccountId"), *((billing.ERROR_LOG, name) for name in ERROR_LOG_FIELDS)}
)
EXTRA_WRITTEN: frozenset[tuple[str, str]] = frozenset((billing.ERROR_LOG, name) for name in ERROR_LOG_FIELDS)
EXTRA_OBJECTS = frozenset({"Order", "Account", billing.ERROR_LOG})
# Which org and which user (sfcleanup/orgidentity.py): every user reads the Organization record and their own User
# record; no permission set grants them.
READABLE_BY_EVERY_USER: frozenset[tuple[str, str]] = frozenset(
    {
        *(("Organization", f) for f in ("Id", "Name", "IsSandbox", "OrganizationType", "InstanceName")),
        ("User", "Id"),
        ("User", "Username"),
    }
)

# Relationship paths used in SELECT lists: (object, relationship name) -> (the lookup field, the object it points
# to). Traversing one needs the lookup field readable as well as the field at the end of the path.
RELATIONSHIPS: dict[tuple[str, str], tuple[str, str]] = {
    (billing.ORDER_PRODUCT, "Order"): ("OrderId", "Order"),
    (billing.INVOICE_LINE, "blng__Invoice__r"): ("blng__Invoice__c", billing.INVOICE),
    (billing.USAGE_SUMMARY, "blng__Invoice__r"): ("blng__Invoice__c", billing.INVOICE),
    (billing.USAGE_SUMMARY, "blng__OrderProduct__r"): ("blng__OrderProduct__c", billing.ORDER_PRODUCT),
    (billing.USAGE_SUMMARY, "blng__InvoiceLine__r"): ("blng__InvoiceLine__c", billing.INVOICE_LINE),
    (billing.INVOICE_LINE, "blng__UsageSummary__r"): ("blng__UsageSummary__c", billing.USAGE_SUMMARY),
}


@dataclass(frozen=True)
class ObjectAccess:
    create: bool
    read: bool
    edit: bool
    delete: bool
    view_all: bool
    modify_all: bool


@dataclass(frozen=True)
class PermissionSet:
    root: ET.Element
    objects: dict[str, ObjectAccess]
    # "Object.Field" -> (readable, editable)
    fields: dict[str, tuple[bool, bool]]
    user_permissions: dict[str, bool]

    def readable(self, sobject: str, field: str) -> bool:
        """Readable through this permission set: listed as readable, or covered by read on the object."""
        if (sobject, field) in READABLE_BY_EVERY_USER:
            return True
        if not self.objects.get(sobject, _NO_ACCESS).read:
            return False
        if field in SYSTEM_FIELDS or (sobject, field) in NOT_PERMISSIONABLE | READINESS_NOT_PERMISSIONABLE:
            return True
        return self.fields.get(f"{sobject}.{field}", (False, False))[0]


_NO_ACCESS = ObjectAccess(False, False, False, False, False, False)


def _flag(element: ET.Element, name: str) -> bool:
    text = element.findtext(f"md:{name}", namespaces=Q)
    assert text in ("true", "false"), f"<{name}> must be true or false, not {text!r}"
    return text == "true"


@cache
def _load() -> PermissionSet:
    root = ET.parse(PERMISSION_SET).getroot()  # noqa: S314 - a file of this repository, not untrusted input
    objects: dict[str, ObjectAccess] = {}
    for element in root.findall("md:objectPermissions", Q):
        name = element.findtext("md:object", namespaces=Q)
        assert name and name not in objects, f"object {name!r} missing or listed twice"
        objects[name] = ObjectAccess(
            create=_flag(element, "allowCreate"),
            read=_flag(element, "allowRead"),
            edit=_flag(element, "allowEdit"),
            delete=_flag(element, "allowDelete"),
            view_all=_flag(element, "viewAllRecords"),
            modify_all=_flag(element, "modifyAllRecords"),
        )
    fields: dict[str, tuple[bool, bool]] = {}
    for element in root.findall("md:fieldPermissions", Q):
        name = element.findtext("md:field", namespaces=Q)
        assert name and name not in fields, f"field {name!r} missing or listed twice"
        fields[name] = (_flag(element, "readable"), _flag(element, "editable"))
    users = {
        str(element.findtext("md:name", namespaces=Q)): _flag(element, "enabled")
        for element in root.findall("md:userPermissions", Q)
    }
    return PermissionSet(root, objects, fields, users)


@pytest.fixture
def permset() -> PermissionSet:
    return _load()


def _pairs(fields: dict[str, frozenset[str]]) -> set[tuple[str, str]]:
    return {(sobject, name) for sobject, names in fields.items() for name in names}


def test_is_a_permission_set_in_the_metadata_namespace(permset: PermissionSet) -> None:
    """The file is a Metadata API PermissionSet with a label, a description and no activation requirement."""
    assert permset.root.tag == f"{{{NS}}}PermissionSet"
    assert (permset.root.findtext("md:label", namespaces=Q) or "").strip()
    assert (permset.root.findtext("md:description", namespaces=Q) or "").strip()
    assert permset.root.findtext("md:hasActivationRequired", namespaces=Q) == "false"
    elements = {"description", "label", "hasActivationRequired", "objectPermissions", "fieldPermissions"}
    assert {child.tag.removeprefix(f"{{{NS}}}") for child in permset.root} <= elements | {"userPermissions"}


def test_grants_api_enabled_and_no_other_user_permission(permset: PermissionSet) -> None:
    """The only system permission is API Enabled, and it is on."""
    assert permset.user_permissions == {"ApiEnabled": True}


def test_every_object_the_worker_reads_is_readable(permset: PermissionSet) -> None:
    """Each object in FIELDS_READ and FIELDS_WRITTEN, plus Order, Account and error logs, has read access."""
    for sobject in {*billing.FIELDS_READ, *billing.FIELDS_WRITTEN, *EXTRA_OBJECTS, *READINESS_FIELDS_READ}:
        assert permset.objects.get(sobject, _NO_ACCESS).read, f"{sobject}: no read access"


def test_every_object_the_worker_writes_is_editable(permset: PermissionSet) -> None:
    """Each object in FIELDS_WRITTEN, and error logs, has edit access; only error logs allow create."""
    for sobject in {*billing.FIELDS_WRITTEN, billing.ERROR_LOG}:
        assert permset.objects[sobject].edit, f"{sobject}: no edit access"
    assert {name for name, access in permset.objects.items() if access.create} == {billing.ERROR_LOG}


def test_every_read_field_is_readable(permset: PermissionSet) -> None:
    """Each field in FIELDS_READ (and the error-log fields and Order.AccountId) is readable."""
    for sobject, name in _pairs(billing.FIELDS_READ) | EXTRA_READ | _pairs(READINESS_FIELDS_READ):
        assert permset.readable(sobject, name), f"{sobject}.{name} is not readable"


def test_every_written_field_is_editable(permset: PermissionSet) -> None:
    """Each field in FIELDS_WRITTEN, and each error-log field, is listed as readable and editable."""
    for sobject, name in _pairs(billing.FIELDS_WRITTEN) | EXTRA_WRITTEN:
        assert permset.fields.get(f"{sobject}.{name}") == (True, True), f"{sobject}.{name} is not editable"


def test_required_and_master_detail_fields_are_not_listed(permset: PermissionSet) -> None:
    """Fields the platform refuses permissions on are left out (object read covers them)."""
    listed = {tuple(name.split(".", 1)) for name in permset.fields}
    assert not listed & (NOT_PERMISSIONABLE | READINESS_NOT_PERMISSIONABLE)
    assert not {name for name in permset.fields if name.split(".", 1)[1] in SYSTEM_FIELDS}
    # None of them is written: a master-detail link is never re-parented and a name is never changed.
    assert not NOT_PERMISSIONABLE & _pairs(billing.FIELDS_WRITTEN)


def test_exceptions_are_the_local_orgs_master_detail_fields() -> None:
    """The exception list matches the master-detail fields among those read, as the local org models them."""
    master_detail = set()
    for sobject, name in _pairs(billing.FIELDS_READ):
        spec = schema.sobject(sobject)
        assert spec is not None, sobject
        field = spec.field(name)
        assert field is not None, f"{sobject}.{name}"
        if field.master_detail:
            master_detail.add((sobject, name))
    assert master_detail == {pair for pair in NOT_PERMISSIONABLE if pair[1] != "Name"}


def test_nothing_beyond_what_is_needed(permset: PermissionSet) -> None:
    """No extra object or field, no field editable that is not written, no delete, View All or Modify All."""
    assert set(permset.objects) == {
        *billing.FIELDS_READ,
        *billing.FIELDS_WRITTEN,
        *EXTRA_OBJECTS,
        *READINESS_FIELDS_READ,
    }
    allowed = _pairs(billing.FIELDS_READ) | _pairs(billing.FIELDS_WRITTEN) | EXTRA_READ | _pairs(READINESS_FIELDS_READ)
    writable = _pairs(billing.FIELDS_WRITTEN) | EXTRA_WRITTEN
    for name, (readable, editable) in permset.fields.items():
        pair = tuple(name.split(".", 1))
        assert pair in allowed, f"{name} is not read or written by the worker"
        assert readable, f"{name} is listed but not readable"
        assert not editable or pair in writable, f"{name} is editable but never written"
    for sobject, access in permset.objects.items():
        assert not (access.delete or access.view_all or access.modify_all), f"{sobject}: more than needed"
    # Order is edit-enabled only because Salesforce requires edit on an order to update its order products;
    # Account is read-only.
    assert {name for name, access in permset.objects.items() if access.edit} == {
        *billing.FIELDS_WRITTEN,
        billing.ERROR_LOG,
        "Order",
    }


def _selected(select_list: str) -> list[str]:
    """The field paths of a SELECT list: aggregates unwrapped, aliases dropped, placeholders left out."""
    paths = []
    for item in select_list.split(","):
        expression = item.strip().split()[0]
        aggregate = re.fullmatch(r"\w+\((.*)\)", expression)
        if aggregate:
            expression = aggregate.group(1).strip()
        if expression.startswith("{"):
            continue  # a `{name:literal}` placeholder, filled from billing.RULES (covered by FIELDS_WRITTEN)
        paths.append(expression)
    return paths


def _resolve(sobject: str, path: str) -> list[tuple[str, str]]:
    """The (object, field) pairs a path reads: each lookup it follows, then the field at its end."""
    *hops, field = path.split(".")
    read = []
    for hop in hops:
        assert (sobject, hop) in RELATIONSHIPS, f"unknown relationship {sobject}.{hop}: add it to RELATIONSHIPS"
        lookup, target = RELATIONSHIPS[(sobject, hop)]
        read.append((sobject, lookup))
        sobject = target
    read.append((sobject, field))
    return read


SOQL_WORDS = frozenset(
    {"WHERE", "AND", "OR", "NOT", "IN", "INCLUDES", "EXCLUDES", "LIKE", "NULL", "TRUE", "FALSE", "ORDER", "GROUP"}
    | {"BY", "ASC", "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "HAVING", "WITH", "FOR", "UPDATE"}
)


def _filtered(clauses: str) -> list[str]:
    """The field paths named after FROM (WHERE, GROUP BY, ORDER BY): strings, placeholders and keywords removed."""
    text = re.sub(r"'(?:[^'\\]|\\.)*'|\{[^}]*\}", " ", clauses)
    paths = []
    for word in re.findall(r"[A-Za-z_][\w.]*(?::\w+)?", text):
        if word.upper() in SOQL_WORDS or ":" in word or re.fullmatch(r"[A-Z_0-9]+", word):
            continue  # a keyword, or a date literal such as TODAY or LAST_N_DAYS:n
        paths.append(word)
    return paths


def _fields_in_queries(*, clauses: bool = False) -> dict[str, set[tuple[str, str]]]:
    """Per query file, the (object, field) pairs it selects (or, with `clauses`, filters, groups and sorts on)."""
    by_query: dict[str, set[tuple[str, str]]] = {}
    for name in queries.names():
        text = queries.template(name)
        match = re.search(r"\bSELECT\s+(.*?)\s+FROM\s+(\S+)(.*)", text, re.IGNORECASE | re.DOTALL)
        assert match, f"{name}.soql: no SELECT ... FROM"
        select_list, sobject, rest = match.groups()
        if sobject.startswith("{"):
            # The object is a literal from billing.RULES; its fields are checked through FIELDS_WRITTEN.
            assert sobject.endswith(":literal}"), f"{name}.soql: FROM {sobject}"
            continue
        paths = _filtered(rest) if clauses else _selected(select_list)
        by_query[name] = {pair for path in paths for pair in _resolve(sobject, path)}
    return by_query


def test_query_parser_reads_relationship_paths() -> None:
    """The SELECT parser maps relationship paths to the object and field they read, lookups included."""
    assert _selected("Id, Order.AccountId, COUNT(Id) n, {status_field:literal}") == ["Id", "Order.AccountId", "Id"]
    assert _resolve(billing.ORDER_PRODUCT, "Order.AccountId") == [
        (billing.ORDER_PRODUCT, "OrderId"),
        ("Order", "AccountId"),
    ]
    assert _resolve(billing.INVOICE_LINE, "blng__Invoice__r.blng__InvoiceStatus__c")[-1] == (
        billing.INVOICE,
        "blng__InvoiceStatus__c",
    )
    assert _resolve(billing.USAGE_SUMMARY, "blng__OrderProduct__r.Order.AccountId")[-1] == ("Order", "AccountId")


def test_every_field_selected_in_the_queries_is_readable(permset: PermissionSet) -> None:
    """Each field named in a SELECT list of sfcleanup/queries/*.soql is readable through the permission set."""
    by_query = _fields_in_queries()
    # The queries that read records must have been parsed, not skipped.
    assert {"invoice_run", "invoices", "invoice_lines", "order_products", "usage_summaries"} <= set(by_query)
    for name, pairs in sorted(by_query.items()):
        for sobject, field in sorted(pairs):
            assert permset.readable(sobject, field), f"{name}.soql selects {sobject}.{field}: not readable"


def test_every_field_the_queries_filter_or_sort_on_is_readable(permset: PermissionSet) -> None:
    """Each field in a WHERE, GROUP BY or ORDER BY clause of the query files is readable (else INVALID_FIELD)."""
    by_query = _fields_in_queries(clauses=True)
    assert (billing.INVOICE_LINE, "blng__InvoiceRun__c") in by_query["invoice_lines"]  # the parser finds them
    for name, pairs in sorted(by_query.items()):
        for sobject, field in sorted(pairs):
            assert permset.readable(sobject, field), f"{name}.soql filters or sorts on {sobject}.{field}"


def test_fields_read_lists_every_field_the_queries_select() -> None:
    """Every field a query selects on a cleaned object is declared in billing.FIELDS_READ (or is a system field)."""
    for name, pairs in sorted(_fields_in_queries().items()):
        for sobject, field in sorted(pairs):
            if sobject in billing.FIELDS_READ and field not in SYSTEM_FIELDS:
                assert field in billing.FIELDS_READ[sobject], f"{name}.soql selects {sobject}.{field}"
