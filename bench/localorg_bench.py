"""Benchmark of the local org itself: what seeding, reading and writing N billing sources costs.

    .venv/bin/python -m bench.localorg_bench [--records N] [--json] [--latency none|cloud] [--bulk-wait S]

Every API step goes through unmodified simple-salesforce over the in-process adapter, so the figures include
the client's own work (requests, JSON and CSV handling) but no socket. With `--latency none` (the default) the
org simulates no time at all: what is left is the org's own cost. `--latency cloud` adds the documented
`LatencyModel.cloud()` sleeps.

Steps, on a fresh in-memory store seeded with the `scale` scenario:

1. seed the store;
2. REST query of every order product linked to the run (query/queryMore, batchSize 2000);
3. the same query as a Bulk API 2.0 query job;
4. update them all to Pending Billing through composite calls of 5 sObject Collections of 200 records, serially;
5. set them all to Error with a Bulk API 2.0 update job fed by a CSV file (written before the clock starts);
6. check the final state with SQL straight in the store.

Columns: `api_calls` is the delta of `org.stats.api_calls` over the step (so bulk polling counts);
`peak_rss_mb` is the process's high-water mark so far (`ru_maxrss`, so it only grows: the step that raises it
is the one that needed the memory); `rss_mb` is the resident size when the step ended (psutil).
The exit status is 0 when every step is ok, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# psutil ships no type hints and types-psutil is not in the dev extras; it gives one number, the current RSS.
import psutil  # type: ignore[import-untyped]
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.bulk2 import SFBulk2Handler, SFBulk2Type

from sfcleanup.localorg import bulk
from sfcleanup.localorg.adapter import mount
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile, LatencyModel
from sfcleanup.localorg.seed import check_records, seed
from sfcleanup.localorg.store import Store

DEFAULT_RECORDS = 100_000
API_VERSION = "62.0"
QUERY_BATCH = 2000
COLLECTION_RECORDS = 200
COLLECTIONS_PER_CALL = 5
STATUS_FIELD = "blng__InvoiceRunProcessingStatus__c"
INDEX_FIELD = "blng__InvoiceRunStatusIndex__c"
FIELDS = ("Id", STATUS_FIELD, "OrderId", "Order.AccountId")
PENDING = "Pending Billing"
RESET = "Error"
LATENCIES: dict[str, LatencyModel] = {"none": LatencyModel(), "cloud": LatencyModel.cloud()}
# ru_maxrss is in kilobytes on Linux and in bytes on macOS.
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024


@dataclass
class Step:
    name: str
    records: int
    api_calls: int
    wall_s: float
    records_per_s: float
    peak_rss_mb: float
    rss_mb: float
    ok: bool
    detail: str


@dataclass
class Outcome:
    """What a step's work reports back; the measuring around it is `measure`'s job."""

    records: int
    ok: bool
    detail: str = ""


def _mb(size: int) -> float:
    return round(size / (1024 * 1024), 1)


def measure(name: str, org: LocalOrg | None, work: Callable[[], Outcome]) -> Step:
    """Run one step and take its wall time, API calls and memory."""
    calls_before = org.stats.api_calls if org is not None else 0
    started = time.perf_counter()
    outcome = work()
    wall = time.perf_counter() - started
    calls = (org.stats.api_calls - calls_before) if org is not None else 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT
    step = Step(
        name=name,
        records=outcome.records,
        api_calls=calls,
        wall_s=round(wall, 3),
        records_per_s=round(outcome.records / wall, 1) if wall > 0 else 0.0,
        peak_rss_mb=_mb(peak),
        rss_mb=_mb(psutil.Process().memory_info().rss),
        ok=outcome.ok,
        detail=outcome.detail,
    )
    # Progress on stderr: a 100k run takes a while, and stdout must stay one JSON document with --json.
    print(f"  {name}: {step.records:,} records in {step.wall_s:.2f} s, ok={step.ok}", file=sys.stderr, flush=True)
    return step


# --- the store, read directly (the reference the API steps are checked against) ----------------------------
def status_counts(store: Store, run_id: str) -> dict[str, int]:
    """Order products linked to the run, by processing status; also checks the mirrored status index."""
    sql = (
        f"SELECT {STATUS_FIELD}, COUNT(*), SUM({INDEX_FIELD} IS NOT {STATUS_FIELD}) FROM OrderItem "  # noqa: S608 - constant identifiers, the run id is bound
        "WHERE blng__InvoiceRun__c = ? AND IsDeleted = 0 GROUP BY 1"
    )
    with store.lock:
        rows = store.conn.execute(sql, (run_id,)).fetchall()
    counts = {str(row[0]): int(row[1]) for row in rows}
    # A status the index does not mirror would be a store bug; count it as a status of its own so it shows.
    stale = sum(int(row[2] or 0) for row in rows)
    if stale:
        counts["<index not mirrored>"] = stale
    return counts


def _state_check(store: Store, run_id: str, expected: str, total: int) -> tuple[bool, str]:
    counts = status_counts(store, run_id)
    return counts == {expected: total}, f"store: {counts}"


# --- the API steps --------------------------------------------------------------------------------------------
def soql(run_id: str) -> str:
    # The run id comes from the seed, never from input: no quoting needed beyond the literal.
    return f"SELECT {', '.join(FIELDS)} FROM OrderItem WHERE blng__InvoiceRun__c = '{run_id}'"  # noqa: S608


def rest_query(sf: Salesforce, query: str, ids: list[str]) -> Outcome:
    """query, then queryMore until done; fills `ids` for the write steps."""
    headers = {"Sforce-Query-Options": f"batchSize={QUERY_BATCH}"}
    page = sf.query(query, headers=headers)
    pages = 1
    total = int(page["totalSize"])
    missing_account = 0
    while True:
        for record in page["records"]:
            ids.append(record["Id"])
            order = record.get("Order") or {}
            if not order.get("AccountId"):
                missing_account += 1
        if page["done"]:
            break
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True, headers=headers)
        pages += 1
    ok = len(ids) == total and len(set(ids)) == total and missing_account == 0 and total > 0
    return Outcome(len(ids), ok, f"pages={pages} totalSize={total} no Order.AccountId={missing_account}")


def order_items_bulk2(sf: Salesforce) -> SFBulk2Type:
    # simple-salesforce types `sf.bulk2` as a union of its handlers; narrow it to the Bulk API 2.0 one.
    handler = sf.bulk2
    assert isinstance(handler, SFBulk2Handler)
    return handler.OrderItem


def bulk_query(sf: Salesforce, query: str, expected: list[str], wait: int) -> Outcome:
    pages = 0
    seen: set[str] = set()
    rows = 0
    missing_account = 0
    for page in order_items_bulk2(sf).query(query, wait=wait):
        assert isinstance(page, str)  # the generator yields each result page's CSV text
        pages += 1
        for row in csv.DictReader(io.StringIO(page)):
            rows += 1
            seen.add(row["Id"])
            if not row["Order.AccountId"]:
                missing_account += 1
    ok = rows == len(expected) and seen == set(expected) and missing_account == 0
    return Outcome(rows, ok, f"result pages={pages} same ids as REST={seen == set(expected)}")


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def composite_body(version: str, ids: list[str], status: str) -> dict[str, Any]:
    """One composite call: up to 5 PATCH sObject Collections subrequests of up to 200 records each."""
    subrequests = [
        {
            "method": "PATCH",
            "url": f"/services/data/v{version}/composite/sobjects",
            "referenceId": f"collection{index}",
            "body": {
                "allOrNone": False,
                "records": [{"attributes": {"type": "OrderItem"}, "id": rid, STATUS_FIELD: status} for rid in chunk],
            },
        }
        for index, chunk in enumerate(_chunks(ids, COLLECTION_RECORDS))
    ]
    return {"allOrNone": False, "compositeRequest": subrequests}


def composite_update(sf: Salesforce, org: LocalOrg, run_id: str, ids: list[str]) -> Outcome:
    failed = calls = 0
    for call_ids in _chunks(ids, COLLECTION_RECORDS * COLLECTIONS_PER_CALL):
        answer = sf.restful("composite", method="POST", json=composite_body(API_VERSION, call_ids, PENDING))
        calls += 1
        for sub in answer["compositeResponse"] if answer else []:
            if sub["httpStatusCode"] != 200:
                failed += COLLECTION_RECORDS
                continue
            failed += sum(1 for result in sub["body"] if not result["success"])
    state_ok, state = _state_check(org.store, run_id, PENDING, len(ids))
    ok = failed == 0 and state_ok
    return Outcome(len(ids), ok, f"composite calls={calls} failed rows={failed} {state}")


def write_reset_csv(path: Path, ids: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        # LF line endings: the job is created with simple-salesforce's default lineEnding=LF, and the org
        # fails a job whose data does not match it.
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["Id", STATUS_FIELD])
        writer.writerows([rid, RESET] for rid in ids)


def bulk_update(sf: Salesforce, csv_path: Path, wait: int, jobs: list[str]) -> Outcome:
    results = order_items_bulk2(sf).update(csv_file=str(csv_path), wait=wait)
    processed = sum(int(result["numberRecordsProcessed"]) for result in results)
    failed = sum(int(result["numberRecordsFailed"]) for result in results)
    jobs.extend(str(result["job_id"]) for result in results)
    return Outcome(processed, failed == 0, f"jobs={len(results)} failed rows={failed}")


def server_seconds(sf: Salesforce, jobs: list[str]) -> float:
    """The org's own processing time of ingest jobs (totalProcessingTime), without the client's polling."""
    total_ms = 0
    for job_id in jobs:
        info = sf.restful(f"jobs/ingest/{job_id}") or {}
        total_ms += int(info.get("totalProcessingTime", 0))
    return total_ms / 1000.0


# --- the run -------------------------------------------------------------------------------------------------
def run(records: int, latency: str, bulk_wait: int) -> dict[str, Any]:
    steps: list[Step] = []
    store = Store()
    run_ids: dict[str, str] = {}

    def do_seed() -> Outcome:
        info = seed(store, "scale", records=records)
        run_ids.update(info.runs)
        total = sum(info.counts.values())
        return Outcome(total, total > 0, f"{total:,} rows for {records:,} sources: {info.counts}")

    steps.append(measure("seed scale", None, do_seed))
    run_id = run_ids["failed_run"]
    org = LocalOrg(store, faults=FaultProfile(latency=LATENCIES[latency]))
    session = mount(requests.Session(), org)
    sf = Salesforce(instance_url=org.instance_url, session_id=org.access_token, session=session, version=API_VERSION)
    query = soql(run_id)
    ids: list[str] = []
    jobs: list[str] = []
    try:
        steps.append(measure("REST query", org, lambda: rest_query(sf, query, ids)))
        steps.append(measure("Bulk 2.0 query", org, lambda: bulk_query(sf, query, ids, bulk_wait)))
        steps.append(measure("composite update", org, lambda: composite_update(sf, org, run_id, ids)))
        with tempfile.TemporaryDirectory(prefix="sfcleanup-bench-") as directory:
            csv_path = Path(directory) / "reset.csv"
            write_reset_csv(csv_path, ids)
            step = measure("Bulk 2.0 update", org, lambda: bulk_update(sf, csv_path, bulk_wait, jobs))
        # Read after the step's clock stopped: wall_s includes simple-salesforce's polling, this does not.
        step.detail += f" org processing={server_seconds(sf, jobs):.2f} s"
        steps.append(step)

        def verify() -> Outcome:
            ok, state = _state_check(store, run_id, RESET, len(ids))
            return Outcome(len(ids), ok and bool(ids), state)

        steps.append(measure("verify (SQL)", None, verify))
    finally:
        bulk.close(org)
        session.close()
        store.close()
    return {
        "records": records,
        "latency": latency,
        "python": platform.python_version(),
        "final_state_ok": steps[-1].ok,
        "steps": [asdict(step) for step in steps],
    }


# --- output --------------------------------------------------------------------------------------------------
_COLUMNS = (
    ("step", "name", "<"),
    ("records", "records", ">"),
    ("api_calls", "api_calls", ">"),
    ("wall_s", "wall_s", ">"),
    ("records/s", "records_per_s", ">"),
    ("peak_rss_mb", "peak_rss_mb", ">"),
    ("rss_mb", "rss_mb", ">"),
    ("ok", "ok", "<"),
)


def _cell(key: str, value: Any) -> str:
    if key == "wall_s":
        return f"{value:.3f}"
    if key == "records_per_s":
        return f"{value:,.0f}"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(report: dict[str, Any]) -> str:
    steps: list[dict[str, Any]] = report["steps"]
    rows = [[_cell(key, step[key]) for _, key, _ in _COLUMNS] for step in steps]
    widths = [max(len(title), *(len(row[i]) for row in rows)) for i, (title, _, _) in enumerate(_COLUMNS)]

    def line(cells: list[str]) -> str:
        return "  ".join(f"{c:{align}{w}}" for c, w, (_, _, align) in zip(cells, widths, _COLUMNS, strict=True))

    out = [
        f"local org benchmark: {report['records']:,} sources, latency {report['latency']}, "
        f"Python {report['python']} on {platform.system()} {platform.machine()}",
        "",
        line([title for title, _, _ in _COLUMNS]).rstrip(),
        line(["-" * w for w in widths]),
        *(line(row).rstrip() for row in rows),
        "",
        *(f"{step['name']}: {step['detail']}" for step in steps),
        "",
        f"final_state_ok: {report['final_state_ok']}",
    ]
    return "\n".join(out)


def _records_arg(text: str) -> int:
    try:
        value = int(text)
        check_records("scale", value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.localorg_bench", description="Benchmark of the local org itself."
    )
    parser.add_argument("--records", type=_records_arg, default=DEFAULT_RECORDS, help="scale sources (default 100000)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--latency", choices=sorted(LATENCIES), default="none", help="simulated org latency")
    # simple-salesforce sleeps `wait` seconds before its first bulk job poll (5 s by default), which would
    # swamp the org's own cost; 0 keeps only its short exponential back-off between polls.
    parser.add_argument("--bulk-wait", type=int, default=0, help="simple-salesforce bulk2 wait (default 0)")
    args = parser.parse_args(argv)
    print(f"local org benchmark, {args.records:,} sources, latency {args.latency}", file=sys.stderr, flush=True)
    report = run(args.records, args.latency, args.bulk_wait)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0 if all(step["ok"] for step in report["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
