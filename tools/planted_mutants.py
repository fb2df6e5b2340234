"""Planted mutants: does the suite catch each way the planner, the link model or the dependency rule could go
wrong? Each mutant is one textual change to the code; the tool applies it in a copy of the tree, runs the
tests that guard billing safety, and reports which mutants the tests caught.

    python -m tools.planted_mutants            # every mutant
    python -m tools.planted_mutants --list     # their names

Not part of `make test`: it runs the safety tests once per mutant (a few minutes in all).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = (
    "tests/test_never_bill_twice.py",
    "tests/test_plan.py",
    "tests/test_plan_properties.py",
    "tests/test_worker_e2e.py",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    original: str
    mutated: str


MUTANTS = (
    Mutant(
        "sources are not held when what billed them fails",
        "sfcleanup/worker.py",
        "waiting = plan.dependencies.waiting(phase, blocked)",
        "waiting: dict[str, str] = {}",
    ),
    Mutant(
        "held records do not block what waits for them",
        "sfcleanup/worker.py",
        "            blocked[record_id] = blocked[blocker]\n",
        "",
    ),
    Mutant(
        "held records are written anyway",
        "sfcleanup/plan.py",
        "return (c for c in self._changes if c.id not in self._held)",
        "return iter(self._changes)",
    ),
    Mutant(
        "an invoice does not wait for its lines",
        "sfcleanup/plan.py",
        "                self._sink.depend(invoice.id, line.id)\n",
        "                pass\n",
    ),
    Mutant(
        "a line on a posted invoice is cancelled",
        "sfcleanup/links.py",
        '''    if invoice_status in GUARDED_INVOICE_STATES:
        return "guarded"''',
        '''    if invoice_status == "Posted-never":
        return "guarded"''',
    ),
    Mutant(
        "a line whose invoice cannot be read is cancelled",
        "sfcleanup/links.py",
        "    if invoice_id is not None and invoice_status is None:",
        "    if False:",
    ),
    Mutant(
        "a posted line status does not protect a source",
        "sfcleanup/links.py",
        "        if self.status in GUARDED_INVOICE_STATES:\n            return Reach.POSTED",
        '        if self.status == "Posted-never":\n            return Reach.POSTED',
    ),
    Mutant(
        "an open link does not stop a source",
        "sfcleanup/plan.py",
        "        if reach >= Reach.OPEN:",
        "        if reach >= Reach.POSTED:",
    ),
    Mutant(
        "a usage summary's own invoice is not followed",
        "sfcleanup/plan.py",
        "        if own_invoice is not None:\n            self._bind(summary.id, Path(None, own_invoice))",
        "        if own_invoice is None:\n            self._bind(summary.id, Path(None, own_invoice))",
    ),
    Mutant(
        "a usage summary's own line is not followed",
        "sfcleanup/plan.py",
        "        if summary.invoice_line_id is None:\n            return",
        "        if True:\n            return",
    ),
    Mutant(
        "lines of other runs naming a usage summary are ignored",
        "sfcleanup/plan.py",
        "        if line.run_id == self.run.id or line.usage_summary_id is None:",
        "        if True:",
    ),
    Mutant(
        "a source does not wait for the invoices on its links",
        "sfcleanup/plan.py",
        "            if planned.reach is Reach.PLANNED:",
        "            if planned.reach is Reach.PLANNED and planned.sobject != billing.INVOICE:",
    ),
    Mutant(
        "an invoice of another run counts as cancelled by this clean-up",
        "sfcleanup/links.py",
        "    return of_this_run and status in INVOICE_RULE.from_states",
        "    return status in INVOICE_RULE.from_states",
    ),
    Mutant(
        "sources of other runs are reset",
        "sfcleanup/plan.py",
        "        if source.run_id != self.run.id or source.status not in rule.from_states:",
        "        if source.status not in rule.from_states:",
    ),
    Mutant(
        "Post In progress invoices are cancelled",
        "sfcleanup/billing.py",
        "frozenset({InvoiceStatus.ERROR, InvoiceStatus.INITIATED, InvoiceStatus.DRAFT}),",
        "frozenset({InvoiceStatus.ERROR, InvoiceStatus.INITIATED, InvoiceStatus.DRAFT, 'Post In progress'}),",
    ),
    Mutant(
        "sources are reset before lines are cancelled",
        "sfcleanup/billing.py",
        '''    INVOICE_LINES = "invoice_lines"
    INVOICES = "invoices"
    USAGE_SUMMARIES = "usage_summaries"
    ORDER_PRODUCTS = "order_products"''',
        '''    USAGE_SUMMARIES = "usage_summaries"
    ORDER_PRODUCTS = "order_products"
    INVOICE_LINES = "invoice_lines"
    INVOICES = "invoices"''',
    ),
    Mutant(
        "the lines naming the run's usage summaries are not read",
        "sfcleanup/salesforce/read.py",
        '        (InvoiceLine, "usage_summary_lines", planner.line_of_usage_summary),\n',
        "",
    ),
)


def _copy(destination: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "*_cache", "__pycache__", "sfcleanup-journal")
    shutil.copytree(ROOT, destination, ignore=ignore, dirs_exist_ok=True)


def caught(mutant: Mutant, workdir: Path) -> bool:
    """Apply the mutant in a fresh copy of the tree and run the safety tests; True when a test fails."""
    tree = workdir / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    _copy(tree)
    target = tree / mutant.path
    text = target.read_text()
    if text.count(mutant.original) != 1:
        raise SystemExit(f"mutant {mutant.name!r}: its original text is not found once in {mutant.path}")
    target.write_text(text.replace(mutant.original, mutant.mutated))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode != 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the mutants' names and stop")
    options = parser.parse_args()
    if options.list:
        print("\n".join(m.name for m in MUTANTS))
        return
    missed = []
    with tempfile.TemporaryDirectory(prefix="sfcleanup-mutants-") as directory:
        for mutant in MUTANTS:
            verdict = caught(mutant, Path(directory))
            print(f"{'caught' if verdict else 'MISSED'}  {mutant.name}", flush=True)
            if not verdict:
                missed.append(mutant.name)
    print(f"{len(MUTANTS) - len(missed)} of {len(MUTANTS)} planted mutants caught")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
