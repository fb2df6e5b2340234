"""What stands between a command and a write: which org it is, whether it is production, the cap on changes,
and the confirmation, which on production asks for the org's name to be typed."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rich.console import Console

from sfcleanup import caps, preflight
from sfcleanup.commands.common import summarize, write_artefacts
from sfcleanup.commands.readiness import emit_with_readiness
from sfcleanup.config import Settings
from sfcleanup.errors import Cancelled, ConfigError
from sfcleanup.orgidentity import OrgIdentity, identity_paths, read_identity
from sfcleanup.report import Report, render
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.terminal import ask, refuse_prompt_with_json, require_terminal, stderr_console
from sfcleanup.worker import Prepared, Worker


def write_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--production",
        action="store_true",
        help="allow writing to a production org (setting allow_production for scheduled jobs)",
    )
    parser.add_argument(
        "--max-changes",
        type=int,
        metavar="N",
        help="refuse, before writing, a plan that changes more than N records (setting max_changes)",
    )


def org_of(client: SalesforceClient, *, describe: bool = False, run_ids: Sequence[str] = ()) -> OrgIdentity:
    """The org and the running user, read once (one call).

    A command that goes on to preflight says what preflight reads first: the Billing objects' describes
    (`describe`), the runs' record (`run_ids`, as typed). Those are read in the same Composite call and kept for
    preflight to find (`SalesforceClient.prefetch`), so the three reads that start a clean-up cost one call; the
    guard's refusals still come first, since each piece is judged only when its reader asks for it.
    """
    user_id = client.user_id()
    ahead = preflight.startup_paths(describe=describe, raw_run_ids=run_ids)
    if ahead:
        client.prefetch("org identity", identity_paths(user_id) + ahead)
    return read_identity(client, user_id)


def require_write_allowed(org: OrgIdentity, *, flag: bool, settings: Settings) -> None:
    """A production org is written to only when asked explicitly; raises before anything is written (and
    before the runs are planned)."""
    if org.production and not (flag or settings.allow_production):
        raise ConfigError(
            f"{org.name} ({org.id}) is a production org: pass --production to write to it (a scheduled job sets "
            "allow_production = true); nothing was written"
        )


def confirm_write(report: Report, org: OrgIdentity, args: argparse.Namespace) -> bool:
    """Writing needs a yes: --yes, or a person at a terminal (never with --json, which must not wait). The
    prompt names the org; on production the person types the org's name, so a habitual "y" cannot write there."""
    if getattr(args, "yes", False):
        return True
    if args.json:
        refuse_prompt_with_json()
    require_terminal()
    total = sum(c.planned for r in report.runs for c in r.objects.values())
    what = f"Apply {total:,} changes to {len(report.runs)} run(s)?"
    where = f"{org.name} ({org.id}, {org.kind}) as user {org.username or 'unknown'}"
    console = stderr_console()
    # The org on a line of its own above the question, so that neither is wrapped or cut on a narrow terminal.
    console.print(f"Writing to {'PRODUCTION ' if org.production else ''}org {where}", soft_wrap=True)
    if not org.production:
        return ask(what, console)
    try:
        answer = console.input(f"{what} Type the org's name ({org.name}) to confirm: ", markup=False).strip()
    except (KeyboardInterrupt, EOFError):
        raise Cancelled("cancelled at the confirmation prompt: nothing was written") from None
    return answer == org.name


def apply_if_confirmed(
    worker: Worker,
    prepared: Prepared,
    org: OrgIdentity,
    args: argparse.Namespace,
    out: Console,
    settings: Settings,
    *,
    note: str | None = None,
) -> Report | None:
    """The last steps before a write, the same for `run` and `run --plan`: the cap, the plan shown (with `note`
    under it), the confirmation, then the write. None when the answer is no: nothing was written."""
    caps.require_within(prepared.total_changes, caps.cap_for("run", args.max_changes, settings), len(prepared.plans))
    preview = worker.preview(prepared)
    if not args.json:
        render(preview, out)
        if note:
            out.print(note)
    if not confirm_write(preview, org, args):
        return None
    return worker.apply(prepared)


def after_write(
    report: Report,
    org: OrgIdentity,
    args: argparse.Namespace,
    out: Console,
    settings: Settings,
    client: SalesforceClient,
) -> int:
    """What every write leaves behind: the failures and changes CSVs, the summary if asked, the report (with the
    readiness section); returns the exit code."""
    write_artefacts(report, settings, org)
    summarize(report, args, client)
    return emit_with_readiness(client, settings, report, args, out)
