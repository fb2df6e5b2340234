"""SQL identifier quoting and id lists, shared by the store, its lock chain cache, the seed and the SOQL compiler."""

from __future__ import annotations


def quote(name: str) -> str:
    """SQL identifier quoting; names come from the schema, never from a request."""
    return '"' + name.replace('"', '""') + '"'


# Ids per `WHERE Id IN (...)` query: well under SQLite's limit on bound parameters (999 before 3.32).
IN_CHUNK = 500


def id_chunks(record_ids: list[str]) -> list[tuple[str, list[str]]]:
    """`Id IN (?, ...)` conditions with their parameters, for reading many records a few queries at a time."""
    chunks = [record_ids[start : start + IN_CHUNK] for start in range(0, len(record_ids), IN_CHUNK)]
    return [(f"Id IN ({', '.join('?' * len(chunk))})", chunk) for chunk in chunks]
