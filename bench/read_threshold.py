"""Where Bulk API 2.0 query jobs start to pay: a run's order products read through REST keyset pages and through
a query job, against the local org in-process with the `cloud` latency model.

    .venv/bin/python -m bench.read_threshold [--sources 2500,5000,7500,12500,25000]

Prints, per size, the calls and seconds each way. `sfcleanup.salesforce.bulkquery.BULK_READ_THRESHOLD` is set
from it (README "Scale").
"""

from __future__ import annotations

import argparse
import time

from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile, LatencyModel
from sfcleanup.localorg.seed import seed
from sfcleanup.localorg.store import Store
from sfcleanup.salesforce.bulkquery import BulkQueries, whole_query
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.local import local_connector
from sfcleanup.salesforce.read import keyset_pages
from sfcleanup.salesforce.retry import no_wait_policy


def measure(sources: int) -> str:
    store = Store()
    info = seed(store, "scale", records=sources)
    org = LocalOrg(store, faults=FaultProfile(latency=LatencyModel.cloud()))
    run = info.runs["failed_run"]
    client = SalesforceClient(local_connector(org), api_version="62.0", retry=no_wait_policy(), timeout_s=60)
    calls, started = client.usage.calls, time.perf_counter()
    rest_rows = sum(len(page) for page in keyset_pages(client, "order_products", run))
    rest = (client.usage.calls - calls, time.perf_counter() - started)
    bulk = BulkQueries(client)
    calls, started = client.usage.calls, time.perf_counter()
    job = bulk.create(whole_query("order_products", run), "OrderItem")
    bulk_rows = sum(len(page) for page in bulk.pages(job))
    by_job = (client.usage.calls - calls, time.perf_counter() - started)
    assert rest_rows == bulk_rows
    return (
        f"{rest_rows:>7,} order products: REST {rest[0]} calls {rest[1]:.2f} s;"
        f" Bulk API 2.0 query job {by_job[0]} calls {by_job[1]:.2f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.read_threshold", description=__doc__)
    parser.add_argument("--sources", default="2500,5000,7500,12500,25000", help="scale sizes, comma-separated")
    args = parser.parse_args(argv)
    for sources in (int(n) for n in args.sources.split(",")):
        print(measure(sources), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
