"""An append-only JSONL record of every value the worker changes, for audit, resume and undo.

One file per run (`<journal_dir>/<run_id>.jsonl`); each invocation appends. Before a batch is sent its
records are written as `pending` with their before and after values; once the org answers, each gets its
outcome. Every batch is flushed and fsynced, so a crash loses at most the answer to the batch in flight, never
the knowledge that it was sent.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sfcleanup import __version__
from sfcleanup.plan import Change

JOURNAL_VERSION = 1


def journal_path(directory: Path, run_id: str) -> Path:
    return directory / f"{run_id}.jsonl"


class Journal:
    def __init__(self, directory: Path, run_id: str, *, clock: Any = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = journal_path(directory, run_id)
        self.run_id = run_id
        self.invocation = uuid.uuid4().hex
        self._clock = clock or (lambda: datetime.now(UTC))
        self._handle = self.path.open("a", encoding="utf-8")

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._handle.closed:
            self._sync()
            self._handle.close()

    def _entry(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "run_id": self.run_id,
            "invocation": self.invocation,
            "at": self._clock().isoformat(timespec="milliseconds"),
            **fields,
        }

    def _write(self, entries: Iterable[dict[str, Any]]) -> None:
        for entry in entries:
            self._handle.write(json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n")
        self._sync()

    def _sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def start(self, *, mode: str, options: dict[str, Any]) -> None:
        self._write([self._entry("start", version=JOURNAL_VERSION, tool=__version__, mode=mode, options=options)])

    def pending(self, phase: str, batch: str, changes: Iterable[Change]) -> None:
        self._write(
            self._entry("pending", phase=phase, batch=batch, object=c.sobject, id=c.id, before=c.before, after=c.after)
            for c in changes
        )

    def outcomes(self, phase: str, batch: str, results: Iterable[tuple[Change, str, str | None, str | None]]) -> None:
        """One entry per record: outcome is `updated`, `confirmed` (found applied after a lost answer),
        `failed` or `locked` (to be retried)."""
        self._write(
            self._entry(
                "outcome",
                phase=phase,
                batch=batch,
                object=c.sobject,
                id=c.id,
                before=c.before,
                after=c.after,
                outcome=outcome,
                code=code,
                message=message,
            )
            for c, outcome, code, message in results
        )

    def run_field(self, field: str, before: str | None, after: str | None, outcome: str) -> None:
        self._write([self._entry("run_field", field=field, before=before, after=after, outcome=outcome)])

    def note(self, event: str, **fields: Any) -> None:
        self._write([self._entry("note", event=event, **fields)])

    def end(self, *, status: str, exit_code: int, counts: dict[str, Any]) -> None:
        self._write([self._entry("end", status=status, exit_code=exit_code, counts=counts)])


def read_entries(path: Path) -> list[dict[str, Any]]:
    """All entries of a journal; a torn last line (a crash mid-write) is ignored, any other bad line raises."""
    lines = path.read_text(encoding="utf-8").splitlines()
    entries = []
    for number, line in enumerate(lines, start=1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ValueError(f"{path}: line {number} is not a journal entry") from None
    return entries
