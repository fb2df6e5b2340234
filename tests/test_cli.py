"""The command line against a persisted local org: exit codes, one-line errors, JSON report, no stray writes."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from sfcleanup.cli import main
from sfcleanup.localorg.schema import sobject as schema_object
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.localorg.store import Store
from tests.support import Terminal, local_args, state_snapshot


def test_plan_prints_json_and_writes_nothing(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan --json` exits 0 with per-object counts and leaves the org and the journal directory untouched."""
    state, info = org_file
    before = state_snapshot(state)
    code = main(local_args(state, tmp_path, "plan", info.runs["failed_run"], "--json"))
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert document["mode"] == "plan"
    assert document["runs"][0]["objects"]["OrderItem"]["planned"] > 0
    assert state_snapshot(state) == before
    assert not (tmp_path / "j").exists()


def test_run_without_terminal_needs_yes(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a terminal and without --yes, `run` refuses with exit 2 and writes nothing."""
    state, info = org_file
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "run", info.runs["failed_run"], "--json")) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert state_snapshot(state) == before


def test_run_yes_json_report_schema(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --yes --json` exits 0 and prints the documented report; a second run says nothing_to_do."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    assert main(local_args(state, tmp_path, "run", run_id, "--yes", "--json")) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) >= {"runs", "api_calls", "exit_code", "mode"}
    run = document["runs"][0]
    assert set(run) >= {"id", "status", "objects", "failures", "anomalies", "journal", "cleanup_status", "verify"}
    assert run["status"] == "cleaned" and run["cleanup_status"] == "Completed"
    for name, counts in run["objects"].items():
        assert set(counts) == {"planned", "updated", "failed", "anomalies", "held"}
        assert counts["updated"] == counts["planned"]
        assert run["verify"][name] == {"expected": counts["anomalies"], "left": run["eligible_left"][name]}
    assert Path(run["journal"]).is_file()
    assert main(local_args(state, tmp_path, "run", run_id, "--yes", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["status"] == "nothing_to_do"


@pytest.mark.parametrize(
    ("run_id", "message"),
    [
        ("a1A5g000000", "has 11 characters"),
        ("a1A5g0000000001EA!", "contains '!'"),
        ("a1A5g0000000001ZZZ", "checksum"),
        ("0015g0000000001AAA", "not an invoice run id"),
        ("a1A5g00000000G7EAI", "does not exist"),
        ("a1A' OR Id != '", "is not a Salesforce id"),
    ],
)
def test_bad_run_ids_exit_2_with_one_line(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str], run_id: str, message: str
) -> None:
    """Malformed, mistyped, foreign or unknown run ids (SOQL injection included) exit 2 with one line."""
    state, _ = org_file
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "run", run_id, "--yes")) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert state_snapshot(state) == before


@pytest.mark.parametrize(
    ("role", "message"), [("running_run", "still running"), ("completed_run", "--include-completed")]
)
def test_runs_in_the_wrong_state_exit_2(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str], role: str, message: str
) -> None:
    """A running run and a cleanly completed one (without the flag) are refused with exit 2."""
    state, info = org_file
    assert main(local_args(state, tmp_path, "run", info.runs[role], "--yes")) == 2
    assert message in capsys.readouterr().err


def test_config_typo_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped key in --config is named in a one-line error, exit 2."""
    config = tmp_path / "c.toml"
    config.write_text("[org]\nconsumer_kye = 'x'\n")
    assert main(["plan", "a1A5g0000000001EAA", "--config", str(config)]) == 2
    assert "org.consumer_kye: unknown setting" in capsys.readouterr().err


def test_no_credentials_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no way to log in, the error says which options provide one."""
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "a1A5g0000000001EAA"]) == 2
    assert "no Salesforce credentials" in capsys.readouterr().err


def test_unknown_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse errors use the documented bad-input exit code."""
    with pytest.raises(SystemExit) as caught:
        main(["run", "x", "--bogus"])
    assert caught.value.code == 2


def test_demo_runs_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sfcleanup demo --json` cleans the demo runs and leaves posted records as they were."""
    assert main(["demo", "--json", "--journal-dir", str(tmp_path / "j")]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in document["report"]["runs"]] == ["cleaned", "cleaned"]
    assert document["before"]["blng__Invoice__c"]["Posted"] == document["after"]["blng__Invoice__c"]["Posted"]
    assert len(document["refused"]) == 2


def test_status_shows_what_is_left(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status --json` shows per-object states, eligibility and anomalies, before and after a clean-up."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    assert main(local_args(state, tmp_path, "status", run_id, "--json")) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["eligible"]["OrderItem"] > 0 and first["planned"] > 0 and first["lease"] is None
    assert main(local_args(state, tmp_path, "run", run_id, "--yes", "--json")) == 0
    capsys.readouterr()
    assert main(local_args(state, tmp_path, "status", run_id, "--json")) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["planned"] == 0 and second["cleanup_status"] == "Completed"
    assert second["eligible"]["OrderItem"] == len([a for a in second["anomalies"] if a["object"] == "OrderItem"])
    assert {a["reason"] for a in second["anomalies"]} == {a["reason"] for a in first["anomalies"]}


def test_sweep_through_the_cli(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sweep --dry-run` writes nothing; `sweep --yes --json` cleans the two failed runs; without a terminal
    and without --yes it refuses with exit 2."""
    state, info = org_file
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "sweep", "--dry-run", "--json")) == 0
    assert [r["status"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["planned", "planned"]
    assert state_snapshot(state) == before
    assert main(local_args(state, tmp_path, "sweep")) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert main(local_args(state, tmp_path, "sweep", "--yes", "--json")) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["mode"] == "sweep"
    assert {r["id"]: r["status"] for r in document["runs"]} == {
        info.runs["failed_run"]: "cleaned",
        info.runs["errors_run"]: "cleaned",
    }


def _set_run_status(state: Path, run_id: str, status: str) -> None:
    store = Store(state)
    try:
        store.update(schema_object("blng__InvoiceRun__c"), run_id, {"blng__Status__c": status})
    finally:
        store.close()


def test_finding_6_interactive_sweep_applies_exactly_the_runs_shown(
    org_file: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After "y", an interactive sweep cleans the runs it showed, and not a run that failed while the prompt
    waited."""
    state, info = org_file
    late = info.runs["completed_run"]
    monkeypatch.setattr(sys, "stdin", Terminal("y\n", lambda: _set_run_status(state, late, "Failed")))
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "sweep")) == 0
    printed = capsys.readouterr()
    assert "Apply" in printed.err and "[y/N]" in printed.err and "[y/N]" not in printed.out
    applied = printed.out.split("Apply")[-1] if "Apply" in printed.out else printed.out
    for run_id in (info.runs["failed_run"], info.runs["errors_run"]):
        assert f"Invoice run {run_id}" in applied and (tmp_path / "j" / f"{run_id}.jsonl").exists()
    assert f"Invoice run {late}" not in applied
    after = state_snapshot(state)
    untouched = [r for r in before["OrderItem"] if r["blng__InvoiceRun__c"] == late]
    assert untouched and all(r in after["OrderItem"] for r in untouched)
    assert not (tmp_path / "j" / f"{late}.jsonl").exists()


def test_ctrl_c_at_the_prompt_writes_nothing_and_says_so(
    org_file: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGINT while `run` waits for confirmation exits 2 with one line saying nothing was written, and
    nothing was."""
    state, info = org_file
    monkeypatch.setattr(sys, "stdin", Terminal("y\n", lambda: os.kill(os.getpid(), signal.SIGINT)))
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "run", info.runs["failed_run"])) == 2
    err = capsys.readouterr().err.strip()
    # Past the question, one line says so.
    said = err.split("[y/N] ")[-1]
    assert "nothing was written" in said and "\n" not in said
    assert state_snapshot(state) == before
    assert not (tmp_path / "j").exists()
