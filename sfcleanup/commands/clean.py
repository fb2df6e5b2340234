"""`sfcleanup plan` and `sfcleanup run`: preview the clean-up of runs, or apply it."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

from rich.console import Console

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
)
from sfcleanup.commands.guard import after_write, apply_if_confirmed, org_of, require_write_allowed, write_options
from sfcleanup.commands.readiness import readiness_after, readiness_option
from sfcleanup.commands.reviewed import run_reviewed, write_plan_file
from sfcleanup.errors import ConfigError, ExitCode
from sfcleanup.interrupts import PROCESS
from sfcleanup.terminal import progress_board, refuse_prompt_with_json, stderr_console
from sfcleanup.worker import Worker


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = commands.add_parser("plan", help="preview the clean-up of runs; writes nothing")
    plan.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    plan.add_argument("--include-completed", action="store_true", help="also plan cleanly completed runs")
    plan.add_argument(
        "--out", type=Path, metavar="PLAN_FILE", help="write the record-level plan for review and `run --plan`"
    )
    route_option(plan)
    connection_options(plan)
    plan.set_defaults(handler=plan_or_run)

    run = commands.add_parser("run", help="clean up runs: preview, confirm, apply, verify, record")
    run.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    run.add_argument("--plan", type=Path, metavar="PLAN_FILE", help="apply exactly this reviewed plan (plan --out)")
    run.add_argument("--yes", action="store_true", help="apply without asking (required without a terminal)")
    run.add_argument(
        "--include-completed",
        action="store_true",
        help="clean runs that completed cleanly, first setting their status to Completed with errors",
    )
    route_option(run)
    write_options(run)
    readiness_option(run)
    connection_options(run)
    run.set_defaults(handler=plan_or_run)


def plan_or_run(args: argparse.Namespace, out: Console) -> int:
    if args.command == "run" and args.plan is not None:
        return run_reviewed(args, out)
    if not args.run_ids:
        raise ConfigError("give at least one RUN_ID (or, for `run`, --plan PLAN_FILE)")
    settings = settings_from(args)
    configure_logs(settings)
    check_summary(args)
    writing = args.command == "run"
    if writing:
        if args.json and not args.yes:
            refuse_prompt_with_json()
        check_journal_dir(settings)
    with progress_board(stderr_console()) as board:
        client = connect(settings)
        org = org_of(client, describe=True, run_ids=args.run_ids)
        if writing:
            require_write_allowed(org, flag=args.production, settings=settings)
        worker = Worker(
            client,
            settings,
            include_completed=args.include_completed,
            progress=board.phase if board else None,
            reading_progress=board.phase if board else None,
            interrupts=PROCESS,
            org=org,
            readiness_after=readiness_after(args),
        )
        with board.working(f"reading and planning {len(args.run_ids)} run(s)") if board else nullcontext():
            prepared = worker.prepare(args.run_ids)
        if board:
            board.stop()  # the table and the prompt print on a quiet terminal
        if not writing:
            preview = worker.preview(prepared)
            written = write_plan_file(args.out, prepared, org, settings, args.include_completed) if args.out else None
            summarize(preview, args, client)
            code = emit(preview, args, out)
            if written:
                # On stderr, so that `plan --json --out FILE` still prints one JSON document on stdout.
                print(written, file=sys.stderr)
            return code
        report = apply_if_confirmed(worker, prepared, org, args, out, settings)
        if report is None:
            out.print("Nothing was changed.")
            return int(ExitCode.CLEAN)
    return after_write(report, org, args, out, settings, client)
