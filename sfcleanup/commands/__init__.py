"""The subcommands; each module registers its parser and sets `handler(args, console) -> exit code`."""

from __future__ import annotations

from sfcleanup.commands import clean, config, demo, localorg, readiness, report, status, sweep, undo

MODULES = (clean, sweep, status, readiness, undo, report, config, demo, localorg)
