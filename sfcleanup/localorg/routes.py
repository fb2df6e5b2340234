"""The local org's URL map: (methods, path pattern, handler, needs an authorised API call).

The app is given `ROUTER` when it is constructed (`LocalOrg(router=...)`); the handlers know nothing of the app.
"""

from __future__ import annotations

from sfcleanup.localorg import auth, rest
from sfcleanup.localorg.bulk.ingest import ingest_job, ingest_jobs, ingest_results, ingest_upload
from sfcleanup.localorg.bulk.query import query_job, query_jobs, query_results
from sfcleanup.localorg.collections import collections
from sfcleanup.localorg.composite import composite
from sfcleanup.localorg.context import Handler, Route, Router

_V = r"^/services/data/v(?P<version>\d{2,3}\.0)"
_JOBS = _V + "/jobs"
_RESULTS = "successfulResults|failedResults|unprocessedRecords"


def _bulk(methods: str, pattern: str, handler: Handler) -> Route:
    return Route.of(methods, _JOBS + pattern, handler)


REST_ROUTES: tuple[Route, ...] = (
    Route.of("POST", r"^/services/oauth2/token/?$", auth.token, needs_auth=False),
    Route.of("GET", r"^/services/data/?$", rest.versions, needs_auth=False),
    Route.of("GET", r"^/services/oauth2/userinfo/?$", auth.userinfo),
    Route.of("GET", _V + r"/limits/?$", rest.limits),
    Route.of("GET", _V + r"/sobjects/?$", rest.describe_global),
    Route.of("GET", _V + r"/sobjects/(?P<sobject>\w+)/describe/?$", rest.describe),
    Route.of("GET POST", _V + r"/sobjects/(?P<sobject>\w+)/?$", rest.sobject_root),
    Route.of("GET PATCH DELETE", _V + r"/sobjects/(?P<sobject>\w+)/(?P<id>\w+)/?$", rest.sobject_record),
    Route.of("GET", _V + r"/(?P<endpoint>query|queryAll)/?$", rest.run_query),
    Route.of("GET", _V + r"/(?P<endpoint>query|queryAll)/(?P<locator>[\w-]+)/?$", rest.query_more),
    Route.of("POST PATCH DELETE", _V + r"/composite/sobjects/?$", collections),
    Route.of("POST", _V + r"/composite/?$", composite),
)

BULK_ROUTES: tuple[Route, ...] = (
    _bulk("GET POST", r"/ingest/?$", ingest_jobs),
    _bulk("GET PATCH DELETE", r"/ingest/(?P<job_id>\w+)/?$", ingest_job),
    _bulk("PUT", r"/ingest/(?P<job_id>\w+)/batches/?$", ingest_upload),
    # Salesforce documents unprocessedrecords/, simple-salesforce asks for unprocessedRecords: any case matches.
    _bulk("GET", rf"/ingest/(?P<job_id>\w+)/(?P<results>(?i:{_RESULTS}))/?$", ingest_results),
    _bulk("GET POST", r"/query/?$", query_jobs),
    _bulk("GET PATCH DELETE", r"/query/(?P<job_id>\w+)/?$", query_job),
    _bulk("GET", r"/query/(?P<job_id>\w+)/results/?$", query_results),
)

ROUTER = Router.of(REST_ROUTES, BULK_ROUTES)
