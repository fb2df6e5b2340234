"""`sfcleanup status RUN_ID`: what is left per object and state, the CleanUp Status and lease, the anomalies.

Read-only: the org and user, describe, the run, its lease records, one aggregate query per object, and the
records needed to name the anomalies.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from sfcleanup import billing, preflight
from sfcleanup.commands.common import configure_logs, connect, connection_options, settings_from
from sfcleanup.commands.guard import org_of
from sfcleanup.errors import PreflightError
from sfcleanup.lease import Leases
from sfcleanup.locallock import default_identity
from sfcleanup.salesforce.read import eligible_left, plan_streaming, remaining_by_status


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser("status", help="what is left of a run's clean-up; writes nothing")
    status.add_argument("run_id", metavar="RUN_ID")
    connection_options(status)
    status.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace, out: Console) -> int:
    settings = settings_from(args)
    configure_logs(settings)
    client = connect(settings)
    # Which org the figures are of: two orgs can hold a run of the same id (a sandbox refreshed from production).
    org = org_of(client, describe=True, run_ids=[args.run_id])
    readiness = preflight.check_org(client)
    run_id = preflight.parse_run_ids([args.run_id], readiness.run_key_prefix)[0]
    run = preflight.read_runs(client, [run_id]).get(run_id)
    if run is None:
        raise PreflightError(f"invoice run {run_id} does not exist in this org (or the user cannot see it)")
    leases = Leases(client, settings.worker_id or default_identity(settings.journal_dir), settings.lease_timeout_s)
    holder = leases.holder_other_than_me(run_id)
    remaining = remaining_by_status(client, run_id)
    plan, _ = plan_streaming(client, run)
    document: dict[str, Any] = {
        "org": org.as_json(),
        "id": run.id,
        "name": run.name,
        "run_status": run.status,
        "cleanup_status": run.cleanup_status,
        "refusal": preflight.refusal_for(run, readiness, include_completed=False),
        "lease": {"holder": holder.holder, "last_seen": holder.last_seen.isoformat()} if holder else None,
        "remaining": remaining,
        "eligible": eligible_left(remaining),
        "planned": plan.total,
        "anomalies": [
            {"id": a.id, "object": a.sobject, "reason": a.reason.value, "detail": a.detail} for a in plan.anomalies
        ],
    }
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    out.print(org.line(), markup=False)
    out.print(f"Invoice run {run.id} ({run.name}): status {run.status}, CleanUp Status {run.cleanup_status or '-'}")
    if holder:
        out.print(f"  being cleaned by {holder.holder}, last seen {holder.last_seen.isoformat()}")
    if document["refusal"]:
        out.print(f"  {document['refusal']}")
    table = Table(title="Records linked to the run, by state", title_justify="left")
    for column in ("object", "state", "records", "eligible for clean-up"):
        table.add_column(column)
    for sobject, states in remaining.items():
        for state, count in sorted(states.items()):
            eligible = "yes" if count and state in billing.RULE_BY_OBJECT[sobject].from_states else ""
            table.add_row(sobject, state, str(count), eligible)
    out.print(table)
    out.print(f"  {plan.total} record(s) would be cleaned now; {len(plan.anomalies)} anomalies need a person")
    for anomaly in plan.anomalies[:20]:
        out.print(f"  anomaly {anomaly.sobject} {anomaly.id}: {anomaly.detail}")
    return 0
