"""Structured logs (structlog) on stderr: JSON lines for machines, a readable console for people.

Secrets never reach the output: values registered with `register_secret` are masked wherever they appear,
and any field whose name says it holds a credential is masked whatever its value.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Literal, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_SECRETS: set[str] = set()
_SECRET_KEY = re.compile(r"token|secret|password|private_key|authorization|assertion", re.IGNORECASE)
MASK = "[redacted]"


def register_secret(value: str | None) -> None:
    """Mask this value in every later log line (tokens obtained at run time included)."""
    if value and len(value) >= 6:
        _SECRETS.add(value)


def forget_secrets() -> None:
    """Unregister every secret: the registry is process-wide and only grows, so tests start each from none."""
    _SECRETS.clear()


def _mask(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _scrub(value: object) -> object:
    """A log field's value with every registered secret masked, in nested dicts, lists and tuples too."""
    if isinstance(value, str):
        return _mask(value)
    if isinstance(value, dict):
        return {k: MASK if _SECRET_KEY.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    for key in list(event):
        event[key] = MASK if _SECRET_KEY.search(key) else _scrub(event[key])
    return event


def scrub_text(text: str) -> str:
    """For text that leaves the process outside the log (exception messages, reports)."""
    return _mask(text)


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured: while progress bars
    are drawn, rich puts a proxy there that prints each line above the bars instead of through them."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(
    level: str | None = "info", fmt: Literal["auto", "json", "console"] = "auto", stream: TextIO | None = None
) -> None:
    """`level` None: warnings and worse on a terminal (a person watches the bars and reads the report), info
    for a job's log."""
    out: TextIO | _CurrentStderr = stream or _CurrentStderr()
    if level is None:
        level = "warning" if out.isatty() else "info"
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        # PrintLogger only calls write and flush, which _CurrentStderr has.
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, out)),
        cache_logger_on_first_use=False,
    )
