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
    assert store.get(Phase.INVOICE_LINES, put[1].id) == put[1]
    assert store.get(Phase.INVOICE_LINES, put[0].id) == put[0]
    store.close()
