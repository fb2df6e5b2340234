"""What a correct clean-up of the `scale` scenario changes, and whether a contender's org got there.

Written out here in SQL, independently of `sfcleanup.billing`, so the harness's check cannot share a mistake
with the code under test. `expected_counts` and `linked_counts` read the template alone; `check_state` reads a
contender's state file with the template attached as `t`, after its server has stopped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sfcleanup.localorg.store import quote

GUARDED = ("Posted", "Post In progress")


@dataclass(frozen=True)
class Target:
    sobject: str
    run_field: str
    status_field: str
    from_states: tuple[str, ...]
    to_state: str
    cleared: tuple[str, ...]


_CLEARED = ("blng__InvoiceRun__c", "blng__InvoiceRunStartDate__c")
TARGETS: tuple[Target, ...] = (
    Target(
        "blng__InvoiceLine__c", "blng__InvoiceRun__c", "blng__InvoiceLineStatus__c", ("Draft", "Error"), "Cancelled", ()
    ),
    Target(
        "blng__Invoice__c",
        "blng__InvoiceRunCreatedBy__c",
        "blng__InvoiceStatus__c",
        ("Draft", "Error", "Initiated"),
        "Cancelled",
        (),
    ),
    Target(
        "blng__UsageSummary__c",
        "blng__InvoiceRun__c",
        "blng__InvoiceRunProcessingStatus__c",
        ("Error", "In Progress"),
        "Pending Billing",
        _CLEARED,
    ),
    Target(
        "OrderItem",
        "blng__InvoiceRun__c",
        "blng__InvoiceRunProcessingStatus__c",
        ("Error", "In Progress"),
        "Pending Billing",
        _CLEARED,
    ),
)


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def _posted_invoice(alias: str) -> str:
    """SQL: the invoice id in `alias` is posted or being posted (the package's guard)."""
    return (
        f"EXISTS (SELECT 1 FROM t.{quote('blng__Invoice__c')} g WHERE g.Id = {alias} "  # noqa: S608 - constants
        f"AND g.blng__InvoiceStatus__c IN {_in(GUARDED)})"
    )


def _cleanable_sql(target: Target) -> str:
    """SELECT of the template ids a correct clean-up of run `:run` changes on one object."""
    table = f"t.{quote(target.sobject)}"
    where = [
        "o.IsDeleted = 0",
        f"o.{quote(target.run_field)} = :run",
        f"o.{quote(target.status_field)} IN {_in(target.from_states)}",
    ]
    line = f"t.{quote('blng__InvoiceLine__c')}"
    if target.sobject == "blng__InvoiceLine__c":
        where.append(f"NOT {_posted_invoice('o.blng__Invoice__c')}")
    elif target.sobject == "blng__UsageSummary__c":
        # Billed: its own invoice is posted, or its line from this run sits on a posted invoice.
        where.append(f"NOT {_posted_invoice('o.blng__Invoice__c')}")
        where.append(
            f"NOT EXISTS (SELECT 1 FROM {line} l WHERE l.Id = o.blng__InvoiceLine__c "  # noqa: S608 - constants
            f"AND l.blng__InvoiceRun__c = :run AND {_posted_invoice('l.blng__Invoice__c')})"
        )
    elif target.sobject == "OrderItem":
        where.append(
            f"NOT EXISTS (SELECT 1 FROM {line} l WHERE l.blng__OrderProduct__c = o.Id "  # noqa: S608 - constants
            f"AND l.blng__InvoiceRun__c = :run AND {_posted_invoice('l.blng__Invoice__c')})"
        )
    return f"SELECT o.Id FROM {table} o WHERE " + " AND ".join(where)  # noqa: S608 - constants, run id bound


@contextmanager
def _attached(state: Path, template: Path) -> Iterator[sqlite3.Connection]:
    """The state file as `main` with the template attached as `t`; read only (nothing is ever written)."""
    conn = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        conn.execute("ATTACH DATABASE ? AS t", (f"file:{template}?mode=ro",))
        yield conn
    finally:
        conn.close()


def linked_counts(template: Path, run_id: str) -> int:
    """Records linked to the run on the four objects, whatever their state: what a clean-up must read."""
    with _attached(template, template) as conn:
        total = 0
        for target in TARGETS:
            sql = (
                f"SELECT COUNT(*) FROM t.{quote(target.sobject)}"  # noqa: S608 - constants, run id bound
                f" WHERE IsDeleted = 0 AND {quote(target.run_field)} = :run"
            )
            total += int(conn.execute(sql, {"run": run_id}).fetchone()[0])
        return total


def expected_counts(template: Path, run_id: str) -> dict[str, int]:
    """Cleanable records per object, from the template alone (it is attached to itself as `t`)."""
    with _attached(template, template) as conn:
        counts = {}
        for target in TARGETS:
            sql = f"SELECT COUNT(*) FROM ({_cleanable_sql(target)})"  # noqa: S608 - constants, run id bound
            row = conn.execute(sql, {"run": run_id}).fetchone()
            counts[target.sobject] = int(row[0])
        return counts


@dataclass(frozen=True)
class StateCheck:
    ok: bool
    detail: dict[str, dict[str, int]]

    def summary(self) -> str:
        """Short words for the note column: what is missing, not what is fine."""
        parts = []
        for sobject, c in self.detail.items():
            short = sobject.removeprefix("blng__").removesuffix("__c")
            if c["not_reached"]:
                parts.append(f"{short} {c['not_reached']:,} not at target")
            if c["link_kept"]:
                parts.append(f"{short} {c['link_kept']:,} run link kept")
            if c["others_changed"]:
                parts.append(f"{short} {c['others_changed']:,} untouchable changed")
        return "; ".join(parts)


def check_state(state: Path, template: Path, run_id: str, expected: dict[str, int]) -> StateCheck:
    detail: dict[str, dict[str, int]] = {}
    ok = True
    with _attached(state, template) as conn:
        for target in TARGETS:
            table = quote(target.sobject)
            status = quote(target.status_field)
            cleared_null = " AND ".join(f"s.{quote(f)} IS NULL" for f in target.cleared) or "1"
            watched = {target.status_field, target.run_field, *target.cleared, "IsDeleted"}
            changed = " OR ".join(f"s.{quote(f)} IS NOT o.{quote(f)}" for f in sorted(watched))
            conn.execute("DROP TABLE IF EXISTS temp.cleanable")
            conn.execute("CREATE TEMP TABLE cleanable (Id TEXT PRIMARY KEY) WITHOUT ROWID")
            conn.execute(f"INSERT INTO temp.cleanable {_cleanable_sql(target)}", {"run": run_id})
            at_target = f"s.{status} = '{target.to_state}' AND s.IsDeleted = 0"
            row = conn.execute(
                f"SELECT COUNT(c.Id),"  # noqa: S608 - identifiers from TARGETS, quoted
                f" COALESCE(SUM(c.Id IS NOT NULL AND {at_target} AND {cleared_null}), 0),"
                f" COALESCE(SUM(c.Id IS NOT NULL AND {at_target} AND NOT ({cleared_null})), 0),"
                f" COALESCE(SUM(c.Id IS NOT NULL AND NOT ({at_target})), 0),"
                f" COALESCE(SUM(c.Id IS NULL AND ({changed})), 0)"
                # LEFT JOIN: a template row missing from the state counts as changed (or not at target).
                f" FROM t.{table} o LEFT JOIN main.{table} s ON s.Id = o.Id"
                f" LEFT JOIN temp.cleanable c ON c.Id = o.Id"
            ).fetchone()
            counts = {
                "expected": expected[target.sobject],
                "cleanable_rows": int(row[0]),
                "reached": int(row[1]),
                "link_kept": int(row[2]),
                "not_reached": int(row[3]),
                "others_changed": int(row[4]),
            }
            detail[target.sobject] = counts
            ok = (
                ok
                and counts["reached"] == counts["expected"] == counts["cleanable_rows"]
                and not counts["others_changed"]
            )
    return StateCheck(ok, detail)
