"""Scale benchmark: sfcleanup against what users write by hand, each against the same org over real HTTPS.

    .venv/bin/python -m bench.compare [--records N] [--lock-failure-rate R] [--json] [--suite] [--million]
                                      [--only NAME,...] [--subset-limit-s 600]

For each N the `scale` scenario is seeded once into a template SQLite file. Every contender (see
`bench.contenders`) then gets a fresh copy of that file, served by its own `sfcleanup.localorg.server` process
with `--latency cloud` (the documented `LatencyModel.cloud`), the requested lock failure rate, a fixed fault
seed and a daily API limit no contender reaches. The contender runs in a child process of its own, so the
`ru_maxrss` that `os.wait4` reports for it is its own peak (for `sfcleanup`, the larger of the thin wrapper and
the CLI it waits for: Linux folds reaped descendants into a child's rusage).

Columns:

- `api_calls`: the org's `/_localorg/stats` counter before and after the contender (bulk polling included);
- `wall_s`: the child's wall time, interpreter start-up included;
- `x bound` (`x_bound` in JSON): `wall_s` divided by the scenario's lower bound (`bench.bound`: the fastest any
  clean-up could be under the latency model and Salesforce's documented limits), printed in the table's title
  (`lower_bound_s` in JSON);
- `records/s`: the records a correct clean-up changes (`ScenarioInfo.cleanable`) divided by `wall_s`;
- `peak_rss_mb`: the child's `ru_maxrss`;
- `final_state_ok`: after the server has stopped, SQL on the contender's state file with the template attached:
  every cleanable record reached its target (sources also with the run lookup and start date null) and no other
  invoice, line or source changed status, run link or deletion flag. The expected counts are computed from the
  template with SQL before any contender runs, and checked against `ScenarioInfo.cleanable`.

A contender that honours `--limit` is first timed on a subset; when the linear estimate of the full clean-up
is above `--subset-limit-s` it is reported extrapolated (`extrapolated_from` in JSON, a note in the table), and
its `final_state_ok` is what the org holds after the subset: false. Otherwise it runs in full on a fresh copy.

`--suite` runs N=10,000 and N=100,000 without lock failures, then N=100,000 with 5% (`--million` adds
N=1,000,000); with `--json` one JSON document per line. The exit status is 0 when every contender ran (whatever
its state check says), 1 when one could not be measured.

This module holds the command line and the table. The rest: `bench.runner` (one scenario: the template, the
probes and extrapolation, the report), `bench.expected_state` (the expected counts and `final_state_ok`),
`bench.processes` (the org server and the contender's child process), `bench.contenders` (the contenders) and
`bench.bound` (the lower bound).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench.contenders import NAMES, ROUTE_NAMES
from bench.runner import progress, run
from sfcleanup.localorg.seed import check_records

DEFAULT_RECORDS = 10_000
SUITE: tuple[tuple[int, float], ...] = ((10_000, 0.0), (100_000, 0.0), (100_000, 0.05))
MILLION: tuple[int, float] = (1_000_000, 0.0)


# --- output --------------------------------------------------------------------------------------------------
_COLUMNS = (
    ("name", "name", "<"),
    ("api_calls", "api_calls", ">"),
    ("wall_s", "wall_s", ">"),
    ("x bound", "x_bound", ">"),
    ("records/s", "records_per_s", ">"),
    ("peak_rss_mb", "peak_rss_mb", ">"),
    ("final_state_ok", "final_state_ok", "<"),
    ("note", "note", "<"),
)


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if key in ("wall_s", "x_bound"):
        return f"{value:,.1f}"
    if key == "records_per_s":
        return f"{value:,.0f}"
    if key == "peak_rss_mb":
        return f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(report: dict[str, Any]) -> str:
    results: list[dict[str, Any]] = report["results"]
    rows = [[_cell(key, result.get(key)) for _, key, _ in _COLUMNS] for result in results]
    widths = [max(len(title), *(len(row[i]) for row in rows)) for i, (title, _, _) in enumerate(_COLUMNS)]

    def line(cells: list[str]) -> str:
        return "  ".join(f"{c:{align}{w}}" for c, w, (_, _, align) in zip(cells, widths, _COLUMNS, strict=True))

    return "\n".join(
        [
            f"scale benchmark: {report['records']:,} sources, lock failure rate {report['lock_failure_rate']},"
            f" latency cloud, over HTTPS; lower bound {report['lower_bound_s']:.2f} s",
            line([title for title, _, _ in _COLUMNS]).rstrip(),
            line(["-" * w for w in widths]).rstrip(),
            *(line(row).rstrip() for row in rows),
        ]
    )


def _records_arg(text: str) -> int:
    try:
        value = int(text)
        check_records("scale", value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _rate_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a rate between 0 and 1")
    return value


def _only_arg(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in (*NAMES, *ROUTE_NAMES)]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown contender(s) {', '.join(unknown)}; choose from {', '.join((*NAMES, *ROUTE_NAMES))}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description="sfcleanup against hand-written clean-ups, over HTTPS."
    )
    parser.add_argument("--records", type=_records_arg, default=DEFAULT_RECORDS, help="scale sources (default 10000)")
    parser.add_argument("--lock-failure-rate", type=_rate_arg, default=0.0, help="the org's injected lock failures")
    parser.add_argument("--json", action="store_true", help="one JSON document per scenario instead of tables")
    parser.add_argument("--suite", action="store_true", help="10k and 100k at rate 0, then 100k at rate 0.05")
    parser.add_argument("--million", action="store_true", help="with --suite: add 1,000,000 sources at rate 0")
    parser.add_argument("--only", type=_only_arg, default=list(NAMES), help="comma-separated contenders")
    parser.add_argument(
        "--subset-limit-s", type=float, default=600.0, help="extrapolate contenders estimated above this (s)"
    )
    args = parser.parse_args(argv)
    if args.million and not args.suite:
        parser.error("--million adds to --suite")
    scenarios = (
        list(SUITE) + ([MILLION] if args.million else []) if args.suite else [(args.records, args.lock_failure_rate)]
    )
    started = time.perf_counter()
    ok = True
    for records, rate in scenarios:
        report, unmeasured = run(records, rate, args.only, args.subset_limit_s)
        ok = ok and not unmeasured
        print(json.dumps(report) if args.json else table(report) + "\n", flush=True)
    progress(f"total {time.perf_counter() - started:,.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
