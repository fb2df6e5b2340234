"""Will the next invoice run bill what the clean-up reset? The rules, their inputs, and a reader for them.

`assess` is pure (engine.py); `reader.read` fetches its inputs from an org, trimmed to the fields it has.
"""

from sfcleanup.readiness.catalog import RULE_BY_CODE, RULES, Basis, RuleSpec, Severity
from sfcleanup.readiness.engine import DisabledRule, Readiness, Reason, RecordReadiness, active_rules, assess
from sfcleanup.readiness.fields import READINESS_FIELDS_READ, READINESS_NOT_PERMISSIONABLE, available_from_describe
from sfcleanup.readiness.models import InvoiceLineState, InvoiceScheduler, OrderProductState, UsageSummaryState

__all__ = [
    "READINESS_FIELDS_READ",
    "READINESS_NOT_PERMISSIONABLE",
    "RULES",
    "RULE_BY_CODE",
    "Basis",
    "DisabledRule",
    "InvoiceLineState",
    "InvoiceScheduler",
    "OrderProductState",
    "Readiness",
    "Reason",
    "RecordReadiness",
    "RuleSpec",
    "Severity",
    "UsageSummaryState",
    "active_rules",
    "assess",
    "available_from_describe",
]
