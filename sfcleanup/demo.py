"""`sfcleanup demo`: a rehearsal on the embedded local org, start to finish, in this process.

Seeds the demo scenario, shows the plan, applies it, verifies it, and prints the org's counts by state before
and after, read straight from the org's database.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sfcleanup import billing, logs
from sfcleanup.config import load_settings
from sfcleanup.errors import PreflightError
from sfcleanup.localorg.store import Store
from sfcleanup.readiness import summary
from sfcleanup.report import render, write_failures_csv
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.local import local_connector, open_local_org
from sfcleanup.salesforce.retry import RetryPolicy
from sfcleanup.worker import Worker

STATE_FIELDS = {rule.sobject: rule.status_field for rule in billing.RULES}


def state_counts(store: Store) -> dict[str, dict[str, int]]:
    return {sobject: store.group_counts(sobject, field) for sobject, field in STATE_FIELDS.items()}


def _counts_table(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> Table:
    table = Table(title="Local org, records by state (all runs)", title_justify="left")
    for column in ("object", "state", "before", "after"):
        table.add_column(column, justify="right" if column in ("before", "after") else "left")
    for sobject in STATE_FIELDS:
        for state in sorted(set(before[sobject]) | set(after[sobject])):
            old, new = before[sobject].get(state, 0), after[sobject].get(state, 0)
            table.add_row(sobject, state, str(old), str(new) + ("" if old == new else " *"))
    return table


def run_demo(args: argparse.Namespace, out: Console) -> int:
    overrides: dict[str, Any] = {"log_level": args.log_level or "warning"}
    if args.journal_dir:
        overrides["journal_dir"] = args.journal_dir
    if args.log_format:
        overrides["log_format"] = args.log_format
    settings = load_settings(None, **overrides)
    # Unset, the level is warnings on a terminal (logs.configure): the demo's tables are what a person reads.
    logs.configure(settings.log_level if "log_level" in settings.model_fields_set else None, settings.log_format)
    org, info = open_local_org(None, scenario="demo")
    if info is None:  # a fresh in-memory org is always seeded
        raise PreflightError("the demo scenario could not be seeded")
    client = SalesforceClient(
        local_connector(org), api_version=settings.org.api_version, retry=RetryPolicy(), timeout_s=60
    )
    worker = Worker(client, settings)
    before = state_counts(org.store)
    refused = []
    for role in ("running_run", "completed_run"):
        try:
            worker.prepare([info.runs[role]])
        except PreflightError as exc:
            refused.append(f"{role}: {exc}")
    prepared = worker.prepare([info.runs["failed_run"], info.runs["errors_run"]])
    preview = worker.preview(prepared)
    report = worker.apply(prepared)
    write_failures_csv(report, settings.journal_dir / "demo-failures.csv")
    after = state_counts(org.store)
    journals = {run.id: Path(run.journal) for run in report.runs if run.journal}
    ready = summary.check_runs(client, journals, today=datetime.now(UTC).date())
    if args.json:
        document = {
            "plan": preview.to_json(),
            "report": report.to_json(),
            "before": before,
            "after": after,
            "refused": refused,
            "readiness": {run_id: summary.to_json(result) for run_id, result in ready.items()},
        }
        print(json.dumps(document, indent=2))
        return int(report.exit_code)
    out.rule("Plan (nothing written yet)")
    render(preview, out)
    out.rule("Refused, as they must be")
    for line in refused:
        out.print("  " + line)
    out.rule("Clean-up applied and verified")
    render(report, out)
    out.print(_counts_table(before, after))
    out.print("* changed by the clean-up. Posted invoices, their lines and what they billed are unchanged.")
    out.rule("After the clean-up: will the next invoice run bill it?")
    summary.render(ready, out)
    return int(report.exit_code)
