"""`--summary FILE.md`: what a plan or a clean-up did, in Markdown to paste into a change ticket: the org,
each run with its records before and after per object and state, and the anomalies, failures and held
records with a link to each in Lightning."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from sfcleanup.errors import ConfigError
from sfcleanup.report import Report, RunOutcome

# A ticket holds the first ones; the rest are in the JSON report and the CSVs.
LISTED = 50
EXIT_MEANING = {0: "clean", 1: "rows failed", 2: "a mistake to fix", 3: "stopped; run again later"}


def lightning_link(instance_url: str | None, sobject: str, record_id: str) -> str:
    """The record in Lightning Experience, as a Markdown link; its bare id when the org's URL is not known."""
    if not instance_url:
        return f"`{record_id}`"
    return f"[{record_id}]({instance_url.rstrip('/')}/lightning/r/{sobject}/{record_id}/view)"


def _cell(text: object) -> str:
    """Table cells are one line, and a `|` in org data must not end the cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _org_line(org: object) -> str | None:
    if not isinstance(org, Mapping):
        return None
    parts = [str(org.get("name") or org.get("id") or "?")]
    details = [str(v) for v in (org.get("id"), org.get("environment")) if v and v != org.get("name")]
    if details:
        parts.append(f"({', '.join(details)})")
    if org.get("user"):
        parts.append(f"as {org.get('user')}")
    return "**Org:** " + " ".join(parts)


def _states(run: RunOutcome, sobject: str) -> tuple[str, str]:
    """Before: the eligible records per from-state. After: what reached the target state (planned, for a
    plan), and what stayed where it was."""
    transitions = run.transitions.get(sobject) or {}
    before = ", ".join(f"{key.split(' -> ')[0]}: {count:,}" for key, count in transitions.items()) or "-"
    targets = sorted({key.split(" -> ")[-1] for key in transitions})
    counts = run.objects[sobject]
    reached = counts.planned if run.status.value == "planned" else counts.updated
    after = ", ".join(f"{target}: {reached:,}" for target in targets) or "-"
    left = counts.planned - reached if run.status.value != "planned" else 0
    if left:
        after += f"; unchanged: {left:,}"
    return before, after


def _listing(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    shown = [f"- {line}" for line in lines[:LISTED]]
    if len(lines) > LISTED:
        shown.append(f"- ... and {len(lines) - LISTED:,} more (see the JSON report or the CSVs)")
    return ["", f"**{title} ({len(lines):,})**", "", *shown]


def _run_section(run: RunOutcome, instance_url: str | None) -> list[str]:
    title = f"## Invoice run {run.id}" + (f" ({run.name})" if run.name else "") + f": {run.status.value}"
    facts = [f"Run status: {run.run_status or '-'}", f"CleanUp Status: {run.cleanup_status or '-'}"]
    if run.journal:
        facts.append(f"journal: `{run.journal}`")
    out = [title, "", "; ".join(facts)]
    if run.message:
        out += ["", f"> {_cell(run.message)}"]
    planning = run.status.value == "planned"
    numbers = ("planned", "anomalies") if planning else ("planned", "updated", "failed", "held", "anomalies")
    header = ["Object", "Before (eligible, by state)", "After (planned)" if planning else "After", *numbers]
    header += [] if planning else ["still eligible"]
    out += ["", "| " + " | ".join(name.capitalize() for name in header) + " |"]
    out.append("|---|---|---|" + "--:|" * (len(header) - 3))
    for sobject, counts in run.objects.items():
        before, after = _states(run, sobject)
        cells = [f"`{sobject}`", before, after, *(f"{getattr(counts, name):,}" for name in numbers)]
        cells += [] if planning else [str(run.eligible_left.get(sobject, "-"))]
        out.append("| " + " | ".join(cells) + " |")

    def link(sobject: str, record_id: str) -> str:
        return lightning_link(instance_url, sobject, record_id)

    out += _listing(
        "Anomalies, left for a person",
        [f"{link(a.sobject, a.id)} `{a.sobject}` {a.reason.value}: {_cell(a.detail)}" for a in run.anomalies],
    )
    out += _listing(
        "Failed rows",
        [f"{link(f.sobject, f.id)} `{f.sobject}` {f.code}: {_cell(f.message)}" for f in run.failures],
    )
    out += _listing("Held back", [f"{link(h.sobject, h.id)} `{h.sobject}` {_cell(h.reason)}" for h in run.held])
    return out


def markdown(report: Report, *, instance_url: str | None, when: datetime, artefacts: Iterable[str] = ()) -> str:
    code = int(report.exit_code)
    head = [
        f"# sfcleanup {report.mode}: {len(report.runs)} invoice run(s), {when:%Y-%m-%d %H:%M} UTC",
        "",
    ]
    org = _org_line(report.to_json().get("org"))
    if org:
        head.append(org + "  ")
    head.append(f"**Exit code:** {code} ({EXIT_MEANING.get(code, '?')}); API calls: {report.api_calls:,}")
    files = [*artefacts, *(run.changes_csv for run in report.runs if run.changes_csv)]
    files += [report.failures_csv] if report.failures_csv else []
    if files:
        head += ["", "Files: " + ", ".join(f"`{name}`" for name in files)]
    body = [line for run in report.runs for line in ["", *_run_section(run, instance_url)]]
    return "\n".join(head + body) + "\n"


def write_summary(path: Path, text: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--summary {path} cannot be written: {exc.strerror or type(exc).__name__}") from None
    return path
