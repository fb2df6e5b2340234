"""SQL identifier quoting, shared by the store, its lock chain cache, the seed and the SOQL compiler."""

from __future__ import annotations


def quote(name: str) -> str:
    """SQL identifier quoting; names come from the schema, never from a request."""
    return '"' + name.replace('"', '""') + '"'
