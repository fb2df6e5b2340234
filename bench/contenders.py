"""The clean-up contenders `bench.compare` races, each run in its own process against an org over HTTPS.

    .venv/bin/python -m bench.contenders NAME --instance-url URL --token TOKEN --run-id RUN [--limit K]
                                              [--ca-bundle FILE]

Prints one JSON line saying what the contender did. The CA bundle defaults to `REQUESTS_CA_BUNDLE`; the harness
sets that variable to the org's CA in the child's environment, because requests lets it override
`session.verify` (an explicit `verify=` per request wins, a session's does not).

Contenders:

- `sfcleanup`: the real CLI, `python -m sfcleanup run RUN --yes --json --no-readiness --route auto ...`, in a grandchild
  process; this wrapper only starts it and condenses its JSON report.
- `per_record_loop`, `bulk2_update`, `serial_collections`: what users write by hand with simple-salesforce
  (`bench.scripted`).
- `sfcleanup_composite`, `sfcleanup_bulk`: `sfcleanup` with its route forced.

`--limit K` (per_record_loop and serial_collections) stops writing after K records but still runs every object's
query, so the harness can extrapolate the writes alone, linearly, from a measured subset. This module holds the
contender names, the wrapper around the real CLI and the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from bench.scripted import SCRIPTED, connect

SFCLEANUP_TIMEOUT_S = 3600.0
NAMES = ("sfcleanup", "per_record_loop", "bulk2_update", "serial_collections")
# sfcleanup with its route forced, to compare the routes when choosing `write.bulk_threshold` (not in --suite).
ROUTE_NAMES = ("sfcleanup_composite", "sfcleanup_bulk")
# Contenders that honour --limit, so the harness can time a subset and extrapolate.
LIMITABLE = frozenset({"per_record_loop", "serial_collections"})


# --- the real CLI --------------------------------------------------------------------------------------------
def sfcleanup_cli(
    instance_url: str, token: str, ca_bundle: str | None, run_id: str, route: str = "auto"
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sfcleanup-journal-") as journal:
        # --no-readiness: the race is the clean-up; the read-only readiness section that `run` appends (will
        # the next invoice run bill it?) reads every reset source by id and is measured apart (README "Scale").
        base = [sys.executable, "-m", "sfcleanup", "run", run_id, "--yes", "--json", "--no-readiness"]
        tail = ["--instance-url", instance_url, "--journal-dir", journal, "--log-level", "warning"]
        if ca_bundle:
            tail += ["--ca-bundle", ca_bundle]
        # The token goes by environment, as the CLI recommends: argv is visible to every local user.
        env = {**os.environ, "SFCLEANUP_ORG__ACCESS_TOKEN": token}
        proc = _run_cli([*base, "--route", route, *tail], env)
    sys.stderr.write(proc.stderr[-4000:])
    out: dict[str, Any] = {
        "name": "sfcleanup" if route == "auto" else f"sfcleanup_{route}",
        "exit_code": proc.returncode,
    }
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out["error"] = f"no JSON report on stdout ({len(proc.stdout)} bytes)"
        return out
    runs = report.get("runs") or [{}]
    objects: dict[str, dict[str, int]] = runs[0].get("objects") or {}
    out.update(
        {
            "status": runs[0].get("status"),
            "message": runs[0].get("message"),
            "api_calls_reported": report.get("api_calls"),
            "updated": sum(int(o.get("updated", 0)) for o in objects.values()),
            "failed": sum(int(o.get("failed", 0)) for o in objects.values()),
            "anomalies": sum(int(o.get("anomalies", 0)) for o in objects.values()),
        }
    )
    return out


def _run_cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=SFCLEANUP_TIMEOUT_S, check=False)


# --- command line --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.contenders", description="Run one clean-up contender.")
    parser.add_argument("name", choices=(*NAMES, *ROUTE_NAMES))
    parser.add_argument("--instance-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--ca-bundle", default=os.environ.get("REQUESTS_CA_BUNDLE"))
    parser.add_argument("--limit", type=int, help="stop after this many records written (subset timing)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.name not in LIMITABLE:
        parser.error(f"--limit applies to {', '.join(sorted(LIMITABLE))} only")
    if args.name == "sfcleanup" or args.name in ROUTE_NAMES:
        route = args.name.removeprefix("sfcleanup").removeprefix("_") or "auto"
        out = sfcleanup_cli(args.instance_url, args.token, args.ca_bundle, args.run_id, route)
        print(json.dumps(out), flush=True)
        return 0 if "error" not in out else 1
    sf = connect(args.instance_url, args.token, args.ca_bundle)
    tally = SCRIPTED[args.name](sf, args.run_id, args.limit)
    print(json.dumps(tally.as_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
