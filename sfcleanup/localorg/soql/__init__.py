"""SOQL for the local org: parse with a lark grammar, bind to the schema, run as SQLite over the store.

    compiled = compile_soql("SELECT Id, blng__Invoice__r.Name FROM blng__InvoiceLine__c", now=clock())
    page = compiled.fetch(conn, compiled.rowids(conn)[:2000])

Parsing and schema binding depend only on the text and are cached; the SQL depends on `now` (TODAY,
LAST_N_DAYS:n) and on queryAll, so it is built on every call, which costs microseconds.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from sfcleanup.localorg.soql.errors import SoqlError
from sfcleanup.localorg.soql.parser import parse
from sfcleanup.localorg.soql.query import CompiledQuery, build
from sfcleanup.localorg.soql.resolve import Plan, resolve

__all__ = ["CompiledQuery", "SoqlError", "compile_soql"]


@lru_cache(maxsize=512)
def _plan(text: str) -> Plan:
    return resolve(parse(text))


def compile_soql(text: str, *, now: datetime, include_deleted: bool = False) -> CompiledQuery:
    """Compile a SOQL query; raises SoqlError (MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE) as Salesforce."""
    return build(_plan(text), now=now, include_deleted=include_deleted)
