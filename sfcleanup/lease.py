"""Who is cleaning a run: a lease, so two workers never clean one run at once.

The run's CleanUp Status "Started" says a clean-up is under way; a `blng__ErrorLog__c` record on the run with
the code SFCLEANUP_LEASE names the worker holding it (its identity) and, through its LastModifiedDate, when it
last showed signs of life. A second worker refuses while the lease is fresh, and takes over a lease older
than the timeout (its holder died). Two workers on one machine with the same journal directory are stopped
earlier, by an exclusive lock on the run's journal lock file.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import structlog
from pydantic import BaseModel, ConfigDict, Field

from sfcleanup import billing, queries
from sfcleanup.clock import Clock, utc_now
from sfcleanup.errors import AmbiguousWrite, SfCleanupError, StopRun
from sfcleanup.salesforce import composite
from sfcleanup.salesforce.api import LeaseApi, Update
from sfcleanup.salesforce.retry import CREATE_RESENDS, sends
from sfcleanup.sftime import parse_datetime

LEASE_CODE = "SFCLEANUP_LEASE"
RELEASED_CODE = "SFCLEANUP_LEASE_RELEASED"
HEARTBEAT_EVERY = timedelta(seconds=60)
# A worker first in the election reads again this many times, pausing longer each time, for rivals to withdraw.
ELECTION_READS = 4
ELECTION_PAUSE_S = 0.5
# Marks the random token in a lease's summary that tells one creation attempt's record from any other.
NONCE = "attempt "
log = structlog.get_logger("sfcleanup.lease")


class LeaseHeld(StopRun):
    """Another worker is cleaning the run; nothing was written. Run again once it has finished."""


class LeaseRow(BaseModel):
    """A lease record as the org lists it."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    id: str = Field(alias="Id")
    name: str | None = Field(None, alias="blng__ErrorName__c")
    code: str | None = Field(None, alias="blng__ErrorCode__c")
    summary: str | None = Field(None, alias="blng__Summary__c")
    last_modified: str = Field(alias="LastModifiedDate")
    created: str | None = Field(None, alias="CreatedDate")


@dataclass(frozen=True)
class Lease:
    record_id: str
    holder: str
    last_seen: datetime
    held: bool = True  # False once released
    created: datetime | None = None
    summary: str = ""


class LeaseLost(StopRun):
    """Another worker took this worker's lease over (it judged the lease dead): stop writing at once."""


def _order(lease: Lease) -> tuple[datetime, str]:
    """The election's tie-break, the same for every worker that reads the same rows."""
    return lease.created or lease.last_seen, lease.record_id


class Leases:
    """The run's lease records: created, elected among, kept alive and released.

    Only documented behaviour is relied on: a read issued after a write has been answered sees that write;
    ids and CreatedDate say nothing about which of two records came first. Election: a worker creates its
    record, then reads every lease of the run. It proceeds only when a read made after its own record existed
    shows no live record of another worker. Of two workers that see each other, the one later in `_order`
    withdraws its record; the earlier one reads again, a few times, until the other's record is gone, and
    withdraws too if it is not. Two workers cannot both proceed: whichever read last saw the other's record.

    The create and the first read are two calls: that a rival sees this worker's record by the time it reads
    rests on the create having answered (committed) before this worker reads. Listing in the create's own
    Composite call would save a call but rest on when Salesforce makes a Composite call's writes visible to
    other sessions, which it does not document.
    """

    def __init__(
        self,
        client: LeaseApi,
        identity: str,
        timeout_s: float,
        *,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        local_clock: Clock = utc_now,
    ) -> None:
        self._client = client
        # This machine's clock: the org's clock is measured against it.
        self._local_clock = local_clock
        self.identity = identity
        self._timeout = timedelta(seconds=timeout_s)
        # The org's time now, for read-only checks; the election itself uses the org's own timestamps.
        self._clock = clock or client.org_now
        self._sleep = sleep
        self._last_beat: datetime | None = None
        # The org's clock minus this machine's, as the last acquire measured it.
        self._offset = timedelta(0)
        self._run_id: str | None = None
        # Every other lease record the last acquire saw, held or released: who else touched the run.
        self.seen: list[Lease] = []

    @staticmethod
    def _parse(row: object) -> Lease:
        record = LeaseRow.model_validate(row)
        last_seen = parse_datetime(record.last_modified)
        return Lease(
            record.id,
            record.name or "?",
            last_seen,
            record.code == LEASE_CODE,
            parse_datetime(record.created) if record.created else last_seen,
            record.summary or "",
        )

    @staticmethod
    def _query(run_id: str) -> str:
        return queries.render("leases", run_id=run_id, codes=[LEASE_CODE, RELEASED_CODE])

    def _read(self, run_id: str) -> list[Lease]:
        return [self._parse(r) for r in self._client.query_all(self._query(run_id))]

    def _live(self, lease: Lease, now: datetime) -> bool:
        return lease.held and now - lease.last_seen < self._timeout

    def touched_by_others_since(self, moment: datetime) -> bool:
        """Did another worker hold this run's lease at or after `moment` (this machine's clock, by the last
        acquire's reading)?"""
        since = moment + self._offset
        return any(x.holder != self.identity and x.last_seen >= since for x in self.seen)

    def holder_other_than_me(self, run_id: str) -> Lease | None:
        """A live lease of another worker on the run, if there is one (read-only)."""
        now = self._clock()
        return next((x for x in self._read(run_id) if x.holder != self.identity and self._live(x, now)), None)

    def refusal(self, lease: Lease) -> str:
        until = (lease.last_seen + self._timeout).isoformat(timespec="seconds")
        return (
            f"another worker ({lease.holder}) is cleaning this run, last seen {lease.last_seen.isoformat()}; "
            f"wait for it to finish, or after {until} run again to take over its lease"
        )

    def acquire(self, run_id: str) -> Lease:
        """Take the run's lease, or raise LeaseHeld naming the holder; leases past the timeout are taken over.

        After a lost answer, the read that found this worker's record by its nonce is the election's first read:
        made after the record existed, it counts as any later read does."""
        asked_at = self._local_clock()
        mine, listed = self._create(run_id, asked_at)
        for check in range(1, ELECTION_READS + 1):
            leases = listed if listed is not None else self._read(run_id)
            listed = None
            own = next((x for x in leases if x.record_id == mine), None)
            if own is None:
                raise StopRun("the lease record this worker created is not visible in the org; run again")
            # Freshness is judged on the org's clock: its timestamps against the moment it created this record.
            now = own.last_seen
            rivals = sorted((x for x in leases if x.holder != self.identity and self._live(x, now)), key=_order)
            if not rivals:
                self._won(run_id, mine, leases, now, asked_at)
                return Lease(mine, self.identity, now, True, own.created)
            if _order(rivals[0]) < _order(own) or check == ELECTION_READS:
                self._withdraw(mine)
                raise LeaseHeld(self.refusal(rivals[0]))
            # This worker comes first among those it sees: they withdraw once they see its record.
            log.info("lease.contended", rivals=[x.holder for x in rivals], check=check)
            self._sleep(ELECTION_PAUSE_S * check)
        raise AssertionError("unreachable: the last election read withdraws or wins")  # pragma: no cover

    def _won(self, run_id: str, mine: str, leases: list[Lease], now: datetime, asked_at: datetime) -> None:
        """Close the leases this worker supersedes: its own earlier ones and other workers' dead ones."""
        self.seen = [x for x in leases if x.record_id != mine]
        for lease in self.seen:
            if not lease.held:
                continue
            try:
                self._close(lease.record_id)
            except SfCleanupError:
                # A holder judged dead that is not learns it was taken over only from this close.
                self._withdraw(mine)
                raise
            if lease.holder != self.identity:
                log.info("lease.taken_over", previous=lease.holder, last_seen=lease.last_seen.isoformat())
        self._offset = now - asked_at
        self._run_id = run_id
        self._last_beat = self._clock()

    def _record(self, run_id: str, now: datetime, nonce: str) -> dict[str, str]:
        return {
            billing.RUN_LOOKUP: run_id,
            "blng__ErrorCode__c": LEASE_CODE,
            "blng__ErrorName__c": self.identity[:255],
            "blng__Summary__c": (
                f"sfcleanup clean-up in progress since {now.isoformat(timespec='seconds')} ({NONCE}{nonce})"
            ),
        }

    def _create(self, run_id: str, now: datetime) -> tuple[str, list[Lease] | None]:
        """Create this worker's lease record; with it, the run's leases when they were read on the way (None when
        they are still to be read). After a lost answer, the record is looked for by the nonce only this attempt
        wrote; if it is not there, nothing was created and creating it again is safe."""
        for attempt in sends(CREATE_RESENDS):
            nonce = uuid.uuid4().hex
            try:
                return self._client.create_record(billing.ERROR_LOG, self._record(run_id, now, nonce)), None
            except AmbiguousWrite as exc:
                leases = self._read(run_id)
                found = [x for x in leases if f"{NONCE}{nonce}" in x.summary]
                if found:
                    return found[0].record_id, leases
                log.warning("lease.create_retry", attempt=attempt, reason=str(exc)[:200])
        raise StopRun("recording the lease on the run kept losing its answer; run again")

    def heartbeat(self, lease: Lease) -> None:
        """Show the lease is alive (at most once a minute: each beat is an API call).

        The lease is bookkeeping: a beat refused (a row lock, a fault) is logged and the clean-up goes on.
        Only a lease another worker has taken over stops it (LeaseLost).
        """
        now = self._clock()
        if self._run_id is None or (self._last_beat is not None and now - self._last_beat < HEARTBEAT_EVERY):
            return
        self._last_beat = now
        version = self._client.api_version
        beat = composite.subrequest(
            "PATCH",
            f"/services/data/v{version}/sobjects/{billing.ERROR_LOG}/{lease.record_id}",
            0,
            {"blng__Summary__c": f"sfcleanup alive at {now.isoformat(timespec='seconds')}"},
            prefix="beat",
        )
        # Independent of the PATCH: whichever the org runs first, the read shows whether the lease is still ours.
        listing = composite.subrequest(
            "GET", f"/services/data/v{version}/query/?{urlencode({'q': self._query(self._run_id)})}", 0, prefix="leases"
        )
        try:
            beaten, listed = self._client.composite_rounds("lease heartbeat", [beat, listing], attempts=1)
        except SfCleanupError as exc:
            log.warning("lease.heartbeat_failed", reason=str(exc)[:200])
            return
        if listed.ok and isinstance(listed.body, dict):
            own = next(
                (x for x in map(self._parse, listed.body.get("records", [])) if x.record_id == lease.record_id), None
            )
            if own is None or not own.held:
                raise LeaseLost(
                    "another worker took this run's lease over (this worker was judged dead); stopping, the journal "
                    "shows what was written"
                )
        for result in (beaten, listed):
            if result.failure is not None:
                log.warning(
                    "lease.heartbeat_failed", reason=f"{result.failure.error_code}: {result.failure.message}"[:200]
                )

    def release(self, lease: Lease) -> None:
        """Best effort: a lease that cannot be closed now times out by itself."""
        try:
            self._close(lease.record_id)
        except SfCleanupError as exc:
            log.warning("lease.release_failed", record=lease.record_id, reason=str(exc)[:200])

    def _withdraw(self, record_id: str) -> None:
        """Close this worker's own record after losing an election; if that fails it times out."""
        self.release(Lease(record_id, self.identity, datetime.min.replace(tzinfo=UTC)))

    @staticmethod
    def release_patch(lease: Lease) -> Update:
        """The update that releases `lease`, to send along with another (the run's final status) as a
        best-effort update: see `SalesforceClient.update_many`."""
        return billing.ERROR_LOG, lease.record_id, {"blng__ErrorCode__c": RELEASED_CODE}

    def _close(self, record_id: str) -> None:
        self._client.update_record(billing.ERROR_LOG, record_id, {"blng__ErrorCode__c": RELEASED_CODE})
