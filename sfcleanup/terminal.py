"""What a person at a terminal sees besides the report: the confirmation prompt and the progress bars.

Both go to stderr, so stdout carries only the report (tables, or the one JSON object of `--json`) and can be
piped or redirected whatever happens on the terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from sfcleanup.errors import Cancelled, ConfigError


def stderr_console() -> Console:
    # Org data (messages, names) must print as it is: no rich markup or highlighting of it.
    return Console(stderr=True, markup=False, highlight=False)


def rate_text(speed: float | None) -> str:
    """Records per second as a person reads it: whole numbers with thousands separators, `-` until known."""
    if speed is None:
        return "- rec/s"
    if speed < 10:
        return f"{speed:.1f} rec/s"
    return f"{speed:,.0f} rec/s"


class RateColumn(ProgressColumn):
    """rich's own `task.speed` is None until it has two samples and a float with every digit after that."""

    def render(self, task: Task) -> Text:
        return Text(rate_text(task.finished_speed or task.speed), style="progress.data.speed")


class ProgressBoard:
    """One live display on stderr for the whole invocation: a bar per phase (records done of the total, rate,
    time left), removed when the phase ends. Log lines written to stderr meanwhile print above the bars
    (rich redirects stderr while the display is live, and the log writes to the current `sys.stderr`)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._live: Progress | None = None
        self._spinners: set[TaskID] = set()

    def _progress(self) -> Progress:
        """The live display, started at its first bar; a new one after `stop` (a prompt came in between)."""
        if self._live is None:
            self._live = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                RateColumn(),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._live.start()
        return self._live

    def phase(self, label: str, total: int | None) -> Callable[[int], None]:
        """A bar for `total` records; the callback advances it by the records just answered or read.

        A total of None (reading, before the count is known) shows records done and the rate, no time left; it
        stays until the next bar starts, which is when the reading it counts has ended."""
        progress = self._progress()
        for open_ended in [t.id for t in progress.tasks if t.total is None and t.id not in self._spinners]:
            progress.remove_task(open_ended)
        task = progress.add_task(label, total=total)

        def advance(done: int) -> None:
            if not any(t.id == task for t in progress.tasks):
                return  # finished and removed, or the display was stopped for a prompt
            progress.advance(task, done)
            if _finished(progress, task):
                progress.remove_task(task)

        return advance

    @contextmanager
    def working(self, label: str) -> Iterator[None]:
        """A spinner with the time elapsed, for work whose size is not known ahead (reading and planning)."""
        progress = self._progress()
        task = progress.add_task(label, total=None)
        self._spinners.add(task)
        try:
            yield
        finally:
            self._spinners.discard(task)
            if any(t.id == task for t in progress.tasks):
                progress.remove_task(task)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _finished(progress: Progress, task: TaskID) -> bool:
    return any(t.id == task and t.finished for t in progress.tasks)


@contextmanager
def progress_board(console: Console, *, enabled: bool = True) -> Iterator[ProgressBoard | None]:
    """A board on a terminal, None elsewhere (a job's log wants no bars); stopped however the block ends."""
    board = ProgressBoard(console) if enabled and console.is_terminal else None
    try:
        yield board
    finally:
        if board is not None:
            board.stop()


def require_terminal() -> None:
    """Writing needs a yes: from a person at a terminal, or --yes from a job."""
    if not sys.stdin.isatty():
        raise ConfigError(
            "refusing to write without a terminal to confirm on: review `sfcleanup plan`, then pass --yes"
        )


def refuse_prompt_with_json() -> None:
    """`--json` is for programs: it never waits for an answer, so writing with it needs --yes."""
    raise ConfigError("--json never asks for confirmation: review `sfcleanup plan --json`, then pass --yes")


def ask(question: str, console: Console) -> bool:
    """A yes/no question on stderr; only `y` or `yes` is a yes."""
    try:
        # Without markup=False rich takes "[y/N]" for a style tag and drops it from the prompt.
        answer = console.input(f"{question} [y/N] ", markup=False)
    except (KeyboardInterrupt, EOFError):
        raise Cancelled("cancelled at the confirmation prompt: nothing was written") from None
    return answer.strip().lower() in ("y", "yes")
