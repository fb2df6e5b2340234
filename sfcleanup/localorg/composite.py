"""Composite: up to 25 subrequests in one API call, at most 5 of them collections or queries.

Only what the REST API Developer Guide lists for Composite is served as a subrequest: sObject resources, Query and
QueryAll (and their next pages) and sObject Collections. Anything else (`/limits`, a nested `/composite`, Bulk API
`jobs/`, `/tooling`) answers 404 NOT_FOUND in its subrequest, as a resource Composite does not know.

With `collateSubrequests` (true by default from v49.0) "the order of execution is not guaranteed (unless there is
an explicit dependency between the subrequests)": the org runs independent subrequests in a seeded random order,
a subrequest that names another's result in `@{ref...}` always after it, and answers in execution order, because
nothing documents request order for the response array (each result carries its `referenceId` to match it by).

Subrequests run through the same routes as top-level requests, inside the caller's request context, so they share
its locks and its simulated cost, and the whole composite counts as one call.
"""

from __future__ import annotations

import json
import re
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse, error_body

if TYPE_CHECKING:
    from sfcleanup.localorg.app import LocalOrg, RequestContext

MAX_SUBREQUESTS = 25
MAX_HEAVY_SUBREQUESTS = 5
# Documented: letters, numbers and underscores. Requiring a leading letter is stricter (assumed).
REFERENCE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Headers a subrequest inherits from the top-level request and must not set itself (a top-level 400).
INHERITED_HEADERS = frozenset({"authorization", "accept", "content-type"})
_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
_VERSIONED = re.compile(r"^/services/data/v(?P<version>[^/]+)(?P<rest>/[^?]*)?")
_SUPPORTED = re.compile(r"^/(sobjects(/|$)|query(/|$)|queryAll(/|$)|composite/sobjects/?$)")
_HEAVY = re.compile(r"^/(composite/sobjects|query|queryAll)(/|$)")
HALTED = error_body(
    "PROCESSING_HALTED", "The transaction was rolled back since another operation in the same transaction failed."
)
_NOT_FOUND = error_body("NOT_FOUND", "The requested resource does not exist")


class _RollBack(Exception):
    pass


def _resolve_path(value: Any, path: str) -> Any:
    for part in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        key, index = part
        value = value[key] if key else value[int(index)]
    return value


def _substitute(text: str, results: dict[str, Any]) -> str:
    """Replace `@{ref.path}` with the value from an earlier subrequest's body; BadRequest halts this subrequest."""

    def replace(match: re.Match[str]) -> str:
        reference, path = match.group(1), match.group(2)
        if reference not in results:
            raise BadRequest(400, "PROCESSING_HALTED", f"Invalid reference specified. No value for {reference} found")
        try:
            return str(_resolve_path(results[reference], path))
        except (KeyError, IndexError, TypeError):
            # The referenced subrequest failed (its body is an error array) or has no such path.
            raise BadRequest(
                400,
                "PROCESSING_HALTED",
                f"Invalid reference specified. No value for {reference}{path} found in {reference}",
            ) from None

    return _REFERENCE.sub(replace, text)


def _resource(url: str) -> str | None:
    """The part of a subrequest url after `/services/data/vXX.X`, or None when it is not under a version."""
    match = _VERSIONED.match(url)
    return None if match is None else match["rest"] or ""


def _validate(subrequests: Any) -> list[dict[str, Any]]:
    if not isinstance(subrequests, list) or not all(isinstance(s, dict) for s in subrequests):
        raise BadRequest(400, "JSON_PARSER_ERROR", "compositeRequest must be an array of subrequests")
    if len(subrequests) > MAX_SUBREQUESTS:
        raise BadRequest(400, "LIMIT_EXCEEDED", f"Composite request can contain at most {MAX_SUBREQUESTS} subrequests")
    heavy = sum(1 for s in subrequests if _HEAVY.match(_resource(str(s.get("url", ""))) or ""))
    if heavy > MAX_HEAVY_SUBREQUESTS:
        raise BadRequest(
            400,
            "LIMIT_EXCEEDED",
            f"Composite request can contain at most {MAX_HEAVY_SUBREQUESTS} sObject Collections or query subrequests",
        )
    seen: set[str] = set()
    for sub in subrequests:
        if not sub.get("method") or not sub.get("url") or not sub.get("referenceId"):
            raise BadRequest(400, "JSON_PARSER_ERROR", "Each subrequest needs method, url and referenceId")
        reference = sub["referenceId"]
        if not isinstance(reference, str) or not REFERENCE_ID.match(reference):
            raise BadRequest(
                400,
                "JSON_PARSER_ERROR",
                f"Invalid referenceId: {reference!r}. A referenceId starts with a letter and holds only letters, "
                "numbers and underscores.",
            )
        if reference in seen:
            raise BadRequest(400, "JSON_PARSER_ERROR", f"Duplicate referenceId provided in the request: {reference}")
        seen.add(reference)
        headers = sub.get("httpHeaders") or {}
        if not isinstance(headers, dict):
            raise BadRequest(400, "JSON_PARSER_ERROR", "httpHeaders must be an object")
        inherited = sorted(name for name in headers if str(name).lower() in INHERITED_HEADERS)
        if inherited:
            raise BadRequest(
                400,
                "INVALID_INPUT",
                f"Subrequest {reference} sets {', '.join(inherited)}: subrequests inherit that header from the "
                "composite request and must not specify it",
            )
    return subrequests


def _references(sub: dict[str, Any]) -> set[str]:
    text = str(sub.get("url", "")) + json.dumps(sub.get("body"))
    return {match.group(1) for match in _REFERENCE.finditer(text)}


def _execution_order(org: LocalOrg, subrequests: list[dict[str, Any]], collate: bool) -> list[int]:
    """Indexes in the order they run: request order without collation, else seeded random order that keeps every
    subrequest after the earlier subrequests it references."""
    if not collate:
        return list(range(len(subrequests)))
    position = {str(sub["referenceId"]): index for index, sub in enumerate(subrequests)}
    needs = [
        {position[ref] for ref in _references(sub) if ref in position and position[ref] < index}
        for index, sub in enumerate(subrequests)
    ]
    done: set[int] = set()
    order: list[int] = []
    pending = list(range(len(subrequests)))
    while pending:
        ready = [index for index in pending if needs[index] <= done]
        pick = ready[org.faults.integer(0, len(ready) - 1)] if len(ready) > 1 else ready[0]
        order.append(pick)
        done.add(pick)
        pending.remove(pick)
    return order


def _run_subrequest(
    org: LocalOrg,
    ctx: RequestContext,
    req: HttpRequest,
    sub: dict[str, Any],
    results: dict[str, Any],
    all_or_none: bool,
) -> HttpResponse:
    body = sub.get("body")
    if all_or_none and isinstance(body, dict) and "records" in body:
        # The composite's allOrNone overrides the collection's own.
        body = {**body, "allOrNone": True}
    try:
        url = _substitute(str(sub["url"]), results)
        raw = _substitute(json.dumps(body), results).encode() if body is not None else b""
    except BadRequest as exc:
        # A reference to a subrequest that failed halts only this subrequest (and what depends on it).
        return exc.response()
    versioned = _VERSIONED.match(url)
    if versioned is None or not _SUPPORTED.match(versioned["rest"] or ""):
        return HttpResponse.json(404, _NOT_FOUND)
    from sfcleanup.localorg.app import LISTED_VERSIONS  # the app imports the routes, which import this module

    if versioned["version"] not in LISTED_VERSIONS:
        return HttpResponse.json(404, _NOT_FOUND)
    sub_req = HttpRequest.build(str(sub["method"]), url, {**req.headers, **(sub.get("httpHeaders") or {})}, raw)
    return org.route(ctx, sub_req)


def _failed(response: HttpResponse, body: Any) -> bool:
    """An error status, or a collections answer with a failed row: under allOrNone both roll the composite back
    ("the all-or-none behavior also applies to each of the sObject Collections subrequests")."""
    if response.status >= 400:
        return True
    return isinstance(body, list) and any(isinstance(row, dict) and row.get("success") is False for row in body)


def _entry(sub: dict[str, Any], status: int, body: Any, headers: dict[str, str]) -> dict[str, Any]:
    return {"body": body, "httpHeaders": headers, "httpStatusCode": status, "referenceId": sub["referenceId"]}


def composite(org: LocalOrg, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    payload = req.json()
    if not isinstance(payload, dict):
        raise BadRequest(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    subrequests = _validate(payload.get("compositeRequest"))
    all_or_none = bool(payload.get("allOrNone", False))
    collate = bool(payload.get("collateSubrequests", float(ctx.version) >= 49.0))
    order = _execution_order(org, subrequests, collate)
    responses: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    try:
        # Only allOrNone needs one transaction; without it, subrequests must not hold the database lock
        # while they wait for record locks.
        with org.store.transaction() if all_or_none else nullcontext():
            for index in order:
                sub = subrequests[index]
                response = _run_subrequest(org, ctx, req, sub, results, all_or_none)
                parsed = json.loads(response.body) if response.body else None
                results[str(sub["referenceId"])] = parsed
                headers = {k: v for k, v in response.headers.items() if k.lower() == "location"}
                responses.append(_entry(sub, response.status, parsed, headers))
                if all_or_none and _failed(response, parsed):
                    raise _RollBack
    except _RollBack:
        # The failed subrequest keeps its own answer; every other one, run or not, reports the rollback.
        failed = len(responses) - 1
        responses = [
            responses[position] if position == failed else _entry(subrequests[index], 400, HALTED, {})
            for position, index in enumerate(order)
        ]
    return HttpResponse.json(200, {"compositeResponse": responses})
