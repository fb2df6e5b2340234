"""`config init` writes the documented example; `config check` passes on a good setup and lists what a broken
one lacks, with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfcleanup.cli import main

EXAMPLE = Path(__file__).parent.parent / "config" / "sfcleanup.example.toml"


def test_init_writes_the_example_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The written file is config/sfcleanup.example.toml; a second init without --force exits 2."""
    target = tmp_path / "sfcleanup.toml"
    assert main(["config", "init", str(target)]) == 0
    assert target.read_text() == EXAMPLE.read_text()
    assert main(["config", "init", str(target)]) == 2
    assert "--force" in capsys.readouterr().err


def test_check_passes_on_the_local_org(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Against a ready org every check is ok and the exit code is 0."""
    assert main(["config", "check", "--org", "local", "--json", "--journal-dir", str(tmp_path)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] and {c["check"] for c in document["checks"]} >= {"login", "API headroom", "error logs"}


def test_check_reports_bad_login(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Credentials the org refuses make the login check fail with the org's reason, exit 2."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[org]\nlogin_url = "https://127.0.0.1:9"\nconsumer_key = "k"\nconsumer_secret = "s"\ntimeout_s = 2\n'
    )
    assert main(["config", "check", "--config", str(config), "--json"]) == 2
    document = json.loads(capsys.readouterr().out)
    login = next(c for c in document["checks"] if c["check"] == "login")
    assert not login["ok"] and "cannot reach" in login["problems"][0]


def test_check_rejects_a_mistyped_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken configuration file is named in one line, exit 2."""
    config = tmp_path / "c.toml"
    config.write_text("[retry]\nmax_atempts = 3\n")
    assert main(["config", "check", "--config", str(config)]) == 2
    assert "retry.max_atempts: unknown setting" in capsys.readouterr().err
