"""A reviewed plan on disk: `plan --out PLAN_FILE` writes every record the clean-up would change, `run --plan
PLAN_FILE` applies exactly those and nothing else.

JSON Lines. The first line is the header: format, creation time, the org (id, name, user), the runs, the
settings that shaped the plan, counts, and the SHA-256 of everything else (the header without its hash, then
every following line as written). Each following line is one of:

- `change`: run, phase, object, id, group (the lock point), `before` and `after` values, and a reason;
- `depends`: a record that may be written only once another reached its target (the dependency rule);
- `anomaly`: a record left for a person, as `plan` reports it.

The hash finds a file changed after it was written (by hand, by a tool, or truncated); it is not a signature,
since whoever can edit the file can recompute it: keep reviewed plans where only reviewers can write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sfcleanup.billing import RULE_BY_PHASE, Phase
from sfcleanup.changes import Change
from sfcleanup.errors import ConfigError
from sfcleanup.models import InvoiceRun
from sfcleanup.orgidentity import OrgIdentity
from sfcleanup.plan import Anomaly, AnomalyReason, RunPlan
from sfcleanup.planstore import PlanStore

FORMAT = "sfcleanup-plan/1"


def _line(entry: Mapping[str, object]) -> str:
    return json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n"


def reason(phase: Phase, change: Change) -> str:
    """Why the record changes, in the words of the clean-up's rules."""
    rule = RULE_BY_PHASE[phase]
    text = f"{change.before.get(rule.status_field)} -> {rule.to_state}"
    if rule.cleared:
        text += f"; {', '.join(rule.cleared)} cleared"
    return text


def _body(plans: list[RunPlan]) -> Iterator[str]:
    for plan in plans:
        run = plan.run.id
        for phase in Phase:
            for change in plan.changes[phase]:
                yield _line(
                    {
                        "type": "change",
                        "run": run,
                        "phase": phase.value,
                        "object": change.sobject,
                        "id": change.id,
                        "group": change.group,
                        "before": change.before,
                        "after": change.after,
                        "reason": reason(phase, change),
                    }
                )
        if isinstance(plan.dependencies, PlanStore):
            for record, on in plan.dependencies.edges():
                yield _line({"type": "depends", "run": run, "record": record, "on": on})
        for anomaly in plan.anomalies:
            yield _line(
                {
                    "type": "anomaly",
                    "run": run,
                    "object": anomaly.sobject,
                    "id": anomaly.id,
                    "reason": anomaly.reason.value,
                    "detail": anomaly.detail,
                }
            )


def write(
    path: Path, plans: list[RunPlan], org: OrgIdentity, settings: Mapping[str, object], *, now: datetime
) -> tuple[int, str]:
    """Write the plan file (through a temporary file, renamed when complete); returns records and hash."""
    header: dict[str, object] = {
        "type": "header",
        "format": FORMAT,
        "created_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "org": org.as_json(),
        "runs": [{"id": p.run.id, "name": p.run.name, "run_status": p.run.status, "records": p.total} for p in plans],
        "settings": dict(settings),
        "records": sum(p.total for p in plans),
    }
    digest = hashlib.sha256(_line(header).encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as body:
        for line in _body(plans):
            digest.update(line.encode())
            body.write(line)
    sha = digest.hexdigest()
    with path.open("w", encoding="utf-8") as handle:
        handle.write(_line({**header, "sha256": sha}))
        with partial.open(encoding="utf-8") as body:
            for line in body:
                handle.write(line)
    partial.unlink()
    return int(str(header["records"])), sha


@dataclass(frozen=True)
class PlanHeader:
    path: Path
    created_at: datetime
    org_id: str
    org_name: str
    run_ids: tuple[str, ...]
    settings: Mapping[str, object]
    records: int
    sha256: str


def _bad(path: Path, what: str) -> ConfigError:
    return ConfigError(f"plan {path} {what}; make a new one with `sfcleanup plan RUN_ID --out {path}`")


def read_header(path: Path) -> PlanHeader:
    """The header, after checking that the file is an intact sfcleanup plan (its hash matches its content)."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"plan {path} cannot be read: {exc.strerror}") from None
    with handle:
        try:
            header = json.loads(handle.readline())
        except json.JSONDecodeError:
            raise _bad(path, "is not an sfcleanup plan file") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise _bad(path, f"is not an sfcleanup plan file of format {FORMAT}")
        claimed = header.pop("sha256", None)
        digest = hashlib.sha256(_line(header).encode())
        for line in handle:
            digest.update(line.encode())
    if claimed != digest.hexdigest():
        raise _bad(path, "was changed after it was written (its sha256 does not match its content)")
    org = header.get("org") or {}
    try:
        return PlanHeader(
            path=path,
            created_at=datetime.fromisoformat(str(header["created_at"])),
            org_id=str(org["id"]),
            org_name=str(org.get("name")),
            run_ids=tuple(str(r["id"]) for r in header["runs"]),
            settings=dict(header.get("settings") or {}),
            records=int(header["records"]),
            sha256=str(claimed),
        )
    except (KeyError, TypeError, ValueError):
        raise _bad(path, "has a damaged header") from None


def check_applicable(header: PlanHeader, org: OrgIdentity, *, max_age_s: float, now: datetime) -> None:
    """Refuse a plan made for another org, or one older than `plan_max_age_s`."""
    if header.org_id != org.id:
        raise ConfigError(
            f"plan {header.path} was made for org {header.org_name} ({header.org_id}), not {org.name} ({org.id}) "
            "where this connection points; nothing was written"
        )
    age = (now - header.created_at).total_seconds()
    if age > max_age_s:
        raise ConfigError(
            f"plan {header.path} was made {age / 3600:.1f} hours ago, more than plan_max_age_s "
            f"({max_age_s / 3600:.1f} hours): the org has moved on since; make and review a new plan"
        )


def load_plans(header: PlanHeader, runs: Mapping[str, InvoiceRun], workdir: Path | None = None) -> list[RunPlan]:
    """The reviewed plans, one per run in the file's order, with the runs as the org shows them now."""
    stores = {run_id: PlanStore(workdir) for run_id in header.run_ids}
    anomalies: dict[str, list[Anomaly]] = {run_id: [] for run_id in header.run_ids}
    with header.path.open(encoding="utf-8") as handle:
        handle.readline()
        for number, line in enumerate(handle, start=2):
            try:
                _load_line(json.loads(line), stores, anomalies)
            except (KeyError, TypeError, ValueError):
                raise _bad(header.path, f"has a damaged line {number}") from None
    plans = []
    for run_id, store in stores.items():
        store.seal()
        changes = {phase: store.changes(phase) for phase in Phase}
        plans.append(RunPlan(runs[run_id], changes, tuple(anomalies[run_id]), dependencies=store))
    return plans


def _load_line(entry: dict[str, object], stores: Mapping[str, PlanStore], anomalies: dict[str, list[Anomaly]]) -> None:
    """One line of the plan's body into its run's store; raises KeyError, TypeError or ValueError if damaged."""
    run = str(entry["run"])
    store = stores[run]
    match entry["type"]:
        case "change":
            before, after = entry["before"], entry["after"]
            if not isinstance(before, dict) or not isinstance(after, dict):
                raise TypeError("before and after must be objects")
            change = Change(str(entry["object"]), str(entry["id"]), str(entry["group"]), before, after)
            store.add(Phase(str(entry["phase"])), change)
        case "depends":
            store.depend(str(entry["record"]), str(entry["on"]))
        case "anomaly":
            reason = AnomalyReason(str(entry["reason"]))
            anomalies[run].append(Anomaly(str(entry["object"]), str(entry["id"]), reason, str(entry["detail"])))
        case _:
            raise ValueError(f"unknown line type {entry['type']!r}")
