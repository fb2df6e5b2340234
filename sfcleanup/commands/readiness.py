"""`sfcleanup readiness RUN_ID...`, and the readiness section that ends `run` and `sweep`: will the next invoice
run bill what the clean-up reset? Read-only: describes (one call), the run's sources, the schedulers, and the
draft lines naming the sources."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import structlog
from rich.console import Console

from sfcleanup import preflight
from sfcleanup.commands.common import configure_logs, connect, connection_options, emit, settings_from
from sfcleanup.config import Settings
from sfcleanup.errors import SfCleanupError
from sfcleanup.readiness import summary
from sfcleanup.readiness.engine import Readiness
from sfcleanup.report import Report, RunResult
from sfcleanup.salesforce.client import SalesforceClient

log = structlog.get_logger("sfcleanup.readiness")
CHECKED = frozenset({RunResult.CLEANED, RunResult.CLEANED_WITH_FAILURES, RunResult.NOTHING_TO_DO})


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("readiness", help="will the next invoice run bill what was reset? writes nothing")
    parser.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    connection_options(parser)
    parser.set_defaults(handler=run_readiness)


def readiness_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-readiness", action="store_true", help="skip the read-only next-run readiness check at the end"
    )


def readiness_after(args: argparse.Namespace) -> bool:
    """Whether the readiness section follows the clean-up (`plan` has no flag: it costs a run with it)."""
    return not getattr(args, "no_readiness", False)


def _csv_path(settings: Settings) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return settings.journal_dir / f"readiness-{stamp}.csv"


def check(client: SalesforceClient, settings: Settings, run_ids: list[str]) -> tuple[dict[str, Readiness], Path | None]:
    journals = {run_id: settings.journal_dir / f"{run_id}.jsonl" for run_id in run_ids}
    results = summary.check_runs(client, journals, today=datetime.now(UTC).date())
    return results, summary.write_csv(_csv_path(settings), results, client.instance_url)


def run_readiness(args: argparse.Namespace, out: Console) -> int:
    settings = settings_from(args)
    configure_logs(settings)
    client = connect(settings)
    org = preflight.check_org(client)
    run_ids = preflight.parse_run_ids(args.run_ids, org.run_key_prefix)
    results, csv_path = check(client, settings, run_ids)
    if args.json:
        document = {"runs": {run_id: summary.to_json(r) for run_id, r in results.items()}, "csv": str(csv_path)}
        print(json.dumps(document, indent=2))
    else:
        summary.render(results, out, csv_path)
    return 0


def after_clean(
    client: SalesforceClient, settings: Settings, report: Report, args: argparse.Namespace, out: Console
) -> dict[str, object] | None:
    """The readiness section of `run` and `sweep`, for the runs they cleaned; None when skipped or impossible.

    It is read-only and comes after the clean-up's outcome is recorded: a failure here is logged and reported,
    never a change to the exit code the clean-up earned."""
    run_ids = [run.id for run in report.runs if run.status in CHECKED]
    if not readiness_after(args) or not run_ids:
        return None
    try:
        results, csv_path = check(client, settings, run_ids)
    except SfCleanupError as exc:
        log.warning("readiness.failed", reason=str(exc))
        if not args.json:
            out.print(f"Readiness check skipped: {exc}")
        return {"error": str(exc)}
    if not args.json:
        summary.render(results, out, csv_path)
    return {
        "runs": {run_id: summary.to_json(result) for run_id, result in results.items()},
        "csv": str(csv_path) if csv_path else None,
    }


def emit_with_readiness(
    client: SalesforceClient, settings: Settings, report: Report, args: argparse.Namespace, out: Console
) -> int:
    """The clean-up's report, then its readiness section (tables on a terminal; one JSON document with --json)."""
    if not args.json:
        emit(report, args, out)
    readiness = after_clean(client, settings, report, args, out)
    if args.json:
        emit(report, args, out, readiness=readiness)
    return int(report.exit_code)
