"""What a person sees: a readable rate, bars that log lines do not break, warnings only on a terminal, tables
that keep API names whole when piped, and a Markdown summary for a ticket."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from rich.console import Console

from sfcleanup import logs
from sfcleanup.cli import main
from sfcleanup.config import Settings
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.terminal import ProgressBoard, rate_text
from sfcleanup.worker import Worker
from tests.support import Terminal, local_args, make_client
from tests.test_exit_codes import _post_an_invoice_of


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("speed", "shown"),
    [(None, "- rec/s"), (16660.059981041162, "16,660 rec/s"), (2.345, "2.3 rec/s"), (0.0, "0.0 rec/s")],
)
def test_the_rate_reads_like_a_number(speed: float | None, shown: str) -> None:
    """No `None rec/s`, no sixteen digits."""
    assert rate_text(speed) == shown


def test_bars_show_records_done_and_logs_print_above_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """While bars are drawn on a terminal, a log line goes through rich's stderr proxy and prints on a line of
    its own, never glued to a bar; a bar shows records done of the total."""
    terminal = _Tty()
    monkeypatch.setattr(sys, "stderr", terminal)
    console = Console(file=terminal, force_terminal=True, width=120)
    logs.configure("warning", "console")
    board = ProgressBoard(console)
    advance = board.phase("a1A OrderItem", 10)
    advance(4)
    structlog.get_logger("sfcleanup").warning("salesforce.retry", call="query")
    advance(6)
    board.stop()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.getvalue())
    lines = [line for line in re.split(r"[\r\n]", text) if "salesforce.retry" in line]
    assert lines and all("rec/s" not in line and "OrderItem" not in line for line in lines)
    assert "/10" in text and "None" not in text


def test_logs_on_a_terminal_default_to_warnings() -> None:
    """With no level set, a terminal shows warnings only; a job's log (not a terminal) keeps info."""
    for stream, info_shown in ((_Tty(), False), (io.StringIO(), True)):
        logs.configure(None, "json", stream)
        log = structlog.get_logger("sfcleanup")
        log.info("plan.ready")
        log.warning("run.stopped")
        assert ("plan.ready" in stream.getvalue()) is info_shown
        assert "run.stopped" in stream.getvalue()


def test_piped_tables_keep_api_names_and_transitions_whole(
    org_file: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Piped, a table row holds each API name and transition whole; with a narrow COLUMNS, names still are."""
    state, info = org_file
    monkeypatch.delenv("COLUMNS", raising=False)  # piped with no width asked for: set by some test runners
    assert main(local_args(state, tmp_path, "plan", info.runs["failed_run"])) == 0
    out = capsys.readouterr().out
    assert re.search(r"│ blng__UsageSummary__c │ Error -> Pending Billing: 50\s+│", out)
    assert re.search(r"│\s+│ In Progress -> Pending Billing: 100 │", out)
    monkeypatch.setenv("COLUMNS", "60")
    assert main(local_args(state, tmp_path, "plan", info.runs["failed_run"])) == 0
    narrow = capsys.readouterr().out
    assert all(name in narrow for name in ("blng__UsageSummary__c", "blng__InvoiceLine__c", "OrderItem"))
    assert "…" not in narrow.split("run status")[0]


def test_the_prompt_shows_its_choices_on_stderr(
    org_file: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The question shows `[y/N]`, on stderr, and anything but yes changes nothing."""
    state, info = org_file
    monkeypatch.setattr("sys.stdin", Terminal("n\n", lambda: None))
    assert main(local_args(state, tmp_path, "run", info.runs["failed_run"])) == 0
    printed = capsys.readouterr()
    assert re.search(r"Apply [\d,]+ changes to 1 run\(s\)\? \[y/N\]", printed.err)
    assert "[y/N]" not in printed.out and "Nothing was changed." in printed.out


def test_summary_of_a_plan_and_of_a_run_with_failures(
    org_file: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--summary writes Markdown: the run, before and after per object and state, and the anomalies and the
    failed rows with a Lightning link each."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    plan_md, run_md = tmp_path / "plan.md", tmp_path / "out" / "run.md"
    assert main(local_args(state, tmp_path, "plan", run_id, "--summary", str(plan_md))) == 0
    planned = plan_md.read_text()
    assert f"## Invoice run {run_id}" in planned and "planned" in planned
    assert "| `blng__InvoiceLine__c` | Draft: 400, Error: 200 | Cancelled: 600 | 600 | 2 |" in planned
    assert re.search(r"\[(\w+)\]\(https://\S+/lightning/r/OrderItem/\1/view\) `OrderItem`", planned)
    monkeypatch.setattr("sys.stdin", Terminal("y\n", lambda: _post_an_invoice_of(state, run_id)))
    assert main(local_args(state, tmp_path, "run", run_id, "--summary", str(run_md))) == 1
    done = run_md.read_text()
    assert "**Exit code:** 1 (rows failed)" in done and "cleaned_with_failures" in done
    failed = done.split("**Failed rows")[1]
    assert re.search(r"\[(\w+)\]\(https://\S+/lightning/r/blng__InvoiceLine__c/\1/view\)", failed)
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in failed
    assert "failures-" in done  # the failures CSV is named


def test_a_summary_that_cannot_be_written_is_refused_before_the_work(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--summary in a folder that cannot be made: exit 2 before anything is read or written."""
    state, info = org_file
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = local_args(state, tmp_path, "run", info.runs["failed_run"], "--yes", "--summary", str(blocker / "s.md"))
    assert main(argv) == 2
    assert "--summary" in capsys.readouterr().err
    assert not (tmp_path / "j").exists()


def test_reading_and_planning_shows_records_read(demo: tuple[LocalOrg, ScenarioInfo], settings: Settings) -> None:
    """While a run is read and planned, a bar of unknown total counts every record read, page by page."""
    org, info = demo
    run_id = info.runs["failed_run"]
    seen: dict[str, tuple[int | None, list[int]]] = {}

    def factory(label: str, total: int | None) -> Callable[[int], None]:
        seen[label] = (total, [])
        return seen[label][1].append

    Worker(make_client(org), settings, reading_progress=factory).prepare([run_id])
    total, pages = seen[f"reading {run_id}"]
    linked = sum(
        1
        for name in ("blng__Invoice__c", "blng__InvoiceLine__c", "blng__UsageSummary__c", "OrderItem")
        for record in org.store.snapshot()[name]
        if run_id in record.values()
    )
    assert total is None and sum(pages) >= linked > 0
