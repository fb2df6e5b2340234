"""Reading what the readiness rules need from the org: describe first, then only the fields the org has.

The queries live in sfcleanup/queries/readiness_*.soql. Their select lists are filled here from the paths in
readiness.fields, trimmed to the org's fields: a query naming a missing field would fail as a whole, and the
rule that needs the field is turned off by the engine instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from pydantic import BaseModel

from sfcleanup import queries
from sfcleanup.readiness import fields
from sfcleanup.readiness.engine import Readiness, assess
from sfcleanup.readiness.models import InvoiceLineState, InvoiceScheduler, OrderProductState, UsageSummaryState
from sfcleanup.salesforce import composite
from sfcleanup.salesforce.client import SalesforceClient

M = TypeVar("M", bound=BaseModel)
S = TypeVar("S", OrderProductState, UsageSummaryState)

# 200 ids keep a query's URL well under the 16,384-byte limit; the line query names each id twice.
IDS_PER_QUERY = 200
LINE_IDS_PER_QUERY = 100


@dataclass(frozen=True)
class ReadinessInput:
    """Everything assess() takes, as read from one org."""

    order_products: tuple[OrderProductState, ...]
    usage_summaries: tuple[UsageSummaryState, ...]
    schedulers: tuple[InvoiceScheduler, ...]
    lines: tuple[InvoiceLineState, ...]
    available_fields: frozenset[str]

    def assess(self, today: date) -> Readiness:
        """The rules applied to what was read (`engine.assess`, pure)."""
        return assess(
            self.order_products,
            self.usage_summaries,
            self.schedulers,
            self.lines,
            available_fields=self.available_fields,
            today=today,
        )


NOT_FOUND = 404


def available_fields(client: SalesforceClient) -> frozenset[str]:
    """The qualified names of every field of the readiness objects, from one Composite call of describes.

    An object the org lacks, or the user cannot see (its describe answers 404), has no fields: the rules that
    read it are turned off, never an error. Any other failure of a describe is raised as usual.
    """
    subrequests = [
        composite.subrequest("GET", f"/services/data/v{client.api_version}/sobjects/{sobject}/describe/", index)
        for index, sobject in enumerate(fields.OBJECTS)
    ]
    described: dict[str, object] = {}
    for sobject, result in zip(fields.OBJECTS, client.composite_rounds("describe", subrequests), strict=True):
        if result.ok:
            described[sobject] = result.body
        elif result.status != NOT_FOUND:
            # Asked again on its own, so the failure is raised as the client translates it.
            described[sobject] = client.get_many("describe", [f"sobjects/{sobject}/describe/"])[0]
    return fields.available_from_describe(described)


def select_list(sobject: str, available: frozenset[str]) -> str:
    """Id and every path of `sobject`'s readiness query that the org can answer."""
    return ", ".join(("Id", *fields.selectable(sobject, fields.PATHS_BY_OBJECT[sobject], available)))


def chunks(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), size):
        yield unique[start : start + size]


def _read(client: SalesforceClient, model: type[M], soql: str) -> list[M]:
    return [model.model_validate(record) for page in client.query_pages(soql) for record in page]


def _by_ids(client: SalesforceClient, model: type[M], query: str, select: str, ids: Sequence[str]) -> list[M]:
    found: list[M] = []
    for chunk in chunks(ids, IDS_PER_QUERY):
        found += _read(client, model, queries.render(query, fields=select, ids=chunk))
    return found


def _sources(
    client: SalesforceClient,
    model: type[S],
    sobject: str,
    stem: str,
    available: frozenset[str],
    run_id: str | None,
    ids: Sequence[str],
) -> list[S]:
    """Records named by id (`<stem>_by_ids`) and, given a run, those still linked to it (`<stem>_by_run`), once each."""
    select = select_list(sobject, available)
    found = _by_ids(client, model, f"{stem}_by_ids", select, ids)
    if run_id is not None:
        found += _read(client, model, queries.render(f"{stem}_by_run", fields=select, run_id=run_id))
    return list({record.id: record for record in found}.values())


def read_order_products(
    client: SalesforceClient, available: frozenset[str], *, run_id: str | None = None, ids: Sequence[str] = ()
) -> list[OrderProductState]:
    stem = "readiness_order_products"
    return _sources(client, OrderProductState, fields.ORDER_PRODUCT, stem, available, run_id, ids)


def read_usage_summaries(
    client: SalesforceClient, available: frozenset[str], *, run_id: str | None = None, ids: Sequence[str] = ()
) -> list[UsageSummaryState]:
    stem = "readiness_usage_summaries"
    return _sources(client, UsageSummaryState, fields.USAGE_SUMMARY, stem, available, run_id, ids)


def read_schedulers(client: SalesforceClient, available: frozenset[str]) -> list[InvoiceScheduler]:
    if f"{fields.SCHEDULER}.Id" not in available:
        return []  # no scheduler object in this org: the scheduler rules are off
    return _read(
        client,
        InvoiceScheduler,
        queries.render("readiness_schedulers", fields=select_list(fields.SCHEDULER, available)),
    )


def read_draft_lines(client: SalesforceClient, source_ids: Sequence[str]) -> list[InvoiceLineState]:
    found: list[InvoiceLineState] = []
    for chunk in chunks(source_ids, LINE_IDS_PER_QUERY):
        found += _read(client, InvoiceLineState, queries.render("readiness_draft_lines", ids=chunk))
    return found


def read(
    client: SalesforceClient,
    *,
    run_id: str | None = None,
    order_product_ids: Sequence[str] = (),
    usage_summary_ids: Sequence[str] = (),
    available: frozenset[str] | None = None,
) -> ReadinessInput:
    """The records of a run (still linked to it, or reset and named by id) and the org's schedulers."""
    known = available if available is not None else available_fields(client)
    order_products = read_order_products(client, known, run_id=run_id, ids=order_product_ids)
    usage_summaries = read_usage_summaries(client, known, run_id=run_id, ids=usage_summary_ids)
    sources = [record.id for record in order_products] + [record.id for record in usage_summaries]
    return ReadinessInput(
        order_products=tuple(order_products),
        usage_summaries=tuple(usage_summaries),
        schedulers=tuple(read_schedulers(client, known)),
        lines=tuple(read_draft_lines(client, sources)),
        available_fields=known,
    )


def estimated_calls(order_products: int, usage_summaries: int) -> int:
    """API calls the readiness section of one run takes for this many reset sources (read pages of 2,000)."""
    by_ids = math.ceil(order_products / IDS_PER_QUERY) + math.ceil(usage_summaries / IDS_PER_QUERY)
    lines = math.ceil((order_products + usage_summaries) / LINE_IDS_PER_QUERY)
    # The records still linked to the run (one query each for order products and usage summaries), and the
    # schedulers; each query may answer in more pages than asked (a batch size is a hint, not a promise), so a
    # quarter more for the pages that follow. Plus the describes, one Composite call.
    queries = 2 + 1 + by_ids + lines
    return 1 + queries + math.ceil(queries / 4)
