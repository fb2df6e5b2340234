"""Salesforce's wire formats for dates and datetimes, shared by the store, SOQL and the HTTP layer."""

from __future__ import annotations

from datetime import UTC, date, datetime

# What the REST API returns, e.g. 2026-11-26T07:11:15.000+0000. Stored in this one form so that text
# comparison in SQLite orders datetimes correctly.
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.000+0000"


def format_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime(DATETIME_FORMAT)


def parse_datetime(text: str) -> datetime:
    """Accept what clients send: `Z` or `+hh:mm`/`+hhmm` offsets, with or without milliseconds."""
    cleaned = text.strip()
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    if len(cleaned) >= 5 and cleaned[-5] in "+-" and cleaned[-3] != ":":
        cleaned = cleaned[:-2] + ":" + cleaned[-2:]
    parsed = datetime.fromisoformat(cleaned)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def normalise_datetime(text: str) -> str:
    return format_datetime(parse_datetime(text))


def normalise_date(text: str) -> str:
    return date.fromisoformat(text.strip()).isoformat()
