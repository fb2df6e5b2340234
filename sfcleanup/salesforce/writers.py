"""The one writing interface, and the one place that chooses which writer a phase goes through.

A writer takes one phase's changes and returns normalised results (`sfcleanup.outcomes`): what it updated,
each row that failed, and apart from those, each Bulk API job that did not complete. Composite and Bulk API
2.0 both implement it; the route is chosen by `route_for` alone, so the estimate and the writing agree.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from sfcleanup.billing import Rule
from sfcleanup.changes import ChangeSet
from sfcleanup.config import WriteSettings
from sfcleanup.journal import Journal
from sfcleanup.outcomes import PhaseResult
from sfcleanup.salesforce.bulk import BulkApi, Polling
from sfcleanup.salesforce.bulkwrite import BulkWriter, bulk_jobs_for
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.write import CompositeWriter


class Writer(Protocol):
    def apply(self, phase: str, rule: Rule, changes: ChangeSet) -> PhaseResult:
        """Write one phase's changes; row failures are results, only a stop of the whole run raises."""
        ...


class Route(StrEnum):
    COMPOSITE = "composite"
    BULK = "bulk"


def route_for(count: int, settings: WriteSettings) -> Route:
    """The route for one phase of `count` records: the setting, or by size when it is auto."""
    if settings.route == "bulk" or (settings.route == "auto" and count >= settings.bulk_threshold):
        return Route.BULK
    return Route.COMPOSITE


def jobs_for(count: int, settings: WriteSettings) -> int:
    """How many Bulk API jobs a phase of `count` records goes out in; 0 on the Composite route."""
    if route_for(count, settings) is Route.BULK:
        return bulk_jobs_for(count, settings.bulk_jobs_per_object, settings.bulk_min_records_per_job)
    return 0


def bulk_api(client: SalesforceClient, settings: WriteSettings, sleep: Callable[[float], None]) -> BulkApi:
    return BulkApi(client, Polling.of(settings, sleep))


def bulk_writer(
    client: SalesforceClient,
    settings: WriteSettings,
    journal: Journal,
    workdir: Path,
    *,
    sleep: Callable[[float], None],
    progress: Callable[[int], None] | None = None,
) -> BulkWriter:
    api = bulk_api(client, settings, sleep)
    return BulkWriter(client, settings, journal, api, workdir, progress=progress, sleep=sleep)


def writer_for(
    count: int,
    client: SalesforceClient,
    settings: WriteSettings,
    journal: Journal,
    workdir: Path,
    *,
    sleep: Callable[[float], None],
    progress: Callable[[int], None] | None = None,
) -> Writer:
    """The writer for one phase of `count` records."""
    route = route_for(count, settings)
    match route:
        case Route.BULK:
            return bulk_writer(client, settings, journal, workdir, sleep=sleep, progress=progress)
        case Route.COMPOSITE:
            return CompositeWriter(client, settings, journal, progress=progress, sleep=sleep)
