"""Reading a run's records: the SOQL files, paged to the end, parsed into typed models at the boundary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

from sfcleanup import billing, queries
from sfcleanup.billing import RULE_BY_OBJECT
from sfcleanup.models import Invoice, InvoiceLine, InvoiceRun, OrderProduct, UsageSummary
from sfcleanup.salesforce.client import SalesforceClient

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RunRecords:
    invoices: list[Invoice]
    lines: list[InvoiceLine]
    order_products: list[OrderProduct]
    usage_summaries: list[UsageSummary]

    @property
    def total(self) -> int:
        return len(self.invoices) + len(self.lines) + len(self.order_products) + len(self.usage_summaries)


def _read(client: SalesforceClient, model: type[M], query: str, run_id: str, batch_size: int) -> list[M]:
    soql = queries.render(query, run_id=run_id)
    return [model.model_validate(r) for page in client.query_pages(soql, batch_size=batch_size) for r in page]


def read_run(client: SalesforceClient, run: InvoiceRun, *, batch_size: int = 2000) -> RunRecords:
    return RunRecords(
        invoices=_read(client, Invoice, "invoices", run.id, batch_size),
        lines=_read(client, InvoiceLine, "invoice_lines", run.id, batch_size),
        order_products=_read(client, OrderProduct, "order_products", run.id, batch_size),
        usage_summaries=_read(client, UsageSummary, "usage_summaries", run.id, batch_size),
    )


# Which field links each object to its run.
RUN_LINK = {
    billing.INVOICE: "blng__InvoiceRunCreatedBy__c",
    billing.INVOICE_LINE: "blng__InvoiceRun__c",
    billing.ORDER_PRODUCT: billing.RUN_LOOKUP,
    billing.USAGE_SUMMARY: billing.RUN_LOOKUP,
}


def remaining_by_status(client: SalesforceClient, run_id: str) -> dict[str, dict[str, int]]:
    """Per object, how many records linked to the run are in each status: one aggregate query each."""
    out: dict[str, dict[str, int]] = {}
    for sobject, run_field in RUN_LINK.items():
        status_field = RULE_BY_OBJECT[sobject].status_field
        soql = queries.render(
            "remaining_by_status", status_field=status_field, sobject=sobject, run_field=run_field, run_id=run_id
        )
        out[sobject] = {str(r.get(status_field)): int(r.get("n", 0)) for r in client.query_all(soql)}
    return out


def eligible_left(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    """How many records per object are still in a from-state of the clean-up."""
    return {
        sobject: sum(n for status, n in by_status.items() if status in RULE_BY_OBJECT[sobject].from_states)
        for sobject, by_status in counts.items()
    }
