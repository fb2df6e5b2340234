"""`sfcleanup undo JOURNAL`: preview, or with --yes apply, the restoring of journaled before-values."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from sfcleanup import logs
from sfcleanup.commands.common import connect, connection_options, settings_from
from sfcleanup.commands.guard import org_of, require_write_allowed
from sfcleanup.errors import ConfigError, ExitCode
from sfcleanup.journal import JournalError
from sfcleanup.preflight import parse_run_ids
from sfcleanup.undo import apply_undo, plan_undo


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    undo = commands.add_parser("undo", help="restore the values a clean-up journaled (preview unless --yes)")
    undo.add_argument("journal", type=Path, metavar="JOURNAL", help="a run's journal, <journal_dir>/<run_id>.jsonl")
    undo.add_argument("--run", dest="run_id", metavar="RUN_ID", help="refuse a journal of any other run")
    undo.add_argument(
        "--include-invoices",
        action="store_true",
        help="also restore invoice and invoice line statuses (un-cancels drafts; rarely wanted)",
    )
    undo.add_argument("--allow-truncated", action="store_true", help="use a journal whose last line is torn")
    undo.add_argument(
        "--allow-unknown-org",
        action="store_true",
        help="apply a journal that does not record its org (older sfcleanup), once you checked it is this org",
    )
    undo.add_argument("--production", action="store_true", help="allow writing to a production org")
    undo.add_argument("--yes", action="store_true", help="apply; without it, only preview")
    connection_options(undo)
    undo.set_defaults(handler=run_undo)


def run_undo(args: argparse.Namespace, out: Console) -> int:
    if not args.journal.is_file():
        raise ConfigError(
            f"journal {args.journal} does not exist; journals are in the journal directory as <run_id>.jsonl"
        )
    run_id = parse_run_ids([args.run_id])[0] if args.run_id else None
    settings = settings_from(args)
    logs.configure(settings.log_level, settings.log_format)
    client = connect(settings)
    org = org_of(client)
    if args.yes:
        require_write_allowed(org, flag=args.production, settings=settings)
    try:
        plan = plan_undo(
            client,
            args.journal,
            org=org,
            run_id=run_id,
            include_invoices=args.include_invoices,
            allow_truncated=args.allow_truncated,
            allow_unknown_org=args.allow_unknown_org,
        )
    except JournalError as exc:
        raise ConfigError(str(exc)) from None
    document: dict[str, Any] = {
        "org": org.as_json(),
        "run_id": plan.run_id,
        "journal": str(plan.journal),
        "mode": "undo" if args.yes else "preview",
        "restore": {k: len(v) for k, v in plan.restore.items()},
        "skipped": [{"id": s.id, "object": s.sobject, "reason": s.reason} for s in plan.skipped],
        "updated": 0,
        "failures": [],
    }
    if args.include_invoices:
        print("sfcleanup: warning: restoring invoice and line statuses puts cancelled drafts back", file=sys.stderr)
    exit_code = ExitCode.CLEAN
    if args.yes and plan.total:
        updated, failures = apply_undo(client, plan, settings.write, settings.journal_dir, org)
        document["updated"] = updated
        document["failures"] = [
            {"id": f.id, "object": f.sobject, "code": f.code, "message": f.message} for f in failures
        ]
        exit_code = ExitCode.ROW_FAILURES if failures else ExitCode.CLEAN
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        out.print(org.line())
        verb = "Restored" if args.yes else "Would restore"
        for sobject, count in document["restore"].items():
            out.print(f"{verb} {count} {sobject} record(s)" if not args.yes else f"{sobject}: {count} planned")
        if args.yes:
            out.print(f"{verb} {document['updated']} record(s); {len(document['failures'])} failed")
        for skipped in plan.skipped[:20]:
            out.print(f"  skipped {skipped.sobject} {skipped.id}: {skipped.reason}")
        if not args.yes:
            out.print("Preview only: nothing was changed. Run again with --yes to apply.")
    return int(exit_code)
