"""Undo: journaled before-values come back where nobody changed them since; bad journals are refused."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from sfcleanup import billing
from sfcleanup.cli import main
from sfcleanup.localorg import schema
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.localorg.store import Store
from tests.oracle import VOLATILE, by_id
from tests.support import copy_state, seeded_state, state_snapshot

SOURCES = ("OrderItem", "blng__UsageSummary__c")
INVOICES = ("blng__Invoice__c", "blng__InvoiceLine__c")
Snapshot = dict[str, list[dict[str, object]]]


@pytest.fixture(scope="module")
def cleaned_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ScenarioInfo, Snapshot]:
    """The clean-up `cleaned` gives each test a copy of, made once: its folder (state file and journal folder),
    the org's ids and its before-snapshot."""
    folder = tmp_path_factory.mktemp("cleaned")
    state = folder / "org.sqlite3"
    info = seeded_state(state)
    before = state_snapshot(state)
    assert main(["run", info.runs["failed_run"], "--yes", *_org(state, folder)]) == 0
    return folder, info, before


@pytest.fixture
def cleaned(
    cleaned_once: tuple[Path, ScenarioInfo, Snapshot], tmp_path: Path
) -> tuple[Path, ScenarioInfo, Snapshot, Path]:
    """A persisted demo org whose failed run has been cleaned, with its before-snapshot and journal."""
    folder, info, before = cleaned_once
    state = tmp_path / "org.sqlite3"
    copy_state(folder / "org.sqlite3", state)
    shutil.copytree(folder / "j", tmp_path / "j")
    run_id = info.runs["failed_run"]
    return state, copy.deepcopy(info), copy.deepcopy(before), tmp_path / "j" / f"{run_id}.jsonl"


def _org(state: Path, tmp_path: Path) -> list[str]:
    return ["--org", "local", "--state", str(state), "--journal-dir", str(tmp_path / "j"), "--log-level", "error"]


def _stable(rows: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    return {i: {k: v for k, v in r.items() if k not in VOLATILE} for i, r in rows.items()}


def test_preview_changes_nothing(
    cleaned: tuple[Path, ScenarioInfo, dict, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --yes, undo reports what it would restore and writes nothing."""
    state, _, _, journal = cleaned
    after_clean = state_snapshot(state)
    capsys.readouterr()
    assert main(["undo", str(journal), "--json", *_org(state, tmp_path)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["mode"] == "preview" and document["restore"]["OrderItem"] == 450
    assert state_snapshot(state) == after_clean


def test_undo_restores_sources_only(cleaned: tuple[Path, ScenarioInfo, dict, Path], tmp_path: Path) -> None:
    """--yes puts order products and usage summaries back exactly; invoices and lines stay cancelled."""
    state, _, before, journal = cleaned
    assert main(["undo", str(journal), "--yes", *_org(state, tmp_path)]) == 0
    now, then = by_id(state_snapshot(state)), by_id(before)
    for sobject in SOURCES:
        assert _stable(now[sobject]) == _stable(then[sobject])
    assert _stable(now["blng__InvoiceLine__c"]) != _stable(then["blng__InvoiceLine__c"])
    assert (tmp_path / "j" / f"{journal.stem}.undo.jsonl").is_file()


def test_undo_with_invoices_restores_everything(cleaned: tuple[Path, ScenarioInfo, dict, Path], tmp_path: Path) -> None:
    """--include-invoices also restores invoice and line statuses, so every Billing record is as before."""
    state, _, before, journal = cleaned
    assert main(["undo", str(journal), "--yes", "--include-invoices", *_org(state, tmp_path)]) == 0
    now, then = by_id(state_snapshot(state)), by_id(before)
    for sobject in (*SOURCES, *INVOICES):
        assert _stable(now[sobject]) == _stable(then[sobject])


def test_records_changed_since_are_skipped(
    cleaned: tuple[Path, ScenarioInfo, dict, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source someone changed after the clean-up is reported as skipped and keeps its new value."""
    state, _, _, journal = cleaned
    store = Store(state)
    victim = next(
        r["Id"]
        for r in store.snapshot()["OrderItem"]
        if r["blng__InvoiceRunProcessingStatus__c"] == "Pending Billing"
        and r["blng__InvoiceRun__c"] is None
        and str(r["Id"]) in journal.read_text()
    )
    spec = schema.sobject("OrderItem")
    assert spec is not None
    store.update(spec, str(victim), {billing.PROCESSING_STATUS: "Will Not Invoice"})
    store.close()
    capsys.readouterr()
    assert main(["undo", str(journal), "--yes", "--json", *_org(state, tmp_path)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in document["skipped"]] == [victim]
    assert by_id(state_snapshot(state))["OrderItem"][victim][billing.PROCESSING_STATUS] == "Will Not Invoice"


@pytest.mark.parametrize(
    ("damage", "extra", "message"),
    [
        ("truncate", [], "is truncated"),
        ("none", ["--run", "a1A5g0000000002EAA"], "is for invoice run"),
        ("garbage", [], "damaged line"),
        ("missing", [], "does not exist"),
    ],
)
def test_bad_journals_exit_2_and_write_nothing(
    cleaned: tuple[Path, ScenarioInfo, dict, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: str,
    extra: list[str],
    message: str,
) -> None:
    """A truncated, damaged, missing or other run's journal is refused with one line and exit 2."""
    state, _, _, journal = cleaned
    text = journal.read_text()
    if damage == "truncate":
        journal.write_text(text[:-40])
    elif damage == "garbage":
        lines = text.splitlines()
        journal.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    elif damage == "missing":
        journal = journal.with_name("nope.jsonl")
    after_clean = state_snapshot(state)
    capsys.readouterr()
    assert main(["undo", str(journal), "--yes", *extra, *_org(state, tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert state_snapshot(state) == after_clean
