"""The link model: every path from a billing source to an invoice, and what each path means for the clean-up.

A source (order product or usage summary) was billed through invoice lines and invoices. Resetting it to
Pending Billing is safe only when everything that billed it is cancelled, or will be cancelled by this
clean-up before the source is written. The links (DOMAIN.md section 3):

- every line of the run being cleaned that names the source, and that line's invoice;
- for a usage summary: its own invoice (`blng__Invoice__c`), its own invoice line (`blng__InvoiceLine__c`) and
  that line's invoice, and any line of another run that names it (a usage summary is billed once);
- an order product is billed again every period, so lines of other runs do not bind it.

Each linked line or invoice reaches one of four verdicts; the source takes the worst of its links.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from sfcleanup.billing import GUARDED_INVOICE_STATES, RULE_BY_PHASE, InvoiceStatus, Phase


class Reach(IntEnum):
    """How far a linked line or invoice is from cancelled; ordered from harmless to binding."""

    # Cancelled already, or no record on this link.
    DONE = 0
    # This clean-up cancels it: the source waits for that write and is held back if it fails.
    PLANNED = 1
    # Not cancelled and not cancelled by this clean-up (another run's draft, an unexpected or unreadable
    # status): resetting the source would leave it billable twice. A person must look.
    OPEN = 2
    # Posted or "Post In progress": the source was billed for good. Never reset it.
    POSTED = 3


@dataclass(frozen=True, slots=True)
class Link:
    """One line or invoice on a path from a source to an invoice, with what the clean-up knows of it."""

    sobject: str
    id: str
    status: str | None
    # Whether this clean-up cancels it (a line or invoice of the run, in a from-state, not guarded).
    planned: bool

    @property
    def reach(self) -> Reach:
        if self.status in GUARDED_INVOICE_STATES:
            return Reach.POSTED
        if self.status == InvoiceStatus.CANCELLED:
            return Reach.DONE
        return Reach.PLANNED if self.planned else Reach.OPEN

    def describe(self) -> str:
        kind = "line" if self.sobject.endswith("InvoiceLine__c") else "invoice"
        status = self.status or "unknown status"
        return f"{kind} {self.id} ({status})"


LINE_RULE = RULE_BY_PHASE[Phase.INVOICE_LINES]
INVOICE_RULE = RULE_BY_PHASE[Phase.INVOICES]


def invoice_planned(status: str | None, of_this_run: bool) -> bool:
    """The clean-up cancels an invoice the run created that is in a from-state."""
    return of_this_run and status in INVOICE_RULE.from_states


def line_planned(status: str | None, of_this_run: bool, invoice_id: str | None, invoice_status: str | None) -> bool:
    """The clean-up cancels a line of the run in a from-state, unless its invoice is guarded or unreadable."""
    if not of_this_run or status not in LINE_RULE.from_states:
        return False
    return line_invoice_problem(invoice_id, invoice_status) is None


def line_invoice_problem(invoice_id: str | None, invoice_status: str | None) -> str | None:
    """Why a line must not be cancelled because of its invoice: guarded, or linked but unreadable."""
    if invoice_status in GUARDED_INVOICE_STATES:
        return "guarded"
    if invoice_id is not None and invoice_status is None:
        # A link whose target cannot be read cannot be proven not posted: anything unproven is refused.
        return "unreadable"
    return None


@dataclass(frozen=True, slots=True)
class Path:
    """A line and its invoice (either may be absent) on the way from a source to an invoice."""

    line: Link | None
    invoice: Link | None

    def links(self) -> tuple[Link, ...]:
        line, invoice = self.line, self.invoice
        if line is None:
            return () if invoice is None else (invoice,)
        return (line,) if invoice is None else (line, invoice)


def worst(links: tuple[Link, ...]) -> tuple[Reach, Link | None]:
    """The most binding verdict among `links`, and the link that gives it (None when there are no links)."""
    found: Link | None = None
    most = Reach.DONE
    for link in links:
        reach = link.reach
        if found is None or reach > most:
            found, most = link, reach
    return most, found
