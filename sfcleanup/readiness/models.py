"""Frozen views of what the readiness rules read. Query JSON becomes these at the boundary.

Every field is optional: a field the org lacks is not selected, and reads as None here. Whether None means
"empty" or "not in this org" is the engine's question, answered from the available fields it is given.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import AliasPath, BaseModel, ConfigDict, Field, field_validator

from sfcleanup.sftime import parse_datetime


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: str = Field(validation_alias="Id")


class OrderProductState(_Record):
    order_id: str | None = Field(default=None, validation_alias="OrderId")
    order_status: str | None = Field(default=None, validation_alias=AliasPath("Order", "Status"))
    invoice_batch: str | None = Field(default=None, validation_alias=AliasPath("Order", "blng__InvoiceBatch__c"))
    activated: bool | None = Field(default=None, validation_alias="SBQQ__Activated__c")
    processing_status: str | None = Field(default=None, validation_alias="blng__InvoiceRunProcessingStatus__c")
    hold_billing: str | None = Field(default=None, validation_alias="blng__HoldBilling__c")
    charge_type: str | None = Field(default=None, validation_alias="SBQQ__ChargeType__c")
    billing_frequency: str | None = Field(default=None, validation_alias="SBQQ__BillingFrequency__c")
    next_billing_date: date | None = Field(default=None, validation_alias="blng__NextBillingDate__c")
    billable_unit_price: Decimal | None = Field(default=None, validation_alias="blng__BillableUnitPrice__c")
    pending_billings: Decimal | None = Field(default=None, validation_alias="blng__PendingBillings__c")
    billing_rule_id: str | None = Field(default=None, validation_alias="blng__BillingRule__c")
    generate_invoices: str | None = Field(
        default=None, validation_alias=AliasPath("blng__BillingRule__r", "blng__GenerateInvoices__c")
    )
    tax_rule_id: str | None = Field(default=None, validation_alias="blng__TaxRule__c")
    revenue_rule_id: str | None = Field(default=None, validation_alias="blng__RevenueRecognitionRule__c")


class UsageSummaryState(_Record):
    order_product_id: str | None = Field(default=None, validation_alias="blng__OrderProduct__c")
    status: str | None = Field(default=None, validation_alias="blng__Status__c")
    processing_status: str | None = Field(default=None, validation_alias="blng__InvoiceRunProcessingStatus__c")
    next_billing_date: date | None = Field(default=None, validation_alias="blng__NextBillingDate__c")
    summary_end_date: date | None = Field(default=None, validation_alias="blng__SummaryEndDate__c")
    order_product_hold_billing: str | None = Field(
        default=None, validation_alias=AliasPath("blng__OrderProduct__r", "blng__HoldBilling__c")
    )
    invoice_batch: str | None = Field(
        default=None, validation_alias=AliasPath("blng__OrderProduct__r", "Order", "blng__InvoiceBatch__c")
    )


class InvoiceScheduler(_Record):
    name: str | None = Field(default=None, validation_alias="Name")
    type: str | None = Field(default=None, validation_alias="blng__Type__c")
    start: datetime | None = Field(default=None, validation_alias="blng__StartDateTime__c")
    target_date: date | None = Field(default=None, validation_alias="blng__TargetDate__c")
    # A multi-select picklist arrives as "A;B"; empty (null) selects only orders with no batch.
    invoice_batches: frozenset[str] = Field(default=frozenset(), validation_alias="blng__InvoiceBatches__c")

    @field_validator("start", mode="before")
    @classmethod
    def _datetime(cls, value: object) -> object:
        # The REST API writes offsets as +0000, which the ISO parser of older Pythons rejects.
        return parse_datetime(value) if isinstance(value, str) else value

    @field_validator("invoice_batches", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if value is None:
            return frozenset()
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(";") if part.strip())
        return value


class InvoiceLineState(_Record):
    status: str | None = Field(default=None, validation_alias="blng__InvoiceLineStatus__c")
    order_product_id: str | None = Field(default=None, validation_alias="blng__OrderProduct__c")
    usage_summary_id: str | None = Field(default=None, validation_alias="blng__UsageSummary__c")
    invoice_id: str | None = Field(default=None, validation_alias="blng__Invoice__c")
    invoice_status: str | None = Field(
        default=None, validation_alias=AliasPath("blng__Invoice__r", "blng__InvoiceStatus__c")
    )
