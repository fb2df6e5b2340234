"""The local org's URL map: (methods, path pattern, handler, needs an authorised API call)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sfcleanup.localorg import auth, bulk, rest
from sfcleanup.localorg.collections import collections
from sfcleanup.localorg.composite import composite

if TYPE_CHECKING:
    from sfcleanup.localorg.app import Handler

_V = r"^/services/data/v(?P<version>\d{2,3}\.0)"
_ALL = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})


def _route(
    methods: str, pattern: str, handler: Handler, needs_auth: bool = True
) -> tuple[frozenset[str], re.Pattern[str], Handler, bool]:
    return frozenset(methods.split()), re.compile(pattern), handler, needs_auth


ROUTES: tuple[tuple[frozenset[str], re.Pattern[str], Handler, bool], ...] = (
    _route("POST", r"^/services/oauth2/token/?$", auth.token, needs_auth=False),
    _route("GET", r"^/services/data/?$", rest.versions, needs_auth=False),
    _route("GET", _V + r"/limits/?$", rest.limits),
    _route("GET", _V + r"/sobjects/?$", rest.describe_global),
    _route("GET", _V + r"/sobjects/(?P<sobject>\w+)/describe/?$", rest.describe),
    _route("GET POST", _V + r"/sobjects/(?P<sobject>\w+)/?$", rest.sobject_root),
    _route("GET PATCH DELETE", _V + r"/sobjects/(?P<sobject>\w+)/(?P<id>\w+)/?$", rest.sobject_record),
    _route("GET", _V + r"/(?P<endpoint>query|queryAll)/?$", rest.run_query),
    _route("GET", _V + r"/(?P<endpoint>query|queryAll)/(?P<locator>[\w-]+)/?$", rest.query_more),
    _route("POST PATCH DELETE", _V + r"/composite/sobjects/?$", collections),
    _route("POST", _V + r"/composite/?$", composite),
    *bulk.ROUTES,
)
