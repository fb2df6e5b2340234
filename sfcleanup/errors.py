"""The errors sfcleanup reports, each with the exit code it maps to.

0 clean, 1 finished with row failures (or records verification could not account for), 2 something a person
must fix before running again (a flag, a setting, refused credentials, an untrusted certificate, a host name
that does not resolve, a folder that cannot be written), 3 stopped early and a later re-run continues by itself
(daily API limit, budget reserve, a fault that outlasted the retries, another worker holds the run, a signal).

A stop either concerns one run (another worker holds it, a fault on its records outlasted the retries: the
next run is tried) or every run (`ends_invocation`: the daily limit, the reserve, authentication, a signal:
the remaining runs are not started).
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    CLEAN = 0
    ROW_FAILURES = 1
    BAD_INPUT = 2
    STOPPED = 3


class SfCleanupError(Exception):
    """Base class; the message is one line, says what is wrong and what to do."""

    exit_code = ExitCode.STOPPED
    # True when no other run of the invocation can succeed either.
    ends_invocation: ClassVar[bool] = False

    @property
    def code(self) -> str:
        """A stable name for `--json` error objects: the class name in snake case (`auth_failed`)."""
        name = type(self).__name__
        return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


class ConfigError(SfCleanupError):
    """Bad input or configuration, found before anything was written."""

    exit_code = ExitCode.BAD_INPUT


class PreflightError(ConfigError):
    """The org is not ready for a clean-up (a field, a picklist value, a run in the wrong state)."""


class StopRun(SfCleanupError):
    """Stopped early on purpose; whatever was written is journaled and a re-run continues from there."""

    exit_code = ExitCode.STOPPED


class DailyLimitReached(StopRun):
    ends_invocation = True


class BudgetReserveReached(StopRun):
    ends_invocation = True


class AuthFailed(ConfigError):
    """The org refused the credentials: a wrong or expired token given by hand, a refused login (certificate
    replaced on the connected app, user deactivated, wrong login URL). Waiting does not fix it: a person must,
    and every run would meet it, so it ends the invocation."""

    ends_invocation = True


class Misconfigured(ConfigError):
    """The org's address cannot be used as configured: the host name does not resolve, or its certificate is
    not trusted. Every run would meet it, so it ends the invocation."""

    ends_invocation = True


class Interrupted(StopRun):
    """SIGINT or SIGTERM arrived while writing: the worker stopped at the next safe point."""

    ends_invocation = True


class Cancelled(SfCleanupError):
    """The person at the terminal cancelled (Ctrl-C at the prompt) before anything was written."""

    exit_code = ExitCode.BAD_INPUT


class TransientExhausted(StopRun):
    """A transient fault (503, connection, timeout, concurrent limit) outlasted the retry deadline."""


class ApiError(SfCleanupError):
    """Salesforce refused a whole request for a reason retrying will not fix."""

    def __init__(self, message: str, *, status: int | None = None, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class AmbiguousWrite(SfCleanupError):
    """The connection failed after a write was sent: the org may or may not have applied it."""
