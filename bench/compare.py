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
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from bench.bound import Bound, scenario_bound
from bench.contenders import COLLECTION_SIZE, LIMITABLE, NAMES, ROUTE_NAMES
from sfcleanup.localorg.seed import ScenarioInfo, check_records, seed
from sfcleanup.localorg.store import Store, quote

DEFAULT_RECORDS = 10_000
SUITE: tuple[tuple[int, float], ...] = ((10_000, 0.0), (100_000, 0.0), (100_000, 0.05))
MILLION: tuple[int, float] = (1_000_000, 0.0)
FAULT_SEED = 7
# High enough that no contender is ever stopped by the daily allowance: the benchmark measures, it does not ration.
DAILY_API_LIMIT = 10_000_000
CHILD_TIMEOUT_S = 1800.0
SERVER_START_TIMEOUT_S = 300.0
SERVER_STOP_TIMEOUT_S = 60.0
# Subset sizes for the first, timed run: enough writes to average out start-up, few enough to be quick.
PROBE_LIMITS = {"per_record_loop": 300, "serial_collections": 2000}
# Probe only when the subset is at most this fraction of the records to change (1/4).
PROBE_SHARE = 4
# ru_maxrss is in KiB on Linux and in bytes on macOS; divide by this to get KiB.
_RSS_UNIT = 1024 if sys.platform == "darwin" else 1

# --- what a correct clean-up changes, written out independently of sfcleanup.billing ------------------------
GUARDED = ("Posted", "Post In progress")


@dataclass(frozen=True)
class Target:
    sobject: str
    run_field: str
    status_field: str
    from_states: tuple[str, ...]
    to_state: str
    cleared: tuple[str, ...]


_CLEARED = ("blng__InvoiceRun__c", "blng__InvoiceRunStartDate__c")
TARGETS: tuple[Target, ...] = (
    Target(
        "blng__InvoiceLine__c", "blng__InvoiceRun__c", "blng__InvoiceLineStatus__c", ("Draft", "Error"), "Cancelled", ()
    ),
    Target(
        "blng__Invoice__c",
        "blng__InvoiceRunCreatedBy__c",
        "blng__InvoiceStatus__c",
        ("Draft", "Error", "Initiated"),
        "Cancelled",
        (),
    ),
    Target(
        "blng__UsageSummary__c",
        "blng__InvoiceRun__c",
        "blng__InvoiceRunProcessingStatus__c",
        ("Error", "In Progress"),
        "Pending Billing",
        _CLEARED,
    ),
    Target(
        "OrderItem",
        "blng__InvoiceRun__c",
        "blng__InvoiceRunProcessingStatus__c",
        ("Error", "In Progress"),
        "Pending Billing",
        _CLEARED,
    ),
)


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def _posted_invoice(alias: str) -> str:
    """SQL: the invoice id in `alias` is posted or being posted (the package's guard)."""
    return (
        f"EXISTS (SELECT 1 FROM t.{quote('blng__Invoice__c')} g WHERE g.Id = {alias} "  # noqa: S608 - constants
        f"AND g.blng__InvoiceStatus__c IN {_in(GUARDED)})"
    )


def _cleanable_sql(target: Target) -> str:
    """SELECT of the template ids a correct clean-up of run `:run` changes on one object."""
    table = f"t.{quote(target.sobject)}"
    where = [
        "o.IsDeleted = 0",
        f"o.{quote(target.run_field)} = :run",
        f"o.{quote(target.status_field)} IN {_in(target.from_states)}",
    ]
    line = f"t.{quote('blng__InvoiceLine__c')}"
    if target.sobject == "blng__InvoiceLine__c":
        where.append(f"NOT {_posted_invoice('o.blng__Invoice__c')}")
    elif target.sobject == "blng__UsageSummary__c":
        # Billed: its own invoice is posted, or its line from this run sits on a posted invoice.
        where.append(f"NOT {_posted_invoice('o.blng__Invoice__c')}")
        where.append(
            f"NOT EXISTS (SELECT 1 FROM {line} l WHERE l.Id = o.blng__InvoiceLine__c "  # noqa: S608 - constants
            f"AND l.blng__InvoiceRun__c = :run AND {_posted_invoice('l.blng__Invoice__c')})"
        )
    elif target.sobject == "OrderItem":
        where.append(
            f"NOT EXISTS (SELECT 1 FROM {line} l WHERE l.blng__OrderProduct__c = o.Id "  # noqa: S608 - constants
            f"AND l.blng__InvoiceRun__c = :run AND {_posted_invoice('l.blng__Invoice__c')})"
        )
    return f"SELECT o.Id FROM {table} o WHERE " + " AND ".join(where)  # noqa: S608 - constants, run id bound


@contextmanager
def _attached(state: Path, template: Path) -> Iterator[sqlite3.Connection]:
    """The state file as `main` with the template attached as `t`; read only (nothing is ever written)."""
    conn = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        conn.execute("ATTACH DATABASE ? AS t", (f"file:{template}?mode=ro",))
        yield conn
    finally:
        conn.close()


def linked_counts(template: Path, run_id: str) -> int:
    """Records linked to the run on the four objects, whatever their state: what a clean-up must read."""
    with _attached(template, template) as conn:
        total = 0
        for target in TARGETS:
            sql = (
                f"SELECT COUNT(*) FROM t.{quote(target.sobject)}"  # noqa: S608 - constants, run id bound
                f" WHERE IsDeleted = 0 AND {quote(target.run_field)} = :run"
            )
            total += int(conn.execute(sql, {"run": run_id}).fetchone()[0])
        return total


def expected_counts(template: Path, run_id: str) -> dict[str, int]:
    """Cleanable records per object, from the template alone (it is attached to itself as `t`)."""
    with _attached(template, template) as conn:
        counts = {}
        for target in TARGETS:
            sql = f"SELECT COUNT(*) FROM ({_cleanable_sql(target)})"  # noqa: S608 - constants, run id bound
            row = conn.execute(sql, {"run": run_id}).fetchone()
            counts[target.sobject] = int(row[0])
        return counts


@dataclass(frozen=True)
class StateCheck:
    ok: bool
    detail: dict[str, dict[str, int]]

    def summary(self) -> str:
        """Short words for the note column: what is missing, not what is fine."""
        parts = []
        for sobject, c in self.detail.items():
            short = sobject.removeprefix("blng__").removesuffix("__c")
            if c["not_reached"]:
                parts.append(f"{short} {c['not_reached']:,} not at target")
            if c["link_kept"]:
                parts.append(f"{short} {c['link_kept']:,} run link kept")
            if c["others_changed"]:
                parts.append(f"{short} {c['others_changed']:,} untouchable changed")
        return "; ".join(parts)


def check_state(state: Path, template: Path, run_id: str, expected: dict[str, int]) -> StateCheck:
    detail: dict[str, dict[str, int]] = {}
    ok = True
    with _attached(state, template) as conn:
        for target in TARGETS:
            table = quote(target.sobject)
            status = quote(target.status_field)
            cleared_null = " AND ".join(f"s.{quote(f)} IS NULL" for f in target.cleared) or "1"
            watched = {target.status_field, target.run_field, *target.cleared, "IsDeleted"}
            changed = " OR ".join(f"s.{quote(f)} IS NOT o.{quote(f)}" for f in sorted(watched))
            conn.execute("DROP TABLE IF EXISTS temp.cleanable")
            conn.execute("CREATE TEMP TABLE cleanable (Id TEXT PRIMARY KEY) WITHOUT ROWID")
            conn.execute(f"INSERT INTO temp.cleanable {_cleanable_sql(target)}", {"run": run_id})
            at_target = f"s.{status} = '{target.to_state}' AND s.IsDeleted = 0"
            row = conn.execute(
                f"SELECT COUNT(c.Id),"  # noqa: S608 - identifiers from TARGETS, quoted
                f" COALESCE(SUM(c.Id IS NOT NULL AND {at_target} AND {cleared_null}), 0),"
                f" COALESCE(SUM(c.Id IS NOT NULL AND {at_target} AND NOT ({cleared_null})), 0),"
                f" COALESCE(SUM(c.Id IS NOT NULL AND NOT ({at_target})), 0),"
                f" COALESCE(SUM(c.Id IS NULL AND ({changed})), 0)"
                # LEFT JOIN: a template row missing from the state counts as changed (or not at target).
                f" FROM t.{table} o LEFT JOIN main.{table} s ON s.Id = o.Id"
                f" LEFT JOIN temp.cleanable c ON c.Id = o.Id"
            ).fetchone()
            counts = {
                "expected": expected[target.sobject],
                "cleanable_rows": int(row[0]),
                "reached": int(row[1]),
                "link_kept": int(row[2]),
                "not_reached": int(row[3]),
                "others_changed": int(row[4]),
            }
            detail[target.sobject] = counts
            ok = (
                ok
                and counts["reached"] == counts["expected"] == counts["cleanable_rows"]
                and not counts["others_changed"]
            )
    return StateCheck(ok, detail)


# --- the org server ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Org:
    instance_url: str
    token: str
    ca_bundle: str
    process: subprocess.Popen[bytes] = field(compare=False, repr=False)
    log: Path = field(compare=False, repr=False)

    def api_calls(self) -> int:
        return int(self.stats()["api_calls"])

    def stats(self) -> dict[str, Any]:
        """The org's counters (`api_calls`, `api_calls_by_endpoint`, ...)."""
        self.check_alive()
        try:
            # verify= on the request itself: REQUESTS_CA_BUNDLE in the environment would override a session's.
            answer = requests.get(f"{self.instance_url}/_localorg/stats", verify=self.ca_bundle, timeout=30)
            answer.raise_for_status()
        except requests.RequestException:
            self.check_alive()
            raise
        stats: dict[str, Any] = answer.json()
        return stats

    def check_alive(self) -> None:
        """Raise ServerGone when the server has exited: a run it did not serve to the end measures nothing."""
        code = self.process.poll()
        if code is not None:
            raise ServerGone(f"the org server exited with {code} during the run: {_tail(self.log, 600)!r}")


class ServerGone(Exception):
    """The org server stopped under a contender (a crash, or a signal from outside the benchmark)."""


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


@contextmanager
def served(state: Path, records: int, rate: float, log: Path) -> Iterator[Org]:
    """Serve `state` over HTTPS until the block ends; the server is always stopped (SIGTERM, then SIGKILL)."""
    argv = [
        sys.executable, "-m", "sfcleanup.localorg.server", "--port", "0",
        "--scenario", "scale", "--records", str(records), "--state", str(state),
        "--latency", "cloud", "--lock-failure-rate", str(rate), "--seed", str(FAULT_SEED),
        "--daily-api-limit", str(DAILY_API_LIMIT),
    ]  # fmt: skip
    with log.open("ab") as errors:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = _read_line(proc.stdout, SERVER_START_TIMEOUT_S)
        if not line:
            raise RuntimeError(f"the org server did not start (exit {proc.poll()}): {_tail(log)}")
        announced = json.loads(line)
        # A copy of the CA beside the state file: the server's own copy lives in its temporary directory, which
        # goes as soon as the server stops, and a stats call after that must say "server gone", not "no CA".
        ca_bundle = Path(f"{state}.ca.pem")
        shutil.copyfile(announced["ca_bundle"], ca_bundle)
        yield Org(announced["instance_url"], announced["access_token"], str(ca_bundle), proc, log)
    finally:
        _stop(proc)


def _read_line(stream: IO[bytes], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline().decode() if ready else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


# --- one contender in its own process ------------------------------------------------------------------------
@dataclass(frozen=True)
class ChildRun:
    exit_code: int
    wall_s: float
    maxrss_kib: int
    output: dict[str, Any] | None
    timed_out: bool


def child_env(org: Org) -> dict[str, str]:
    env = dict(os.environ)
    # requests prefers REQUESTS_CA_BUNDLE over session.verify, so the org's CA must be the one it names.
    env["REQUESTS_CA_BUNDLE"] = org.ca_bundle
    env.pop("CURL_CA_BUNDLE", None)
    # A proxy in the environment must not sit between a contender and the org on 127.0.0.1.
    no_proxy = ",".join(p for p in (env.get("NO_PROXY", ""), "127.0.0.1,localhost") if p)
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def run_child(argv: list[str], env: dict[str, str], log: Path, timeout: float) -> ChildRun:
    """Start, wait with os.wait4 (the child's own rusage), kill its process group if it outlives `timeout`."""
    with tempfile.TemporaryFile() as out, log.open("ab") as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=errors, stdin=subprocess.DEVNULL, start_new_session=True
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        # A timer, not polling with WNOHANG: polling would add its interval to the measured wall time.
        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        # Tell Popen the child is reaped, so it does not try to wait for it again.
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace").strip()
    output = None
    if text:
        try:
            output = json.loads(text.splitlines()[-1])
        except json.JSONDecodeError:
            output = None
    return ChildRun(proc.returncode, wall, int(usage.ru_maxrss) // _RSS_UNIT, output, timed_out.is_set())


@dataclass
class Result:
    name: str
    api_calls: int
    wall_s: float
    records_per_s: float
    peak_rss_mb: float
    final_state_ok: bool
    extrapolated_from: int | None = None
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "api_calls": self.api_calls,
            "wall_s": self.wall_s,
            "records_per_s": self.records_per_s,
            "peak_rss_mb": self.peak_rss_mb,
            "final_state_ok": self.final_state_ok,
        }
        if self.extrapolated_from is not None:
            out["extrapolated_from"] = self.extrapolated_from
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Measured:
    """One contender run on its own copy of the template: the raw numbers before any extrapolation."""

    api_calls: int
    child: ChildRun
    state: StateCheck


class Bench:
    """One N and lock failure rate: the template, its expected counts, and the contender runs on copies of it."""

    def __init__(self, workdir: Path, records: int, rate: float, subset_limit_s: float) -> None:
        self.workdir = workdir
        self.records = records
        self.rate = rate
        self.subset_limit_s = subset_limit_s
        self.template = workdir / "template.sqlite3"
        self.log = workdir / "children.log"
        self._copies = 0
        # Contenders whose child crashed, timed out or printed no result: the exit status says so.
        self.unmeasured: list[str] = []
        info = self._seed()
        self.run_id = info.runs["failed_run"]
        self.cleanable = info.cleanable["failed_run"]
        self.expected = expected_counts(self.template, self.run_id)
        if self.expected != self.cleanable:
            # The seed's own numbers and the SQL definition disagree: one of them is wrong; nothing measured
            # against either would mean anything.
            raise RuntimeError(f"SQL expects {self.expected}, ScenarioInfo.cleanable says {self.cleanable}")
        self.total = sum(self.cleanable.values())
        _progress(f"  expected changes (SQL = ScenarioInfo.cleanable): {self.total:,} {self.expected}")
        self.bound: Bound = scenario_bound(self.expected, linked_counts(self.template, self.run_id), rate)
        _progress(f"  lower bound: {self.bound.seconds:.2f} s ({self.bound})")

    def _seed(self) -> ScenarioInfo:
        started = time.perf_counter()
        store = Store(self.template)
        try:
            info = seed(store, "scale", records=self.records)
        finally:
            store.close()
        # One self-contained file (no -wal beside it), so a plain copy carries the whole org.
        conn = sqlite3.connect(self.template)
        try:
            conn.execute("PRAGMA journal_mode=DELETE")
        finally:
            conn.close()
        _progress(f"  seeded {self.records:,} sources in {time.perf_counter() - started:.1f} s ({self.template})")
        return info

    def measure(self, name: str, limit: int | None) -> Measured:
        """`_measure_once`, tried a second time on a fresh copy when the server went away under the first."""
        try:
            return self._measure_once(name, limit)
        except ServerGone as exc:
            _progress(f"  {name}: {exc}; trying once more on a fresh copy")
            return self._measure_once(name, limit)

    def _measure_once(self, name: str, limit: int | None) -> Measured:
        self._copies += 1
        state = self.workdir / f"state-{self._copies}-{name}.sqlite3"
        shutil.copyfile(self.template, state)
        try:
            with served(state, self.records, self.rate, self.log) as org:
                argv = [
                    sys.executable, "-m", "bench.contenders", name, "--instance-url", org.instance_url,
                    "--token", org.token, "--run-id", self.run_id, "--ca-bundle", org.ca_bundle,
                ]  # fmt: skip
                if limit is not None:
                    argv += ["--limit", str(limit)]
                before = org.stats()
                child = run_child(argv, child_env(org), self.log, CHILD_TIMEOUT_S)
                after = org.stats()
                calls = int(after["api_calls"]) - int(before["api_calls"])
                by_endpoint = _calls_by_endpoint(before, after)
            # The server has stopped and closed the file: the check reads exactly what the org committed.
            check = check_state(state, self.template, self.run_id, self.expected)
        finally:
            for suffix in ("", "-wal", "-shm", ".ca.pem"):
                Path(f"{state}{suffix}").unlink(missing_ok=True)
        if child.timed_out or child.output is None:
            self.unmeasured.append(name)
            _progress(f"  {name}: no result (exit {child.exit_code}); its stderr: {_tail(self.log)}")
        _progress(
            f"  {name}{'' if limit is None else f' --limit {limit}'}: {child.wall_s:,.1f} s, {calls:,} calls,"
            f" {child.maxrss_kib / 1024:.0f} MB; said {json.dumps(child.output)}; state ok={check.ok}"
            f" {json.dumps(check.detail)}; calls by endpoint {json.dumps(by_endpoint)}"
        )
        return Measured(calls, child, check)

    def contender(self, name: str) -> Result:
        probe = PROBE_LIMITS.get(name) if name in LIMITABLE else None
        # A subset that is most of the work would cost nearly a full run and predict little: run in full then.
        if probe is not None and probe * PROBE_SHARE <= self.total:
            _progress(f"  {name}: timing a subset of {probe:,} writes")
            measured = self.measure(name, probe)
            estimate = self._extrapolate(name, probe, measured)
            if estimate is None:
                return self._result(name, measured, note="subset run failed")
            wall, calls = estimate
            _progress(f"  {name}: full run estimated at {wall:,.0f} s, {calls:,} calls")
            if wall > self.subset_limit_s:
                rss = measured.child.maxrss_kib / 1024
                # The state check only says the subset did not finish; what it left undone is no news.
                notes = [f"(extrapolated from {probe:,})", *_child_notes(measured, with_state=False)]
                return Result(
                    name=name,
                    api_calls=calls,
                    wall_s=round(wall, 1),
                    records_per_s=round(self.total / wall, 1),
                    peak_rss_mb=round(rss, 1),
                    final_state_ok=measured.state.ok,
                    extrapolated_from=probe,
                    note="; ".join(notes),
                )
        _progress(f"  {name}: full run")
        return self._result(name, self.measure(name, None))

    def _extrapolate(self, name: str, probe: int, measured: Measured) -> tuple[float, int] | None:
        """Full wall time and calls: the measured run (every query included) plus the writes it did not do,
        at the per-record write rate it measured. Calls are exact: one per record, or one per 200 per object."""
        out = measured.child.output or {}
        sent = int(out.get("sent", 0))
        if measured.child.exit_code != 0 or sent <= 0:
            return None
        per_record_s = float(out["update_s"]) / sent
        wall = measured.child.wall_s + per_record_s * max(0, self.total - sent)
        if name == "per_record_loop":
            full_calls = self.total
        else:
            full_calls = sum(math.ceil(count / COLLECTION_SIZE) for count in self.cleanable.values())
        calls = measured.api_calls - int(out["update_calls"]) + full_calls
        return wall, calls

    def _result(self, name: str, measured: Measured, note: str | None = None) -> Result:
        wall = measured.child.wall_s
        notes = [n for n in (note, *_child_notes(measured)) if n]
        return Result(
            name=name,
            api_calls=measured.api_calls,
            wall_s=round(wall, 1),
            records_per_s=round(self.total / wall, 1) if wall > 0 else 0.0,
            peak_rss_mb=round(measured.child.maxrss_kib / 1024, 1),
            final_state_ok=measured.state.ok,
            note="; ".join(notes) or None,
        )


def _calls_by_endpoint(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """The calls a contender made, per org endpoint: where its calls went, for the progress log."""
    old: dict[str, int] = before.get("api_calls_by_endpoint", {})
    new: dict[str, int] = after.get("api_calls_by_endpoint", {})
    return {name: count - old.get(name, 0) for name, count in new.items() if count != old.get(name, 0)}


def _child_notes(measured: Measured, *, with_state: bool = True) -> list[str]:
    child = measured.child
    out = child.output or {}
    notes: list[str] = []
    if child.timed_out:
        notes.append(f"killed after {CHILD_TIMEOUT_S:,.0f} s")
    elif child.exit_code != 0 and "exit_code" not in out:
        notes.append(f"exit {child.exit_code}")
    if "exit_code" in out and out["exit_code"] != 0:
        notes.append(f"CLI exit {out['exit_code']}")
    if out.get("note"):
        notes.append(str(out["note"]))
    if out.get("failed"):
        notes.append(f"{int(out['failed']):,} rows failed")
    summary = measured.state.summary() if with_state else ""
    if summary:
        notes.append(summary)
    return notes


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(records: int, rate: float, only: Sequence[str], subset_limit_s: float) -> tuple[dict[str, Any], list[str]]:
    _progress(f"scale benchmark: {records:,} sources, lock failure rate {rate}, contenders {', '.join(only)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sfcleanup-compare-") as directory:
        bench = Bench(Path(directory), records, rate, subset_limit_s)
        results = []
        for name in only:
            try:
                result = bench.contender(name)
            except (ServerGone, RuntimeError, OSError, requests.RequestException) as exc:
                # One contender that cannot be measured must not cost the others' results.
                _progress(f"  {name}: not measured: {exc}")
                bench.unmeasured.append(name)
                result = Result(name, 0, 0.0, 0.0, 0.0, False, note=f"not measured: {type(exc).__name__}")
            _progress(f"  {name}: {json.dumps(result.as_json())}")
            results.append(result)
        unmeasured = bench.unmeasured
        bound = bench.bound.seconds
    _progress(f"  done in {time.perf_counter() - started:,.0f} s")
    rows = [{**r.as_json(), "x_bound": round(r.wall_s / bound, 1) if r.wall_s else None} for r in results]
    report = {"records": records, "lock_failure_rate": rate, "lower_bound_s": round(bound, 2), "results": rows}
    return report, unmeasured


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
    _progress(f"total {time.perf_counter() - started:,.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
