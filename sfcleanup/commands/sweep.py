"""`sfcleanup sweep`: the scheduled job. Finds every run that needs clean-up and cleans each in turn."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from sfcleanup.commands.common import (
    check_journal_dir,
    check_summary,
    configure_logs,
    confirm,
    connect,
    connection_options,
    emit,
    route_option,
    settings_from,
    summarize,
    write_artefacts,
)
from sfcleanup.commands.readiness import emit_with_readiness, readiness_option
from sfcleanup.errors import ExitCode
from sfcleanup.interrupts import PROCESS
from sfcleanup.report import Report, render
from sfcleanup.sweep import SweepOptions, apply_preview, preview, sweep
from sfcleanup.terminal import ProgressBoard, progress_board, refuse_prompt_with_json, require_terminal, stderr_console
from sfcleanup.worker import Worker


def register(commands: Any) -> None:
    parser = commands.add_parser("sweep", help="find and clean every failed run whose clean-up is not Completed")
    parser.add_argument("--since", type=int, metavar="DAYS", help="only runs created in the last DAYS days")
    parser.add_argument("--max-runs", type=int, default=50, metavar="N", help="at most N runs, oldest first")
    parser.add_argument("--dry-run", action="store_true", help="plan every run found; write nothing")
    parser.add_argument("--yes", action="store_true", help="apply without asking (required without a terminal)")
    route_option(parser)
    readiness_option(parser)
    connection_options(parser)
    parser.set_defaults(handler=run_sweep)


def run_sweep(args: argparse.Namespace, out: Console) -> int:
    options = SweepOptions(since_days=args.since, max_runs=args.max_runs, dry_run=args.dry_run)
    settings = settings_from(args)
    configure_logs(settings)
    check_summary(args)
    confirm_needed = not args.dry_run and not args.yes
    if confirm_needed:
        if args.json:
            refuse_prompt_with_json()
        require_terminal()
    if not args.dry_run:
        check_journal_dir(settings)
    with progress_board(stderr_console()) as board:
        client = connect(settings)
        shown = board.phase if board else None
        worker = Worker(client, settings, progress=shown, reading_progress=shown, interrupts=PROCESS)
        report = _confirmed(worker, options, args, out, board) if confirm_needed else sweep(worker, options)
    if report is None:
        out.print("Nothing was changed.")
        return int(ExitCode.CLEAN)
    if not args.dry_run:
        write_artefacts(report, settings)
    if not report.runs and not args.json:
        out.print("No invoice run needs clean-up.")
    summarize(report, args, worker.client)
    if args.dry_run:
        return emit(report, args, out)
    return emit_with_readiness(worker.client, settings, report, args, out)


def _confirmed(
    worker: Worker, options: SweepOptions, args: argparse.Namespace, out: Console, board: ProgressBoard | None
) -> Report | None:
    """Show the runs found and their plans; after a yes, apply exactly those. None when the answer is no."""
    shown = preview(worker, options)
    if board:
        board.stop()  # the table and the prompt print on a quiet terminal
    if not shown.report.runs:
        return shown.report
    if not args.json:
        render(shown.report, out)
    if not confirm(shown.report, args):
        return None
    return apply_preview(worker, shown)
