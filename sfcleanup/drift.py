"""Drift: what changed in the org between a reviewed plan and its application.

Just before writing, every planned record is read again; a record whose current values are not the plan's
before-values (someone or something changed it, or it was deleted) is not written: it is reported `drifted`,
and what depends on it is held back like what depends on a failed row.

Reading costs at most ceil(N/2000) calls for N planned records: queries of up to 1,000 ids (a result that never
pages: Salesforce documents pages of up to 2,000 records, and shortens them to no less than half), five to a
Composite call. The SOQL travels in the Composite body, not in a URL, which is how Salesforce's knowledge
article 000386264 says to send a statement longer than the 16,384-byte URI limit; 1,000 ids stay far below the
100,000-character limit on a SOQL statement.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from urllib.parse import urlencode

from sfcleanup import queries
from sfcleanup.billing import RULE_BY_PHASE, Phase
from sfcleanup.changes import Change
from sfcleanup.plan import RunPlan
from sfcleanup.salesforce.api import DescribeApi
from sfcleanup.salesforce.shapes import query_records
from sfcleanup.sftime import parse_datetime

IDS_PER_QUERY = 1000
QUERIES_PER_CALL = 5
# A datetime as Salesforce writes it: REST answers `...000+0000`, a Bulk API 2.0 query job's CSV `...000Z`.
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})")


@dataclass(frozen=True)
class Drifted:
    """A planned record whose values in the org are no longer the plan's before-values."""

    id: str
    sobject: str
    reason: str


def reread_calls(plan: RunPlan) -> int:
    """Calls `find_drift` makes for this plan."""
    queries_needed = sum(math.ceil(len(plan.changes[phase]) / IDS_PER_QUERY) for phase in Phase)
    return math.ceil(queries_needed / QUERIES_PER_CALL)


def _chunks(plan: RunPlan) -> Iterator[tuple[Phase, list[Change]]]:
    for phase in Phase:
        changes = iter(plan.changes[phase])
        while chunk := list(islice(changes, IDS_PER_QUERY)):
            yield phase, chunk


def _path(phase: Phase, chunk: Sequence[Change]) -> str:
    rule = RULE_BY_PHASE[phase]
    soql = queries.render(
        "verify_by_ids", fields=", ".join(rule.fields), sobject=rule.sobject, ids=[c.id for c in chunk]
    )
    return "query/?" + urlencode({"q": soql})


def _compare(change: Change, row: dict[str, object] | None) -> Drifted | None:
    if row is None:
        return Drifted(change.id, change.sobject, "drifted: deleted, or no longer visible, since the plan")
    now = {name: row.get(name) for name in change.before}
    changed = [name for name, planned in change.before.items() if not same_value(planned, now[name])]
    if not changed:
        return None
    differs = ", ".join(f"{k} {change.before[k]!r} -> {now[k]!r}" for k in changed)
    return Drifted(change.id, change.sobject, f"drifted since the plan: {differs}")


def same_value(planned: object, current: object) -> bool:
    """Whether the org still holds the planned value. A plan read through a Bulk API query job holds its
    datetimes as `...Z`, a re-read through REST answers `...+0000`: the same instant is the same value."""
    if planned == current:
        return True
    both_datetimes = (
        isinstance(planned, str)
        and isinstance(current, str)
        and _DATETIME.fullmatch(planned) is not None
        and _DATETIME.fullmatch(current) is not None
    )
    return both_datetimes and parse_datetime(str(planned)) == parse_datetime(str(current))


def find_drift(client: DescribeApi, plan: RunPlan) -> dict[Phase, dict[str, Drifted]]:
    """Per phase, the planned records whose values differ from the plan's before-values (read-only)."""
    drifted: dict[Phase, dict[str, Drifted]] = {phase: {} for phase in Phase}
    chunks = _chunks(plan)
    while batch := list(islice(chunks, QUERIES_PER_CALL)):
        pages = client.get_many("re-read planned records", [_path(phase, chunk) for phase, chunk in batch])
        for (phase, chunk), page in zip(batch, pages, strict=True):
            by_id = {str(r["Id"]): r for r in query_records(page)}
            for change in chunk:
                found = _compare(change, by_id.get(change.id))
                if found is not None:
                    drifted[phase][change.id] = found
    return drifted
