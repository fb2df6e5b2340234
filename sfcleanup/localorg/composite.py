"""Composite: up to 25 subrequests in one API call, at most 5 of them collections or queries.

Subrequests run through the same routes as top-level requests, inside the caller's request context, so they
share its locks and its simulated cost, and the whole composite counts as one call.
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
_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
_HEAVY = re.compile(r"/services/data/v[\d.]+/(composite/sobjects|query|queryAll)(/|\?|$)")
HALTED = error_body(
    "PROCESSING_HALTED", "The transaction was rolled back since another operation in the same transaction failed."
)


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


def _validate(subrequests: Any) -> list[dict[str, Any]]:
    if not isinstance(subrequests, list) or not all(isinstance(s, dict) for s in subrequests):
        raise BadRequest(400, "JSON_PARSER_ERROR", "compositeRequest must be an array of subrequests")
    if len(subrequests) > MAX_SUBREQUESTS:
        raise BadRequest(400, "LIMIT_EXCEEDED", f"Composite request can contain at most {MAX_SUBREQUESTS} subrequests")
    heavy = sum(1 for s in subrequests if _HEAVY.search(str(s.get("url", ""))))
    if heavy > MAX_HEAVY_SUBREQUESTS:
        raise BadRequest(
            400,
            "LIMIT_EXCEEDED",
            f"Composite request can contain at most {MAX_HEAVY_SUBREQUESTS} sObject Collections or query subrequests",
        )
    for sub in subrequests:
        if not sub.get("method") or not sub.get("url") or not sub.get("referenceId"):
            raise BadRequest(400, "JSON_PARSER_ERROR", "Each subrequest needs method, url and referenceId")
    return subrequests


def _run_subrequest(
    org: LocalOrg, ctx: RequestContext, req: HttpRequest, sub: dict[str, Any], results: dict[str, Any]
) -> HttpResponse:
    body = sub.get("body")
    try:
        url = _substitute(str(sub["url"]), results)
        raw = _substitute(json.dumps(body), results).encode() if body is not None else b""
    except BadRequest as exc:
        # A reference to a subrequest that failed halts only this subrequest. Raising it out of the loop (as
        # before) answered 400 for the whole composite although earlier subrequests had already committed.
        return exc.response()
    sub_req = HttpRequest.build(str(sub["method"]), url, {**req.headers, **sub.get("httpHeaders", {})}, raw)
    return org.route(ctx, sub_req)


def composite(org: LocalOrg, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    payload = req.json()
    if not isinstance(payload, dict):
        raise BadRequest(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    subrequests = _validate(payload.get("compositeRequest"))
    all_or_none = bool(payload.get("allOrNone", False))
    responses: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    try:
        # Only allOrNone needs one transaction; without it, subrequests must not hold the database lock
        # while they wait for record locks.
        with org.store.transaction() if all_or_none else nullcontext():
            for sub in subrequests:
                response = _run_subrequest(org, ctx, req, sub, results)
                parsed = json.loads(response.body) if response.body else None
                results[str(sub["referenceId"])] = parsed
                responses.append(
                    {
                        "body": parsed,
                        "httpHeaders": {k: v for k, v in response.headers.items() if k.lower() == "location"},
                        "httpStatusCode": response.status,
                        "referenceId": sub["referenceId"],
                    }
                )
                if response.status >= 400 and all_or_none:
                    raise _RollBack
    except _RollBack:
        failed = len(responses) - 1
        for index, sub in enumerate(subrequests):
            if index == failed:
                continue
            entry = {"body": HALTED, "httpHeaders": {}, "httpStatusCode": 400, "referenceId": sub["referenceId"]}
            if index < failed:
                responses[index] = entry
            else:
                responses.append(entry)
    return HttpResponse.json(200, {"compositeResponse": responses})
