"""The command line: parse, load settings, wire, run, map the outcome to an exit code. Nothing else."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from rich.console import Console

from sfcleanup import __version__, jsonout, logs
from sfcleanup.commands import MODULES
from sfcleanup.config import Settings
from sfcleanup.errors import ExitCode, SfCleanupError
from sfcleanup.interrupts import PROCESS

PIPED_WIDTH = 160
# What a production install may lack: the local org (left out of the container image) and its HTTPS CA maker.
LOCAL_ORG_MODULES = ("sfcleanup.localorg", "trustme")


class _Parser(argparse.ArgumentParser):
    # Set by `main` when the command line asks for --json: a usage error is then one JSON object on stdout too.
    json_errors = False

    def error(self, message: str) -> NoReturn:
        """One line, the documented exit code for bad input."""
        line = f"{message} (see `{self.prog} --help`)"
        if _Parser.json_errors:
            jsonout.write(jsonout.usage_error(line))
        self.exit(ExitCode.BAD_INPUT, f"sfcleanup: error: {line}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sfcleanup", description="Clean up failed Salesforce Billing invoice runs.")
    parser.add_argument("--version", action="version", version=f"sfcleanup {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:2] == ["localorg", "serve"]:
        try:
            from sfcleanup.localorg.server import serve_main
        except ModuleNotFoundError as exc:
            print(f"sfcleanup: {_missing_local_org(exc)}", file=sys.stderr)
            return int(ExitCode.BAD_INPUT)
        return serve_main(arguments[2:])
    _Parser.json_errors = "--json" in arguments
    args = build_parser().parse_args(arguments)
    # Org data (messages, names) must print as it is: no rich markup or highlighting of it. Piped (into a
    # file or a ticket) there is no terminal width to fit: wide enough that no table row wraps, unless COLUMNS
    # says otherwise.
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    out = Console(markup=False, highlight=False, width=PIPED_WIDTH if piped else None)
    # SIGINT and SIGTERM alike: at once while reading, at the next safe point while writing (interrupts.py).
    with PROCESS.installed():
        return _dispatch(args, out)


def _dispatch(args: argparse.Namespace, out: Console) -> int:
    try:
        code: int = args.handler(args, out)
        if PROCESS.received and code == ExitCode.STOPPED:
            print(
                f"sfcleanup: stopped on {PROCESS.received}: every batch sent is journaled; run again to continue",
                file=sys.stderr,
            )
        return code
    except SfCleanupError as exc:
        return _failed(args, exc.code, logs.scrub_text(str(exc)), int(exc.exit_code))
    except KeyboardInterrupt:
        # Writing turns a signal into a stop at a safe point; a KeyboardInterrupt comes from reading, or from
        # a second signal that asked to stop at once (as safe as a crash).
        name = PROCESS.received or "SIGINT"
        message = f"interrupted by {name}; the journal shows what was written; run again"
        return _failed(args, "interrupted", message, int(ExitCode.STOPPED))
    except Exception as exc:  # a bug or the machine: one line saying where to look, never a bare traceback
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith(LOCAL_ORG_MODULES):
            return _failed(args, "config_error", _missing_local_org(exc), int(ExitCode.BAD_INPUT))
        journals = _journal_dir(args)
        where = _crash_log(exc, journals)
        message = logs.scrub_text(
            f"unexpected error ({type(exc).__name__}: {exc}); traceback in {where}; journals in {journals}; "
            "safe to run again; please report it with that file"
        )
        return _failed(args, "unexpected_error", message, int(ExitCode.STOPPED))


def _missing_local_org(exc: ModuleNotFoundError) -> str:
    what = "trustme" if exc.name == "trustme" else "the local org"
    return (
        f"{what} is not installed here (the production image leaves the local org out): rehearse with a "
        "development install (`make .venv/.installed`, or `pip install '.[localorg]'` in the repository)"
    )


def _failed(args: argparse.Namespace, code: str, message: str, exit_code: int) -> int:
    """The one line on stderr; with --json also the error object on stdout, the only thing printed there."""
    print(f"sfcleanup: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        jsonout.write(jsonout.error_document(code, message, exit_code))
    return exit_code


def _journal_dir(args: argparse.Namespace) -> Path:
    given = getattr(args, "journal_dir", None)
    return Path(given) if given is not None else Settings.model_fields["journal_dir"].default


def _crash_log(exc: Exception, journals: Path) -> Path:
    """The traceback, in a file beside the journals (or in the temporary folder when that cannot be written)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = logs.scrub_text("".join(traceback.format_exception(exc)))
    for folder in (journals, Path(tempfile.gettempdir())):
        path = folder / f"sfcleanup-error-{stamp}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError:
            continue
        return path
    return Path("(nowhere: no folder could be written)")
