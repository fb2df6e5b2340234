"""The readiness section at the end of `run` and `sweep`, the `readiness` command, and the demo's summary:
read-only, the seeded not-ready records found by reason, and the clean-up's exit code left as it was."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from sfcleanup.cli import main
from sfcleanup.localorg.seed import ScenarioInfo
from tests.support import local_args, state_snapshot

SEEDED = ("on_hold", "rule_generates_no_invoices", "after_target_date", "batch_not_scheduled", "us_status")


def _assert_seeded_found(info: ScenarioInfo, section: dict[str, Any]) -> None:
    """Every record the demo seeds as not ready for a reason is reported with that reason."""
    by_reason: dict[str, set[str]] = {}
    for record in section["records_with_reasons"]:
        for reason in record["reasons"]:
            by_reason.setdefault(reason["code"], set()).add(record["id"])
    for code, ids in info.not_ready["failed_run"].items():
        assert set(ids) <= by_reason.get(code, set()), code


def test_run_ends_with_readiness_by_reason_and_a_csv(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --yes --json` carries, per run, the not-ready records counted by reason (the seeded ones among
    them) and a CSV with a Lightning link per reason; the exit code is the clean-up's."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    code = main(local_args(state, tmp_path, "run", run_id, "--yes", "--json"))
    document = json.loads(capsys.readouterr().out)
    assert code == document["exit_code"] == 0
    section = document["readiness"]["runs"][run_id]
    _assert_seeded_found(info, section)
    assert section["ready"] > section["not_ready"] > 0
    with Path(document["readiness"]["csv"]).open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    held = {r["Id"] for r in rows if r["Reason"] == "on_hold"}
    assert held == set(info.not_ready["failed_run"]["on_hold"])
    assert all(r["Link"].endswith(f"/lightning/r/{r['Object']}/{r['Id']}/view") for r in rows)


def test_no_readiness_skips_the_section(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--no-readiness` leaves the section out."""
    state, info = org_file
    main(local_args(state, tmp_path, "run", info.runs["failed_run"], "--yes", "--json", "--no-readiness"))
    assert "readiness" not in json.loads(capsys.readouterr().out)


def test_readiness_command_after_a_run_finds_the_reset_records_and_writes_nothing(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`readiness RUN --json` after a clean-up finds the reset records through the run's journal (their run link
    is gone) with the same reasons, and changes nothing in the org."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    main(local_args(state, tmp_path, "run", run_id, "--yes", "--json", "--no-readiness"))
    capsys.readouterr()
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "readiness", run_id, "--json")) == 0
    section = json.loads(capsys.readouterr().out)["runs"][run_id]
    _assert_seeded_found(info, section)
    assert state_snapshot(state) == before


def test_the_demo_ends_with_readiness_showing_several_reasons(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`demo` ends with the readiness summary, holding back records for at least three different reasons."""
    assert main(["demo", "--json", "--journal-dir", str(tmp_path / "j")]) == 0
    readiness = json.loads(capsys.readouterr().out)["readiness"]
    blocking = {
        reason["code"]
        for run in readiness.values()
        for record in run["records_with_reasons"]
        for reason in record["reasons"]
        if reason["severity"] == "blocks"
    }
    assert len(blocking & set(SEEDED)) >= 3
