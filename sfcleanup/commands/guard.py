"""What stands between a command and a write: which org it is, whether it is production, the cap on changes,
and the confirmation, which on production asks for the org's name to be typed."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from sfcleanup.commands.common import require_terminal
from sfcleanup.config import Settings
from sfcleanup.errors import Cancelled, ConfigError
from sfcleanup.orgidentity import OrgIdentity, read_identity
from sfcleanup.report import Report
from sfcleanup.salesforce.client import SalesforceClient


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


def org_of(client: SalesforceClient) -> OrgIdentity:
    """The org and the running user, read once (one call)."""
    return read_identity(client, client.user_id())


def require_write_allowed(org: OrgIdentity, *, flag: bool, settings: Settings) -> None:
    """A production org is written to only when asked explicitly; raises before anything is read or written."""
    if org.production and not (flag or settings.allow_production):
        raise ConfigError(
            f"{org.name} ({org.id}) is a production org: pass --production to write to it (a scheduled job sets "
            "allow_production = true); nothing was written"
        )


def confirm_write(report: Report, org: OrgIdentity, assume_yes: bool, console: Console) -> bool:
    """Ask before writing, naming the org. On production a person types the org's name, so a habitual "y"
    cannot write there."""
    if assume_yes:
        return True
    require_terminal()
    total = sum(c.planned for r in report.runs for c in r.objects.values())
    what = f"Apply {total} changes to {len(report.runs)} run(s)"
    where = f"{org.name} ({org.id}, {org.kind}) as user {org.username or 'unknown'}"
    if org.production:
        prompt = f"{what} in PRODUCTION org {where}? Type the org's name ({org.name}) to confirm: "
    else:
        # Without markup=False rich takes "[y/N]" for a style tag and drops it from the prompt.
        prompt = f"{what} in org {where}? [y/N] "
    try:
        answer = console.input(prompt, markup=False).strip()
    except (KeyboardInterrupt, EOFError):
        raise Cancelled("cancelled at the confirmation prompt: nothing was written") from None
    return answer == org.name if org.production else answer.lower() in ("y", "yes")


def failures_path(settings: Settings, org: OrgIdentity) -> Path:
    """`failures-<org id>-<UTC time>.csv`: which org the failed rows belong to travels with the file."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return settings.journal_dir / f"failures-{org.id}-{stamp}.csv"
