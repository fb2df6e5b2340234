"""`sfcleanup plan` and `sfcleanup run`: preview the clean-up of runs, or apply it."""

from __future__ import annotations

import argparse
from contextlib import nullcontext
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
from sfcleanup.report import render
from sfcleanup.terminal import progress_board, refuse_prompt_with_json, stderr_console
from sfcleanup.worker import Worker


def register(commands: Any) -> None:
    plan = commands.add_parser("plan", help="preview the clean-up of runs; writes nothing")
    plan.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    plan.add_argument("--include-completed", action="store_true", help="also plan cleanly completed runs")
    route_option(plan)
    connection_options(plan)
    plan.set_defaults(handler=plan_or_run)

    run = commands.add_parser("run", help="clean up runs: preview, confirm, apply, verify, record")
    run.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    run.add_argument("--yes", action="store_true", help="apply without asking (required without a terminal)")
    run.add_argument(
        "--include-completed",
        action="store_true",
        help="clean runs that completed cleanly, first setting their status to Completed with errors",
    )
    route_option(run)
    readiness_option(run)
    connection_options(run)
    run.set_defaults(handler=plan_or_run)


def plan_or_run(args: argparse.Namespace, out: Console) -> int:
    settings = settings_from(args)
    configure_logs(settings)
    check_summary(args)
    if args.command == "run":
        if args.json and not args.yes:
            refuse_prompt_with_json()
        check_journal_dir(settings)
    with progress_board(stderr_console()) as board:
        client = connect(settings)
        worker = Worker(
            client,
            settings,
            include_completed=args.include_completed,
            progress=board.phase if board else None,
            reading_progress=board.phase if board else None,
            interrupts=PROCESS,
        )
        with board.working(f"reading and planning {len(args.run_ids)} run(s)") if board else nullcontext():
            prepared = worker.prepare(args.run_ids)
        preview = worker.preview(prepared)
        if board:
            board.stop()  # the table and the prompt print on a quiet terminal
        if args.command == "plan":
            summarize(preview, args, client)
            return emit(preview, args, out)
        if not args.json:
            render(preview, out)
        if not confirm(preview, args):
            out.print("Nothing was changed.")
            return int(ExitCode.CLEAN)
        report = worker.apply(prepared)
    write_artefacts(report, settings)
    summarize(report, args, client)
    return emit_with_readiness(client, settings, report, args, out)
