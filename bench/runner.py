"""One scenario of the comparison: the seeded template, its expected changes and lower bound, and each
contender's run on a fresh copy of it (timed on a subset and extrapolated when the full run would be too long).

`run` measures every contender named and returns the report `bench.compare` prints; `Result` is one row of it.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.bound import Bound, scenario_bound
from bench.contenders import LIMITABLE
from bench.expected_state import StateCheck, check_state, expected_counts, linked_counts
from bench.processes import ChildRun, ServerGone, child_env, run_child, served, tail
from bench.scripted import COLLECTION_SIZE
from sfcleanup.localorg.seed import ScenarioInfo, seed
from sfcleanup.localorg.store import Store

CHILD_TIMEOUT_S = 1800.0
# Subset sizes for the first, timed run: enough writes to average out start-up, few enough to be quick.
PROBE_LIMITS = {"per_record_loop": 300, "serial_collections": 2000}
# Probe only when the subset is at most this fraction of the records to change (1/4).
PROBE_SHARE = 4


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
        progress(f"  expected changes (SQL = ScenarioInfo.cleanable): {self.total:,} {self.expected}")
        self.bound: Bound = scenario_bound(self.expected, linked_counts(self.template, self.run_id), rate)
        progress(f"  lower bound: {self.bound.seconds:.2f} s ({self.bound})")

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
        progress(f"  seeded {self.records:,} sources in {time.perf_counter() - started:.1f} s ({self.template})")
        return info

    def measure(self, name: str, limit: int | None) -> Measured:
        """`_measure_once`, tried a second time on a fresh copy when the server went away under the first."""
        try:
            return self._measure_once(name, limit)
        except ServerGone as exc:
            progress(f"  {name}: {exc}; trying once more on a fresh copy")
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
            progress(f"  {name}: no result (exit {child.exit_code}); its stderr: {tail(self.log)}")
        progress(
            f"  {name}{'' if limit is None else f' --limit {limit}'}: {child.wall_s:,.1f} s, {calls:,} calls,"
            f" {child.maxrss_kib / 1024:.0f} MB; said {json.dumps(child.output)}; state ok={check.ok}"
            f" {json.dumps(check.detail)}; calls by endpoint {json.dumps(by_endpoint)}"
        )
        return Measured(calls, child, check)

    def contender(self, name: str) -> Result:
        probe = PROBE_LIMITS.get(name) if name in LIMITABLE else None
        # A subset that is most of the work would cost nearly a full run and predict little: run in full then.
        if probe is not None and probe * PROBE_SHARE <= self.total:
            progress(f"  {name}: timing a subset of {probe:,} writes")
            measured = self.measure(name, probe)
            estimate = self._extrapolate(name, probe, measured)
            if estimate is None:
                return self._result(name, measured, note="subset run failed")
            wall, calls = estimate
            progress(f"  {name}: full run estimated at {wall:,.0f} s, {calls:,} calls")
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
        progress(f"  {name}: full run")
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


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(records: int, rate: float, only: Sequence[str], subset_limit_s: float) -> tuple[dict[str, Any], list[str]]:
    progress(f"scale benchmark: {records:,} sources, lock failure rate {rate}, contenders {', '.join(only)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sfcleanup-compare-") as directory:
        bench = Bench(Path(directory), records, rate, subset_limit_s)
        results = []
        for name in only:
            try:
                result = bench.contender(name)
            except (ServerGone, RuntimeError, OSError, requests.RequestException) as exc:
                # One contender that cannot be measured must not cost the others' results.
                progress(f"  {name}: not measured: {exc}")
                bench.unmeasured.append(name)
                result = Result(name, 0, 0.0, 0.0, 0.0, False, note=f"not measured: {type(exc).__name__}")
            progress(f"  {name}: {json.dumps(result.as_json())}")
            results.append(result)
        unmeasured = bench.unmeasured
        bound = bench.bound.seconds
    progress(f"  done in {time.perf_counter() - started:,.0f} s")
    rows = [{**r.as_json(), "x_bound": round(r.wall_s / bound, 1) if r.wall_s else None} for r in results]
    report = {"records": records, "lock_failure_rate": rate, "lower_bound_s": round(bound, 2), "results": rows}
    return report, unmeasured
