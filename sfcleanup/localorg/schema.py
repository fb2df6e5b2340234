"""The local org's data model: one declarative description of every sObject it serves.

Everything else (SQLite tables, describe, validation, SOQL field resolution, lock parents) is derived from
this one table, so a field added here is stored, described, queryable and validated at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FieldType(StrEnum):
    ID = "id"
    STRING = "string"
    TEXTAREA = "textarea"
    PICKLIST = "picklist"
    REFERENCE = "reference"
    DATETIME = "datetime"
    DATE = "date"
    DOUBLE = "double"
    CURRENCY = "currency"
    BOOLEAN = "boolean"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType
    label: str
    updateable: bool = True
    createable: bool = True
    nillable: bool = True
    length: int = 0
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    reference_to: str | None = None
    relationship_name: str | None = None
    # Master-detail, or a lookup the platform locks with its child (Order -> Account).
    locks_parent: bool = False
    master_detail: bool = False


@dataclass(frozen=True)
class SObjectSpec:
    name: str
    label: str
    key_prefix: str
    fields: tuple[FieldSpec, ...]
    custom: bool = True
    by_name: dict[str, FieldSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> FieldSpec | None:
        """Field names are case-insensitive in the API, as in Salesforce."""
        return self.by_name.get(name.lower())

    def relationship(self, name: str) -> FieldSpec | None:
        lowered = name.lower()
        for spec in self.fields:
            if spec.relationship_name is not None and spec.relationship_name.lower() == lowered:
                return spec
        return None

    @property
    def lock_parents(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.locks_parent)


INVOICE_STATUS_VALUES = ("Draft", "Posted", "Cancelled", "Error", "Initiated", "Post In progress", "Rebilled")
PROCESSING_STATUS_VALUES = ("Completed", "Error", "In Progress", "Pending Billing", "Will Not Invoice")
RUN_STATUS_VALUES = (
    "Started",
    "Step 1 : Invoice Creation - Processing",
    "Step 1 : Invoice Creation - Complete",
    "Step 2 : Invoice Line Creation - Processing",
    "Step 2 : Invoice Line Creation - Complete",
    "Step 3 : Tax Calculation - Processing",
    "Step 3 : Tax Calculation - Complete",
    "Step 4 : Posting - Processing",
    "Step 4 : Posting - Complete",
    "Completed",
    "Completed with errors",
    "Canceled",
    "Failed",
    "Stopped",
)
CLEANUP_STATUS_VALUES = ("Started", "Completed", "Completed with errors")
USAGE_STATUS_VALUES = ("New", "Queued For Invoice", "Processed", "Invoiced", "Cancelled")


def _system_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("Id", FieldType.ID, "Record ID", updateable=False, createable=False, nillable=False, length=18),
        FieldSpec("IsDeleted", FieldType.BOOLEAN, "Deleted", updateable=False, createable=False, nillable=False),
        FieldSpec("CreatedDate", FieldType.DATETIME, "Created Date", updateable=False, createable=False),
        FieldSpec("LastModifiedDate", FieldType.DATETIME, "Last Modified Date", updateable=False, createable=False),
        FieldSpec("SystemModstamp", FieldType.DATETIME, "System Modstamp", updateable=False, createable=False),
    )


def _name(label: str = "Name") -> FieldSpec:
    return FieldSpec("Name", FieldType.STRING, label, length=80)


def _ref(
    name: str,
    label: str,
    to: str,
    relationship: str,
    *,
    master_detail: bool = False,
    locks_parent: bool = False,
) -> FieldSpec:
    return FieldSpec(
        name,
        FieldType.REFERENCE,
        label,
        length=18,
        reference_to=to,
        relationship_name=relationship,
        master_detail=master_detail,
        locks_parent=locks_parent or master_detail,
        nillable=not master_detail,
        # Master-detail children cannot be re-parented unless the admin allows it; the package does not.
        updateable=not master_detail,
    )


def _picklist(name: str, label: str, values: tuple[str, ...], *, restricted: bool = True) -> FieldSpec:
    return FieldSpec(name, FieldType.PICKLIST, label, length=255, picklist=values, restricted=restricted)


def _processing_fields() -> tuple[FieldSpec, ...]:
    return (
        _picklist("blng__InvoiceRunProcessingStatus__c", "Invoice Run Processing Status", PROCESSING_STATUS_VALUES),
        _ref("blng__InvoiceRun__c", "Invoice Run", "blng__InvoiceRun__c", "blng__InvoiceRun__r"),
        FieldSpec("blng__InvoiceRunStartDate__c", FieldType.DATETIME, "Invoice Run Start Date"),
        FieldSpec(
            "blng__InvoiceRunStatusIndex__c",
            FieldType.STRING,
            "Invoice Run Status Index",
            updateable=False,
            createable=False,
            length=255,
        ),
    )


SOBJECTS: tuple[SObjectSpec, ...] = (
    SObjectSpec("Account", "Account", "001", (*_system_fields(), _name("Account Name")), custom=False),
    SObjectSpec(
        "Order",
        "Order",
        "801",
        (
            *_system_fields(),
            _name("Order Name"),
            _ref("AccountId", "Account ID", "Account", "Account", locks_parent=True),
            _picklist("Status", "Status", ("Draft", "Activated")),
            FieldSpec("EffectiveDate", FieldType.DATE, "Order Start Date"),
        ),
        custom=False,
    ),
    SObjectSpec(
        "OrderItem",
        "Order Product",
        "802",
        (
            *_system_fields(),
            _ref("OrderId", "Order ID", "Order", "Order", master_detail=True),
            FieldSpec("Quantity", FieldType.DOUBLE, "Quantity"),
            FieldSpec("UnitPrice", FieldType.CURRENCY, "Unit Price"),
            *_processing_fields(),
        ),
        custom=False,
    ),
    SObjectSpec(
        "blng__InvoiceRun__c",
        "Invoice Run",
        "a1A",
        (
            *_system_fields(),
            _name("Invoice Run Name"),
            _picklist("blng__Status__c", "Status", RUN_STATUS_VALUES),
            _picklist("blng__CleanUpStatus__c", "CleanUp Status", CLEANUP_STATUS_VALUES),
            FieldSpec("blng__TargetDate__c", FieldType.DATE, "Target Date"),
            FieldSpec("blng__InvoiceDate__c", FieldType.DATE, "Invoice Date"),
            FieldSpec("blng__StartTime__c", FieldType.DATETIME, "Start Time"),
            FieldSpec("blng__CompletedTime__c", FieldType.DATETIME, "Completed Time"),
            FieldSpec("blng__ApexJobId__c", FieldType.STRING, "Apex Job Id", length=18),
            FieldSpec("blng__InvoiceScheduler__c", FieldType.STRING, "Invoice Scheduler", length=18),
        ),
    ),
    SObjectSpec(
        "blng__Invoice__c",
        "Invoice",
        "a1B",
        (
            *_system_fields(),
            _name("Invoice Number"),
            _ref("blng__Account__c", "Account", "Account", "blng__Account__r", master_detail=True),
            _ref("blng__Order__c", "Order", "Order", "blng__Order__r"),
            _picklist("blng__InvoiceStatus__c", "Invoice Status", INVOICE_STATUS_VALUES),
            _ref(
                "blng__InvoiceRunCreatedBy__c",
                "Invoice Run Created By",
                "blng__InvoiceRun__c",
                "blng__InvoiceRunCreatedBy__r",
            ),
            FieldSpec("blng__InvoiceDate__c", FieldType.DATE, "Invoice Date"),
            FieldSpec("blng__TotalAmount__c", FieldType.CURRENCY, "Total Amount", updateable=False),
        ),
    ),
    SObjectSpec(
        "blng__InvoiceLine__c",
        "Invoice Line",
        "a1C",
        (
            *_system_fields(),
            _name("Invoice Line Name"),
            _ref("blng__Invoice__c", "Invoice", "blng__Invoice__c", "blng__Invoice__r", master_detail=True),
            _picklist("blng__InvoiceLineStatus__c", "Invoice Line Status", INVOICE_STATUS_VALUES),
            _ref("blng__InvoiceRun__c", "Invoice Run", "blng__InvoiceRun__c", "blng__InvoiceRun__r"),
            _ref("blng__OrderProduct__c", "Order Product", "OrderItem", "blng__OrderProduct__r"),
            _ref("blng__UsageSummary__c", "Usage Summary", "blng__UsageSummary__c", "blng__UsageSummary__r"),
            FieldSpec("blng__TotalAmount__c", FieldType.CURRENCY, "Total Amount"),
        ),
    ),
    SObjectSpec(
        "blng__UsageSummary__c",
        "Usage Summary",
        "a1D",
        (
            *_system_fields(),
            _name("Usage Summary Number"),
            _ref(
                "blng__OrderProduct__c",
                "Order Product",
                "OrderItem",
                "blng__OrderProduct__r",
                master_detail=True,
            ),
            _ref("blng__InvoiceLine__c", "Invoice Line", "blng__InvoiceLine__c", "blng__InvoiceLine__r"),
            _ref("blng__Invoice__c", "Invoice", "blng__Invoice__c", "blng__Invoice__r"),
            _ref("blng__Order__c", "Order", "Order", "blng__Order__r"),
            _picklist("blng__Status__c", "Status", USAGE_STATUS_VALUES),
            *_processing_fields(),
        ),
    ),
    SObjectSpec(
        "blng__ErrorLog__c",
        "Error Log",
        "a1E",
        (
            *_system_fields(),
            _name("Error Log Name"),
            _ref("blng__InvoiceRun__c", "Invoice Run", "blng__InvoiceRun__c", "blng__InvoiceRun__r"),
            FieldSpec("blng__ErrorCode__c", FieldType.STRING, "Error Code", length=255),
            FieldSpec("blng__ErrorName__c", FieldType.STRING, "Error Name", length=255),
            FieldSpec("blng__Summary__c", FieldType.STRING, "Summary", length=255),
            FieldSpec("blng__FullErrorLog__c", FieldType.TEXTAREA, "Full Error Log", length=32768),
        ),
    ),
)

BY_NAME: dict[str, SObjectSpec] = {s.name.lower(): s for s in SOBJECTS}
BY_PREFIX: dict[str, SObjectSpec] = {s.key_prefix: s for s in SOBJECTS}


def sobject(name: str) -> SObjectSpec | None:
    """Object names are case-insensitive in the API."""
    return BY_NAME.get(name.lower())
