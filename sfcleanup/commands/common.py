"""What the commands share: connection and output options, settings from flags, connecting, requiring a
terminal, printing a report (confirming a write is in `guard`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from sfcleanup import logs
from sfcleanup.config import AuthMode, Settings, load_settings
from sfcleanup.errors import ConfigError
from sfcleanup.report import Report, render
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.connect import build_connector, http_session
from sfcleanup.salesforce.retry import RetryPolicy

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

        org, _ = open_local_org(settings.org.local_state, production=settings.org.local_production)
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


def progress_factory(console: Console) -> Callable[[str, int], Callable[[int], None]] | None:
    """A progress bar per phase (records, rate, ETA), on a terminal only."""
    if not console.is_terminal:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    def start(label: str, total: int) -> Callable[[int], None]:
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.speed} rec/s"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        task = bar.add_task(label, total=total)
        bar.start()

        def advance(done: int) -> None:
            bar.advance(task, done)
            if bar.finished:
                bar.stop()

        return advance

    return start


def require_terminal() -> None:
    """Writing needs a yes: from a person at a terminal, or --yes from a job."""
    if not sys.stdin.isatty():
        raise ConfigError(
            "refusing to write without a terminal to confirm on: review `sfcleanup plan`, then pass --yes"
        )


def emit(report: Report, args: argparse.Namespace, out: Console, *, readiness: dict[str, object] | None = None) -> int:
    """The report on stdout (JSON, or tables), with the readiness section when one was made."""
    if args.json:
        document = report.to_json()
        if readiness is not None:
            document["readiness"] = readiness
        print(json.dumps(document, indent=2))
    else:
        render(report, out)
    return int(report.exit_code)
