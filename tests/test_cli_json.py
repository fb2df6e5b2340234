"""`--json`: exactly one JSON object on stdout, for reports and for every kind of error, each valid against
the schema the package ships (`sfcleanup/schemas/report.schema.json`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import responses

from sfcleanup import billing, jsonout
from sfcleanup.cli import main
from sfcleanup.lease import Leases
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.salesforce.local import open_local_org
from tests.support import Terminal, local_args, make_client, state_snapshot

SCHEMA = json.loads(jsonout.schema_text())
RUN_ID = "a1A5g0000000001EAA"


def _only_json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    """stdout holds one JSON object and nothing else, valid against the schema."""
    out = capsys.readouterr().out
    document = json.loads(out)  # fails on anything printed before or after the object
    assert isinstance(document, dict)
    jsonschema.validate(document, SCHEMA)
    return document


def _error(capsys: pytest.CaptureFixture[str], exit_code: int, code: str) -> str:
    document = _only_json(capsys)
    assert document["status"] == "error" and document["exit_code"] == exit_code
    error = document["error"]
    assert isinstance(error, dict) and error["code"] == code
    return str(error["message"])


def test_the_schema_is_a_valid_json_schema_and_refuses_what_it_should() -> None:
    """The shipped schema is valid draft 2020-12, and it rejects an error without a message or a bad status."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"status": "error", "exit_code": 2, "error": {"code": "config_error"}}, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"status": "ok", "mode": "plan", "exit_code": 7}, SCHEMA)


def test_plan_run_and_sweep_reports_match_the_schema(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real outputs of plan, sweep --dry-run, run (with its readiness section) and sweep are valid reports."""
    state, info = org_file
    assert main(local_args(state, tmp_path, "plan", info.runs["failed_run"], "--json")) == 0
    assert _only_json(capsys)["mode"] == "plan"
    assert main(local_args(state, tmp_path, "sweep", "--dry-run", "--json")) == 0
    assert _only_json(capsys)["mode"] == "sweep-dry-run"
    assert main(local_args(state, tmp_path, "run", info.runs["failed_run"], "--yes", "--json")) == 0
    run = _only_json(capsys)
    assert run["status"] == "ok" and "readiness" in run
    assert main(local_args(state, tmp_path, "sweep", "--yes", "--json")) == 0
    assert _only_json(capsys)["mode"] == "sweep"


def test_an_org_object_is_allowed_in_a_report() -> None:
    """Reports name the org (id, name, sandbox or production, user); a field the schema does not know is refused."""
    report = {
        "status": "ok",
        "mode": "plan",
        "exit_code": 0,
        "org": {
            "id": "00D5g0000000001AAA",
            "name": "Acme",
            "is_sandbox": False,
            "type": "Enterprise Edition",
            "instance": "NA224",
            "user_id": "0055g0000000001AAA",
            "username": "a@b",
        },
        "api_calls": 1,
        "api_usage": {},
        "estimated_calls": 0,
        "budget": {},
        "failures_csv": None,
        "runs": [],
    }
    jsonschema.validate(report, SCHEMA)
    report["org"] = {"environment": "production", "id": "00D5g0000000001AAA", "name": "Acme", "is_sandbox": False}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, SCHEMA)


def test_usage_error_is_a_json_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown flag with --json: exit 2 and the usage error as the one JSON object."""
    with pytest.raises(SystemExit) as caught:
        main(["plan", RUN_ID, "--json", "--no-such-flag"])
    assert caught.value.code == 2
    assert "--no-such-flag" in _error(capsys, 2, "usage_error")


def test_bad_input_is_a_json_error(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped run id: the config error inside the JSON object, and the same line on stderr."""
    state, _ = org_file
    assert main(local_args(state, tmp_path, "plan", "not-an-id", "--json")) == 2
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    jsonschema.validate(document, SCHEMA)
    assert document["error"]["code"] == "config_error"
    assert document["error"]["message"] in captured.err


def test_json_without_yes_never_prompts(
    org_file: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal, `run --json` without --yes does not ask: it refuses as a JSON error, nothing written."""
    state, info = org_file
    before = state_snapshot(state)
    asked: list[bool] = []
    monkeypatch.setattr("sys.stdin", Terminal("y\n", lambda: asked.append(True)))
    assert main(local_args(state, tmp_path, "run", info.runs["failed_run"], "--json")) == 2
    assert "--yes" in _error(capsys, 2, "config_error")
    assert not asked and state_snapshot(state) == before


@responses.activate
def test_refused_token_is_a_json_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A token the org refuses: `auth_failed`, exit 2."""
    for method in (responses.GET, responses.POST):
        responses.add(method, re.compile("https://acme.my.salesforce.com/.*"), status=401, json=[{}])
    argv = ["plan", RUN_ID, "--json", "--instance-url", "https://acme.my.salesforce.com", "--access-token", "0!x"]
    assert main(argv) == 2
    assert "new token" in _error(capsys, 2, "auth_failed")


def test_unresolvable_url_is_a_json_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An instance URL that does not resolve: `misconfigured`, exit 2."""
    argv = ["plan", RUN_ID, "--json", "--instance-url", "https://acme.my.salesforce.invalid", "--access-token", "0!x"]
    assert main(argv) == 2
    assert "does not resolve" in _error(capsys, 2, "misconfigured")


def test_a_stop_is_a_json_error(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run another worker holds, refused before anything is written: `lease_held`, exit 3."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    org, _ = open_local_org(state)
    client = make_client(org)
    Leases(client, "worker-elsewhere", 900).acquire(run_id)
    client.update_record(billing.INVOICE_RUN, run_id, {billing.CLEANUP_STATUS: "Started"})
    org.store.close()
    assert main(local_args(state, tmp_path, "run", run_id, "--yes", "--json")) == 3
    assert "worker-elsewhere" in _error(capsys, 3, "lease_held")


def test_an_unexpected_error_is_a_json_error(
    org_file: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug: `unexpected_error`, exit 3, the message naming the traceback file."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("sfcleanup.worker.Worker.preview", broken)
    state, info = org_file
    assert main(local_args(state, tmp_path, "plan", info.runs["failed_run"], "--json")) == 3
    assert "traceback in" in _error(capsys, 3, "unexpected_error")


def test_a_fault_that_outlasts_the_retries_is_a_json_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing answers at the org's address: `transient_exhausted`, exit 3."""
    for name, value in (("MAX_ATTEMPTS", "2"), ("BACKOFF_INITIAL_S", "0"), ("BACKOFF_MAX_S", "0")):
        monkeypatch.setenv(f"SFCLEANUP_RETRY__{name}", value)
    argv = ["plan", RUN_ID, "--json", "--instance-url", "https://127.0.0.1:9", "--access-token", "0!x"]
    assert main([*argv, "--log-level", "error"]) == 3
    assert "run again later" in _error(capsys, 3, "transient_exhausted")


def test_a_signal_while_reading_is_a_json_error(
    org_file: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while runs are read (nothing written yet): `interrupted`, exit 3."""

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("sfcleanup.worker.Worker.prepare", interrupted)
    state, info = org_file
    assert main(local_args(state, tmp_path, "plan", info.runs["failed_run"], "--json")) == 3
    assert "SIGINT" in _error(capsys, 3, "interrupted")
