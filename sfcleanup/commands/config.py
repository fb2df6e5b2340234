"""`sfcleanup config init` writes a commented example configuration; `sfcleanup config check` validates one
and runs the read-only preflight against the org, listing everything missing and how to fix it."""

from __future__ import annotations

import argparse
import json
import math
from importlib import resources
from pathlib import Path
from typing import TypedDict

from rich.console import Console

from sfcleanup import billing, preflight
from sfcleanup.commands.common import configure_logs, connect, connection_options, settings_from
from sfcleanup.commands.guard import org_of
from sfcleanup.errors import ConfigError, ExitCode, SfCleanupError
from sfcleanup.salesforce.shapes import SObjectDescribe, daily_limits


def example_text() -> str:
    return resources.files("sfcleanup").joinpath("templates/sfcleanup.example.toml").read_text(encoding="utf-8")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("config", help="write an example configuration, or check one against the org")
    sub = parser.add_subparsers(dest="config_command", required=True)
    init = sub.add_parser("init", help="write a commented example configuration")
    init.add_argument("path", nargs="?", type=Path, default=Path("sfcleanup.toml"), metavar="PATH")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=run_init)
    check = sub.add_parser("check", help="validate settings, log in, and run the read-only preflight")
    connection_options(check)
    check.set_defaults(handler=run_check)


def run_init(args: argparse.Namespace, out: Console) -> int:
    path: Path = args.path
    if path.exists() and not args.force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it")
    path.write_text(example_text(), encoding="utf-8")
    out.print(
        f"Wrote {path}. Fill in the [org] section, then run `sfcleanup config check --config {path}`.", markup=False
    )
    return int(ExitCode.CLEAN)


class _Check(TypedDict):
    """One line of `config check`, and one entry of its JSON."""

    check: str
    ok: bool
    problems: list[str]
    detail: str


def _checks(args: argparse.Namespace) -> list[_Check]:
    checks: list[_Check] = []

    def record(name: str, problems: list[str], detail: str = "") -> None:
        checks.append({"check": name, "ok": not problems, "problems": problems, "detail": detail})

    settings = settings_from(args)
    record("settings", [], f"auth mode {settings.org.auth}")
    configure_logs(settings)
    try:
        client = connect(settings)
    except SfCleanupError as exc:
        record("login", [str(exc)])
        return checks
    record("login", [], client.instance_url)
    # The org and user the settings reach, as every plan and prompt names them: the check is of this org.
    record("org", [], org_of(client, describe=True).line().removeprefix("Org: "))
    readiness = preflight.check_org(client)
    record("fields, permissions and picklist values", list(readiness.problems))
    if settings.error_logs:
        described = SObjectDescribe.model_validate(client.describe(billing.ERROR_LOG))
        missing = (
            []
            if described.createable
            else [
                "the integration user cannot create blng__ErrorLog__c records: grant Create on Error Log, or set "
                "error_logs = false"
            ]
        )
        record("error logs", missing)
    daily = daily_limits(client.limits())["DailyApiRequests"]
    maximum, remaining = daily["Max"], daily["Remaining"]
    reserve = math.ceil(maximum * settings.api_reserve)
    headroom = (
        []
        if remaining > reserve
        else [
            f"only {remaining} of {maximum} daily API calls left, at or below the {settings.api_reserve:.0%} reserve: "
            "run later"
        ]
    )
    record("API headroom", headroom, f"{remaining} of {maximum} left, reserve {reserve}")
    return checks


def run_check(args: argparse.Namespace, out: Console) -> int:
    checks = _checks(args)
    ok = all(c["ok"] for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": checks}, indent=2))
    else:
        for check in checks:
            mark = "ok " if check["ok"] else "FAIL"
            out.print(f"[{mark}] {check['check']}" + (f": {check['detail']}" if check["detail"] else ""), markup=False)
            for problem in check["problems"]:
                out.print(f"       - {problem}", markup=False)
    return int(ExitCode.CLEAN if ok else ExitCode.BAD_INPUT)
