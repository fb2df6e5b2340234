"""The subcommands; each module registers its parser and sets `handler(args, console) -> exit code`."""

from __future__ import annotations

from sfcleanup.commands import clean, demo, localorg, status, undo

MODULES = (clean, status, undo, demo, localorg)
