"""Shared fixtures: a seeded in-process local org, a worker client connected to it, and settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The project is imported inside the fixtures: with pytest-xdist the controlling process loads this file too but
# runs no test, and every worker waits for it before it starts.
if TYPE_CHECKING:
    from sfcleanup.config import Settings
    from sfcleanup.localorg.app import LocalOrg
    from sfcleanup.localorg.seed import ScenarioInfo


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """structlog's configuration and context are global: every test starts from the defaults."""
    import structlog

    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """The log masking registry is global and only grows: every client login adds its token. Each test starts
    with none registered, so a test passes or fails on the secrets it registers itself."""
    from sfcleanup import logs

    logs.forget_secrets()
    yield
    logs.forget_secrets()


@pytest.fixture(autouse=True)
def _no_terminal_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich and the CLI size their output from COLUMNS and LINES, which a terminal or a test runner's worker
    process may have set: every test starts without them, as when piped, and sets what it needs."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)


@pytest.fixture
def demo() -> tuple[LocalOrg, ScenarioInfo]:
    from tests.support import make_org

    return make_org("demo")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    from sfcleanup.config import load_settings

    return load_settings(None, journal_dir=tmp_path / "journal")


@pytest.fixture
def org_file(tmp_path: Path) -> tuple[Path, ScenarioInfo]:
    """The demo org kept in a state file, for commands run through the CLI."""
    from tests.support import seeded_state

    state = tmp_path / "org.sqlite3"
    return state, seeded_state(state)
