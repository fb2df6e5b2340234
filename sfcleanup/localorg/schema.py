"""The local org's data model: one declarative description of every sObject it serves.

Everything else (SQLite tables, describe, validation, SOQL field resolution, lock parents) is derived from
this one table, so a field added here is stored, described, queryable and validated at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum


class FieldType(StrEnum):
    ID = "id"
    STRING = "string"
    TEXTAREA = "textarea"
    PICKLIST = "picklist"
    MULTIPICKLIST = "multipicklist"
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
    # Filled in on create when the payload leaves the field out (a checkbox defaults to false).
    default: bool | None = None
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
    # Columns the store keeps that the API does not have on this object (describe, SOQL, records leave them out).
    stored_only: frozenset[str] = frozenset()
    by_name: dict[str, FieldSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name.lower(): f for f in self.api_fields})

    @property
    def api_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.name not in self.stored_only)

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
# The object reference lists Cancelled, New, Processed and the three Queued For values; "Invoiced" is kept for
# the seeds' billed summaries (docs/localorg-fidelity.md).
USAGE_STATUS_VALUES = (
    "Cancelled",
    "New",
    "Processed",
    "Queued For Group Calculation",
    "Queued For Invoice",
    "Queued For Subtotal Calculation",
    "Invoiced",
)
# Invoice batches are values the org's admin defines; these are the local org's.
INVOICE_BATCH_VALUES = ("Batch A", "Batch B", "Batch C")
CHARGE_TYPE_VALUES = ("One-Time", "Recurring", "Usage")
BILLING_FREQUENCY_VALUES = ("Monthly", "Quarterly", "Semiannual", "Annual", "Invoice Plan")
YES_NO_VALUES = ("Yes", "No")
GENERATE_INVOICES_VALUES = ("No", "Yes")
SCHEDULER_TYPE_VALUES = ("Daily", "Monthly", "Once", "Weekly")
# Organization.OrganizationType's documented values (Object Reference, "Organization").
EDITIONS = ("Base", "Contact Manager", "Developer", "Enterprise", "Personal", "Professional", "Team", "Unlimited")
ORGANIZATION_TYPE_VALUES = tuple(f"{edition} Edition" for edition in EDITIONS)


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


def _multipicklist(name: str, label: str, values: tuple[str, ...]) -> FieldSpec:
    return FieldSpec(name, FieldType.MULTIPICKLIST, label, length=4099, picklist=values, restricted=True)


def _checkbox(name: str, label: str) -> FieldSpec:
    return FieldSpec(name, FieldType.BOOLEAN, label, nillable=False, default=False)


def _billing_fields() -> tuple[FieldSpec, ...]:
    """What the readiness rules read on an order product (docs/readiness.md, "API names")."""
    return (
        _checkbox("SBQQ__Activated__c", "Activated"),
        _picklist("SBQQ__ChargeType__c", "Charge Type", CHARGE_TYPE_VALUES),
        _picklist("SBQQ__BillingFrequency__c", "Billing Frequency", BILLING_FREQUENCY_VALUES),
        _picklist("blng__HoldBilling__c", "Hold Billing", YES_NO_VALUES),
        FieldSpec("blng__NextBillingDate__c", FieldType.DATE, "Next Billing Date"),
        FieldSpec("blng__BillableUnitPrice__c", FieldType.CURRENCY, "Billable Unit Price"),
        FieldSpec("blng__PendingBillings__c", FieldType.CURRENCY, "Pending Billings"),
        _ref("blng__BillingRule__c", "Billing Rule", "blng__BillingRule__c", "blng__BillingRule__r"),
        _ref("blng__TaxRule__c", "Tax Rule", "blng__TaxRule__c", "blng__TaxRule__r"),
        _ref(
            "blng__RevenueRecognitionRule__c",
            "Revenue Recognition Rule",
            "blng__RevenueRecognitionRule__c",
            "blng__RevenueRecognitionRule__r",
        ),
    )


def _processing_fields() -> tuple[FieldSpec, ...]:
    return (
        _picklist("blng__InvoiceRunProcessingStatus__c", "Invoice Run Processing Status", PROCESSING_STATUS_VALUES),
        _ref("blng__InvoiceRun__c", "Invoice Run", "blng__InvoiceRun__c", "blng__InvoiceRun__r"),
        FieldSpec("blng__InvoiceRunStartDate__c", FieldType.DATETIME, "Invoice Run Start Date"),
        _read_only("blng__InvoiceRunStatusIndex__c", FieldType.STRING, "Invoice Run Status Index", 255),
    )


def _read_only(name: str, type_: FieldType, label: str, length: int = 0) -> FieldSpec:
    """A field the API reads but never writes (Organization and User as the worker's user sees them)."""
    return FieldSpec(name, type_, label, updateable=False, createable=False, length=length)


# Who the worker talks to (docs/localorg-fidelity.md, "Organization and User"): read only, as for an
# integration user without "Manage Users"; seeded by `seed.identity`.
IDENTITY_SOBJECTS: tuple[SObjectSpec, ...] = (
    SObjectSpec(
        "Organization",
        "Organization",
        "00D",
        (
            *_system_fields(),
            _read_only("Name", FieldType.STRING, "Name", 80),
            _read_only("IsSandbox", FieldType.BOOLEAN, "Is Sandbox"),
            replace(
                _picklist("OrganizationType", "Edition", ORGANIZATION_TYPE_VALUES), updateable=False, createable=False
            ),
            _read_only("InstanceName", FieldType.STRING, "Instance Name", 5),
        ),
        custom=False,
        stored_only=frozenset({"IsDeleted"}),
    ),
    SObjectSpec(
        "User",
        "User",
        "005",
        (*_system_fields(), _read_only("Username", FieldType.STRING, "Username", 80)),
        custom=False,
        stored_only=frozenset({"IsDeleted"}),
    ),
)

SOBJECTS: tuple[SObjectSpec, ...] = (
    *IDENTITY_SOBJECTS,
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
            _picklist("blng__InvoiceBatch__c", "Invoice Batch", INVOICE_BATCH_VALUES),
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
            *_billing_fields(),
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
            FieldSpec("blng__NextBillingDate__c", FieldType.DATE, "Next Billing Date"),
            FieldSpec("blng__SummaryEndDate__c", FieldType.DATE, "Summary End Date"),
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
    SObjectSpec(
        "blng__BillingRule__c",
        "Billing Rule",
        "a1F",
        (
            *_system_fields(),
            _name("Billing Rule Name"),
            _picklist("blng__GenerateInvoices__c", "Generate Invoices", GENERATE_INVOICES_VALUES),
        ),
    ),
    SObjectSpec("blng__TaxRule__c", "Tax Rule", "a1G", (*_system_fields(), _name("Tax Rule Name"))),
    SObjectSpec(
        "blng__RevenueRecognitionRule__c",
        "Revenue Recognition Rule",
        "a1H",
        (*_system_fields(), _name("Revenue Recognition Rule Name")),
    ),
    SObjectSpec(
        "blng__InvoiceScheduler__c",
        "Invoice Scheduler",
        "a1I",
        (
            *_system_fields(),
            _name("Invoice Scheduler Name"),
            _picklist("blng__Type__c", "Type", SCHEDULER_TYPE_VALUES),
            FieldSpec("blng__StartDateTime__c", FieldType.DATETIME, "Start Date Time"),
            FieldSpec("blng__TargetDate__c", FieldType.DATE, "Target Date"),
            _multipicklist("blng__InvoiceBatches__c", "Invoice Batches", INVOICE_BATCH_VALUES),
        ),
    ),
)

BY_NAME: dict[str, SObjectSpec] = {s.name.lower(): s for s in SOBJECTS}
BY_PREFIX: dict[str, SObjectSpec] = {s.key_prefix: s for s in SOBJECTS}


def sobject(name: str) -> SObjectSpec | None:
    """Object names are case-insensitive in the API."""
    return BY_NAME.get(name.lower())
