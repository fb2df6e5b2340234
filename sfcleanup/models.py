"""Typed, frozen views of the Salesforce records the clean-up reads. JSON becomes these at the boundary."""

from __future__ import annotations

from pydantic import AliasPath, BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: str = Field(validation_alias="Id")


class InvoiceRun(_Record):
    name: str | None = Field(default=None, validation_alias="Name")
    status: str | None = Field(default=None, validation_alias="blng__Status__c")
    cleanup_status: str | None = Field(default=None, validation_alias="blng__CleanUpStatus__c")
    modstamp: str | None = Field(default=None, validation_alias="SystemModstamp")


class Invoice(_Record):
    status: str | None = Field(default=None, validation_alias="blng__InvoiceStatus__c")
    account_id: str | None = Field(default=None, validation_alias="blng__Account__c")


class InvoiceLine(_Record):
    status: str | None = Field(default=None, validation_alias="blng__InvoiceLineStatus__c")
    run_id: str | None = Field(default=None, validation_alias="blng__InvoiceRun__c")
    invoice_id: str | None = Field(default=None, validation_alias="blng__Invoice__c")
    invoice_status: str | None = Field(
        default=None, validation_alias=AliasPath("blng__Invoice__r", "blng__InvoiceStatus__c")
    )
    account_id: str | None = Field(default=None, validation_alias=AliasPath("blng__Invoice__r", "blng__Account__c"))
    order_product_id: str | None = Field(default=None, validation_alias="blng__OrderProduct__c")
    usage_summary_id: str | None = Field(default=None, validation_alias="blng__UsageSummary__c")


class BillingSource(_Record):
    """An order product or a usage summary: what an invoice run bills."""

    status: str | None = Field(default=None, validation_alias="blng__InvoiceRunProcessingStatus__c")
    run_id: str | None = Field(default=None, validation_alias="blng__InvoiceRun__c")
    run_start: str | None = Field(default=None, validation_alias="blng__InvoiceRunStartDate__c")


class OrderProduct(BillingSource):
    order_id: str | None = Field(default=None, validation_alias="OrderId")
    account_id: str | None = Field(default=None, validation_alias=AliasPath("Order", "AccountId"))


class UsageSummary(BillingSource):
    order_product_id: str | None = Field(default=None, validation_alias="blng__OrderProduct__c")
    account_id: str | None = Field(
        default=None, validation_alias=AliasPath("blng__OrderProduct__r", "Order", "AccountId")
    )
    invoice_line_id: str | None = Field(default=None, validation_alias="blng__InvoiceLine__c")
    # The summary's own invoice line, read two levels up: a failed run can leave this the only link to a
    # posted invoice (its own invoice link empty).
    invoice_line_status: str | None = Field(
        default=None, validation_alias=AliasPath("blng__InvoiceLine__r", "blng__InvoiceLineStatus__c")
    )
    invoice_line_run_id: str | None = Field(
        default=None, validation_alias=AliasPath("blng__InvoiceLine__r", "blng__InvoiceRun__c")
    )
    invoice_line_invoice_id: str | None = Field(
        default=None, validation_alias=AliasPath("blng__InvoiceLine__r", "blng__Invoice__c")
    )
    invoice_line_invoice_status: str | None = Field(
        default=None,
        validation_alias=AliasPath("blng__InvoiceLine__r", "blng__Invoice__r", "blng__InvoiceStatus__c"),
    )
    invoice_id: str | None = Field(default=None, validation_alias="blng__Invoice__c")
    invoice_status: str | None = Field(
        default=None, validation_alias=AliasPath("blng__Invoice__r", "blng__InvoiceStatus__c")
    )
