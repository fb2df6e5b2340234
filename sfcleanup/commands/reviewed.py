"""The production workflow's two ends: `plan --out PLAN_FILE` writes the record-level plan a person reviews, and
`run --plan PLAN_FILE` applies exactly that plan (see `planfile`, `reviewed`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from sfcleanup import planfile
from sfcleanup.clock import utc_now
from sfcleanup.commands.common import (
    check_journal_dir,
    check_summary,
    configure_logs,
    connect,
    settings_from,
)
from sfcleanup.commands.guard import after_write, apply_if_confirmed, org_of, require_write_allowed
from sfcleanup.commands.readiness import readiness_after
from sfcleanup.config import Settings
from sfcleanup.errors import ConfigError, ExitCode
from sfcleanup.interrupts import PROCESS
from sfcleanup.orgidentity import OrgIdentity
from sfcleanup.reviewed import ReviewedWorker
from sfcleanup.terminal import progress_board, refuse_prompt_with_json, stderr_console
from sfcleanup.worker import Prepared


def plan_settings(settings: Settings, include_completed: bool) -> dict[str, object]:
    """The settings that shaped the plan or decide how it is written, recorded in its header for the reviewer."""
    write = settings.write
    return {
        "include_completed": include_completed,
        "route": write.route,
        "bulk_threshold": write.bulk_threshold,
        "canary_records": write.canary_records,
        "api_reserve": settings.api_reserve,
        "max_changes": settings.max_changes,
    }


def write_plan_file(
    path: Path, prepared: Prepared, org: OrgIdentity, settings: Settings, include_completed: bool
) -> str:
    """Write the plan file; returns the line that tells the person what was written and what comes next."""
    records, sha = planfile.write(path, prepared.plans, org, plan_settings(settings, include_completed), now=utc_now())
    apply = f"sfcleanup run --plan {path}{' --production' if org.production else ''}"
    return f"Plan written to {path}: {records} records, sha256 {sha}. Review it, then: {apply}"


def run_reviewed(args: argparse.Namespace, out: Console) -> int:
    """`run --plan PLAN_FILE`: the plan's org, age and integrity checked, its records re-read, exactly it applied."""
    if args.run_ids:
        raise ConfigError("give either run ids or --plan PLAN_FILE, not both: a reviewed plan names its runs")
    header = planfile.read_header(args.plan)
    settings = settings_from(args)
    configure_logs(settings)
    check_summary(args)
    if args.json and not args.yes:
        refuse_prompt_with_json()
    check_journal_dir(settings)
    with progress_board(stderr_console()) as board:
        client = connect(settings)
        org = org_of(client, describe=True, run_ids=header.run_ids)
        planfile.check_applicable(header, org, max_age_s=settings.plan_max_age_s, now=utc_now())
        require_write_allowed(org, flag=args.production, settings=settings)
        worker = ReviewedWorker(
            client,
            settings,
            include_completed=bool(header.settings.get("include_completed")),
            progress=board.phase if board else None,
            interrupts=PROCESS,
            org=org,
            readiness_after=readiness_after(args),
        )
        prepared = worker.prepare_reviewed(header)
        if board:
            board.stop()  # the table and the prompt print on a quiet terminal
        note = f"Reviewed plan {header.path}: {header.records} records, sha256 {header.sha256}"
        report = apply_if_confirmed(worker, prepared, org, args, out, settings, note=note)
        if report is None:
            out.print("Nothing was changed.")
            return int(ExitCode.CLEAN)
    return after_write(report, org, args, out, settings, client)
