"""The plan on disk gives back exactly the changes put in, however much their values repeat."""

from __future__ import annotations

from typing import cast

from sfcleanup.billing import Phase
from sfcleanup.changes import Change, Values
from sfcleanup.planstore import PlanStore


def test_changes_come_back_equal_and_each_with_values_of_its_own() -> None:
    store = PlanStore()
    sobject = "blng__InvoiceLine__c"
    put = [
        Change(sobject, f"a0L{i:015d}", "001A", {"blng__InvoiceLineStatus__c": "Error"}, {"x": None}) for i in range(3)
    ]
    # Equal as dict keys, not as JSON: neither may come back as the other.
    odd = [cast(Values, {"n": value}) for value in (1, True, 1.0)]
    put += [Change(sobject, f"a0M{i:015d}", "001B", {"s": "Error"}, odd[i]) for i in range(3)]
    for change in put:
        store.add(Phase.INVOICE_LINES, change)
    store.seal()
    back = list(store.iterate(Phase.INVOICE_LINES))
    assert back == put
    assert [type(c.after["n"]) for c in back[3:]] == [int, bool, float]
    assert back[0].before == back[1].before and back[0].before is not back[1].before
    back[0].before["blng__InvoiceLineStatus__c"] = "changed"
    assert store.get_many(Phase.INVOICE_LINES, [put[1].id, put[0].id]) == {put[1].id: put[1], put[0].id: put[0]}
    store.close()


def test_a_lookup_of_many_ids_finds_exactly_the_phases_changes_among_them() -> None:
    """1,200 ids asked at once (more than one query's worth), some of another phase or of none: each change of
    the phase among them comes back by id; the rest are left out."""
    store = PlanStore()
    lines = [
        Change("blng__InvoiceLine__c", f"a0L{i:015d}", f"001{i % 7}", {"s": "Error"}, {"s": "Cancelled"})
        for i in range(1000)
    ]
    others = [
        Change("blng__Invoice__c", f"a0I{i:015d}", "001X", {"s": "Draft"}, {"s": "Cancelled"}) for i in range(100)
    ]
    for change in lines:
        store.add(Phase.INVOICE_LINES, change)
    for change in others:
        store.add(Phase.INVOICES, change)
    store.seal()
    asked = [c.id for c in lines[::2]] + [c.id for c in others] + [f"a0Z{i:015d}" for i in range(200)]
    found = store.get_many(Phase.INVOICE_LINES, asked)
    assert found == {c.id: c for c in lines[::2]}
