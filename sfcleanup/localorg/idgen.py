"""Record ids as untidy as a real org's: valid 15/18-character ids whose order says nothing about creation order.

Salesforce documents ids only as opaque 15/18-character keys with a key prefix; nothing promises that a later
record gets a larger id, and in practice ids from different app servers interleave. A worker that sorts by Id to
find "the newest" or pages by `Id > last` across writes must break here, not in production. So the local org
numbers its rows as before (the rowid) and maps each number through a fixed permutation of the nine-digit
base-62 counter space before building the id: unique (a bijection), cheap (one multiply and add), stable across
processes sharing one state file (fixed constants), and far from monotonic.
"""

from __future__ import annotations

from sfcleanup import ids

_SPACE = 62**9
# Odd and not a multiple of 31, so coprime with 62**9 = 2**9 * 31**9: x -> (A*x + B) mod 62**9 is a bijection.
_A = 6_700_417 * 2_147_483_647 * 97
_B = 4_611_686_018_427_387_903 % _SPACE


def scramble(number: int) -> int:
    """The counter the id of the `number`-th record carries."""
    return (_A * number + _B) % _SPACE


def record_id(prefix: str, number: int) -> str:
    """The 18-character id of the `number`-th record with this key prefix (as `ids.make`, scrambled)."""
    return ids.make(prefix, (_A * number + _B) % _SPACE)
