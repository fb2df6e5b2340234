"""The SOQL the worker runs, kept as `*.soql` files beside this module and rendered with safe quoting.

Placeholders use simple-salesforce's `format_soql` syntax (`{run_id}`, `{ids}`): values are quoted and escaped
by it, never pasted into the text, so an id or a name cannot change the statement.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from simple_salesforce.format import format_soql


@cache
def template(name: str) -> str:
    """The text of `name.soql`, with comment lines (`--`) removed and whitespace folded."""
    text = resources.files(__package__).joinpath(f"{name}.soql").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("--")]
    return " ".join(lines)


def names() -> list[str]:
    return sorted(
        entry.name.removesuffix(".soql")
        for entry in resources.files(__package__).iterdir()
        if entry.name.endswith(".soql")
    )


def render(name: str, **params: object) -> str:
    rendered: str = format_soql(template(name), **params)
    return rendered
