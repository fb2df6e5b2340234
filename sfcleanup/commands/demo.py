"""`sfcleanup demo`: the rehearsal on the embedded local org that `make demo` runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="rehearse on the embedded local org: plan, apply, verify")
    demo.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    demo.add_argument("--journal-dir", type=Path, help="where journals and failure CSVs go")
    demo.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    demo.add_argument("--log-format", choices=["auto", "json", "console"])
    demo.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace, out: Console) -> int:
    # Imported when used: a production image leaves the local org out, and every other command must work there.
    from sfcleanup.demo import run_demo

    return run_demo(args, out)
