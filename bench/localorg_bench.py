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
import json
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# psutil ships no type hints and types-psutil is not in the dev extras; it gives one number, the current RSS.
import psutil  # type: ignore[import-untyped]
import requests
from simple_salesforce.api import Salesforce

from bench.localorg_steps import (
    API_VERSION,
    RESET,
    Outcome,
    bulk_query,
    bulk_update,
    composite_update,
    rest_query,
    server_seconds,
    soql,
    state_check,
    write_reset_csv,
)
from sfcleanup.localorg import bulk
from sfcleanup.localorg.adapter import mount
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile, LatencyModel
from sfcleanup.localorg.seed import check_records, seed
from sfcleanup.localorg.store import Store

DEFAULT_RECORDS = 100_000
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
            ok, state = state_check(store, run_id, RESET, len(ids))
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
