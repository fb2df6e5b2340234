"""The calls the worker makes to Salesforce, each through the one door (`door.Door._call`): it counts it,
retries what is transient, logs in again once on an expired session, and translates failures into
sfcleanup's errors. Salesforce's JSON is handed on as it came only from here."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import structlog
from simple_salesforce.api import Salesforce

from sfcleanup.salesforce import composite
from sfcleanup.salesforce.api import Subrequest, Update
from sfcleanup.salesforce.classify import Verdict
from sfcleanup.salesforce.composite import SubResult
from sfcleanup.salesforce.door import Door, RequestBody
from sfcleanup.salesforce.shapes import Fields, JsonObject, JsonValue, QueryPage, Record, query_records

T = TypeVar("T")
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")
log = structlog.get_logger("sfcleanup.salesforce")


def _restful(sf: Salesforce, path: str, **kwargs: Any) -> Any:
    """simple-salesforce types restful's result as optional; an empty body only comes back from a 204."""
    return sf.restful(path, **kwargs)


__all__ = ["SalesforceClient", "Update"]


class SalesforceClient(Door):
    """The calls the worker makes: queries, describe and limits, Composite, record writes."""

    # --- reads ----------------------------------------------------------------------------------------
    def query_page(self, soql: str, *, batch_size: int = 2000) -> QueryPage:
        """The first page of a query, and whether it was the whole result."""
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"}
        page: dict[str, Any] = self._call("query", lambda sf: sf.query(soql, headers=headers, timeout=self._timeout))
        return list(page.get("records", [])), bool(page.get("done", True))

    def query_pages(self, soql: str, *, batch_size: int = 2000) -> Iterator[list[Record]]:
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"}
        page: dict[str, Any] = self._call("query", lambda sf: sf.query(soql, headers=headers, timeout=self._timeout))
        yield list(page.get("records", []))
        while not page.get("done", True):
            page = self._call("query_more", self._more(str(page["nextRecordsUrl"]), headers))
            yield list(page.get("records", []))

    def _more(self, next_url: str, headers: dict[str, str]) -> Callable[[Salesforce], Any]:
        return lambda sf: sf.query_more(next_url, identifier_is_url=True, headers=headers, timeout=self._timeout)

    def query_all(self, soql: str) -> list[Record]:
        """Every row of `soql`; a prefetched answer (read to its end) is used once instead of asking again."""
        kept = self._prefetched.pop(composite.query_path(soql), None)
        if kept is not None:
            return query_records(self._body("query", kept))
        return [record for page in self.query_pages(soql) for record in page]

    def _rest_of_query(self, page: dict[str, Any]) -> dict[str, Any]:
        """A query answer from inside a Composite call, with every further page read by plain GETs."""
        records = list(page.get("records", []))
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            page = self._call("query_more", self._more(str(page["nextRecordsUrl"]), {}))
            records += page.get("records", [])
        return {**page, "records": records, "done": True, "totalSize": len(records)}

    def get_many(self, what: str, paths: list[str]) -> list[JsonValue]:
        """Up to 25 GETs (at most 5 of them queries) in one Composite call: one API call instead of many.

        Only sObject resources and queries belong here (Composite supports nothing else). Each result is
        matched by referenceId; a subrequest that failed transiently is asked again; a query is read to its end.
        Paths prefetched earlier are answered from what was read then (once), without a call if all were.
        """
        kept = {path: self._prefetched.pop(path, None) for path in paths}
        answers = {path: result for path, result in kept.items() if result is not None}
        missing = [path for path in paths if path not in answers]
        if missing:
            answers.update(zip(missing, self._get_rounds(what, missing), strict=True))
        return [self._body(what, answers[path]) for path in paths]

    def prefetch(self, what: str, paths: list[str]) -> None:
        """Read now, in one Composite call (at most 25 GETs, 5 of them queries), what the code after this asks
        for piece by piece through `get_many` and `query_all`: one call instead of one per piece.

        Each answer is kept for the first reader of its path and handed out once (a later read asks the org
        again). A subrequest that failed is kept as it failed and raised when its reader asks, in the reader's
        words: errors read and come in the order they did when each piece was a call of its own.
        """
        self._prefetched.update(zip(paths, self._get_rounds(what, paths), strict=True))

    def _get_rounds(self, what: str, paths: list[str]) -> list[SubResult]:
        subrequests = [
            composite.subrequest("GET", f"/services/data/v{self.api_version}/{path}", index)
            for index, path in enumerate(paths)
        ]
        return self.composite_rounds(what, subrequests)

    def _body(self, what: str, result: SubResult) -> JsonValue:
        if result.failure is not None:
            raise self._error(what, result.failure, write=False)
        # Each body was decoded from the Composite answer's JSON.
        return cast("JsonValue", result.body)

    def get_with_first_pages(
        self, what: str, paths: Sequence[str], soqls: Sequence[str], *, batch_size: int = 2000
    ) -> tuple[list[JsonValue], list[QueryPage]]:
        """`get_many(what, paths)` (nothing prefetched) and `query_page` of each of `soqls`, all in one Composite
        call (at most 5 queries in all): each path's body, and each query's first page and whether it was the whole
        result.

        A query's further pages are left unread, as `query_page` leaves them. A failure raises as the lone
        call would: a path's as `what`, a query's as `query_page`'s.
        """
        url = f"/services/data/v{self.api_version}/"
        options = {"Sforce-Query-Options": f"batchSize={batch_size}"}
        gets = [composite.subrequest("GET", url + path, index) for index, path in enumerate(paths)]
        firsts = [
            composite.subrequest("GET", url + composite.query_path(soql), index, prefix="p", headers=options)
            for index, soql in enumerate(soqls)
        ]
        results = self.composite_rounds(
            what, [*gets, *firsts], first_pages={str(first["referenceId"]) for first in firsts}
        )
        bodies = [self._body(what, result) for result in results[: len(gets)]]
        pages: list[QueryPage] = []
        for result in results[len(gets) :]:
            if result.failure is not None:
                raise self._error("query", result.failure, write=False)
            body = result.body if isinstance(result.body, dict) else {}
            pages.append((query_records(body), bool(body.get("done", True))))
        return bodies, pages

    def describe(self, sobject: str) -> JsonObject:
        result: JsonObject = self._call(
            f"describe {sobject}", lambda sf: _restful(sf, f"sobjects/{sobject}/describe/", timeout=self._timeout)
        )
        return result

    def limits(self) -> JsonObject:
        result: JsonObject = self._call("limits", lambda sf: _restful(sf, "limits/", timeout=self._timeout))
        return result

    # --- composite ------------------------------------------------------------------------------------
    def _post_composite(
        self,
        what: str,
        subrequests: Sequence[Subrequest],
        *,
        write: bool,
        all_or_none: bool = False,
        collate: bool = True,
    ) -> list[SubResult]:
        body: dict[str, object] = {"allOrNone": all_or_none, "compositeRequest": subrequests}
        if not collate:
            # REST API Developer Guide, "Composite Request Body" (developer.salesforce.com/docs/platform/api-rest/
            # guide/requests-composite.html), collateSubrequests: "If collation is disabled, then the subrequests
            # are executed in the order in which they are received"; the default, true from v49, runs unrelated
            # subrequests in no guaranteed order.
            body["collateSubrequests"] = False
        answer = self._call(
            what, lambda sf: _restful(sf, "composite", method="POST", json=body, timeout=self._timeout), write=write
        )
        results = composite.decode(subrequests, answer)
        for result in results:
            if result.failure is not None and result.failure.verdict is Verdict.DAILY_LIMIT:
                raise self._error(what, result.failure, write=write)
        return results

    def composite(
        self, subrequests: Sequence[Subrequest], *, all_or_none: bool = False, collate: bool = True
    ) -> list[SubResult]:
        """One Composite call of writes that are not safe to repeat blindly: a lost answer is AmbiguousWrite.

        The results come back in the order of `subrequests`, matched by referenceId. `collate=False` has the org
        run them in that order too (a query after a write reads what the write left).
        """
        return self._post_composite("composite", subrequests, write=True, all_or_none=all_or_none, collate=collate)

    def composite_rounds(
        self,
        what: str,
        subrequests: Sequence[Subrequest],
        *,
        attempts: int | None = None,
        first_pages: Collection[str] = frozenset(),
    ) -> list[SubResult]:
        """Subrequests safe to repeat (GETs, PATCHes by Id), in one Composite call; those refused transiently
        (503, a row lock) are sent again, alone, with the retry policy's backoff. Queries are read to the end,
        but for those whose referenceId is in `first_pages`: their answer is the first page as it came.

        Returns every subrequest's final result, in request order: the caller judges each on its own.
        """
        final: dict[str, SubResult] = {}
        pending = list(subrequests)

        def again(attempt: int) -> None:
            log.warning("salesforce.subrequest_retry", call=what, attempt=attempt, subrequests=len(pending))

        for _ in self._retry.rounds(attempts, on_retry=again):
            retry: list[Subrequest] = []
            for request, result in zip(pending, self._post_composite(what, pending, write=False), strict=True):
                final[result.reference] = result
                if result.failure is not None and result.failure.verdict is Verdict.TRANSIENT:
                    retry.append(request)
                elif (
                    result.ok
                    and result.reference not in first_pages
                    and composite.is_query(str(request["url"]))
                    and isinstance(result.body, dict)
                ):
                    final[result.reference] = SubResult(
                        result.reference, result.status, self._rest_of_query(result.body), None
                    )
            pending = retry
            if not pending:
                break
        return [final[str(request["referenceId"])] for request in subrequests]

    # --- writes ---------------------------------------------------------------------------------------
    def update_record(self, sobject: str, record_id: str, fields: Fields) -> None:
        """PATCH one record. Setting fixed values by Id is idempotent, so a lost answer is simply re-sent."""
        self._call(
            f"update {sobject}",
            lambda sf: _restful(
                sf, f"sobjects/{sobject}/{record_id}", method="PATCH", json=fields, timeout=self._timeout
            ),
        )

    def _patches(self, updates: Sequence[Update]) -> list[Subrequest]:
        return [
            composite.subrequest(
                "PATCH", f"/services/data/v{self.api_version}/sobjects/{sobject}/{record_id}", i, fields
            )
            for i, (sobject, record_id, fields) in enumerate(updates)
        ]

    def update_many(self, what: str, updates: Sequence[Update], *, best_effort: Sequence[Update] = ()) -> None:
        """Several single-record PATCHes in one Composite call; like update_record, safe to send again.

        Subrequests refused on a row lock are sent again, alone, with the retry policy's backoff. Each update
        is judged on its own result: one of `updates` that still fails raises; one of `best_effort` (bookkeeping,
        such as releasing a lease that times out anyway) is logged and left.
        """
        results = self.composite_rounds(what, self._patches([*updates, *best_effort]))
        for (sobject, record_id, _), result in zip(best_effort, results[len(updates) :], strict=True):
            if result.failure is not None:
                log.warning(
                    "salesforce.best_effort_update_failed",
                    call=what,
                    object=sobject,
                    record=record_id,
                    reason=f"{result.failure.error_code}: {result.failure.message}"[:200],
                )
        for result in results[: len(updates)]:
            if result.failure is not None:
                raise self._error(what, result.failure, write=False)

    def create_record(self, sobject: str, fields: Fields) -> str:
        """POST one record; not safe to repeat: a lost answer is AmbiguousWrite, for the caller to read back."""
        result: JsonObject = self._call(
            f"create {sobject}",
            lambda sf: _restful(sf, f"sobjects/{sobject}/", method="POST", json=fields, timeout=self._timeout),
            write=True,
        )
        return str(result["id"])

    def create_records(self, records: Sequence[Fields]) -> list[Record]:
        """sObject Collections create (up to 200 records, each with attributes.type): one save result each."""
        result: list[Record] = self._call(
            "create",
            lambda sf: _restful(
                sf,
                "composite/sobjects",
                method="POST",
                json={"allOrNone": False, "records": list(records)},
                timeout=self._timeout,
            ),
            write=True,
        )
        return result

    # --- Bulk API 2.0 query result pages --------------------------------------------------------------
    def download_page(self, what: str, path: str, params: dict[str, str], target: Path) -> str | None:
        """Stream one page of a GET's body to `target` and return its `Sforce-Locator` (None after the last
        page). The page is one attempt, retried whole like any lost read, so `target` never keeps half a page."""

        def fetch(sf: Salesforce) -> str | None:
            body = RequestBody(None, params, None, {})
            response = self._send(sf, what, "GET", self._url(path), body=body, stream=True)
            with target.open("wb") as handle:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    handle.write(chunk)
            locator = response.headers.get("Sforce-Locator")
            return None if locator in (None, "", "null") else locator

        return self._call(what, fetch)
