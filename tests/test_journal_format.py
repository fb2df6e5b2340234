"""The compact journal (format 2): a fraction of format 1's size, read back as the same per-record entries,
and format 1 journals still read and undone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfcleanup.changes import Change
from sfcleanup.cli import main
from sfcleanup.entries import records
from sfcleanup.journal import Journal, JournalError, read_entries
from sfcleanup.outcomes import RowOutcome, RowResult
from tests.oracle import VOLATILE, by_id
from tests.support import local_args, seeded_state, state_snapshot

FORMAT_1 = Path(__file__).parent / "fixtures" / "journal" / "format1.jsonl"
SOURCE_FIELDS = ("blng__InvoiceRunProcessingStatus__c", "blng__InvoiceRunStartDate__c", "blng__InvoiceRun__c")


def _change(record_id: str, group: str | None = None) -> Change:
    values = ("Error", "2026-12-01T09:00:00.000+0000", "a1A5g0000000001EAA")
    before: dict[str, str | None] = dict(zip(SOURCE_FIELDS, values, strict=True))
    after = {"blng__InvoiceRunProcessingStatus__c": "Pending Billing"} | {name: None for name in SOURCE_FIELDS[1:]}
    return Change("OrderItem", record_id, group or record_id, before, after)


def test_records_read_back_as_they_were_written(tmp_path: Path) -> None:
    """Pending values, groups and outcomes come back per record, including an outcome whose values differ
    from what was pending (a job adopted from an earlier invocation)."""
    first, second = _change("8025g0000000001AAA", "0015g0000000001AAA"), _change("8025g0000000002AAA")
    adopted = _change("8025g0000000003AAA")
    with Journal(tmp_path, "a1A5g0000000001EAA") as journal:
        journal.start(mode="run", options={})
        journal.pending("order_products", "order_products-1", [first, second])
        journal.outcomes(
            "order_products",
            "order_products-1",
            [
                RowResult(first, RowOutcome.UPDATED),
                RowResult(second, RowOutcome.FAILED, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "no | way"),
                RowResult(adopted, RowOutcome.CONFIRMED),
            ],
        )
    entries = list(records(read_entries(journal.path)))
    assert [(e.type, e.id, e.outcome) for e in entries] == [
        ("pending", first.id, None),
        ("pending", second.id, None),
        ("outcome", first.id, RowOutcome.UPDATED),
        ("outcome", second.id, RowOutcome.FAILED),
        ("outcome", adopted.id, RowOutcome.CONFIRMED),
    ]
    assert [e.change() for e in entries] == [first, second, first, second, adopted]
    assert entries[3].message == "no | way" and entries[3].code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"


def test_format_1_journals_are_still_read() -> None:
    """A journal written by format 1 (one line per record, kept from a real run) reads as before."""
    entries = list(records(read_entries(FORMAT_1)))
    assert [e.type for e in entries] == ["pending", "pending", "outcome", "outcome"]
    assert all(e.sobject == "OrderItem" and e.before["blng__InvoiceRunProcessingStatus__c"] for e in entries)
    assert {e.outcome for e in entries if e.type == "outcome"} == {RowOutcome.UPDATED}


def test_a_damaged_record_line_is_refused(tmp_path: Path) -> None:
    """A row that does not match its fields makes the journal untrustworthy: refused with its path."""
    with Journal(tmp_path, "a1A5g0000000001EAA") as journal:
        journal.pending("order_products", "order_products-1", [_change("8025g0000000001AAA")])
    line = json.loads(journal.path.read_text())
    line["rows"][0][2] = ["Error"]  # one value for three fields
    journal.path.write_text(json.dumps(line) + "\n")
    with pytest.raises(JournalError, match="damaged record line"):
        read_entries(journal.path)


def _as_format_1(journal: Path) -> None:
    """Rewrite a journal as format 1 wrote it: a line per record, version 1."""
    lines = []
    for entry in read_entries(journal):
        if entry["type"] == "start":
            entry["version"] = 1
        lines.append(json.dumps(entry, separators=(",", ":"), sort_keys=True))
    journal.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("old_format", [False, True])
def test_undo_reads_both_formats(tmp_path: Path, old_format: bool) -> None:
    """Undo of a clean-up restores the order products and usage summaries, from a format 2 journal and from
    the same journal as format 1 wrote it."""
    state = tmp_path / "org.sqlite3"
    info = seeded_state(state)
    before = by_id(state_snapshot(state))
    run_id = info.runs["failed_run"]
    assert main(local_args(state, tmp_path, "run", run_id, "--yes")) == 0
    journal = tmp_path / "j" / f"{run_id}.jsonl"
    if old_format:
        _as_format_1(journal)
    assert main(["undo", str(journal), "--yes", *local_args(state, tmp_path)]) == 0
    now = by_id(state_snapshot(state))
    for sobject in ("OrderItem", "blng__UsageSummary__c"):
        stable = {i: {k: v for k, v in r.items() if k not in VOLATILE} for i, r in now[sobject].items()}
        assert stable == {i: {k: v for k, v in r.items() if k not in VOLATILE} for i, r in before[sobject].items()}


def test_the_compact_journal_is_a_fraction_of_the_old_size(tmp_path: Path) -> None:
    """The demo run's journal: under 250 bytes per record (format 1 wrote about 1 KB), with the same entries."""
    state = tmp_path / "org.sqlite3"
    info = seeded_state(state)
    run_id = info.runs["failed_run"]
    assert main(local_args(state, tmp_path, "run", run_id, "--yes")) == 0
    journal = tmp_path / "j" / f"{run_id}.jsonl"
    compact = journal.stat().st_size
    entries = read_entries(journal)
    written = len({(e["object"], e["id"]) for e in entries if e["type"] == "outcome"})
    _as_format_1(journal)
    assert read_entries(journal) == [{**e, "version": 1} if e["type"] == "start" else e for e in entries]
    assert compact / written < 250 < journal.stat().st_size / written
