"""What a plan or a clean-up did, per run and object: a table for people, JSON for machines, a failures CSV
for admins used to Data Loader's error files. The JSON schema is documented in the README."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sfcleanup.drift import Drifted
from sfcleanup.errors import ExitCode
from sfcleanup.orgidentity import OrgIdentity
from sfcleanup.outcomes import Failure, Held
from sfcleanup.plan import Anomaly


class RunResult(StrEnum):
    PLANNED = "planned"  # `plan`: nothing written
    NOTHING_TO_DO = "nothing_to_do"  # nothing eligible: nothing written
    # Being cleaned: what a run is until its outcome is proven, so a crash can never read as a success.
    RUNNING = "running"
    CLEANED = "cleaned"
    CLEANED_WITH_FAILURES = "cleaned_with_failures"
    # Every write answered, but verification found eligible records the clean-up did not account for.
    VERIFY_MISMATCH = "verify_mismatch"
    STOPPED = "stopped"  # stopped early on purpose (limit, lease, a fault that outlasted the retries); re-run
    INTERRUPTED = "interrupted"  # a signal or an unexpected error stopped it at a safe point; re-run
    NOT_STARTED = "not_started"  # skipped, or an earlier stop ended the invocation


@dataclass
class ObjectCounts:
    planned: int = 0
    updated: int = 0
    failed: int = 0
    # Not written: something it depends on (a line or invoice that billed it) did not reach its target.
    held: int = 0
    anomalies: int = 0


@dataclass(frozen=True)
class VerifyCount:
    """After the writes: records of one object still eligible (`left`), and how many the clean-up expected to
    leave (`expected`: anomalies, failed rows and held records)."""

    expected: int
    left: int

    @property
    def unaccounted(self) -> int:
        return max(0, self.left - self.expected)


@dataclass
class RunOutcome:
    id: str
    name: str | None
    run_status: str | None
    status: RunResult
    objects: dict[str, ObjectCounts]
    transitions: dict[str, dict[str, int]]
    failures: list[Failure] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    cleanup_status: str | None = None
    eligible_left: dict[str, int] = field(default_factory=dict)
    verify: dict[str, VerifyCount] = field(default_factory=dict)
    error_logs: int = 0
    journal: str | None = None
    # Data Loader's success file, per run: every record and field written, before, after and outcome.
    changes_csv: str | None = None
    message: str | None = None
    exit_code: ExitCode = ExitCode.CLEAN
    # The kind of stop (the error's class name): a busy run, a spent API limit, a signal...
    stopped_by: str | None = None
    # The stop concerns every run (daily limit, reserve, authentication, a signal): the rest are not started.
    ends_invocation: bool = False
    # `run --plan`: planned records not written because they changed since the plan, and, per object, records
    # eligible now that the plan did not hold (left for the next plan).
    drifted: list[Drifted] = field(default_factory=list)
    new_since_plan: dict[str, int] = field(default_factory=dict)

    @property
    def unaccounted(self) -> dict[str, int]:
        """Per object, eligible records verification found beyond anomalies, failures and held records."""
        return {sobject: v.unaccounted for sobject, v in self.verify.items() if v.unaccounted}


@dataclass
class Report:
    mode: str
    runs: list[RunOutcome]
    api_calls: int = 0
    api_usage: dict[str, int | None] = field(default_factory=dict)
    estimated_calls: int = 0
    budget: dict[str, int] = field(default_factory=dict)
    failures_csv: str | None = None
    # Which org, as whom: shown above every plan and in the JSON report.
    org: OrgIdentity | None = None

    @property
    def exit_code(self) -> ExitCode:
        return max((r.exit_code for r in self.runs), default=ExitCode.CLEAN)

    def to_json(self) -> dict[str, object]:
        return {
            # The command ran to its end (its exit_code says how it went); errors are jsonout.error_document.
            "status": "ok",
            "mode": self.mode,
            "org": self.org.as_json() if self.org else None,
            "exit_code": int(self.exit_code),
            "api_calls": self.api_calls,
            "api_usage": self.api_usage,
            "estimated_calls": self.estimated_calls,
            "budget": self.budget,
            "failures_csv": self.failures_csv,
            "runs": [_run_json(r) for r in self.runs],
        }


def _run_json(run: RunOutcome) -> dict[str, object]:
    return {
        "id": run.id,
        "name": run.name,
        "run_status": run.run_status,
        "status": run.status.value,
        "cleanup_status": run.cleanup_status,
        "objects": {name: asdict(counts) for name, counts in run.objects.items()},
        "transitions": run.transitions,
        "failures": [{"id": f.id, "object": f.sobject, "code": f.code, "message": f.message} for f in run.failures],
        "held": [{"id": h.id, "object": h.sobject, "waits_for": h.waits_for, "reason": h.reason} for h in run.held],
        "anomalies": [
            {"id": a.id, "object": a.sobject, "reason": a.reason.value, "detail": a.detail} for a in run.anomalies
        ],
        "eligible_left": run.eligible_left,
        "verify": {name: asdict(count) for name, count in run.verify.items()},
        "drifted": [{"id": d.id, "object": d.sobject, "reason": d.reason} for d in run.drifted],
        "new_since_plan": run.new_since_plan,
        "error_logs": run.error_logs,
        "journal": run.journal,
        "changes_csv": run.changes_csv,
        "message": run.message,
        "exit_code": int(run.exit_code),
    }


def write_failures_csv(report: Report, path: Path) -> Path | None:
    """Id, object, error code, message: one row per record that finally failed or was held back (code HELD);
    no file when there are none."""
    rows = [(r.id, f) for r in report.runs for f in r.failures]
    rows += [(r.id, Failure(h.id, h.sobject, "HELD", h.reason)) for r in report.runs for h in r.held]
    rows += [(r.id, Failure(d.id, d.sobject, "DRIFTED", d.reason)) for r in report.runs for d in r.drifted]
    if not rows:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Id", "Object", "ErrorCode", "Message", "InvoiceRunId"])
        for run_id, failure in rows:
            writer.writerow([failure.id, failure.sobject, failure.code, failure.message, run_id])
    report.failures_csv = str(path)
    return path


def render(report: Report, console: Console) -> None:
    planning = report.mode == "plan"
    counts = ("planned", "anomalies") if planning else ("planned", "updated", "failed", "held", "anomalies")
    if report.org is not None:
        console.print(report.org.line())
    for run in report.runs:
        title = f"Invoice run {run.id}" + (f" ({run.name})" if run.name else "") + f": {run.status.value}"
        table = Table(title=title, title_justify="left")
        # API names are what gets pasted into a ticket and searched for: never cut or wrapped.
        table.add_column("object", no_wrap=True, min_width=max((len(name) for name in run.objects), default=6))
        table.add_column("transition", overflow="fold")
        for column in counts:
            table.add_column(column, justify="right")
        for sobject, numbers in run.objects.items():
            label = "\n".join(f"{k}: {v}" for k, v in (run.transitions.get(sobject) or {}).items()) or "-"
            table.add_row(sobject, label, *(str(getattr(numbers, c)) for c in counts))
        console.print(table)
        details = [f"run status: {run.run_status or '-'}", f"CleanUp Status: {run.cleanup_status or '-'}"]
        if run.journal:
            details.append(f"journal: {run.journal}")
        if run.changes_csv:
            details.append(f"changes: {run.changes_csv}")
        console.print("  " + "; ".join(details))
        for anomaly in run.anomalies[:10]:
            console.print(f"  anomaly {anomaly.sobject} {anomaly.id}: {anomaly.detail}")
        if len(run.anomalies) > 10:
            console.print(f"  ... and {len(run.anomalies) - 10} more anomalies (see --json)")
        for failure in run.failures[:10]:
            console.print(f"  failed {failure.sobject} {failure.id}: {failure.code}: {failure.message}")
        for sobject, count in run.verify.items():
            if count.unaccounted:
                console.print(
                    f"  verify {sobject}: {count.left} still eligible, {count.expected} expected "
                    "(anomalies, failures, held)"
                )
        for drifted in run.drifted[:10]:
            console.print(f"  {drifted.sobject} {drifted.id} {drifted.reason}")
        for held in run.held[:10]:
            console.print(f"  {held.sobject} {held.id} {held.reason}")
        for sobject, new in run.new_since_plan.items():
            console.print(f"  {sobject}: {new} record(s) eligible since the plan, left for the next plan")
        if len(run.held) > 10:
            console.print(f"  ... and {len(run.held) - 10} more held back (see --json or the failures CSV)")
        if run.message:
            console.print(f"  {run.message}")
    if report.mode == "journal":  # read from a journal: no calls to report
        if report.failures_csv:
            console.print(f"Failures CSV: {report.failures_csv}")
        return
    summary = f"API calls so far: {report.api_calls}"
    if report.estimated_calls:
        summary += f"; estimated for the clean-up: {report.estimated_calls}"
    if report.api_usage.get("max"):
        summary += f"; org usage today {report.api_usage.get('used')}/{report.api_usage.get('max')}"
    console.print(summary)
    if report.budget.get("max"):
        budget = report.budget
        available = budget["remaining"] - budget["reserve"]
        console.print(
            f"API budget: {budget['remaining']} of {budget['max']} daily calls left, {budget['reserve']} kept in "
            f"reserve, {available} available for the estimated {budget['estimate']}"
        )
    if report.failures_csv:
        console.print(f"Failures CSV: {report.failures_csv}")
