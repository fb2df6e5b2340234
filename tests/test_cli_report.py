"""Data Loader-style artefacts: `changes-<run>.csv` beside the failures CSV after a clean-up, and
`sfcleanup report JOURNAL` rebuilding them, the JSON report and the summary from the journal alone."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from sfcleanup import jsonout
from sfcleanup.cli import main
from tests.oracle import by_id
from tests.support import Terminal, copy_state, local_args, seeded_state, state_snapshot
from tests.test_exit_codes import _post_an_invoice_of


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def with_failures_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, object]]:
    """The clean-up `with_failures` gives each test a copy of, made once: its folder (state file and journal
    folder), the run's id and the report."""
    folder = tmp_path_factory.mktemp("with_failures")
    state = folder / "org.sqlite3"
    run_id = seeded_state(state).runs["failed_run"]
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stdout(io.StringIO()) as out:
        monkeypatch.setattr("sys.stdin", Terminal("y\n", lambda: _post_an_invoice_of(state, run_id)))
        assert main(local_args(state, folder, "run", run_id)) == 1
        out.seek(0)
        out.truncate()
        assert main(["report", str(folder / "j" / f"{run_id}.jsonl"), "--json"]) == 0
    return folder, run_id, json.loads(out.getvalue())


@pytest.fixture
def with_failures(
    with_failures_once: tuple[Path, str, dict[str, object]], tmp_path: Path
) -> tuple[Path, str, dict[str, object]]:
    """The demo's failed run cleaned after one of its draft invoices was posted while the prompt waited (the
    org then refuses its lines: FIELD_CUSTOM_VALIDATION_EXCEPTION), and `report JOURNAL --json` of it."""
    folder, run_id, report = with_failures_once
    state = tmp_path / "org.sqlite3"
    copy_state(folder / "org.sqlite3", state)
    shutil.copytree(folder / "j", tmp_path / "j")
    return state, run_id, copy.deepcopy(report)


def test_changes_csv_beside_the_failures_csv_matches_the_org(
    with_failures: tuple[Path, str, dict[str, object]], tmp_path: Path
) -> None:
    """After a clean-up, changes-<run>.csv lists every field written with before, after and outcome; what it
    says was updated is what the org now holds, and failed rows carry their error."""
    state, run_id, _ = with_failures
    journals = tmp_path / "j"
    changes = _rows(journals / f"changes-{run_id}.csv")
    assert next(journals.glob("failures-*.csv")).is_file()
    assert list(changes[0]) == ["Id", "Object", "Field", "Before", "After", "Outcome", "Error"]
    org = by_id(state_snapshot(state))
    updated = [row for row in changes if row["Outcome"] == "updated"]
    assert updated and all(str(org[r["Object"]][r["Id"]][r["Field"]] or "") == r["After"] for r in updated)
    failed = [row for row in changes if row["Outcome"] == "failed"]
    assert failed and all(r["Error"].startswith("FIELD_CUSTOM_VALIDATION_EXCEPTION") for r in failed)
    assert all(str(org[r["Object"]][r["Id"]][r["Field"]] or "") == r["Before"] for r in failed)
    order_product_rows = [row for row in updated if row["Object"] == "OrderItem"]
    assert {row["Field"] for row in order_product_rows} == {
        "blng__InvoiceRunProcessingStatus__c",
        "blng__InvoiceRun__c",
        "blng__InvoiceRunStartDate__c",
    }


def test_report_rebuilds_the_csvs_from_the_journal(
    with_failures: tuple[Path, str, dict[str, object]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report JOURNAL --csv` writes the same changes CSV again, and a failures CSV with the same records."""
    _, run_id, _ = with_failures
    journals = tmp_path / "j"
    first = (journals / f"changes-{run_id}.csv").read_bytes()
    run_failures = {r["Id"] for r in _rows(next(journals.glob("failures-*.csv"))) if r["ErrorCode"] != "HELD"}
    (journals / f"changes-{run_id}.csv").unlink()
    assert main(["report", str(journals / f"{run_id}.jsonl"), "--csv"]) == 0
    assert (journals / f"changes-{run_id}.csv").read_bytes() == first
    rebuilt = _rows(journals / f"failures-{run_id}.csv")
    assert {r["Id"] for r in rebuilt} == run_failures
    assert "Changes CSV" in capsys.readouterr().out


def test_report_json_is_the_schema_and_agrees_with_the_clean_up(
    with_failures: tuple[Path, str, dict[str, object]],
) -> None:
    """`report JOURNAL --json` is a valid report whose counts per object are the clean-up's."""
    _, run_id, document = with_failures
    jsonschema.validate(document, json.loads(jsonout.schema_text()))
    runs = document["runs"]
    assert isinstance(runs, list)
    run = runs[0]
    assert run["id"] == run_id and run["status"] == "cleaned_with_failures" and run["exit_code"] == 1
    counts = run["objects"]["blng__InvoiceLine__c"]
    assert counts["failed"] > 0 and counts["updated"] + counts["failed"] == counts["planned"]


def test_report_summary_and_a_damaged_journal(
    with_failures: tuple[Path, str, dict[str, object]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--summary` writes the Markdown summary, with links when the org's URL is given; a damaged journal is
    refused with exit 2 and one line."""
    _, run_id, _ = with_failures
    journal = tmp_path / "j" / f"{run_id}.jsonl"
    summary = tmp_path / "s.md"
    argv = ["report", str(journal), "--summary", str(summary), "--instance-url", "https://acme.my.salesforce.com"]
    assert main(argv) == 0
    text = summary.read_text()
    assert f"## Invoice run {run_id}: cleaned_with_failures" in text
    assert "https://acme.my.salesforce.com/lightning/r/blng__InvoiceLine__c/" in text
    damaged = tmp_path / "damaged.jsonl"
    lines = journal.read_text().splitlines()
    damaged.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    capsys.readouterr()
    assert main(["report", str(damaged), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "config_error"
