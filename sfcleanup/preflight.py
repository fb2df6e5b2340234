"""Read-only checks before any write: the org has what the clean-up needs, each run may be cleaned, and the
API allowance can pay for it. Every problem is reported with what an admin does about it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sfcleanup import billing, ids, queries
from sfcleanup.billing import Phase, RunStatus
from sfcleanup.config import WriteSettings
from sfcleanup.errors import BudgetReserveReached, ConfigError, PreflightError
from sfcleanup.models import InvoiceRun
from sfcleanup.plan import RunPlan
from sfcleanup.readiness import reader as readiness_reader
from sfcleanup.salesforce.api import DescribeApi
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.composite import query_path
from sfcleanup.salesforce.shapes import FieldDescribe, Limits, SObjectDescribe, daily_limits
from sfcleanup.salesforce.writers import jobs_for


@dataclass(frozen=True)
class OrgReadiness:
    run_key_prefix: str
    run_status_values: frozenset[str]
    cleanup_status_values: frozenset[str]
    problems: tuple[str, ...]


def _picklist_values(field: FieldDescribe | None) -> frozenset[str]:
    return field.active_values() if field is not None else frozenset()


def _field_problems(sobject: str, described: dict[str, FieldDescribe]) -> list[str]:
    problems = []
    for name in sorted(
        billing.FIELDS_READ.get(sobject, frozenset()) | billing.FIELDS_WRITTEN.get(sobject, frozenset())
    ):
        field = described.get(name)
        if field is None:
            problems.append(
                f"{sobject}.{name} is missing or not visible: give the integration user read access to it "
                "(permission set config/permissionset/sfcleanup.permissionset-meta.xml)"
            )
        elif name in billing.FIELDS_WRITTEN.get(sobject, frozenset()) and not field.updateable:
            problems.append(f"{sobject}.{name} is read-only for the integration user: grant edit access to it")
    return problems


def _value_problems(sobject: str, described: dict[str, FieldDescribe]) -> list[str]:
    problems = []
    for (owner, name), needed in billing.REQUIRED_PICKLIST_VALUES.items():
        if owner != sobject or name not in described:
            continue
        for value in sorted(str(v) for v in needed - _picklist_values(described[name])):
            problems.append(
                f"picklist value {value!r} is missing from {sobject}.{name}: an admin adds it in Setup > Object "
                f"Manager > {sobject} > Fields > {name} > Values (API name exactly {value!r})"
            )
    return problems


# The Billing objects preflight describes, in the order `describe_paths` asks for them.
DESCRIBED = (billing.INVOICE_RUN, billing.INVOICE, billing.INVOICE_LINE, billing.ORDER_PRODUCT, billing.USAGE_SUMMARY)


def describe_paths() -> list[str]:
    return [f"sobjects/{sobject}/describe/" for sobject in DESCRIBED]


def check_org(client: DescribeApi) -> OrgReadiness:
    """Describe the Billing objects; collect every missing field, permission and picklist value at once."""
    problems: list[str] = []
    fields_by_object: dict[str, dict[str, FieldDescribe]] = {}
    prefix = ""
    describes = client.get_many("describe", describe_paths())
    for sobject, body in zip(DESCRIBED, describes, strict=True):
        describe = SObjectDescribe.model_validate(body)
        if sobject == billing.INVOICE_RUN:
            prefix = describe.key_prefix or ""
        described = describe.by_name()
        fields_by_object[sobject] = described
        problems += _field_problems(sobject, described)
        problems += _value_problems(sobject, described)
    run_fields = fields_by_object[billing.INVOICE_RUN]
    return OrgReadiness(
        run_key_prefix=prefix,
        run_status_values=_picklist_values(run_fields.get(billing.RUN_STATUS)),
        cleanup_status_values=_picklist_values(run_fields.get(billing.CLEANUP_STATUS)),
        problems=tuple(problems),
    )


def require_ready(readiness: OrgReadiness) -> None:
    if readiness.problems:
        more = (
            f" (and {len(readiness.problems) - 1} more; `sfcleanup config check` lists all)"
            if len(readiness.problems) > 1
            else ""
        )
        raise PreflightError(readiness.problems[0] + more)


def parse_run_ids(raw: Sequence[str], key_prefix: str | None = None) -> list[str]:
    """Validate run ids as typed (length, characters, checksum, the invoice run's key prefix)."""
    out: list[str] = []
    for value in raw:
        try:
            full = ids.to18(value.strip())
        except ids.InvalidId as exc:
            raise ConfigError(f"{exc}; copy the run's id from its URL in Salesforce") from None
        if key_prefix and full[:3] != key_prefix:
            raise ConfigError(
                f"{value!r} is not an invoice run id: invoice run ids start with {key_prefix!r} in this org"
            )
        if full not in out:
            out.append(full)
    return out


def runs_query(run_ids: Sequence[str]) -> str:
    return queries.render("invoice_run", ids=list(run_ids))


def startup_paths(*, describe: bool, raw_run_ids: Sequence[str] = ()) -> list[str]:
    """What preflight reads first, for `SalesforceClient.prefetch` to read in the call that reads the org's
    identity: the Billing objects' describes, and the runs' record when every id is well formed (a malformed one
    is refused, as before, when preflight parses the ids, and nothing is read for it)."""
    paths = describe_paths() if describe else []
    try:
        run_ids = parse_run_ids(raw_run_ids)
    except ConfigError:
        run_ids = []
    if run_ids:
        paths.append(query_path(runs_query(run_ids)))
    return paths


def read_runs(client: SalesforceClient, run_ids: Sequence[str]) -> dict[str, InvoiceRun]:
    rows = client.query_all(runs_query(run_ids))
    return {str(r["Id"]): InvoiceRun.model_validate(r) for r in rows}


def read_runs_and_limits(client: SalesforceClient, run_ids: Sequence[str]) -> tuple[dict[str, InvoiceRun], Limits]:
    """The runs, read to the last page, and the org's daily API allowance.

    The allowance comes from the Sforce-Limit-Info header the query's answer carried, at no extra call; only
    when the org sent none is `GET /limits` asked, on its own (Composite does not support `/limits`).
    """
    runs = read_runs(client, run_ids)
    used, maximum = client.usage.used, client.usage.max
    if used is not None and maximum:
        return runs, {"DailyApiRequests": {"Max": maximum, "Remaining": max(maximum - used, 0)}}
    return runs, daily_limits(client.limits())


def check_runs(
    client: SalesforceClient, run_ids: Sequence[str], readiness: OrgReadiness, *, include_completed: bool
) -> tuple[list[InvoiceRun], Limits]:
    """The runs, in the order given, and the org's limits; refuses unknown, running, and (without the flag)
    completed runs."""
    found, limits = read_runs_and_limits(client, run_ids)
    runs = []
    for run_id in run_ids:
        run = found.get(run_id)
        if run is None:
            raise PreflightError(f"invoice run {run_id} does not exist in this org (or the user cannot see it)")
        refusal = refusal_for(run, readiness, include_completed=include_completed)
        if refusal:
            raise PreflightError(refusal)
        runs.append(run)
    return runs, limits


def refusal_for(run: InvoiceRun, readiness: OrgReadiness, *, include_completed: bool) -> str | None:
    """Why this run must not be cleaned now, or None."""
    if billing.run_is_running(run.status):
        return f"invoice run {run.id} is still running ({run.status}): cleaning it would corrupt a live job"
    if run.status == RunStatus.COMPLETED:
        if not include_completed:
            return (
                f"invoice run {run.id} completed cleanly; to clean it anyway pass --include-completed, which first "
                "sets its status to Completed with errors"
            )
        return None
    failed_values = billing.FAILED_RUN_STATES & (readiness.run_status_values or billing.FAILED_RUN_STATES)
    if run.status not in failed_values:
        return f"invoice run {run.id} has status {run.status!r}, which is not a failed state; nothing to clean"
    return None


# Calls beyond the writes: CleanUp Status Started and final, verify counts per object, and the odd status.
FIXED_CALLS_PER_RUN = 2 + 4 + 1
# The org's identity (Organization and user, one Composite call): read once per invocation, counted with each
# run, which over-counts an invocation of several runs by a call a run.
ORG_IDENTITY_CALLS = 1


# One Bulk API 2.0 job: create, upload, close, a few polls, three result files.
BULK_CALLS_PER_JOB = 11


# Lock retries are counted for a busy org's share of rows refused on a lock (5%): each round sends again what the
# round before lost, in full calls, until less than half a row is expected (600 rows: rounds of 30 and 1.5 rows,
# two calls). A more contended org takes more, and the run's own check of the allowance stops it at the reserve.
LOCK_FAILURE_SHARE = 0.05


def lock_retry_calls(changes: int, per_call: int) -> int:
    calls = 0
    left = changes * LOCK_FAILURE_SHARE
    while left >= 0.5:
        calls += math.ceil(left / per_call)
        left *= LOCK_FAILURE_SHARE
    return calls


def estimate_phase_calls(changes: int, *, per_call: int, bulk_jobs: int = 0) -> int:
    """API calls one phase's writes take: Composite calls, or `bulk_jobs` Bulk jobs (lock retries excluded)."""
    if not changes:
        return 0
    return BULK_CALLS_PER_JOB * bulk_jobs if bulk_jobs else math.ceil(changes / per_call)


def estimate_run(plan: RunPlan, write: WriteSettings, *, readiness_after: bool = True) -> int:
    """API calls one run's clean-up takes: each phase on the route it will take with its lock retries, the fixed
    calls, and the readiness section that ends `run` and `sweep` (read-only) unless it is turned off."""
    if plan.is_empty:
        return 0
    per_call = write.batch_size * write.collections_per_call
    phases = sum(
        estimate_phase_calls(len(c), per_call=per_call, bulk_jobs=jobs_for(len(c), write))
        + canary_calls(len(c), write)
        + lock_retry_calls(len(c), per_call)
        for c in plan.changes.values()
    )
    sources = len(plan.changes[Phase.ORDER_PRODUCTS]), len(plan.changes[Phase.USAGE_SUMMARIES])
    readiness = readiness_reader.estimated_calls(*sources) if readiness_after else 0
    return phases + FIXED_CALLS_PER_RUN + ORG_IDENTITY_CALLS + readiness


def canary_calls(changes: int, write: WriteSettings) -> int:
    """What the canary batch adds to a phase: its own Composite call when the phase is larger than it. Its
    read-back rides in that call (a query after the writes); a phase no larger is the canary alone, one call."""
    return 1 if changes > write.canary_records else 0


def check_budget(limits: Limits, estimate: int, reserve: float) -> dict[str, int]:
    """Refuse to start writing if the estimate would eat into the reserve left for the rest of the business."""
    daily = limits.get("DailyApiRequests", {})
    maximum, remaining = int(daily.get("Max", 0)), int(daily.get("Remaining", 0))
    keep = math.ceil(maximum * reserve)
    budget = {"max": maximum, "remaining": remaining, "reserve": keep, "estimate": estimate}
    if estimate and remaining - estimate < keep:
        raise BudgetReserveReached(
            f"the clean-up needs about {estimate} API calls but only {remaining - keep} are available above the "
            f"{reserve:.0%} reserve ({remaining} of {maximum} left today); run later or lower api_reserve"
        )
    return budget
