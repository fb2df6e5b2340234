"""The journal read as a stream (journalread, lastwritten): the changes CSV, the report and the recount it
gives are those made from the whole journal in memory, also when the records spill to disk, and a damaged
journal is refused with the message `read_entries` gives."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sfcleanup.changes import Change
from sfcleanup.entries import RecordEntry, records
from sfcleanup.journal import Journal, JournalError, read_entries
from sfcleanup.journalread import Stream
from sfcleanup.journalreport import CHANGES_HEADER, journal_report, read_journal, write_changes_csv
from sfcleanup.outcomes import RowOutcome, RowResult

RUN = "a1A5g0000000001EAA"
STATUS = "blng__InvoiceRunProcessingStatus__c"
FIELDS = (STATUS, "blng__InvoiceRunStartDate__c", "blng__InvoiceRun__c")


def _change(number: int, sobject: str = "OrderItem", *, extra: bool = False) -> Change:
    started = f"2026-12-0{number % 9 + 1}T09:00:00.000+0000"
    before: dict[str, str | None] = dict(zip(FIELDS, ("Error", started, RUN), strict=True))
    after: dict[str, str | None] = {STATUS: "Pending Billing", FIELDS[1]: None, FIELDS[2]: None}
    if extra:  # a record whose fields differ from its batch's: written as an object, not a list
        before["blng__HoldBilling__c"] = "No"
        after["blng__HoldBilling__c"] = "No"
    return Change(sobject, f"8025g{number:013d}", f"0015g{number % 3:013d}", before, after)


def _journal(directory: Path) -> Path:
    """Two invocations of one run: updated, failed and locked rows, a lock retry never answered, an object
    with other fields, a Bulk API job adopted by the second invocation (answers with their values), and a
    torn last line."""
    a, b, c, d, e, f = (_change(n) for n in range(1, 7))
    odd = _change(7, extra=True)
    usage = _change(8, "blng__UsageSummary__c")
    with Journal(directory, RUN) as first:
        first.start(mode="run", options={})
        first.pending("order_products", "order_products-1", [a, b, c, odd])
        first.outcomes(
            "order_products",
            "order_products-1",
            [
                RowResult(a, RowOutcome.UPDATED),
                RowResult(b, RowOutcome.FAILED, "FIELD_CUSTOM_VALIDATION_EXCEPTION", 'posted, | and "quoted"'),
                RowResult(c, RowOutcome.LOCKED, "UNABLE_TO_LOCK_ROW", "locked"),
                RowResult(odd, RowOutcome.UPDATED),
            ],
        )
        first.pending("order_products", "order_products-2", [c])
        first.pending("order_products", "order_products-bulk-1", [d, e])
        first.note("bulk.job", job="750x", state="created", phase="order_products", batch="order_products-bulk-1")
        first.end(status="interrupted", exit_code=3, counts={}, reason="stopped")
    with Journal(directory, RUN) as second:
        second.start(mode="run", options={})
        second.outcomes(
            "order_products",
            "order_products-bulk-1",
            [RowResult(d, RowOutcome.UPDATED), RowResult(e, RowOutcome.FAILED, "DUPLICATE_VALUE", "twice")],
        )
        second.pending("order_products", "order_products-3", [c, f])
        second.outcomes("order_products", "order_products-3", [RowResult(f, RowOutcome.CONFIRMED)])
        second.outcomes("order_products", "order_products-3", [RowResult(c, RowOutcome.FAILED, "UNABLE_TO_LOCK_ROW")])
        second.pending("usage_summaries", "usage_summaries-1", [usage])
        second.outcomes("usage_summaries", "usage_summaries-1", [RowResult(usage, RowOutcome.UPDATED)])
        second.run_field("blng__CleanUpStatus__c", "Started", "Completed", "updated")
        second.end(status="cleaned_with_failures", exit_code=1, counts={})
    path = directory / f"{RUN}.jsonl"
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"type":"pending_rows","run_id":"' + RUN)
    return path


def _old_changes_csv(journal: Path, out: Path) -> bytes:
    """The changes CSV as it was made before the stream: every entry in memory, parsed by the model."""
    last: dict[tuple[str, str], RecordEntry] = {}
    for entry in records(read_entries(journal, allow_truncated=True)):
        last[(entry.sobject, entry.id)] = entry
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CHANGES_HEADER)
        for entry in last.values():
            outcome = entry.outcome.value if entry.outcome is not None else "pending"
            failed = outcome in ("failed", "locked")
            error = f"{entry.code}: {entry.message}" if failed and entry.code else ""
            for field, after in entry.after.items():
                writer.writerow([entry.id, entry.sobject, field, entry.before.get(field), after, outcome, error])
    return out.read_bytes()


@pytest.fixture(params=[False, True], ids=["in memory", "spilled"])
def spilled(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every test runs twice: as a small journal is read, and with two records held at most, as a large one."""
    if request.param:
        monkeypatch.setattr("sfcleanup.lastwritten.HELD", 2)
        monkeypatch.setattr("sfcleanup.scratch.HELD", 2)
    return bool(request.param)


def test_the_streamed_changes_csv_is_the_one_made_in_memory(tmp_path: Path, spilled: bool) -> None:
    journal = _journal(tmp_path)
    expected = _old_changes_csv(journal, tmp_path / "old.csv")
    with read_journal(journal, allow_truncated=True) as told:
        written = write_changes_csv(told.written, tmp_path / "new.csv").read_bytes()
        report = journal_report(journal, told).to_json()
    assert written == expected
    rows = list(csv.DictReader(written.decode().splitlines()))
    assert [(r["Id"][-1], r["Outcome"]) for r in rows if r["Field"] == STATUS] == [
        ("1", "updated"),
        ("2", "failed"),
        ("3", "failed"),  # locked, retried, then failed on its locks in the second invocation
        ("7", "updated"),
        ("4", "updated"),  # the adopted job's answers
        ("5", "failed"),
        ("6", "confirmed"),
        ("8", "updated"),
    ]
    assert "blng__HoldBilling__c" in [r["Field"] for r in rows if r["Id"].endswith("7")]
    run = report["runs"][0]  # type: ignore[index]
    assert {k: run["objects"]["OrderItem"][k] for k in ("planned", "updated", "failed")} == {
        "planned": 7,
        "updated": 4,
        "failed": 3,
    }
    assert [f["id"][-1] for f in run["failures"]] == ["2", "3", "5"]
    assert run["cleanup_status"] == "Completed" and run["exit_code"] == 1


def test_reading_twice_gives_the_same_report(tmp_path: Path, spilled: bool) -> None:
    """`report --csv` reads what it keeps twice: for the report, then for the CSV."""
    journal = _journal(tmp_path)
    with read_journal(journal, allow_truncated=True) as told:
        assert list(told.written) == list(told.written)


def test_the_recount_is_the_invocation_s_last_outcomes(tmp_path: Path, spilled: bool) -> None:
    journal = _journal(tmp_path)
    journal.write_text(journal.read_text().rsplit("\n", 1)[0] + "\n")  # a live journal has no torn line
    second = json.loads(journal.read_text().splitlines()[-1])["invocation"]
    expected: dict[tuple[str, str], tuple[RowOutcome | None, str | None]] = {}
    for entry in records(read_entries(journal), kind="outcome"):
        if entry.invocation == second:
            expected[(entry.sobject, entry.id)] = (entry.outcome, entry.code)
    with Journal(tmp_path, RUN) as third:
        third.invocation = second
        counted = {key: (last.outcome, last.code) for key, last in third.last_outcomes().items()}
    assert list(counted.items()) == list(expected.items()) and len(counted) == 5


def _stream_error(journal: Path, *, allow_truncated: bool = False) -> str:
    with pytest.raises(JournalError) as streamed:
        for _ in Stream(journal, allow_truncated=allow_truncated):
            pass
    return str(streamed.value)


def _listed_error(journal: Path, *, allow_truncated: bool = False) -> str:
    with pytest.raises(JournalError) as listed:
        read_entries(journal, allow_truncated=allow_truncated)
    return str(listed.value)


def _lines(journal: Path) -> list[str]:
    return journal.read_text().splitlines()


def _rewrite(journal: Path, lines: list[str]) -> None:
    journal.write_text("".join(line + "\n" for line in lines))


def _torn(journal: Path) -> None:
    pass  # as written


def _damaged_line(journal: Path) -> None:
    lines = _lines(journal)
    lines[3] = lines[3][:-5]
    _rewrite(journal, lines)


def _not_an_entry(journal: Path) -> None:
    _rewrite(journal, [*_lines(journal)[:2], "[1, 2]", *_lines(journal)[2:]])


def _other_run(journal: Path) -> None:
    lines = _lines(journal)[:-1]
    lines[-1] = lines[-1].replace(RUN, "a1A5g0000000002EAA")
    _rewrite(journal, lines)


def _empty(journal: Path) -> None:
    journal.write_text("")


def _row_not_fitting(journal: Path) -> None:
    lines = _lines(journal)[:-1]
    entry = json.loads(lines[1])
    entry["rows"][0][2] = ["Error"]  # one value for three fields
    lines[1] = json.dumps(entry)
    _rewrite(journal, lines)


def _answered_twice(journal: Path) -> None:
    """An answer without values after the row was answered: the writer would have written the values."""
    lines = _lines(journal)[:-1]
    _rewrite(journal, [*lines[:3], lines[2], *lines[3:]])


def _answer_of_nothing_then_damaged_line(journal: Path) -> None:
    """Two faults: a damaged line is reported first, wherever it is, as the list reader does."""
    lines = _lines(journal)[:-1]
    lines[1] = lines[1].replace('"pending_rows"', '"note"')
    lines[-2] = lines[-2][:-3]
    _rewrite(journal, lines)


@pytest.mark.parametrize(
    "damage",
    [
        _torn,
        _damaged_line,
        _not_an_entry,
        _other_run,
        _empty,
        _row_not_fitting,
        _answered_twice,
        _answer_of_nothing_then_damaged_line,
    ],
)
def test_a_damaged_journal_is_refused_as_the_list_reader_refuses_it(
    tmp_path: Path, spilled: bool, damage: Callable[[Path], None]
) -> None:
    journal = _journal(tmp_path)
    damage(journal)
    assert _stream_error(journal) == _listed_error(journal)
    assert str(journal) in _stream_error(journal)


def test_a_torn_last_line_is_read_when_allowed(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    assert "pass --allow-truncated" in _stream_error(journal)
    assert sum(1 for _ in Stream(journal, allow_truncated=True)) == len(read_entries(journal, allow_truncated=True))


@pytest.mark.parametrize(
    ("row", "what"),
    [
        (0, "the id or group"),
        (2, "a value of"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_in_one_line(tmp_path: Path, row: int, what: str) -> None:
    """What the model refused per record (with a many-line pydantic error, after the CSV was begun) is found
    as the journal is read, with the journal's path."""
    journal = _journal(tmp_path)
    lines = _lines(journal)[:-1]
    for number in (1, 2) if row == 0 else (1,):  # an id in the pending row and in its answer
        entry = json.loads(lines[number])
        entry["rows"][1][row] = 5 if row == 0 else ["Error", 5, None]
        lines[number] = json.dumps(entry)
    _rewrite(journal, lines)
    message = _stream_error(journal)
    assert message.startswith(f"journal {journal} has a damaged record line: {what}") and "\n" not in message


def test_an_unknown_outcome_is_refused(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    lines = _lines(journal)[:-1]
    lines[2] = lines[2].replace('"updated"', '"done"', 1)
    _rewrite(journal, lines)
    assert "is not one a writer journals" in _stream_error(journal)


def _written(directory: Path) -> list[dict[str, object]]:
    journal = _journal(directory)
    lines = [json.loads(line) for line in _lines(journal)[:-1]]
    return [{k: v for k, v in line.items() if k not in ("at", "invocation")} for line in lines]


def test_the_writer_holding_few_rows_writes_the_same_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer keeps what it sent on disk past a few rows (a Bulk API phase sends all before any answer):
    its answers still name only the outcome of what it sent, and the values of what it did not."""
    held = _written(tmp_path / "memory")
    monkeypatch.setattr("sfcleanup.scratch.HELD", 2)
    assert _written(tmp_path / "disk") == held
    answers = [line for line in held if line["type"] == "outcome_rows"]
    assert [len(row) for line in answers for row in line["rows"]] == [4, 4, 4, 4, 7, 7, 4, 4, 4]  # type: ignore[attr-defined]
