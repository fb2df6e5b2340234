"""Rows that finally failed, written back to the org as Error Logs on the run.

Admins look at a run's Error Logs related list after the package's own clean-up; sfcleanup's failures land
there too, one `blng__ErrorLog__c` per record, marked as coming from sfcleanup.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import structlog

from sfcleanup import billing
from sfcleanup.errors import AmbiguousWrite
from sfcleanup.journal import Journal
from sfcleanup.outcomes import Failure
from sfcleanup.salesforce.client import SalesforceClient

ORIGIN = "sfcleanup"
BATCH = 200  # sObject Collections create limit
log = structlog.get_logger("sfcleanup.errorlogs")


def error_log_record(run_id: str, failure: Failure, journal: str) -> dict[str, object]:
    detail = {
        "origin": ORIGIN,
        "object": failure.sobject,
        "record_id": failure.id,
        "code": failure.code,
        "message": failure.message,
        "journal": journal,
    }
    return {
        "attributes": {"type": billing.ERROR_LOG},
        billing.RUN_LOOKUP: run_id,
        "blng__ErrorCode__c": failure.code[:255],
        "blng__ErrorName__c": f"{ORIGIN}: {failure.sobject} {failure.id}"[:255],
        "blng__Summary__c": f"{failure.sobject} {failure.id}: {failure.message}"[:255],
        "blng__FullErrorLog__c": json.dumps(detail, indent=1)[:32768],
    }


def write_error_logs(
    client: SalesforceClient, run_id: str, failures: Sequence[Failure], journal: Journal
) -> tuple[int, int]:
    """Create one error log per failure, 200 per call; returns (created, not created). Never stops the run:
    the journal and the failures CSV hold the same facts."""
    created = refused = 0
    for start in range(0, len(failures), BATCH):
        chunk = [error_log_record(run_id, f, str(journal.path)) for f in failures[start : start + BATCH]]
        try:
            results = client.create_records(chunk)
        except AmbiguousWrite as exc:
            # Sending again could duplicate them; they are in the journal and the CSV either way.
            log.warning("errorlogs.unknown_outcome", reason=str(exc), records=len(chunk))
            refused += len(chunk)
            continue
        ok = [str(r["id"]) for r in results if r.get("success")]
        created += len(ok)
        refused += len(results) - len(ok)
        journal.note("error_logs", created=ok, refused=len(results) - len(ok))
    log.info("errorlogs.written", created=created, refused=refused)
    return created, refused
