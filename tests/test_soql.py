"""SOQL in the local org: parsing, schema binding, SQL semantics and Salesforce-shaped errors, on a real Store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from sfcleanup import queries
from sfcleanup.localorg import records, schema
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.soql import CompiledQuery, SoqlError, compile_soql
from sfcleanup.localorg.store import Store
from sfcleanup.readiness import reader

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def spec(name: str) -> SObjectSpec:
    found = schema.sobject(name)
    assert found is not None
    return found


class Seeded:
    """A small billing org; records are identified by Name in the assertions."""

    def __init__(self) -> None:
        self.clock = [datetime(2026, 11, 26, 7, 11, 15, tzinfo=UTC)]
        self.store = Store(clock=lambda: self.clock[0])
        self.ids: dict[str, str] = {}

    def add(self, sobject: str, name: str, created: str = "2026-11-26T07:11:15", **values: Any) -> str:
        self.clock[0] = datetime.fromisoformat(created).replace(tzinfo=UTC)
        fields = {"Name": name, **values} if spec(sobject).field("Name") else values
        record_id = self.store.insert(spec(sobject), fields)
        self.ids[name] = record_id
        return record_id

    def delete(self, sobject: str, name: str) -> None:
        self.store.mark_deleted(spec(sobject), self.ids[name])


@pytest.fixture(scope="module")
def org() -> Iterator[Seeded]:
    seeded = Seeded()
    acme = seeded.add("Account", "Acme")
    globex = seeded.add("Account", "Globex")
    seeded.add("Account", "O'Brien & Co")
    seeded.add("Account", "100% Pure")
    seeded.add("Account", "100X Pure")
    gone = seeded.add("Account", "Gone")
    seeded.delete("Account", "Gone")

    o1 = seeded.add("Order", "O1", AccountId=acme, Status="Draft", EffectiveDate="2026-11-20")
    o2 = seeded.add("Order", "O2", AccountId=globex, Status="Activated", EffectiveDate="2026-11-25")
    seeded.add("Order", "O3", AccountId=gone)
    oi1 = seeded.add("OrderItem", "OI1", OrderId=o1, Quantity=2, UnitPrice=10.5)
    seeded.ids["OI2"] = seeded.store.insert(spec("OrderItem"), {"OrderId": o2, "Quantity": 1, "UnitPrice": 99.99})

    invoice = "blng__Invoice__c"
    inv1 = seeded.add(
        invoice,
        "INV-1",
        blng__Account__c=acme,
        blng__Order__c=o1,
        blng__InvoiceStatus__c="Draft",
        blng__InvoiceDate__c="2026-11-26",
        blng__TotalAmount__c=100,
    )
    inv2 = seeded.add(
        invoice,
        "INV-2",
        blng__Account__c=acme,
        blng__Order__c=o2,
        blng__InvoiceStatus__c="Posted",
        blng__InvoiceDate__c="2026-11-25",
        blng__TotalAmount__c=250.5,
    )
    inv3 = seeded.add(
        invoice,
        "INV-3",
        blng__Account__c=globex,
        blng__InvoiceStatus__c="Cancelled",
        blng__InvoiceDate__c="2026-11-10",
        blng__TotalAmount__c=0,
    )
    seeded.add(invoice, "INV-4", blng__Account__c=globex, blng__InvoiceStatus__c="Draft")
    seeded.delete(invoice, "INV-4")

    line = "blng__InvoiceLine__c"
    seeded.add(
        line,
        "L1",
        "2026-11-26T07:11:15",
        blng__Invoice__c=inv1,
        blng__InvoiceLineStatus__c="Draft",
        blng__OrderProduct__c=oi1,
        blng__TotalAmount__c=60,
    )
    seeded.add(
        line,
        "L2",
        "2026-11-25T23:59:59",
        blng__Invoice__c=inv1,
        blng__InvoiceLineStatus__c="Draft",
        blng__TotalAmount__c=40,
    )
    seeded.add(
        line,
        "L3",
        "2026-11-20T00:00:00",
        blng__Invoice__c=inv2,
        blng__InvoiceLineStatus__c="Posted",
        blng__TotalAmount__c=250.5,
    )
    seeded.add(line, "L4", "2026-11-19T23:59:59", blng__InvoiceLineStatus__c="Error", blng__TotalAmount__c=0)
    seeded.add(line, "L5", "2026-10-01T08:00:00", blng__Invoice__c=inv3)
    yield seeded
    seeded.store.close()


def run(org: Seeded, text: str, *, now: datetime = NOW, include_deleted: bool = False) -> list[dict[str, Any]]:
    compiled = compile_soql(text, now=now, include_deleted=include_deleted)
    assert compiled.kind == "records"
    return compiled.fetch(org.store.conn, compiled.rowids(org.store.conn))


def names(org: Seeded, text: str, **kwargs: Any) -> list[str]:
    return [record["Name"] for record in run(org, text, **kwargs)]


def error(text: str) -> SoqlError:
    with pytest.raises(SoqlError) as caught:
        compile_soql(text, now=NOW)
    return caught.value


LINES = "SELECT Name FROM blng__InvoiceLine__c WHERE "
ACCOUNTS = "SELECT Name FROM Account WHERE "
INVOICES = "SELECT Name FROM blng__Invoice__c WHERE "


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name = 'L1'", ["L1"]),
        ("Name = 'l1'", ["L1"]),
        ("blng__InvoiceLineStatus__c != 'Draft'", ["L3", "L4", "L5"]),
        ("blng__InvoiceLineStatus__c <> 'Draft'", ["L3", "L4", "L5"]),
        ("Name < 'L3'", ["L1", "L2"]),
        ("Name <= 'L3'", ["L1", "L2", "L3"]),
        ("Name > 'L3'", ["L4", "L5"]),
        ("Name >= 'L3'", ["L3", "L4", "L5"]),
        ("blng__TotalAmount__c = 40", ["L2"]),
        ("blng__TotalAmount__c > 50", ["L1", "L3"]),
        ("blng__TotalAmount__c <= 40.0", ["L2", "L4"]),
        ("blng__TotalAmount__c != 40", ["L1", "L3", "L4", "L5"]),
        ("blng__TotalAmount__c IN (40, 60)", ["L1", "L2"]),
        ("blng__InvoiceLineStatus__c IN ('draft', 'Error')", ["L1", "L2", "L4"]),
        ("blng__InvoiceLineStatus__c NOT IN ('Draft', 'Error')", ["L3", "L5"]),
        ("blng__InvoiceLineStatus__c IN ('Posted', null)", ["L3", "L5"]),
        ("blng__InvoiceLineStatus__c NOT IN ('Posted', null)", ["L1", "L2", "L4"]),
        ("blng__InvoiceLineStatus__c = null", ["L5"]),
        ("blng__InvoiceLineStatus__c != null", ["L1", "L2", "L3", "L4"]),
        ("blng__Invoice__c = null", ["L4"]),
        ("Name LIKE 'l%'", ["L1", "L2", "L3", "L4", "L5"]),
        ("Name LIKE '_1'", ["L1"]),
        ("Name LIKE '%4'", ["L4"]),
        ("NOT Name LIKE 'L1'", ["L2", "L3", "L4", "L5"]),
        ("Name = 'L1' OR Name = 'L2' OR Name = 'L5'", ["L1", "L2", "L5"]),
        ("blng__InvoiceLineStatus__c = 'Draft' AND blng__TotalAmount__c > 50", ["L1"]),
        ("(Name = 'L1' OR Name = 'L3') AND blng__TotalAmount__c > 100", ["L3"]),
        ("NOT (Name = 'L1' OR Name = 'L3')", ["L2", "L4", "L5"]),
        ("NOT (blng__InvoiceLineStatus__c != 'Draft')", ["L1", "L2"]),
        ("NOT (blng__InvoiceLineStatus__c = 'Draft')", ["L3", "L4", "L5"]),
        ("NOT (blng__InvoiceLineStatus__c = null)", ["L1", "L2", "L3", "L4"]),
        ("NOT (NOT (blng__TotalAmount__c > 50))", ["L1", "L3"]),
        ("NOT (blng__TotalAmount__c > 50)", ["L2", "L4", "L5"]),
        ("blng__Invoice__r.blng__InvoiceStatus__c = 'Posted'", ["L3"]),
        ("blng__Invoice__r.blng__InvoiceStatus__c != 'Posted'", ["L1", "L2", "L4", "L5"]),
        ("blng__Invoice__r.blng__Account__r.Name = 'Globex'", ["L5"]),
        ("blng__OrderProduct__r.Order.Status = 'Draft'", ["L1"]),
        ("IsDeleted = false", ["L1", "L2", "L3", "L4", "L5"]),
    ],
)
def test_where_operators(org: Seeded, where: str, expected: list[str]) -> None:
    """Each WHERE operator selects exactly the records SOQL's semantics select, nulls included."""
    assert names(org, LINES + where) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name = 'O\\'Brien & Co'", ["O'Brien & Co"]),
        ("Name LIKE '100\\%%'", ["100% Pure"]),
        ("Name LIKE '100_%'", ["100% Pure", "100X Pure"]),
        ("Name LIKE 'o\\'b%'", ["O'Brien & Co"]),
        ("Name = '100\\% Pure'", []),
    ],
)
def test_string_escapes(org: Seeded, where: str, expected: list[str]) -> None:
    """Backslash escapes decode in strings, and \\% or \\_ are literal only inside a LIKE pattern."""
    assert names(org, ACCOUNTS + where) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("CreatedDate = TODAY", ["L1"]),
        ("CreatedDate = YESTERDAY", ["L2"]),
        ("CreatedDate = LAST_N_DAYS:6", ["L1", "L2", "L3"]),
        ("CreatedDate < LAST_N_DAYS:6", ["L4", "L5"]),
        ("CreatedDate = N_DAYS_AGO:6", ["L3"]),
        ("CreatedDate != N_DAYS_AGO:6", ["L1", "L2", "L4", "L5"]),
        ("CreatedDate > YESTERDAY", ["L1"]),
        ("CreatedDate <= YESTERDAY", ["L2", "L3", "L4", "L5"]),
        ("CreatedDate >= YESTERDAY", ["L1", "L2"]),
        ("CreatedDate > 2026-11-25T23:59:59Z", ["L1"]),
        ("CreatedDate >= 2026-11-26T00:00:00+01:00", ["L1", "L2"]),
        ("CreatedDate = 2026-11-20T00:00:00.000Z", ["L3"]),
        ("CreatedDate = 2026-11-19T18:59:59-0500", ["L4"]),
        ("CreatedDate IN (TODAY, N_DAYS_AGO:6)", ["L1", "L3"]),
    ],
)
def test_datetime_literals(org: Seeded, where: str, expected: list[str]) -> None:
    """Datetime fields compare with normalised datetime literals and with day ranges computed from `now`."""
    assert names(org, LINES + where) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("blng__InvoiceDate__c = TODAY", ["INV-1"]),
        ("blng__InvoiceDate__c = YESTERDAY", ["INV-2"]),
        ("blng__InvoiceDate__c = LAST_N_DAYS:1", ["INV-1", "INV-2"]),
        ("blng__InvoiceDate__c = 2026-11-10", ["INV-3"]),
        ("blng__InvoiceDate__c > 2026-11-10", ["INV-1", "INV-2"]),
        ("blng__InvoiceDate__c < LAST_N_DAYS:1", ["INV-3"]),
    ],
)
def test_date_literals(org: Seeded, where: str, expected: list[str]) -> None:
    """Date fields compare with date literals and with relative day ranges as dates."""
    assert names(org, INVOICES + where) == expected


def test_relative_dates_follow_now(org: Seeded) -> None:
    """The same cached query text gives a different TODAY when `now` moves on a day."""
    text = LINES + "CreatedDate = TODAY"
    assert names(org, text) == ["L1"]
    assert names(org, text, now=datetime(2026, 11, 27, 1, 0, tzinfo=UTC)) == []


def test_fifteen_character_ids_match(org: Seeded) -> None:
    """A 15-character id in a filter matches the record stored under its 18-character form."""
    # SOQL text for the parser under test, not SQL: the compiler binds the id as a parameter.
    assert names(org, f"SELECT Name FROM Account WHERE Id = '{org.ids['Acme'][:15]}'") == ["Acme"]  # noqa: S608
    assert names(org, f"SELECT Name FROM Account WHERE Id IN ('{org.ids['Globex']}')") == ["Globex"]  # noqa: S608


def test_record_shape(org: Seeded) -> None:
    """Records carry attributes, canonical keys, typed values and nested parent records."""
    records = run(
        org,
        "select ID, name, BLNG__TOTALAMOUNT__C, isdeleted, blng__invoice__r.blng__invoicestatus__c, "
        "blng__Invoice__r.blng__Account__r.Name, blng__Invoice__r.Id "
        "FROM blng__invoiceline__c WHERE Name IN ('L1', 'L4')",
    )
    inv1, acme, l1 = org.ids["INV-1"], org.ids["Acme"], org.ids["L1"]
    assert records[0] == {
        "attributes": {
            "type": "blng__InvoiceLine__c",
            "url": f"/services/data/v60.0/sobjects/blng__InvoiceLine__c/{l1}",
        },
        "Id": l1,
        "Name": "L1",
        "blng__TotalAmount__c": 60.0,
        "IsDeleted": False,
        "blng__Invoice__r": {
            "attributes": {"type": "blng__Invoice__c", "url": f"/services/data/v60.0/sobjects/blng__Invoice__c/{inv1}"},
            "blng__InvoiceStatus__c": "Draft",
            "blng__Account__r": {
                "attributes": {"type": "Account", "url": f"/services/data/v60.0/sobjects/Account/{acme}"},
                "Name": "Acme",
            },
            "Id": inv1,
        },
    }
    assert isinstance(records[0]["blng__TotalAmount__c"], float)
    assert records[1]["blng__Invoice__r"] is None


def test_null_grandparent(org: Seeded) -> None:
    """A parent without its own parent nests a None for the missing level only."""
    records = run(org, "SELECT Name, blng__Invoice__r.blng__Order__r.Name FROM blng__InvoiceLine__c WHERE Name = 'L5'")
    assert records[0]["blng__Invoice__r"]["blng__Order__r"] is None


def test_fetch_flat_and_columns(org: Seeded) -> None:
    """fetch_flat keys rows by the canonical dotted paths listed in `columns`, with None for a null parent."""
    compiled = compile_soql(
        "SELECT Name, blng__invoice__r.blng__account__r.name FROM blng__InvoiceLine__c WHERE Name IN ('L1', 'L4')",
        now=NOW,
    )
    assert compiled.columns == ("Name", "blng__Invoice__r.blng__Account__r.Name")
    rows = compiled.fetch_flat(org.store.conn, compiled.rowids(org.store.conn))
    assert rows == [
        {"Name": "L1", "blng__Invoice__r.blng__Account__r.Name": "Acme"},
        {"Name": "L4", "blng__Invoice__r.blng__Account__r.Name": None},
    ]


def test_fetch_follows_given_order_and_version(org: Seeded) -> None:
    """fetch returns records in the order of the rowids given, skips unknown rowids, and uses the version."""
    compiled = compile_soql("SELECT Name FROM blng__InvoiceLine__c", now=NOW)
    rowids = compiled.rowids(org.store.conn)
    records = compiled.fetch(org.store.conn, [*reversed(rowids), 999_999], version="v61.0")
    assert [r["Name"] for r in records] == ["L5", "L4", "L3", "L2", "L1"]
    assert records[0]["attributes"]["url"].startswith("/services/data/v61.0/sobjects/blng__InvoiceLine__c/")


def test_fetch_chunks_large_pages() -> None:
    """A 2,000-row page is fetched in chunks below SQLite's variable limit and comes back in order."""
    store = Store()
    store.insert_many(spec("Account"), [{"Name": f"A{i:05d}"} for i in range(2000)])
    compiled = compile_soql("SELECT Name FROM Account ORDER BY Name DESC", now=NOW)
    rowids = compiled.rowids(store.conn)
    assert len(rowids) == 2000
    assert [r["Name"] for r in compiled.fetch(store.conn, rowids)] == [f"A{i:05d}" for i in reversed(range(2000))]


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        ("", ["L1", "L2", "L3", "L4", "L5"]),
        ("ORDER BY blng__TotalAmount__c", ["L5", "L4", "L2", "L1", "L3"]),
        ("ORDER BY blng__TotalAmount__c DESC", ["L3", "L1", "L2", "L4", "L5"]),
        ("ORDER BY blng__TotalAmount__c ASC NULLS LAST", ["L4", "L2", "L1", "L3", "L5"]),
        ("ORDER BY blng__TotalAmount__c DESC NULLS FIRST", ["L5", "L3", "L1", "L2", "L4"]),
        ("ORDER BY blng__InvoiceLineStatus__c, Name DESC", ["L5", "L2", "L1", "L4", "L3"]),
        ("ORDER BY blng__Invoice__r.Name DESC, Name", ["L5", "L3", "L1", "L2", "L4"]),
        ("ORDER BY Name LIMIT 2", ["L1", "L2"]),
        ("ORDER BY Name LIMIT 2 OFFSET 2", ["L3", "L4"]),
        ("ORDER BY Name OFFSET 3", ["L4", "L5"]),
        ("LIMIT 0", []),
    ],
)
def test_order_limit_offset(org: Seeded, suffix: str, expected: list[str]) -> None:
    """ORDER BY (with direction and nulls placement), LIMIT and OFFSET shape the rowid list; default is rowid."""
    # SOQL text for the parser under test, not SQL.
    assert names(org, "SELECT Name FROM blng__InvoiceLine__c " + suffix) == expected  # noqa: S608


def test_deleted_rows_need_query_all(org: Seeded) -> None:
    """Deleted records are filtered unless include_deleted, and deleted parents are still joined."""
    assert names(org, "SELECT Name FROM Account WHERE Name = 'Gone'") == []
    assert names(org, "SELECT Name FROM Account WHERE Name = 'Gone'", include_deleted=True) == ["Gone"]
    records = run(org, "SELECT Name, Account.Name FROM Order WHERE Name = 'O3' ORDER BY Name")
    assert records[0]["Account"]["Name"] == "Gone"
    assert names(org, INVOICES + "IsDeleted = true", include_deleted=True) == ["INV-4"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT COUNT() FROM blng__InvoiceLine__c", 5),
        ("SELECT count() FROM blng__InvoiceLine__c WHERE blng__InvoiceLineStatus__c = 'Draft'", 2),
        ("SELECT COUNT() FROM blng__InvoiceLine__c LIMIT 3", 3),
        ("SELECT COUNT() FROM blng__InvoiceLine__c LIMIT 3 OFFSET 4", 1),
        ("SELECT COUNT() FROM blng__Invoice__c", 3),
    ],
)
def test_count_rows(org: Seeded, text: str, expected: int) -> None:
    """COUNT() alone counts the matching rows, with LIMIT and OFFSET applied."""
    compiled = compile_soql(text, now=NOW)
    assert (compiled.kind, compiled.columns) == ("count", ())
    assert compiled.count(org.store.conn) == expected


def agg(**values: Any) -> dict[str, Any]:
    return {"attributes": {"type": "AggregateResult"}, **values}


@pytest.mark.parametrize(
    ("text", "columns", "expected"),
    [
        (
            "SELECT COUNT(Id), blng__InvoiceLineStatus__c FROM blng__InvoiceLine__c "
            "GROUP BY blng__InvoiceLineStatus__c",
            ("expr0", "blng__InvoiceLineStatus__c"),
            [
                agg(expr0=1, blng__InvoiceLineStatus__c=None),
                agg(expr0=2, blng__InvoiceLineStatus__c="Draft"),
                agg(expr0=1, blng__InvoiceLineStatus__c="Error"),
                agg(expr0=1, blng__InvoiceLineStatus__c="Posted"),
            ],
        ),
        (
            "SELECT blng__InvoiceLineStatus__c, COUNT(Id) n FROM blng__InvoiceLine__c "
            "WHERE blng__InvoiceLineStatus__c != null GROUP BY blng__InvoiceLineStatus__c "
            "ORDER BY COUNT(Id) DESC LIMIT 1",
            ("blng__InvoiceLineStatus__c", "n"),
            [agg(blng__InvoiceLineStatus__c="Draft", n=2)],
        ),
        (
            "SELECT COUNT(Id) cnt, COUNT(blng__InvoiceLineStatus__c), COUNT_DISTINCT(blng__Invoice__c) "
            "FROM blng__InvoiceLine__c",
            ("cnt", "expr0", "expr1"),
            [agg(cnt=5, expr0=4, expr1=3)],
        ),
        (
            "SELECT blng__Invoice__r.blng__InvoiceStatus__c, COUNT(Id) FROM blng__InvoiceLine__c "
            "WHERE blng__Invoice__c != null GROUP BY blng__Invoice__r.blng__InvoiceStatus__c",
            ("blng__InvoiceStatus__c", "expr0"),
            [
                agg(blng__InvoiceStatus__c="Cancelled", expr0=1),
                agg(blng__InvoiceStatus__c="Draft", expr0=2),
                agg(blng__InvoiceStatus__c="Posted", expr0=1),
            ],
        ),
        (
            "SELECT IsDeleted, COUNT(Id) FROM blng__Invoice__c GROUP BY IsDeleted, blng__Account__c "
            "ORDER BY blng__Account__c",
            ("IsDeleted", "expr0"),
            [agg(IsDeleted=False, expr0=2), agg(IsDeleted=False, expr0=1)],
        ),
    ],
)
def test_aggregates(org: Seeded, text: str, columns: tuple[str, ...], expected: list[dict[str, Any]]) -> None:
    """COUNT/COUNT_DISTINCT with aliases or exprN names, GROUP BY on own and parent fields, ORDER BY and LIMIT."""
    compiled = compile_soql(text, now=NOW)
    assert (compiled.kind, compiled.columns) == ("aggregate", columns)
    assert compiled.aggregate(org.store.conn) == expected


def test_keyword_like_names(org: Seeded) -> None:
    """Object and relationship names that are also keywords (Order) read as names where a name is expected."""
    records = run(org, "SELECT Id, Order.Name, Order.Account.Name FROM OrderItem ORDER BY Order.Name")
    assert [r["Order"]["Account"]["Name"] for r in records] == ["Acme", "Globex"]
    assert names(org, "SELECT Name FROM Order WHERE Status = 'Draft' ORDER BY Name") == ["O1"]


def test_kinds_and_wrong_calls(org: Seeded) -> None:
    """Each compiled query reports its kind, and a call for another kind is refused."""
    compiled = compile_soql("SELECT COUNT() FROM Account", now=NOW)
    assert isinstance(compiled, CompiledQuery)
    assert compiled.sobject is spec("Account")
    with pytest.raises(ValueError, match="'count' query"):
        compiled.rowids(org.store.conn)


def echo(text: str, column: int, reason: str, row: int = 1) -> str:
    return f"\n{text}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{reason}"


FIELD_HINT = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)
RELATIONSHIP_HINT = (
    "If you are attempting to use a custom relationship, be sure to append the '__r' after the custom "
    "relationship name. Please reference your WSDL or the describe call for the appropriate names."
)
TYPE_HINT = (
    "If you are attempting to use a custom object, be sure to append the '__c' after the entity name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)


@pytest.mark.parametrize(
    ("text", "code", "column", "reason"),
    [
        ("SELECT Id FORM Account", "MALFORMED_QUERY", 11, "unexpected token: 'FORM'"),
        ("SELECT Id FROM", "MALFORMED_QUERY", 11, "unexpected token: '<EOF>'"),
        ("SELECT Id FROM Account;", "MALFORMED_QUERY", 23, "unexpected token: ';'"),
        ("SELECT Id FROM Account Account", "MALFORMED_QUERY", 24, "unexpected token: 'Account'"),
        ("SELECT Id, (SELECT Id FROM Orders) FROM Account", "MALFORMED_QUERY", 12, "unexpected token: '('"),
        ("SELECT TYPEOF What FROM Account", "MALFORMED_QUERY", 15, "unexpected token: 'What'"),
        ("SELECT Id FROM Account FOR UPDATE", "MALFORMED_QUERY", 24, "unexpected token: 'FOR'"),
        ("SELECT Id FROM Account WITH SECURITY_ENFORCED", "MALFORMED_QUERY", 24, "unexpected token: 'WITH'"),
        (
            "SELECT Name, COUNT(Id) FROM Account GROUP BY Name HAVING COUNT(Id) > 1",
            "MALFORMED_QUERY",
            51,
            "unexpected token: 'HAVING'",
        ),
        ("SELECT MAX(Name) FROM Account", "MALFORMED_QUERY", 11, "unexpected token: '('"),
        (
            "SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'",
            "MALFORMED_QUERY",
            56,
            "unexpected token: 'OR'",
        ),
        ('SELECT Id FROM Account WHERE Name = "a"', "MALFORMED_QUERY", 37, "unexpected token: '\"'"),
        (
            "SELECT Id FROM Account WHERE Name = 'a\\qb'",
            "MALFORMED_QUERY",
            37,
            "Invalid string literal 'a\\qb'. Illegal character sequence '\\q' in string literal.",
        ),
        ("SELECT Foo FROM Account", "INVALID_FIELD", 8, f"No such column 'Foo' on entity 'Account'. {FIELD_HINT}"),
        (
            "SELECT Id FROM Account ORDER BY Foo__c",
            "INVALID_FIELD",
            33,
            f"No such column 'Foo__c' on entity 'Account'. {FIELD_HINT}",
        ),
        (
            "SELECT blng__Invoice__r.Foo FROM blng__InvoiceLine__c",
            "INVALID_FIELD",
            8,
            f"No such column 'Foo' on entity 'blng__Invoice__c'. {FIELD_HINT}",
        ),
        (
            "SELECT Foo__r.Name FROM Account",
            "INVALID_FIELD",
            8,
            f"Didn't understand relationship 'Foo__r' in field path. {RELATIONSHIP_HINT}",
        ),
        (
            "SELECT Id FROM blng__InvoiceLine__c WHERE blng__Invoice__r.Nope__r.Name = 'x'",
            "INVALID_FIELD",
            43,
            f"Didn't understand relationship 'Nope__r' in field path. {RELATIONSHIP_HINT}",
        ),
        ("SELECT Id FROM Foo__c", "INVALID_TYPE", 16, f"sObject type 'Foo__c' is not supported. {TYPE_HINT}"),
        (
            "SELECT Id FROM Account WHERE CreatedDate > '2026-01-01'",
            "MALFORMED_QUERY",
            44,
            "value of filter criterion for field 'CreatedDate' must be of type dateTime and should not be enclosed "
            "in quotes",
        ),
        (
            "SELECT Id FROM Order WHERE EffectiveDate = '2026-01-01'",
            "MALFORMED_QUERY",
            44,
            "value of filter criterion for field 'EffectiveDate' must be of type date and should not be enclosed "
            "in quotes",
        ),
        (
            "SELECT Id FROM Account WHERE CreatedDate > 2026-01-01",
            "MALFORMED_QUERY",
            44,
            "value of filter criterion for field 'CreatedDate' must be of type dateTime and should not be enclosed "
            "in quotes",
        ),
        (
            "SELECT Id FROM Account WHERE Name = 5",
            "MALFORMED_QUERY",
            37,
            "value of filter criterion for field 'Name' must be of type string and should be enclosed in quotes",
        ),
        (
            "SELECT Id FROM Account WHERE IsDeleted = 'false'",
            "MALFORMED_QUERY",
            42,
            "value of filter criterion for field 'IsDeleted' must be of type boolean and should not be enclosed "
            "in quotes",
        ),
        ("SELECT Id FROM Order WHERE EffectiveDate = 2026-02-30", "MALFORMED_QUERY", 44, "invalid date: '2026-02-30'"),
        ("SELECT Name, COUNT(Id) FROM Account", "MALFORMED_QUERY", 8, "Field must be grouped or aggregated: Name"),
        (
            "SELECT Status, COUNT(Id) FROM Order GROUP BY Status ORDER BY Name",
            "MALFORMED_QUERY",
            62,
            "Ordered field must be grouped or aggregated: Name",
        ),
        (
            "SELECT COUNT(), Id FROM Account",
            "MALFORMED_QUERY",
            8,
            "COUNT() must be the only element in the SELECT list",
        ),
        ("SELECT Id, id FROM Account", "MALFORMED_QUERY", 12, "duplicate field selected: id"),
        ("SELECT COUNT(Id) n, COUNT(Name) n FROM Account", "MALFORMED_QUERY", 21, "duplicate alias: n"),
    ],
)
def test_errors(text: str, code: str, column: int, reason: str) -> None:
    """Refused queries raise SoqlError with Salesforce's code and echo/caret/position/reason message."""
    raised = error(text)
    assert raised.error_code == code
    assert raised.message == echo(text, column, reason)
    assert str(raised) == raised.message


def test_error_on_a_later_row() -> None:
    """A multi-line query reports the row, echoing the lines up to it so the caret sits under the token."""
    raised = error("SELECT Id\nFROM Account\nWHERE Nme = 'x'")
    assert raised.error_code == "INVALID_FIELD"
    assert raised.message.startswith("\nSELECT Id\nFROM Account\nWHERE Nme = 'x'\n      ^\nERROR at Row:3:Column:7\n")


def test_empty_query() -> None:
    """An empty query is a syntax error at the end of input."""
    raised = error("")
    assert raised.error_code == "MALFORMED_QUERY"
    assert raised.message.endswith("unexpected token: '<EOF>'")


@pytest.mark.parametrize(
    "text",
    [
        "SELECT Id, blng__InvoiceLineStatus__c, blng__Invoice__c, blng__Invoice__r.blng__InvoiceStatus__c, "
        "blng__Invoice__r.blng__Account__c FROM blng__InvoiceLine__c WHERE blng__InvoiceRun__c = 'a1A5g0000000001EAA' "
        "ORDER BY blng__Invoice__c, Id",
        "SELECT Id, OrderId, Order.AccountId FROM OrderItem WHERE blng__InvoiceRun__c = 'a1A5g0000000001EAA' "
        "ORDER BY OrderId, Id",
        "SELECT Id, blng__OrderProduct__r.Order.AccountId, blng__Invoice__r.blng__InvoiceStatus__c "
        "FROM blng__UsageSummary__c WHERE blng__InvoiceRun__c = 'a1A5g0000000001EAA' "
        "ORDER BY blng__OrderProduct__c, Id",
        "SELECT blng__InvoiceLineStatus__c, COUNT(Id) n FROM blng__InvoiceLine__c "
        "WHERE blng__InvoiceRun__c = 'a1A5g0000000001EAA' GROUP BY blng__InvoiceLineStatus__c",
        "SELECT Id, Name, blng__Status__c FROM blng__InvoiceRun__c "
        "WHERE Id IN ('a1A5g0000000001EAA', 'a1A5g0000000002EAA')",
    ],
)
def test_worker_query_shapes_compile(org: Seeded, text: str) -> None:
    """The shapes of query the clean-up worker sends compile and run (here on an org without runs)."""
    compiled = compile_soql(text, now=NOW)
    if compiled.kind == "records":
        assert compiled.rowids(org.store.conn) == []
    else:
        assert compiled.aggregate(org.store.conn) == []


# --- what the readiness reader needs (docs/readiness.md): rule lookups, schedulers, multi-select picklists ---


@pytest.fixture(scope="module")
def billing() -> Iterator[Seeded]:
    """Orders, order products and usage summaries with their billing setup, written the way the API writes
    them (values coerced and checked), and two invoice schedulers."""
    seeded = Seeded()

    def create(sobject: str, name: str, **values: Any) -> str:
        fields = {"Name": name, **values} if spec(sobject).field("Name") else values
        seeded.ids[name] = records.create(spec(sobject), fields, seeded.store)
        return seeded.ids[name]

    account = create("Account", "Acme")
    yes = create("blng__BillingRule__c", "Bill", blng__GenerateInvoices__c="Yes")
    no = create("blng__BillingRule__c", "Never", blng__GenerateInvoices__c="No")
    tax = create("blng__TaxRule__c", "Tax")
    batch_a = create("Order", "OA", AccountId=account, Status="Activated", blng__InvoiceBatch__c="Batch A")
    create("Order", "ONONE", AccountId=account, Status="Activated")
    create(
        "OrderItem",
        "P1",
        OrderId=batch_a,
        SBQQ__Activated__c=True,
        SBQQ__ChargeType__c="Recurring",
        blng__BillingRule__c=yes,
        blng__TaxRule__c=tax,
        blng__NextBillingDate__c="2026-11-26",
    )
    p2 = create("OrderItem", "P2", OrderId=batch_a, blng__BillingRule__c=no)
    create("blng__UsageSummary__c", "U1", blng__OrderProduct__c=p2, blng__Status__c="Queued For Invoice")
    # Written in another order than the field's values: stored, and read back, as the set in the field's order.
    create("blng__InvoiceScheduler__c", "S1", blng__Type__c="Daily", blng__InvoiceBatches__c="Batch B;Batch A")
    create("blng__InvoiceScheduler__c", "S2", blng__Type__c="Once", blng__InvoiceBatches__c="Batch C")
    create("blng__InvoiceScheduler__c", "S3", blng__Type__c="Weekly")
    yield seeded
    seeded.store.close()


def _all_fields() -> frozenset[str]:
    return frozenset(f"{s.name}.{f.name}" for s in schema.SOBJECTS for f in s.fields)


def test_readiness_order_product_query_follows_the_rule_lookups(billing: Seeded) -> None:
    """blng__BillingRule__r.blng__GenerateInvoices__c and Order.blng__InvoiceBatch__c come back nested; an empty
    lookup comes back as a null relationship."""
    select = reader.select_list("OrderItem", _all_fields())
    assert "blng__BillingRule__r.blng__GenerateInvoices__c" in select
    text = queries.render("readiness_order_products_by_ids", fields=select, ids=[billing.ids["P1"], billing.ids["P2"]])
    found = {r["Id"]: r for r in run(billing, text)}
    p1, p2 = found[billing.ids["P1"]], found[billing.ids["P2"]]
    assert p1["blng__BillingRule__r"]["blng__GenerateInvoices__c"] == "Yes"
    assert p1["Order"]["blng__InvoiceBatch__c"] == "Batch A"
    assert p1["SBQQ__Activated__c"] is True and p1["SBQQ__ChargeType__c"] == "Recurring"
    assert p1["blng__NextBillingDate__c"] == "2026-11-26" and p1["blng__TaxRule__c"] == billing.ids["Tax"]
    assert p2["blng__BillingRule__r"]["blng__GenerateInvoices__c"] == "No"
    # A checkbox left out on create is false, as the platform defaults it; an empty lookup is null.
    assert p2["SBQQ__Activated__c"] is False
    assert p2["blng__RevenueRecognitionRule__c"] is None and p2["blng__HoldBilling__c"] is None


def test_readiness_usage_summary_query_reaches_the_order_through_the_order_product(billing: Seeded) -> None:
    select = reader.select_list("blng__UsageSummary__c", _all_fields())
    assert "blng__OrderProduct__r.Order.blng__InvoiceBatch__c" in select
    text = queries.render("readiness_usage_summaries_by_ids", fields=select, ids=[billing.ids["U1"]])
    [summary] = run(billing, text)
    assert summary["blng__OrderProduct__r"]["Order"]["blng__InvoiceBatch__c"] == "Batch A"
    assert summary["blng__OrderProduct__r"]["blng__HoldBilling__c"] is None
    assert summary["blng__Status__c"] == "Queued For Invoice"


def test_readiness_scheduler_query_returns_multi_select_values_joined(billing: Seeded) -> None:
    """A multi-select picklist reads as "A;B" in the field's value order; an empty one as null."""
    text = queries.render("readiness_schedulers", fields=reader.select_list("blng__InvoiceScheduler__c", _all_fields()))
    batches = {r["Name"]: r["blng__InvoiceBatches__c"] for r in run(billing, text)}
    assert batches == {"S1": "Batch A;Batch B", "S2": "Batch C", "S3": None}


def test_parenthesised_or_inside_and(org: Seeded) -> None:
    """WHERE (a IN (...) OR b IN (...)) AND c = ...: the draft line query of the readiness reader."""
    text = queries.render("readiness_draft_lines", ids=[org.ids["OI1"], org.ids["OI2"]])
    assert [r["Id"] for r in run(org, text)] == [org.ids["L1"]]
    both = (
        "SELECT Name FROM blng__InvoiceLine__c WHERE (blng__InvoiceLineStatus__c IN ('Posted') "
        "OR blng__TotalAmount__c IN (40)) AND blng__Invoice__c != null ORDER BY Name"
    )
    assert names(org, both) == ["L2", "L3"]


SCHEDULERS = "SELECT Name FROM blng__InvoiceScheduler__c WHERE "


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("blng__InvoiceBatches__c = 'Batch A;Batch B'", ["S1"]),
        # = compares the set of values, in any order, case-insensitively.
        ("blng__InvoiceBatches__c = 'batch b;Batch A'", ["S1"]),
        ("blng__InvoiceBatches__c = 'Batch A'", []),
        ("blng__InvoiceBatches__c != 'Batch C'", ["S1", "S3"]),
        ("blng__InvoiceBatches__c = null", ["S3"]),
        ("blng__InvoiceBatches__c = 'Batch Z;Batch A'", []),
    ],
)
def test_multi_select_picklist_filters(billing: Seeded, where: str, expected: list[str]) -> None:
    assert names(billing, SCHEDULERS + where + " ORDER BY Name") == expected


@pytest.mark.parametrize(
    ("text", "code", "reason"),
    [
        (
            "SELECT Id FROM blng__InvoiceScheduler__c WHERE blng__InvoiceBatches__c LIKE 'Batch%'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid operator on multipicklist field",
        ),
        (
            "SELECT Id FROM blng__InvoiceScheduler__c WHERE blng__InvoiceBatches__c IN ('Batch A')",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid operator on multipicklist field",
        ),
        (
            "SELECT Id FROM blng__InvoiceScheduler__c WHERE blng__InvoiceBatches__c > 'Batch A'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid operator on multipicklist field",
        ),
        (
            "SELECT Id FROM blng__InvoiceScheduler__c ORDER BY blng__InvoiceBatches__c",
            "MALFORMED_QUERY",
            "field 'blng__InvoiceBatches__c' can not be sorted in a query call",
        ),
        (
            "SELECT blng__InvoiceBatches__c FROM blng__InvoiceScheduler__c GROUP BY blng__InvoiceBatches__c",
            "MALFORMED_QUERY",
            "field 'blng__InvoiceBatches__c' can not be grouped in a query call",
        ),
        (
            "SELECT Id FROM OrderItem WHERE blng__BillingRule__r.blng__GenerateInvoices__c = 1",
            "MALFORMED_QUERY",
            "value of filter criterion for field 'blng__BillingRule__r.blng__GenerateInvoices__c' must be of type "
            "string and should be enclosed in quotes",
        ),
        (
            "SELECT blng__BillingRule__c.Name FROM OrderItem",
            "INVALID_FIELD",
            f"Didn't understand relationship 'blng__BillingRule__c' in field path. {RELATIONSHIP_HINT}",
        ),
    ],
)
def test_readiness_field_errors(text: str, code: str, reason: str) -> None:
    raised = error(text)
    assert raised.error_code == code
    assert raised.message.endswith(f"\n{reason}")
