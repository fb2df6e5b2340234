"""Logs: JSON lines with bound context when not on a terminal, and secrets masked wherever they appear."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import structlog

from sfcleanup import logs
from sfcleanup.cli import main
from sfcleanup.salesforce.local import open_local_org
from tests.support import seeded_state


def test_secret_values_and_secret_keys_are_masked() -> None:
    """A registered secret is masked inside any string; fields named like credentials are masked whatever they hold."""
    stream = io.StringIO()
    logs.configure("debug", "json", stream)
    logs.register_secret("00Dxx!supersecrettoken")
    structlog.get_logger().info(
        "x", url="https://h/?t=00Dxx!supersecrettoken", access_token="abc", nested={"client_secret": "zzz"}
    )
    entry = json.loads(stream.getvalue())
    assert "supersecret" not in stream.getvalue()
    assert entry["access_token"] == logs.MASK
    assert entry["nested"] == {"client_secret": logs.MASK}
    assert entry["url"] == "https://h/?t=" + logs.MASK


def test_forgotten_secrets_are_no_longer_masked() -> None:
    """`forget_secrets` (what the autouse fixture calls around every test) empties the registry."""
    logs.register_secret("00Dxx!anothertoken")
    assert logs.scrub_text("t=00Dxx!anothertoken") == "t=" + logs.MASK
    logs.forget_secrets()
    assert logs.scrub_text("t=00Dxx!anothertoken") == "t=00Dxx!anothertoken"


def test_run_logs_are_json_lines_with_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A clean-up logged as JSON carries run, phase, object and batch on its write events, and no token."""
    state = tmp_path / "org.sqlite3"
    info = seeded_state(state)
    org, _ = open_local_org(state)
    token = org.access_token
    org.store.close()
    code = main(
        [
            "run",
            info.runs["errors_run"],
            "--yes",
            "--json",
            "--org",
            "local",
            "--state",
            str(state),
            "--journal-dir",
            str(tmp_path / "j"),
            "--log-format",
            "json",
            "--log-level",
            "debug",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    entries = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    batches = [e for e in entries if e["event"] == "write.batch"]
    assert batches and all({"run", "phase", "object", "batch"} <= set(e) for e in batches)
    assert token not in captured.err + captured.out
