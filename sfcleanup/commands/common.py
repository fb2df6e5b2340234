"""What the commands share: connection and output options, settings from flags, connecting, requiring a
terminal, printing a report (confirming a write is in `guard`)."""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from sfcleanup import jsonout, logs
from sfcleanup.config import AuthMode, Settings, load_settings
from sfcleanup.errors import ConfigError
from sfcleanup.journal import JournalError
from sfcleanup.journalreport import changes_path, read_journal, write_changes_csv
from sfcleanup.orgidentity import OrgIdentity
from sfcleanup.report import Report, render, write_failures_csv
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.connect import build_connector, http_session
from sfcleanup.salesforce.retry import RetryPolicy
from sfcleanup.summary import markdown, write_summary

Handler = Callable[[argparse.Namespace, Console], int]


def route_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--route",
        choices=["auto", "composite", "bulk"],
        help="which API writes: Composite, Bulk API 2.0, or auto by size (setting write.route)",
    )


def connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--config", type=Path, help="TOML settings file (see config/sfcleanup.example.toml)")
    group.add_argument(
        "--org",
        choices=["local", "local-production"],
        help="the embedded local org in this process, playing a sandbox (`local`) or production",
    )
    group.add_argument("--state", type=Path, help="with --org local: the org's SQLite state file")
    group.add_argument("--instance-url", help="org URL, with --access-token")
    group.add_argument("--access-token", help="an access token (prefer SFCLEANUP_ORG__ACCESS_TOKEN)")
    group.add_argument("--target-org", help="an sf CLI org alias (uses `sf org display`)")
    group.add_argument("--login-url", help="login, test or My Domain URL for JWT / client credentials")
    group.add_argument("--ca-bundle", type=Path, help="extra CA bundle for TLS verification")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    out.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    out.add_argument("--log-format", choices=["auto", "json", "console"])
    out.add_argument("--journal-dir", type=Path, help="where journals and failure CSVs go")
    out.add_argument("--summary", type=Path, metavar="FILE.md", help="also write a Markdown summary for a ticket")


def settings_from(args: argparse.Namespace) -> Settings:
    """Flags become settings overrides; the file and the environment fill in the rest."""
    org: dict[str, Any] = {}
    for flag, key in (
        ("instance_url", "instance_url"),
        ("access_token", "access_token"),
        ("target_org", "target_org"),
        ("login_url", "login_url"),
        ("ca_bundle", "ca_bundle"),
        ("state", "local_state"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            org[key] = value
    if getattr(args, "org", None) in ("local", "local-production"):
        org["auth"] = AuthMode.LOCAL
        org["local_production"] = args.org == "local-production"
    elif org.get("access_token") and org.get("instance_url"):
        org["auth"] = AuthMode.TOKEN
    elif org.get("target_org"):
        org["auth"] = AuthMode.SF_CLI
    overrides: dict[str, Any] = {"org": org} if org else {}
    if getattr(args, "route", None):
        overrides["write"] = {"route": args.route}
    for flag in ("journal_dir", "log_level", "log_format"):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[flag] = value
    return load_settings(getattr(args, "config", None), **overrides)


def connect(settings: Settings) -> SalesforceClient:
    if settings.org.auth is AuthMode.LOCAL:
        from sfcleanup.salesforce.local import local_connector, open_local_org

        try:
            org, _ = open_local_org(settings.org.local_state, production=settings.org.local_production)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                f"--state {settings.org.local_state} cannot be opened as a local org ({exc}); give the file "
                "`sfcleanup localorg serve --state` or an earlier `--org local --state` made, or a new path"
            ) from None
        connector = local_connector(org, settings.org)
    else:
        connector = build_connector(settings.org, http_session(settings.org))
    for secret in (
        settings.org.access_token,
        settings.org.consumer_secret,
        settings.org.password,
        settings.org.security_token,
    ):
        if secret is not None:
            logs.register_secret(secret.get_secret_value())
    retry = RetryPolicy(
        max_attempts=settings.retry.max_attempts,
        deadline_s=settings.retry.deadline_s,
        initial_s=settings.retry.backoff_initial_s,
        max_backoff_s=settings.retry.backoff_max_s,
    )
    client = SalesforceClient(
        connector, api_version=settings.org.api_version, retry=retry, timeout_s=settings.org.timeout_s
    )
    logs.register_secret(client.sf.session_id)
    return client


def configure_logs(settings: Settings) -> None:
    """The level set (flag, file or environment) as it is; unset, warnings only on a terminal (logs.configure)."""
    logs.configure(settings.log_level if "log_level" in settings.model_fields_set else None, settings.log_format)


def check_journal_dir(settings: Settings) -> None:
    """Before anything is read or written: the journal folder can be written to, or made. Found mid-run, it
    would stop a clean-up after its first writes with nowhere to record them."""
    fix = "fix its permissions or pass --journal-dir (SFCLEANUP_JOURNAL_DIR)"
    check_writable(settings.journal_dir, "journal folder", fix)


def check_summary(args: argparse.Namespace) -> None:
    """A --summary that could not be written is refused before the work, not after it."""
    if getattr(args, "summary", None) is not None:
        check_writable(args.summary.parent, f"--summary {args.summary}: folder", "give another path")


def check_writable(folder: Path, what: str, fix: str) -> None:
    """`folder` can be written to, or made. Nothing is created here: a command refused later (at the prompt,
    say) leaves no trace."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path())
    problem: str | None = None
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    elif existing == folder:
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".sfcleanup-check-"):
                pass
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable, so the folder cannot be made"
    if problem is not None:
        raise ConfigError(f"{what} {folder} cannot be written ({problem}): {fix}")


def summarize(report: Report, args: argparse.Namespace, client: SalesforceClient) -> None:
    """With --summary: the Markdown summary of what was just reported, with links into the org."""
    if getattr(args, "summary", None) is not None:
        text = markdown(report, instance_url=client.instance_url, when=datetime.now(UTC))
        write_summary(args.summary, text)


def emit(report: Report, args: argparse.Namespace, out: Console, *, readiness: dict[str, object] | None = None) -> int:
    """The report on stdout (JSON, or tables), with the readiness section when one was made."""
    if args.json:
        document = report.to_json()
        if readiness is not None:
            document["readiness"] = readiness
        jsonout.write(document)
    else:
        render(report, out)
    return int(report.exit_code)


def write_artefacts(report: Report, settings: Settings, org: OrgIdentity | None) -> None:
    """After writing: the failures CSV of the invocation, and each run's changes CSV from its journal."""
    write_failures_csv(report, failures_path(settings, org))
    for run in report.runs:
        if run.journal is None or not Path(run.journal).is_file():
            continue
        journal = Path(run.journal)
        try:
            with read_journal(journal, allow_truncated=True) as told:
                run.changes_csv = str(write_changes_csv(told.written, changes_path(journal)))
        except JournalError as exc:
            run.message = (run.message + "; " if run.message else "") + f"no changes CSV: {exc}"


def failures_path(settings: Settings, org: OrgIdentity | None) -> Path:
    """`failures-<org id>-<UTC time>.csv`: which org the failed rows belong to travels with the file."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return settings.journal_dir / (f"failures-{org.id}-{stamp}.csv" if org else f"failures-{stamp}.csv")
