"""Salesforce record ids: validation, 15 -> 18 conversion and generation.

An id is 15 case-sensitive base-62 characters; the 18-character form adds a 3-character checksum that encodes
which of the 15 are upper case, so case-insensitive tools can round-trip it. The first three characters are the
object's key prefix.

The checksum: split the 15 characters into three chunks of 5; in each chunk, bit `i` (least significant first)
is set when character `i` is an upper-case letter; the 5-bit number picks one character of "A".."Z", "0".."5".
"""

from __future__ import annotations

import itertools
import string

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_CHECKSUM_ALPHABET = string.ascii_uppercase + "012345"
_ID_CHARS = frozenset(_BASE62)

# The local org validates an id on every read and generates one for every seeded row, so the checksum is hot
# (hundreds of thousands of calls per benchmark). Instead of testing each character in Python, one C-level
# `str.translate` turns the id into a string of "1" (upper case) and "0" (digit or lower case), and each 5-flag
# chunk is looked up whole. The table also holds the shorter chunks a short input gives, so any string of id
# characters gets exactly the result of the character-by-character definition (kept as `_checksum_slow`).
_CASE_FLAGS = str.maketrans(_BASE62, "0" * 10 + "1" * 26 + "0" * 26)
_CHUNK_CHAR: dict[str, str] = {
    "".join(flags): _CHECKSUM_ALPHABET[sum(1 << i for i, flag in enumerate(flags) if flag == "1")]
    for size in range(6)
    for flags in itertools.product("01", repeat=size)
}
# Two base-62 digits per lookup: `make` needs four divisions instead of nine (3,844 short strings).
_PAIRS = tuple(high + low for high in _BASE62 for low in _BASE62)
_COUNTER_LIMIT = 62**9


class InvalidId(ValueError):
    """Raised with a one-line, human-readable reason."""


def _checksum_slow(id15: str) -> str:
    """The definition, character by character; used for strings holding characters outside the id alphabet."""
    out = []
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if char in string.ascii_uppercase:
                bits |= 1 << position
        out.append(_CHECKSUM_ALPHABET[bits])
    return "".join(out)


def checksum(id15: str) -> str:
    """The three checksum characters for a 15-character id."""
    flags = id15[:15].translate(_CASE_FLAGS)
    try:
        return _CHUNK_CHAR[flags[0:5]] + _CHUNK_CHAR[flags[5:10]] + _CHUNK_CHAR[flags[10:15]]
    except KeyError:
        # A character translate left alone (not an id character): only the definition knows what it counts as.
        return _checksum_slow(id15)


def to18(value: str) -> str:
    """Validate a 15- or 18-character id and return its 18-character form.

    Raises InvalidId naming what is wrong: length, characters, or a checksum that does not match.
    """
    if len(value) not in (15, 18):
        raise InvalidId(f"{value!r} is not a Salesforce id: it has {len(value)} characters, not 15 or 18")
    # isascii() and isalnum() together accept exactly [0-9A-Za-z], in C; the set difference (which also names
    # the offending characters) is only needed to word the error.
    if not (value.isascii() and value.isalnum()):
        bad = sorted(set(value) - _ID_CHARS)
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
    if type(number) is int and 0 <= number < _COUNTER_LIMIT:
        # Nine base-62 digits, most significant first: one single digit, then four pairs.
        number, d89 = divmod(number, 3844)
        number, d67 = divmod(number, 3844)
        number, d45 = divmod(number, 3844)
        first, d23 = divmod(number, 3844)
        counter = _BASE62[first] + _PAIRS[d23] + _PAIRS[d45] + _PAIRS[d67] + _PAIRS[d89]
    else:
        counter = _counter_slow(number)
    # "5g" stands where a real org puts its pod identifier, "0" is Salesforce's reserved character.
    id15 = prefix + "5g0" + counter
    return id15 + checksum(id15)


def _counter_slow(number: int) -> str:
    """The nine-digit counter one digit at a time; raises for numbers the fast path does not take (as it always did)."""
    digits = []
    for _ in range(9):
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    if number:
        raise ValueError("record number out of range for a 9-character counter")
    return "".join(reversed(digits))
