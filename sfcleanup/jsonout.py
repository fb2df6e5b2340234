"""`--json`: exactly one JSON object on stdout, whatever happens. A report when the command ran to its end
(`"status": "ok"`; its `exit_code` says how it went), else an error object (`"status": "error"`) with the exit
code and the one-line message a person would have read. Both are described by `schemas/report.schema.json`."""

from __future__ import annotations

import json
import sys
from importlib import resources
from typing import TextIO

from sfcleanup.errors import ExitCode

SCHEMA_RESOURCE = "schemas/report.schema.json"


def error_document(code: str, message: str, exit_code: int) -> dict[str, object]:
    """The sf CLI's shape, as admins know it: the error inside the one object, never a bare stderr line."""
    return {"status": "error", "exit_code": exit_code, "error": {"code": code, "message": message}}


def usage_error(message: str) -> dict[str, object]:
    return error_document("usage_error", message, int(ExitCode.BAD_INPUT))


def write(document: dict[str, object], stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(json.dumps(document, indent=2) + "\n")
    out.flush()


def schema_text() -> str:
    """The JSON Schema of every `--json` document, as shipped in the package."""
    return resources.files("sfcleanup").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
