"""Which org, and whether it may be written: the org's identity in every output, the production guard, undo that
refuses another org's journal, and caps on how much one invocation may change (the local org through the CLI)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sfcleanup.cli import main
from sfcleanup.localorg.schema import sobject as schema_object
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.localorg.store import Store
from tests.support import Terminal, local_args, seeded_state, state_snapshot


def _org_file(tmp_path: Path, name: str, *, production: bool) -> tuple[Path, ScenarioInfo]:
    state = tmp_path / name
    return state, seeded_state(state, production=production)


@pytest.fixture
def production(tmp_path: Path) -> tuple[Path, ScenarioInfo]:
    """The demo org kept in a state file, playing a production org."""
    return _org_file(tmp_path, "production.sqlite3", production=True)


def _org_row(state: Path) -> dict[str, object]:
    return state_snapshot(state)["Organization"][0]


def test_plan_names_the_org_and_the_user(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan` prints "Org: Acme (00D..., Sandbox) as user ..." above the plan, and `--json` has the `org` object
    with the seeded Organization's id."""
    state, info = org_file
    organization = _org_row(state)
    assert main(local_args(state, tmp_path, "plan", info.runs["failed_run"])) == 0
    printed = capsys.readouterr().out
    line = f"Org: Acme ({organization['Id']}, Sandbox) as user integration@sfcleanup.local.uat"
    assert printed.startswith(line)
    assert main(local_args(state, tmp_path, "plan", info.runs["failed_run"], "--json")) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["org"]["id"] == organization["Id"]
    assert document["org"]["is_sandbox"] is True and document["org"]["username"].startswith("integration@")


def test_status_and_config_check_name_the_org_and_the_user(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status` starts with the same org line as `plan` and has the `org` object in --json; `config check`
    lists the org and user it reached as a check of its own."""
    state, info = org_file
    organization = _org_row(state)
    line = f"Org: Acme ({organization['Id']}, Sandbox) as user integration@sfcleanup.local.uat"
    assert main(local_args(state, tmp_path, "status", info.runs["failed_run"])) == 0
    assert capsys.readouterr().out.startswith(line)
    assert main(local_args(state, tmp_path, "status", info.runs["failed_run"], "--json")) == 0
    assert json.loads(capsys.readouterr().out)["org"]["id"] == organization["Id"]
    assert main(["config", "check", *local_args(state, tmp_path), "--json"]) == 0
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["org"]["ok"] and checks["org"]["detail"] == line.removeprefix("Org: ")


def test_every_journal_start_names_the_org(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The `start` entry of a clean-up's journal, and of an undo's, carry the org's id and name."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    org_id = _org_row(state)["Id"]
    assert main(local_args(state, tmp_path, "run", run_id, "--yes", "--json")) == 0
    journal = tmp_path / "j" / f"{run_id}.jsonl"
    assert main(local_args(state, tmp_path, "undo", str(journal), "--yes", "--json")) == 0
    capsys.readouterr()
    for path in (journal, tmp_path / "j" / f"{run_id}.undo.jsonl"):
        starts = [e for e in map(json.loads, path.read_text().splitlines()) if e["type"] == "start"]
        assert starts and all(s["org"]["id"] == org_id and s["org"]["name"] == "Acme" for s in starts)


def test_writing_to_production_needs_the_flag(
    production: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --yes` and `sweep --yes` against a production org exit 2 with one line and write nothing; read-only
    commands need no flag; with --production the run is cleaned."""
    state, info = production
    run_id = info.runs["failed_run"]
    before = state_snapshot(state)
    for command in (["run", run_id, "--yes"], ["sweep", "--yes"], ["undo", str(tmp_path / "none.jsonl"), "--yes"]):
        capsys.readouterr()
        code = main(local_args(state, tmp_path, *command))
        err = capsys.readouterr().err.strip()
        assert code == 2, command
        if command[0] != "undo":
            assert "production org: pass --production" in err and "\n" not in err
    assert state_snapshot(state) == before
    assert not (tmp_path / "j").exists()
    assert main(local_args(state, tmp_path, "plan", run_id, "--json")) == 0
    assert json.loads(capsys.readouterr().out)["org"]["is_sandbox"] is False
    assert main(local_args(state, tmp_path, "status", run_id)) == 0
    capsys.readouterr()
    assert main(local_args(state, tmp_path, "run", run_id, "--yes", "--production", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["status"] == "cleaned"


def test_allow_production_setting_lets_a_scheduled_job_write(
    production: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`allow_production = true` in the settings file stands in for --production (the scheduled job)."""
    state, _ = production
    config = tmp_path / "sfcleanup.toml"
    config.write_text("allow_production = true\n")
    code = main(local_args(state, tmp_path, "sweep", "--yes", "--json", "--config", str(config)))
    assert code == 0
    assert {r["status"] for r in json.loads(capsys.readouterr().out)["runs"]} == {"cleaned"}


def test_on_a_terminal_production_asks_for_the_orgs_name(
    production: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal, "y" does not write to production: the org's name must be typed. Typed, the run is
    applied, and a row that failed (a record deleted while the prompt waited) lands in a failures CSV whose
    name carries the org's id."""
    state, info = production
    run_id = info.runs["failed_run"]
    before = state_snapshot(state)
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    assert main(local_args(state, tmp_path, "run", run_id, "--production")) == 0
    assert "Writing to PRODUCTION org Acme" in capsys.readouterr().err
    assert state_snapshot(state) == before
    victim = next(r["Id"] for r in before["OrderItem"] if r["blng__InvoiceRun__c"] == run_id)

    def delete_one() -> None:
        store = Store(state)
        try:
            store.mark_deleted(schema_object("OrderItem"), str(victim))  # type: ignore[arg-type]
        finally:
            store.close()

    monkeypatch.setattr(sys, "stdin", Terminal("Acme\n", delete_one))
    assert main(local_args(state, tmp_path, "run", run_id, "--production")) == 1
    org_id = str(_org_row(state)["Id"])
    [csv_file] = (tmp_path / "j").glob("failures-*.csv")
    assert csv_file.name.startswith(f"failures-{org_id}-")
    assert victim in csv_file.read_text()


def test_undo_refuses_a_journal_of_another_org(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journal written in the sandbox is never applied to production, even with --production and the same
    record ids (a full-copy sandbox): exit 2, one line naming both orgs, nothing written."""
    sandbox, info = org_file
    target, _ = _org_file(tmp_path, "production.sqlite3", production=True)
    run_id = info.runs["failed_run"]
    assert main(local_args(sandbox, tmp_path, "run", run_id, "--yes", "--json")) == 0
    journal = tmp_path / "j" / f"{run_id}.jsonl"
    capsys.readouterr()
    before = state_snapshot(target)
    assert main(local_args(target, tmp_path, "undo", str(journal), "--yes", "--production")) == 2
    err = capsys.readouterr().err.strip()
    assert "was written in org Acme" in err and str(_org_row(target)["Id"]) in err and "\n" not in err
    assert state_snapshot(target) == before


def test_undo_of_a_journal_without_org_needs_a_flag(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journal from before orgs were recorded is refused (exit 2, saying what to do) unless
    --allow-unknown-org is given; then it is undone."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    assert main(local_args(state, tmp_path, "run", run_id, "--yes", "--json")) == 0
    journal = tmp_path / "j" / f"{run_id}.jsonl"
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    journal.write_text("".join(json.dumps({k: v for k, v in e.items() if k != "org"}) + "\n" for e in entries))
    capsys.readouterr()
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "undo", str(journal), "--yes")) == 2
    assert "--allow-unknown-org" in capsys.readouterr().err
    assert state_snapshot(state) == before
    assert main(local_args(state, tmp_path, "undo", str(journal), "--yes", "--allow-unknown-org", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["updated"] > 0


@pytest.mark.slow
def test_max_changes_refuses_before_writing(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run or sweep whose plan changes more records than --max-changes (or the max_changes setting) exits 2
    with one line and writes nothing; within the cap it goes ahead."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    before = state_snapshot(state)
    config = tmp_path / "capped.toml"
    config.write_text("max_changes = 5\n")
    for command in (
        ["run", run_id, "--yes", "--max-changes", "5"],
        ["sweep", "--yes", "--max-changes", "5"],
        ["run", run_id, "--yes", "--config", str(config)],
    ):
        capsys.readouterr()
        assert main(local_args(state, tmp_path, *command)) == 2, command
        err = capsys.readouterr().err.strip()
        assert "more than the cap of 5" in err and "\n" not in err
    assert state_snapshot(state) == before
    assert not (tmp_path / "j").exists()
    assert main(local_args(state, tmp_path, "run", run_id, "--yes", "--max-changes", "100000", "--json")) == 0


def test_sweep_has_a_default_cap(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --max-changes or max_changes, a sweep is capped by sweep_max_changes (default 250,000)."""
    state, _ = org_file
    config = tmp_path / "small.toml"
    config.write_text("sweep_max_changes = 3\n")
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "sweep", "--yes", "--config", str(config))) == 2
    assert "more than the cap of 3" in capsys.readouterr().err
    assert state_snapshot(state) == before


def test_local_production_refuses_a_sandbox_state_file(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--org local-production` on a state file seeded as a sandbox exits 2 instead of rehearsing production
    without its guard; a new file plays production."""
    state, info = org_file
    args = local_args(state, tmp_path, "plan", info.runs["failed_run"], "--json")
    args[args.index("local")] = "local-production"
    assert main(args) == 2
    assert "seeded as a sandbox" in capsys.readouterr().err
    fresh = tmp_path / "new.sqlite3"
    args[args.index(str(state))] = str(fresh)
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["org"]["is_sandbox"] is False
