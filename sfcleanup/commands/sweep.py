"""`sfcleanup sweep`: the scheduled job. Finds every run that needs clean-up and cleans each in turn."""

from __future__ import annotations

import argparse

from rich.console import Console

from sfcleanup import caps
from sfcleanup.commands.common import (
    check_journal_dir,
    check_summary,
    configure_logs,
    connect,
    connection_options,
    emit,
    route_option,
    settings_from,
    summarize,
    write_artefacts,
)
from sfcleanup.commands.guard import confirm_write, org_of, require_write_allowed, write_options
from sfcleanup.commands.readiness import emit_with_readiness, readiness_after, readiness_option
from sfcleanup.errors import ExitCode
from sfcleanup.interrupts import PROCESS
from sfcleanup.orgidentity import OrgIdentity
from sfcleanup.report import Report, render
from sfcleanup.sweep import SweepOptions, SweepPreview, apply_preview, preview, sweep
from sfcleanup.terminal import ProgressBoard, progress_board, refuse_prompt_with_json, require_terminal, stderr_console
from sfcleanup.worker import Worker


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("sweep", help="find and clean every failed run whose clean-up is not Completed")
    parser.add_argument("--since", type=int, metavar="DAYS", help="only runs created in the last DAYS days")
    parser.add_argument("--max-runs", type=int, default=50, metavar="N", help="at most N runs, oldest first")
    parser.add_argument("--dry-run", action="store_true", help="plan every run found; write nothing")
    parser.add_argument("--yes", action="store_true", help="apply without asking (required without a terminal)")
    route_option(parser)
    write_options(parser)
    readiness_option(parser)
    connection_options(parser)
    parser.set_defaults(handler=run_sweep)


def run_sweep(args: argparse.Namespace, out: Console) -> int:
    options = SweepOptions(since_days=args.since, max_runs=args.max_runs, dry_run=args.dry_run)
    settings = settings_from(args)
    configure_logs(settings)
    check_summary(args)
    if not args.dry_run and not args.yes:
        if args.json:
            refuse_prompt_with_json()
        require_terminal()
    if not args.dry_run:
        check_journal_dir(settings)
    with progress_board(stderr_console()) as board:
        client = connect(settings)
        org = org_of(client, describe=True)
        if not args.dry_run:
            require_write_allowed(org, flag=args.production, settings=settings)
        shown = board.phase if board else None
        worker = Worker(
            client,
            settings,
            progress=shown,
            reading_progress=shown,
            interrupts=PROCESS,
            org=org,
            readiness_after=readiness_after(args),
        )
        if args.dry_run:
            report: Report | None = sweep(worker, options)
        else:
            # Every run is planned before any is written, so the cap refuses the whole sweep before it starts.
            cap = caps.cap_for("sweep", args.max_changes, settings)
            report = _confirmed(worker, options, args, out, board, org, cap)
    if report is None:
        out.print("Nothing was changed.")
        return int(ExitCode.CLEAN)
    if not args.dry_run:
        write_artefacts(report, settings, org)
    if not report.runs and not args.json:
        out.print("No invoice run needs clean-up.")
    summarize(report, args, worker.client)
    if args.dry_run:
        return emit(report, args, out)
    return emit_with_readiness(worker.client, settings, report, args, out)


def _confirmed(
    worker: Worker,
    options: SweepOptions,
    args: argparse.Namespace,
    out: Console,
    board: ProgressBoard | None,
    org: OrgIdentity,
    cap: int | None,
) -> Report | None:
    """Plan every run found, within the cap; show them and, after a yes (or with --yes), apply exactly those.
    None when the answer is no."""
    shown = preview(worker, options)
    if board:
        board.stop()  # the table and the prompt print on a quiet terminal
    if not shown.report.runs:
        return shown.report
    caps.require_within(_planned(shown), cap, len(shown.runs))
    if not args.yes and not args.json:
        render(shown.report, out)
    if not confirm_write(shown.report, org, args):
        return None
    return apply_preview(worker, shown)


def _planned(shown: SweepPreview) -> int:
    return sum(c.planned for run in shown.report.runs for c in run.objects.values())
