"""Salesforce record ids: validation, 15 -> 18 conversion and generation.

An id is 15 case-sensitive base-62 characters; the 18-character form adds a 3-character checksum that encodes
which of the 15 are upper case, so case-insensitive tools can round-trip it. The first three characters are the
object's key prefix.
"""

from __future__ import annotations

import string

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_CHECKSUM_ALPHABET = string.ascii_uppercase + "012345"
_ID_CHARS = frozenset(_BASE62)


class InvalidId(ValueError):
    """Raised with a one-line, human-readable reason."""


def checksum(id15: str) -> str:
    """The three checksum characters for a 15-character id."""
    out = []
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if char in string.ascii_uppercase:
                bits |= 1 << position
        out.append(_CHECKSUM_ALPHABET[bits])
    return "".join(out)


def to18(value: str) -> str:
    """Validate a 15- or 18-character id and return its 18-character form.

    Raises InvalidId naming what is wrong: length, characters, or a checksum that does not match.
    """
    if len(value) not in (15, 18):
        raise InvalidId(f"{value!r} is not a Salesforce id: it has {len(value)} characters, not 15 or 18")
    bad = sorted(set(value) - _ID_CHARS)
    if bad:
        raise InvalidId(f"{value!r} is not a Salesforce id: it contains {''.join(bad)!r}")
    expected = checksum(value[:15])
    if len(value) == 18 and value[15:] != expected:
        raise InvalidId(f"{value!r} is not a Salesforce id: its checksum should be {expected!r}")
    return value[:15] + expected


def is_valid(value: str) -> bool:
    try:
        to18(value)
    except InvalidId:
        return False
    return True


def make(prefix: str, number: int) -> str:
    """The 18-character id of the `number`-th record of an object with this 3-character key prefix."""
    if len(prefix) != 3:
        raise ValueError(f"key prefix {prefix!r} must have 3 characters")
    digits = []
    for _ in range(9):
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    if number:
        raise ValueError("record number out of range for a 9-character counter")
    # "5g" stands where a real org puts its pod identifier, "0" is Salesforce's reserved character.
    id15 = prefix + "5g0" + "".join(reversed(digits))
    return id15 + checksum(id15)
