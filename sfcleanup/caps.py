"""Caps for unattended runs: refuse, before anything is written, a run or sweep that would change more records
than the admin allowed. A sweep always has one (`sweep_max_changes`), so a scheduled job that meets an org in an
unexpected state stops with exit 2 instead of rewriting it."""

from __future__ import annotations

from sfcleanup.config import Settings
from sfcleanup.errors import ConfigError


def cap_for(command: str, flag: int | None, settings: Settings) -> int | None:
    """The cap in force: --max-changes, else the `max_changes` setting, else for a sweep `sweep_max_changes`."""
    if flag is not None:
        if flag < 1:
            raise ConfigError(f"--max-changes {flag}: give a number of records of 1 or more")
        return flag
    if settings.max_changes is not None:
        return settings.max_changes
    return settings.sweep_max_changes if command == "sweep" else None


def require_within(planned: int, cap: int | None, runs: int) -> None:
    """Refuse a plan that changes more records than `cap`; nothing has been written yet."""
    if cap is not None and planned > cap:
        raise ConfigError(
            f"the plan changes {planned} records in {runs} run(s), more than the cap of {cap} (max_changes, "
            "--max-changes, or sweep_max_changes for a sweep): review it with `sfcleanup plan` and raise the cap "
            "for this invocation if it is right; nothing was written"
        )
