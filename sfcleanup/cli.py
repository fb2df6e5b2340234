"""The command line: parse, load settings, wire, run, map the outcome to an exit code. Nothing else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

import structlog
from rich.console import Console

from sfcleanup import __version__, logs
from sfcleanup.commands import MODULES
from sfcleanup.errors import ExitCode, SfCleanupError
from sfcleanup.interrupts import PROCESS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, the documented exit code for bad input."""
        self.exit(ExitCode.BAD_INPUT, f"sfcleanup: error: {message} (see `{self.prog} --help`)\n")


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
        from sfcleanup.localorg.server import serve_main

        return serve_main(arguments[2:])
    args = build_parser().parse_args(arguments)
    # Org data (messages, names) must print as it is: no rich markup or highlighting of it.
    out = Console(markup=False, highlight=False)
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
        print(f"sfcleanup: {logs.scrub_text(str(exc))}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        # Writing turns a signal into a stop at a safe point; a KeyboardInterrupt comes from reading, or from
        # a second signal that asked to stop at once (as safe as a crash).
        name = PROCESS.received or "SIGINT"
        print(f"sfcleanup: interrupted by {name}; the journal shows what was written; run again", file=sys.stderr)
        return int(ExitCode.STOPPED)
    except Exception as exc:  # a bug or the machine: never a traceback as the only word, never exit 1
        structlog.get_logger("sfcleanup").error("unexpected_error", exc_info=exc)
        message = logs.scrub_text(f"{type(exc).__name__}: {exc}")
        print(f"sfcleanup: unexpected error ({message}); safe to run again; please report it", file=sys.stderr)
        return int(ExitCode.STOPPED)
