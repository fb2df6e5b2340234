"""`sfcleanup report JOURNAL`: what a journal says happened, without the org: the table, the JSON report
(`--json`), the changes and failures CSVs (`--csv`), or a Markdown summary (`--summary FILE.md`)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from sfcleanup import jsonout
from sfcleanup.errors import ConfigError, ExitCode
from sfcleanup.journal import JournalError
from sfcleanup.journalreport import Told, changes_path, journal_report, read_journal, write_changes_csv
from sfcleanup.report import render, write_failures_csv
from sfcleanup.summary import markdown, write_summary


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("report", help="rebuild the report, CSVs or summary of a clean-up from its journal")
    parser.add_argument("journal", type=Path, metavar="JOURNAL", help="a journal, <journal_dir>/<run_id>.jsonl")
    parser.add_argument("--json", action="store_true", help="print one JSON document (the report's schema)")
    parser.add_argument(
        "--csv", action="store_true", help="write changes-<run>.csv and the failures CSV beside the journal"
    )
    parser.add_argument("--summary", type=Path, metavar="FILE.md", help="write a Markdown summary for a ticket")
    parser.add_argument("--instance-url", help="the org's URL, for Lightning links in the summary")
    parser.add_argument("--allow-truncated", action="store_true", help="use a journal whose last line a crash tore")
    parser.set_defaults(handler=report_journal)


def report_journal(args: argparse.Namespace, out: Console) -> int:
    try:
        with read_journal(args.journal, allow_truncated=args.allow_truncated) as told:
            return _report(args, out, told)
    except JournalError as exc:
        raise ConfigError(str(exc)) from None


def _report(args: argparse.Namespace, out: Console, told: Told) -> int:
    report = journal_report(args.journal, told)
    if args.csv:
        run = report.runs[0]
        failures = args.journal.parent / f"failures-{args.journal.name.removesuffix('.jsonl')}.csv"
        written = write_changes_csv(told.written, changes_path(args.journal))
        write_failures_csv(report, failures)
        if not args.json:
            out.print(f"Changes CSV: {written}")
            if report.failures_csv:
                out.print(f"Failures CSV: {report.failures_csv}")
        run.journal = str(args.journal)
    if args.summary is not None:
        artefacts = [str(changes_path(args.journal))] if args.csv else []
        text = markdown(report, instance_url=args.instance_url, when=datetime.now(UTC), artefacts=artefacts)
        write_summary(args.summary, text)
    if args.json:
        jsonout.write(report.to_json())
    elif not args.csv:
        render(report, out)
    # The journal was read and what was asked for written; the run's own exit code is in the report.
    return int(ExitCode.CLEAN)
