"""The readiness engine: will the next invoice run bill each record the clean-up reset, and if not, why.

Pure: no client, no clock, no logging. Today's date and the fields the org has are passed in, so the same
inputs always give the same answer and every rule can be tested from a table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date

from pydantic import BaseModel, ConfigDict

from sfcleanup.readiness.catalog import RULES, Basis, RuleSpec, Severity
from sfcleanup.readiness.checks import DRAFT, Context, run_check
from sfcleanup.readiness.fields import ORDER_PRODUCT, USAGE_SUMMARY
from sfcleanup.readiness.models import InvoiceLineState, InvoiceScheduler, OrderProductState, UsageSummaryState


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Reason(_Frozen):
    """Why one record will not (or may not) be billed: what to tell an admin and which field to look at."""

    code: str
    message: str
    field: str
    value: str | None
    severity: Severity
    basis: Basis
    source: str


class RecordReadiness(_Frozen):
    sobject: str
    id: str
    reasons: tuple[Reason, ...] = ()

    @property
    def ready(self) -> bool:
        """No reason blocks it. A borderline reason alone leaves it ready, with a note."""
        return not any(reason.severity is Severity.BLOCKS for reason in self.reasons)


class DisabledRule(_Frozen):
    code: str
    missing: tuple[str, ...]
    note: str


class Readiness(_Frozen):
    records: tuple[RecordReadiness, ...]
    # Records per reason code (a record counts once per code).
    counts: dict[str, int]
    disabled: tuple[DisabledRule, ...]

    @property
    def ready(self) -> tuple[RecordReadiness, ...]:
        return tuple(record for record in self.records if record.ready)

    @property
    def not_ready(self) -> tuple[RecordReadiness, ...]:
        return tuple(record for record in self.records if not record.ready)


def active_rules(available_fields: frozenset[str]) -> tuple[tuple[RuleSpec, ...], tuple[DisabledRule, ...]]:
    """The rules whose every field the org has, and the others with what they miss."""
    on: list[RuleSpec] = []
    off: list[DisabledRule] = []
    for rule in RULES:
        missing = tuple(name for name in rule.fields if name not in available_fields)
        if missing:
            note = f"off: this org has no {', '.join(missing)}, so '{rule.summary}' was not checked"
            off.append(DisabledRule(code=rule.code, missing=missing, note=note))
        else:
            on.append(rule)
    return tuple(on), tuple(off)


def _assess_one(
    sobject: str, record: OrderProductState | UsageSummaryState, rules: Iterable[RuleSpec], context: Context
) -> RecordReadiness:
    reasons = []
    for rule in rules:
        if rule.sobject != sobject:
            continue
        finding = run_check(rule.code, record, context)
        if finding is not None:
            reasons.append(
                Reason(
                    code=rule.code,
                    message=finding.message,
                    field=rule.field,
                    value=finding.value,
                    severity=finding.severity,
                    basis=rule.basis,
                    source=rule.source,
                )
            )
    return RecordReadiness(sobject=sobject, id=record.id, reasons=tuple(reasons))


def assess(
    order_products: Iterable[OrderProductState],
    usage_summaries: Iterable[UsageSummaryState],
    schedulers: Iterable[InvoiceScheduler],
    lines: Iterable[InvoiceLineState],
    *,
    available_fields: frozenset[str],
    today: date,
) -> Readiness:
    """Per record, the reasons the next invoice run will not bill it; counts per reason; rules turned off.

    `lines` are invoice lines naming the records (any status: only Draft ones matter). `today` decides
    whether a one-time scheduler will still run.
    """
    rules, disabled = active_rules(available_fields)
    draft: dict[str, list[InvoiceLineState]] = {}
    for line in lines:
        if line.status != DRAFT:
            continue
        for source in {line.order_product_id, line.usage_summary_id} - {None}:
            draft.setdefault(str(source), []).append(line)
    context = Context(schedulers=tuple(schedulers), today=today, draft_lines=draft)
    records = [_assess_one(ORDER_PRODUCT, record, rules, context) for record in order_products]
    records += [_assess_one(USAGE_SUMMARY, record, rules, context) for record in usage_summaries]
    counts = Counter(code for record in records for code in {reason.code for reason in record.reasons})
    return Readiness(records=tuple(records), counts=dict(sorted(counts.items())), disabled=disabled)


def combine(parts: Iterable[Readiness]) -> Readiness:
    """Readiness of parts assessed apart (the same rules, org and day), as one: records in order, counts summed."""
    records: list[RecordReadiness] = []
    counts: Counter[str] = Counter()
    disabled: tuple[DisabledRule, ...] = ()
    for part in parts:
        records += part.records
        counts.update(part.counts)
        disabled = part.disabled
    return Readiness(records=tuple(records), counts=dict(sorted(counts.items())), disabled=disabled)
