"""The seed scenarios: what each contains, its traps, its determinism, and the scale scenario's shape."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from sfcleanup.localorg import schema
from sfcleanup.localorg.seed import SCENARIOS, ScenarioInfo, check_records, seed
from sfcleanup.localorg.store import Store, quote

NOW = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
SYSTEM_STAMPS = ("CreatedDate", "LastModifiedDate", "SystemModstamp")


def _fixed_clock() -> datetime:
    return NOW


@pytest.fixture(scope="module")
def demo() -> tuple[Store, ScenarioInfo]:
    store = Store(clock=_fixed_clock)
    return store, seed(store, "demo", now=NOW)


def _rows(store: Store, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in store.conn.execute(sql, params).fetchall()]


def _by_status(store: Store, table: str, status: str, link: str, run_id: str) -> dict[str, int]:
    # Identifiers come from the test's own constants; the run id is bound.
    sql = f"SELECT {quote(status)}, COUNT(*) FROM {quote(table)} WHERE {quote(link)} = ? GROUP BY 1"  # noqa: S608
    rows = _rows(store, sql, run_id)
    return dict(rows)


def _dangling_references(store: Store) -> list[str]:
    """Every reference field must name an existing record of the object it refers to."""
    problems = []
    for spec in schema.SOBJECTS:
        for field in spec.fields:
            if field.reference_to is None:
                continue
            table, column, parent = quote(spec.name), quote(field.name), quote(field.reference_to)
            # Identifiers come from the schema, quoted; nothing here comes from outside the test.
            joined = f"{table} c LEFT JOIN {parent} p ON p.Id = c.{column}"
            sql = f"SELECT COUNT(*) FROM {joined} WHERE c.{column} IS NOT NULL AND p.Id IS NULL"  # noqa: S608
            missing = store.conn.execute(sql).fetchone()[0]
            if missing:
                problems.append(f"{spec.name}.{field.name}: {missing}")
    return problems


def _cleanable(store: Store, run_id: str) -> dict[str, int]:
    """The clean-up rules of DOMAIN.md (sections 1 and 3), written as SQL independently of the seed: invoices in
    the from-set, their Draft/Error lines, and linked Error/In Progress sources not billed on a posted invoice."""

    def one(sql: str) -> int:
        return int(store.conn.execute(sql, (run_id,)).fetchone()[0])

    return {
        "blng__Invoice__c": one(
            "SELECT COUNT(*) FROM blng__Invoice__c WHERE blng__InvoiceRunCreatedBy__c = ?"
            " AND blng__InvoiceStatus__c IN ('Draft', 'Error', 'Initiated')"
        ),
        "blng__InvoiceLine__c": one(
            "SELECT COUNT(*) FROM blng__InvoiceLine__c l JOIN blng__Invoice__c i ON i.Id = l.blng__Invoice__c"
            " WHERE l.blng__InvoiceRun__c = ? AND l.blng__InvoiceLineStatus__c IN ('Draft', 'Error')"
            " AND i.blng__InvoiceStatus__c IN ('Draft', 'Error', 'Initiated')"
        ),
        "OrderItem": one(
            "SELECT COUNT(*) FROM OrderItem s WHERE s.blng__InvoiceRun__c = ?"
            " AND s.blng__InvoiceRunProcessingStatus__c IN ('Error', 'In Progress')"
            " AND NOT EXISTS (SELECT 1 FROM blng__InvoiceLine__c l JOIN blng__Invoice__c i"
            " ON i.Id = l.blng__Invoice__c WHERE l.blng__OrderProduct__c = s.Id"
            " AND i.blng__InvoiceStatus__c IN ('Posted', 'Post In progress'))"
        ),
        "blng__UsageSummary__c": one(
            "SELECT COUNT(*) FROM blng__UsageSummary__c s WHERE s.blng__InvoiceRun__c = ?"
            " AND s.blng__InvoiceRunProcessingStatus__c IN ('Error', 'In Progress')"
            " AND NOT EXISTS (SELECT 1 FROM blng__InvoiceLine__c l JOIN blng__Invoice__c i"
            " ON i.Id = l.blng__Invoice__c WHERE l.blng__UsageSummary__c = s.Id"
            " AND i.blng__InvoiceStatus__c IN ('Posted', 'Post In progress'))"
        ),
    }


def test_empty_inserts_nothing() -> None:
    """The empty scenario creates the schema and no record but the org's own Organization and User."""
    store = Store()
    info = seed(store, "empty")
    assert all(store.count(spec) == 0 for spec in schema.SOBJECTS if spec not in schema.IDENTITY_SOBJECTS)
    assert all(store.count(spec) == 1 for spec in schema.IDENTITY_SOBJECTS)
    assert set(info.counts.values()) == {0} and info.runs == {}
    assert SCENARIOS == ("empty", "demo", "scale")


def test_demo_totals_per_object(demo: tuple[Store, ScenarioInfo]) -> None:
    """The demo holds exactly the documented number of records per object, and reports them."""
    store, info = demo
    expected = {
        "Account": 51,
        "Order": 61,
        "OrderItem": 646,
        "blng__UsageSummary__c": 193,
        "blng__Invoice__c": 57,
        "blng__InvoiceLine__c": 778,
        "blng__InvoiceRun__c": 4,
        "blng__ErrorLog__c": 2,
        "blng__BillingRule__c": 2,
        "blng__TaxRule__c": 1,
        "blng__RevenueRecognitionRule__c": 1,
        "blng__InvoiceScheduler__c": 3,
    }
    assert info.counts == expected
    assert {name: store.count(schema.BY_NAME[name.lower()]) for name in expected} == expected
    assert _dangling_references(store) == []


def test_demo_runs_and_states(demo: tuple[Store, ScenarioInfo]) -> None:
    """Each run has the documented status and records per state, as the table in docs/localorg-scenarios.md says."""
    store, info = demo
    runs = info.runs
    statuses = dict(_rows(store, "SELECT Id, blng__Status__c FROM blng__InvoiceRun__c"))
    assert statuses == {
        runs["failed_run"]: "Failed",
        runs["errors_run"]: "Completed with errors",
        runs["completed_run"]: "Completed",
        runs["running_run"]: "Step 2 : Invoice Line Creation - Processing",
    }
    expected = {
        "failed_run": (
            {"Draft": 10, "Error": 10, "Initiated": 10, "Posted": 3, "Post In progress": 1, "Cancelled": 1},
            {"Draft": 402, "Error": 200, "Posted": 6, "Post In progress": 2, "Cancelled": 2},
            {"Error": 210, "In Progress": 242, "Completed": 6},
            {"Error": 50, "In Progress": 101, "Completed": 1},
        ),
        "errors_run": (
            {"Draft": 3, "Error": 3, "Initiated": 2, "Posted": 3, "Post In progress": 1, "Cancelled": 1},
            {"Draft": 67, "Error": 39, "Posted": 6, "Post In progress": 2, "Cancelled": 2},
            {"Error": 40, "In Progress": 42, "Completed": 6},
            {"Error": 9, "In Progress": 16, "Completed": 1},
        ),
        "completed_run": (
            {"Posted": 4, "Draft": 1},
            {"Posted": 24, "Draft": 3},
            {"Completed": 20, "In Progress": 3},
            {"Completed": 4},
        ),
        "running_run": ({"Initiated": 3}, {"Draft": 21}, {"In Progress": 15}, {"In Progress": 6}),
    }
    for role, (invoices, lines, products, usage) in expected.items():
        run = runs[role]
        assert (
            _by_status(store, "blng__Invoice__c", "blng__InvoiceStatus__c", "blng__InvoiceRunCreatedBy__c", run)
            == invoices
        )
        assert (
            _by_status(store, "blng__InvoiceLine__c", "blng__InvoiceLineStatus__c", "blng__InvoiceRun__c", run) == lines
        )
        processing = "blng__InvoiceRunProcessingStatus__c"
        assert _by_status(store, "OrderItem", processing, "blng__InvoiceRun__c", run) == products
        assert _by_status(store, "blng__UsageSummary__c", processing, "blng__InvoiceRun__c", run) == usage
    # Pending Billing sources are never linked to a run: 32 + 10 on the failing runs' accounts, 20 and 5 unrelated.
    pending = _rows(
        store,
        "SELECT COUNT(*), COUNT(blng__InvoiceRun__c), COUNT(blng__InvoiceRunStartDate__c) FROM OrderItem"
        " WHERE blng__InvoiceRunProcessingStatus__c = 'Pending Billing'",
    )
    assert pending == [(62, 0, 0)]
    logs = _rows(store, "SELECT blng__InvoiceRun__c FROM blng__ErrorLog__c")
    assert logs == [(runs["failed_run"],), (runs["failed_run"],)]


def test_demo_cleanable_matches_the_rules(demo: tuple[Store, ScenarioInfo]) -> None:
    """ScenarioInfo.cleanable equals what the clean-up rules select, e.g. 450 order products on failed_run."""
    store, info = demo
    for role, run in info.runs.items():
        assert _cleanable(store, run) == info.cleanable[role], role
    assert info.cleanable["failed_run"] == {
        "blng__Invoice__c": 30,
        "blng__InvoiceLine__c": 600,
        "OrderItem": 450,
        "blng__UsageSummary__c": 150,
    }
    assert info.cleanable["errors_run"] == {
        "blng__Invoice__c": 8,
        "blng__InvoiceLine__c": 104,
        "OrderItem": 80,
        "blng__UsageSummary__c": 24,
    }
    assert info.cleanable["completed_run"] == {
        "blng__Invoice__c": 1,
        "blng__InvoiceLine__c": 3,
        "OrderItem": 3,
        "blng__UsageSummary__c": 0,
    }
    # More than two pages at batchSize 200, so a worker must follow nextRecordsUrl.
    assert info.cleanable["failed_run"]["OrderItem"] > 2 * 200


@pytest.mark.parametrize("role", ["failed_run", "errors_run"])
def test_demo_traps(demo: tuple[Store, ScenarioInfo], role: str) -> None:
    """Each failing run carries the traps: posted-with-draft-lines, a billed usage summary, Post In progress and
    an already Cancelled invoice."""
    store, info = demo
    run, traps = info.runs[role], info.traps[role]

    invoice = traps["posted_with_draft_lines"]
    assert _rows(store, "SELECT blng__InvoiceStatus__c FROM blng__Invoice__c WHERE Id = ?", invoice) == [("Posted",)]
    lines = _rows(
        store,
        "SELECT l.blng__InvoiceLineStatus__c, l.blng__InvoiceRun__c, o.blng__InvoiceRunProcessingStatus__c,"
        " o.blng__InvoiceRun__c FROM blng__InvoiceLine__c l JOIN OrderItem o ON o.Id = l.blng__OrderProduct__c"
        " WHERE l.blng__Invoice__c = ?",
        invoice,
    )
    assert lines == [("Draft", run, "In Progress", run)] * 2

    summary = traps["billed_usage_summary"]
    billed = _rows(
        store,
        "SELECT s.blng__InvoiceRunProcessingStatus__c, s.blng__InvoiceRun__c, l.blng__InvoiceLineStatus__c,"
        " l.blng__InvoiceRun__c, i.blng__InvoiceStatus__c, l.blng__UsageSummary__c FROM blng__UsageSummary__c s"
        " JOIN blng__InvoiceLine__c l ON l.Id = s.blng__InvoiceLine__c"
        " JOIN blng__Invoice__c i ON i.Id = l.blng__Invoice__c WHERE s.Id = ?",
        summary,
    )
    assert billed == [("In Progress", run, "Posted", run, "Posted", summary)]

    pip = traps["post_in_progress_invoice"]
    assert _rows(
        store,
        "SELECT DISTINCT i.blng__InvoiceStatus__c, l.blng__InvoiceLineStatus__c, o.blng__InvoiceRunProcessingStatus__c"
        " FROM blng__Invoice__c i JOIN blng__InvoiceLine__c l ON l.blng__Invoice__c = i.Id"
        " JOIN OrderItem o ON o.Id = l.blng__OrderProduct__c WHERE i.Id = ?",
        pip,
    ) == [("Post In progress", "Post In progress", "Completed")]

    cancelled = traps["cancelled_invoice"]
    assert _rows(
        store,
        "SELECT DISTINCT i.blng__InvoiceStatus__c, l.blng__InvoiceLineStatus__c, o.blng__InvoiceRunProcessingStatus__c,"
        " o.blng__InvoiceRun__c FROM blng__Invoice__c i JOIN blng__InvoiceLine__c l ON l.blng__Invoice__c = i.Id"
        " JOIN OrderItem o ON o.Id = l.blng__OrderProduct__c WHERE i.Id = ?",
        cancelled,
    ) == [("Cancelled", "Cancelled", "Pending Billing", None)]


def test_demo_records_outside_any_run(demo: tuple[Store, ScenarioInfo]) -> None:
    """Unrelated accounts hold unlinked Pending Billing sources and a manual Draft invoice that names no run."""
    store, info = demo
    invoice = info.traps["unrelated"]["manual_draft_invoice"]
    assert _rows(
        store, "SELECT blng__InvoiceStatus__c, blng__InvoiceRunCreatedBy__c FROM blng__Invoice__c WHERE Id = ?", invoice
    ) == [("Draft", None)]
    assert _rows(
        store,
        "SELECT blng__InvoiceLineStatus__c, blng__InvoiceRun__c, COUNT(*) FROM blng__InvoiceLine__c"
        " WHERE blng__Invoice__c = ? GROUP BY 1, 2",
        invoice,
    ) == [("Draft", None, 2)]
    unrelated = _rows(
        store,
        "SELECT s.blng__InvoiceRunProcessingStatus__c, s.blng__InvoiceRun__c, COUNT(*) FROM blng__UsageSummary__c s"
        ' JOIN "Order" o ON o.Id = s.blng__Order__c JOIN Account a ON a.Id = o.AccountId'
        " WHERE a.Name LIKE 'Unrelated %' GROUP BY 1, 2",
    )
    assert unrelated == [("Pending Billing", None, 5)]


def test_seed_is_deterministic() -> None:
    """Two fresh stores seeded alike hold the same ids and values; only the system timestamps may differ."""
    first, second = Store(), Store()
    info_first = seed(first, "demo", now=NOW)
    info_second = seed(second, "demo", now=NOW)
    assert info_first == info_second

    def without_stamps(store: Store) -> dict[str, list[dict[str, Any]]]:
        return {
            name: [{k: v for k, v in row.items() if k not in SYSTEM_STAMPS} for row in rows]
            for name, rows in store.snapshot().items()
        }

    assert without_stamps(first) == without_stamps(second)
    assert seed(Store(), "scale", records=1000, now=NOW) == seed(Store(), "scale", records=1000, now=NOW)


def test_now_moves_dates_only() -> None:
    """`now` changes the run dates, never which records exist or their ids."""
    early, late = Store(), Store()
    info_early = seed(early, "demo", now=NOW)
    info_late = seed(late, "demo", now=datetime(2027, 1, 1, tzinfo=UTC))
    assert info_early == info_late
    start = "SELECT blng__StartTime__c FROM blng__InvoiceRun__c ORDER BY _rowid"
    assert _rows(early, start) != _rows(late, start)


@pytest.mark.parametrize(
    ("scenario", "records", "message"),
    [
        ("nope", None, "unknown scenario 'nope'"),
        ("demo", 5000, "fixed size"),
        ("empty", 1000, "fixed size"),
        ("scale", 999, "between 1,000 and 1,000,000"),
        ("scale", 1_000_001, "between 1,000 and 1,000,000"),
        ("scale", True, "whole number"),
    ],
)
def test_bad_scenario_or_records_is_refused(scenario: str, records: Any, message: str) -> None:
    """An unknown scenario or an impossible `records` raises ValueError saying what is wrong, writing nothing."""
    store = Store()
    with pytest.raises(ValueError, match=message):
        seed(store, scenario, records=records)
    with pytest.raises(ValueError, match=message):
        check_records(scenario, records)
    assert all(store.count(spec) == 0 for spec in schema.SOBJECTS)


def test_scale_shape_and_links() -> None:
    """records=2000 gives 2,000 sources (80% order products, 20% usage summaries) on 40 accounts, one invoice
    per order, one line per source, about 2% posted, and every link pointing where it should."""
    store = Store()
    info = seed(store, "scale", records=2000, now=NOW)
    counts = info.counts
    run = info.runs["failed_run"]
    assert list(info.runs) == ["failed_run"]
    assert counts["OrderItem"] + counts["blng__UsageSummary__c"] == 2000
    assert counts["blng__UsageSummary__c"] == 400
    assert counts["blng__InvoiceLine__c"] == 2000
    assert counts["Account"] == 40
    assert counts["blng__Invoice__c"] == counts["Order"]
    assert _dangling_references(store) == []

    per_account = Counter(row[0] for row in _rows(store, 'SELECT AccountId FROM "Order"'))
    assert set(per_account.values()) == {1, 2, 3}
    invoice_per_order = _rows(
        store, 'SELECT COUNT(i.Id) FROM "Order" o LEFT JOIN blng__Invoice__c i ON i.blng__Order__c = o.Id GROUP BY o.Id'
    )
    assert set(invoice_per_order) == {(1,)}
    statuses = Counter(row[0] for row in _rows(store, "SELECT blng__InvoiceStatus__c FROM blng__Invoice__c"))
    assert set(statuses) == {"Draft", "Error", "Initiated", "Posted"}
    assert 0.01 <= statuses["Posted"] / counts["blng__Invoice__c"] <= 0.03

    # One line per source, on the invoice of the source's own order, and the usage summary points back at it.
    assert _rows(
        store,
        "SELECT COUNT(*) FROM OrderItem o WHERE (SELECT COUNT(*) FROM blng__InvoiceLine__c l"
        " WHERE l.blng__OrderProduct__c = o.Id AND l.blng__UsageSummary__c IS NULL) != 1",
    ) == [(0,)]
    assert _rows(
        store,
        "SELECT COUNT(*) FROM blng__UsageSummary__c s JOIN blng__InvoiceLine__c l ON l.Id = s.blng__InvoiceLine__c"
        " JOIN blng__Invoice__c i ON i.Id = l.blng__Invoice__c JOIN OrderItem o ON o.Id = s.blng__OrderProduct__c"
        " WHERE l.blng__UsageSummary__c != s.Id OR i.Id != s.blng__Invoice__c OR i.blng__Order__c != s.blng__Order__c"
        " OR o.OrderId != s.blng__Order__c OR l.blng__OrderProduct__c != o.Id",
    ) == [(0,)]
    assert _rows(
        store,
        "SELECT COUNT(*) FROM blng__InvoiceLine__c l JOIN blng__Invoice__c i ON i.Id = l.blng__Invoice__c"
        " JOIN OrderItem o ON o.Id = l.blng__OrderProduct__c WHERE o.OrderId != i.blng__Order__c",
    ) == [(0,)]

    # Sources are Error or In Progress (eligible) or, on posted invoices, Completed with Posted lines.
    mix = dict(
        _rows(
            store,
            "SELECT i.blng__InvoiceStatus__c || '/' || l.blng__InvoiceLineStatus__c || '/' ||"
            " o.blng__InvoiceRunProcessingStatus__c, COUNT(*) FROM blng__InvoiceLine__c l"
            " JOIN blng__Invoice__c i ON i.Id = l.blng__Invoice__c JOIN OrderItem o ON o.Id = l.blng__OrderProduct__c"
            " WHERE l.blng__UsageSummary__c IS NULL GROUP BY 1",
        )
    )
    assert set(mix) == {
        "Draft/Draft/In Progress",
        "Initiated/Draft/In Progress",
        "Error/Error/Error",
        "Posted/Posted/Completed",
    }
    assert _rows(
        store,
        "SELECT COUNT(*) FROM OrderItem WHERE blng__InvoiceRun__c IS NOT ? OR blng__InvoiceRunStartDate__c IS NULL",
        run,
    ) == [(0,)]
    assert _cleanable(store, run) == info.cleanable["failed_run"]
    assert info.cleanable["failed_run"]["OrderItem"] > 0.95 * counts["OrderItem"]
