"""Reading what the readiness rules need from the org: describe first, then only the fields the org has.

Every query travels as a subrequest of a Composite call, five to a call (the most Composite takes): reading
100,000 reset sources by id takes about a fifth of the calls one REST query each took.

The queries live in sfcleanup/queries/readiness_*.soql. Their select lists are filled here from the paths in
readiness.fields, trimmed to the org's fields: a query naming a missing field would fail as a whole, and the
rule that needs the field is turned off by the engine instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from pydantic import BaseModel

from sfcleanup import queries
from sfcleanup.errors import ApiError
from sfcleanup.readiness import fields
from sfcleanup.readiness.engine import Readiness, assess, combine
from sfcleanup.readiness.models import InvoiceLineState, InvoiceScheduler, OrderProductState, UsageSummaryState
from sfcleanup.salesforce import composite
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.composite import query_path
from sfcleanup.salesforce.shapes import Record, query_records

M = TypeVar("M", bound=BaseModel)

# Each query travels as a Composite subrequest's URL: 200 ids keep it well under the 16,384-byte limit on a
# REST URI (MAX_URI_BYTES; tests check the longest); the line query names each id twice.
IDS_PER_QUERY = 200
LINE_IDS_PER_QUERY = 100
MAX_URI_BYTES = 16_384
# Composite takes at most 5 query or collection subrequests a call (see localorg/composite.py).
QUERIES_PER_CALL = 5


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


def _records(what: str, answer: object) -> list[Record]:
    """The records of a query's answer; an answer without its record list is an error, never no records."""
    if not isinstance(answer, dict) or not isinstance(answer.get("records"), list):
        raise ApiError(f"{what}: the org answered a query without its records; run the readiness check again")
    return query_records(answer)


def query_many(client: SalesforceClient, what: str, soqls: Sequence[str]) -> list[list[Record]]:
    """Each query's records, in order, the queries five to a Composite call (one API call instead of five).

    Composite takes at most five queries a call; each is read to its end (`get_many`), and a query that fails
    raises as the client translates it, so a record is never left out unnoticed.
    """
    found: list[list[Record]] = []
    for start in range(0, len(soqls), QUERIES_PER_CALL):
        paths = [query_path(soql) for soql in soqls[start : start + QUERIES_PER_CALL]]
        found += [_records(what, answer) for answer in client.get_many(what, paths)]
    return found


def _models(model: type[M], answers: Iterable[list[Record]]) -> list[M]:
    return [model.model_validate(record) for records in answers for record in records]


def source_queries(stem: str, select: str, run_id: str | None, ids: Sequence[str]) -> list[str]:
    """Records named by id (`<stem>_by_ids`, 200 ids a query) and, given a run, those still linked to it
    (`<stem>_by_run`)."""
    found = [queries.render(f"{stem}_by_ids", fields=select, ids=chunk) for chunk in chunks(ids, IDS_PER_QUERY)]
    if run_id is not None:
        found.append(queries.render(f"{stem}_by_run", fields=select, run_id=run_id))
    return found


def scheduler_queries(available: frozenset[str]) -> list[str]:
    if f"{fields.SCHEDULER}.Id" not in available:
        return []  # no scheduler object in this org: the scheduler rules are off
    return [queries.render("readiness_schedulers", fields=select_list(fields.SCHEDULER, available))]


def read_draft_lines(client: SalesforceClient, source_ids: Sequence[str]) -> list[InvoiceLineState]:
    soqls = [queries.render("readiness_draft_lines", ids=chunk) for chunk in chunks(source_ids, LINE_IDS_PER_QUERY)]
    return _models(InvoiceLineState, query_many(client, "readiness draft lines", soqls))


# The draft lines of this many sources fill one Composite call (five queries of 100 ids): sources are assessed
# in parts of this size, so what is held at once does not grow with the run.
SOURCES_PER_PART = LINE_IDS_PER_QUERY * QUERIES_PER_CALL

Source = OrderProductState | UsageSummaryState


def parts(
    client: SalesforceClient,
    *,
    run_id: str | None = None,
    order_product_ids: Sequence[str] = (),
    usage_summary_ids: Sequence[str] = (),
    available: frozenset[str] | None = None,
) -> Iterator[ReadinessInput]:
    """The records of a run (still linked to it, or reset and named by id) with the org's schedulers, in parts
    of at most SOURCES_PER_PART sources, each with the draft lines that name its sources.

    The calls are those of reading everything at once: the schedulers and the sources five queries to a
    Composite call, then the draft lines of each part in one call; only a part's records are held at a time.
    Order products come before usage summaries, each in the order first read; a record read twice (named by
    id and still linked to the run) is taken once.
    """
    known = available if available is not None else available_fields(client)
    op_select, us_select = select_list(fields.ORDER_PRODUCT, known), select_list(fields.USAGE_SUMMARY, known)
    kinds: list[type[BaseModel]] = []
    soqls: list[str] = []
    for model, found in (
        (InvoiceScheduler, scheduler_queries(known)),
        (OrderProductState, source_queries("readiness_order_products", op_select, run_id, order_product_ids)),
        (UsageSummaryState, source_queries("readiness_usage_summaries", us_select, run_id, usage_summary_ids)),
    ):
        kinds += [model] * len(found)
        soqls += found
    schedulers: list[InvoiceScheduler] = []
    pending: list[Source] = []
    seen: set[str] = set()
    # The schedulers come first, so they are known before any part is assessed.
    for start in range(0, len(soqls), QUERIES_PER_CALL):
        answers = query_many(client, "readiness records", soqls[start : start + QUERIES_PER_CALL])
        for kind, records in zip(kinds[start : start + QUERIES_PER_CALL], answers, strict=True):
            if kind is InvoiceScheduler:
                schedulers += _models(InvoiceScheduler, [records])
                continue
            for record in records:
                source: Source = (
                    OrderProductState.model_validate(record)
                    if kind is OrderProductState
                    else UsageSummaryState.model_validate(record)
                )
                if source.id not in seen:
                    seen.add(source.id)
                    pending.append(source)
        while len(pending) >= SOURCES_PER_PART:
            yield _part(client, pending[:SOURCES_PER_PART], schedulers, known)
            del pending[:SOURCES_PER_PART]
    if pending or not seen:
        yield _part(client, pending, schedulers, known)


def _part(
    client: SalesforceClient, sources: list[Source], schedulers: list[InvoiceScheduler], known: frozenset[str]
) -> ReadinessInput:
    lines = read_draft_lines(client, [source.id for source in sources]) if sources else []
    return ReadinessInput(
        order_products=tuple(s for s in sources if isinstance(s, OrderProductState)),
        usage_summaries=tuple(s for s in sources if isinstance(s, UsageSummaryState)),
        schedulers=tuple(schedulers),
        lines=tuple(lines),
        available_fields=known,
    )


def read(
    client: SalesforceClient,
    *,
    run_id: str | None = None,
    order_product_ids: Sequence[str] = (),
    usage_summary_ids: Sequence[str] = (),
    available: frozenset[str] | None = None,
) -> ReadinessInput:
    """Every part at once (`parts`): for a few records, and for tests that look at what was read."""
    found = list(
        parts(
            client,
            run_id=run_id,
            order_product_ids=order_product_ids,
            usage_summary_ids=usage_summary_ids,
            available=available,
        )
    )
    return ReadinessInput(
        order_products=tuple(r for part in found for r in part.order_products),
        usage_summaries=tuple(r for part in found for r in part.usage_summaries),
        schedulers=found[0].schedulers,
        # A line naming sources of two parts was read with each.
        lines=tuple({line.id: line for part in found for line in part.lines}.values()),
        available_fields=found[0].available_fields,
    )


def check(
    client: SalesforceClient,
    *,
    today: date,
    run_id: str | None = None,
    order_product_ids: Sequence[str] = (),
    usage_summary_ids: Sequence[str] = (),
    available: frozenset[str] | None = None,
) -> Readiness:
    """Readiness of a run's sources, assessed part by part as they are read (`parts`): memory stays flat."""
    return combine(
        part.assess(today)
        for part in parts(
            client,
            run_id=run_id,
            order_product_ids=order_product_ids,
            usage_summary_ids=usage_summary_ids,
            available=available,
        )
    )


def estimated_calls(order_products: int, usage_summaries: int) -> int:
    """API calls the readiness section of one run takes for this many reset sources."""
    by_ids = math.ceil(order_products / IDS_PER_QUERY) + math.ceil(usage_summaries / IDS_PER_QUERY)
    lines = math.ceil((order_products + usage_summaries) / LINE_IDS_PER_QUERY)
    # Five queries a Composite call: first the sources by id, those still linked to the run (a query each for
    # order products and usage summaries) and the schedulers; then the draft lines.
    composites = math.ceil((by_ids + 2 + 1) / QUERIES_PER_CALL) + math.ceil(lines / QUERIES_PER_CALL)
    # A query's later pages cost a call each (a page holds up to 2,000 records, and a batch size is a hint, not
    # a promise): a by-id query of 200 records fits in one, the records still linked to the run or the draft
    # lines of many sources may not, so a quarter more. Plus the describes, one Composite call.
    return 1 + composites + math.ceil(composites / 4)
