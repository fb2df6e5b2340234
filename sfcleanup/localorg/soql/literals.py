"""Decoding SOQL literals into the values the store holds, and relative date literals into date ranges."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sfcleanup.localorg.soql.ast import RelativeDate
from sfcleanup.sftime import format_datetime

# SOQL's escape sequences; the letters are accepted in either case.
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
# Only meaningful in a LIKE pattern; elsewhere SOQL keeps the backslash.
_LIKE_ESCAPES = frozenset("%_")


class IllegalEscape(ValueError):
    def __init__(self, sequence: str) -> None:
        super().__init__(sequence)
        self.sequence = sequence


def decode_string(raw: str, *, like: bool = False) -> str:
    """The text of a quoted literal (quotes already removed).

    With `like`, the result is a SQLite LIKE pattern using `\\` as its ESCAPE character: unescaped `%`/`_`
    stay wildcards, `\\%`/`\\_` become literal, and a decoded backslash is escaped again.
    """
    out: list[str] = []
    chars = iter(raw)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        escaped = next(chars, "")
        if escaped in _LIKE_ESCAPES:
            out.append("\\" + escaped)
            continue
        decoded = _ESCAPES.get(escaped.lower())
        if decoded is None:
            raise IllegalEscape("\\" + escaped)
        out.append("\\\\" if like and decoded == "\\" else decoded)
    return "".join(out)


def relative_date(keyword: str, n: int | None) -> RelativeDate:
    """Day ranges relative to today, [start, end): LAST_N_DAYS:n runs from n days ago through today."""
    name = keyword.upper()
    if name == "TODAY":
        return RelativeDate(0, 1)
    if name == "YESTERDAY":
        return RelativeDate(-1, 0)
    if name == "TOMORROW":
        return RelativeDate(1, 2)
    assert n is not None, "the grammar requires :n after the N_DAYS literals"
    if name == "LAST_N_DAYS":
        return RelativeDate(-n, 1)
    if name == "N_DAYS_AGO":
        return RelativeDate(-n, -n + 1)
    if name == "NEXT_N_DAYS":
        return RelativeDate(1, n + 1)
    raise ValueError(f"unknown date literal {keyword}")


def date_bounds(value: RelativeDate, now: datetime, *, as_datetime: bool) -> tuple[str, str]:
    """The range's bounds in the store's text form: dates for a date field, UTC midnights for a datetime."""
    today = now.astimezone(UTC).date()
    start = today + timedelta(days=value.start_days)
    end = today + timedelta(days=value.end_days)
    if as_datetime:
        return _midnight(start), _midnight(end)
    return start.isoformat(), end.isoformat()


def _midnight(day: date) -> str:
    return format_datetime(datetime.combine(day, time(), tzinfo=UTC))
