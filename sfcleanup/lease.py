"""Who is cleaning a run: a lease, so two workers never clean one run at once.

The run's CleanUp Status "Started" says a clean-up is under way; a `blng__ErrorLog__c` record on the run with
the code SFCLEANUP_LEASE names the worker holding it (its identity) and, through its LastModifiedDate, when it
last showed signs of life. A second worker refuses while the lease is fresh, and takes over a lease older
than the timeout (its holder died). Two workers on one machine with the same journal directory are stopped
earlier, by an exclusive lock on the run's journal lock file.
"""

from __future__ import annotations

import fcntl
import getpass
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import structlog

from sfcleanup import billing, queries
from sfcleanup.errors import AmbiguousWrite, StopRun
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.sftime import parse_datetime

LEASE_CODE = "SFCLEANUP_LEASE"
RELEASED_CODE = "SFCLEANUP_LEASE_RELEASED"
HEARTBEAT_EVERY = timedelta(seconds=60)
log = structlog.get_logger("sfcleanup.lease")


class LeaseHeld(StopRun):
    """Another worker is cleaning the run; nothing was written. Run again once it has finished."""


def default_identity(journal_dir: Path) -> str:
    """Stable across restarts on one machine and journal directory, so a restarted worker resumes its lease."""
    return f"{getpass.getuser()}@{socket.gethostname()}:{journal_dir.resolve()}"


@dataclass(frozen=True)
class Lease:
    record_id: str
    holder: str
    last_seen: datetime
    held: bool = True  # False once released


class LocalLock:
    """An exclusive lock on `<journal_dir>/<run_id>.lock`, released by the kernel if the process dies."""

    def __init__(self, journal_dir: Path, run_id: str) -> None:
        journal_dir.mkdir(parents=True, exist_ok=True)
        self.path = journal_dir / f"{run_id}.lock"
        self._handle: IO[str] | None = None

    def __enter__(self) -> LocalLock:
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise LeaseHeld(
                f"another sfcleanup process on this machine is cleaning this run ({self.path} is locked); "
                "wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


class Leases:
    def __init__(
        self,
        client: SalesforceClient,
        identity: str,
        timeout_s: float,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self.identity = identity
        self._timeout = timedelta(seconds=timeout_s)
        self._clock = clock
        self._last_beat: datetime | None = None
        # Every other lease record the last acquire saw, held or released: who else touched the run.
        self.seen: list[Lease] = []

    @staticmethod
    def _parse(row: dict[str, Any]) -> Lease:
        return Lease(
            str(row["Id"]),
            str(row.get("blng__ErrorName__c") or "?"),
            parse_datetime(str(row["LastModifiedDate"])),
            row.get("blng__ErrorCode__c") == LEASE_CODE,
        )

    @staticmethod
    def _query(run_id: str) -> str:
        return queries.render("leases", run_id=run_id, codes=[LEASE_CODE, RELEASED_CODE])

    def _read(self, run_id: str) -> list[Lease]:
        return [self._parse(r) for r in self._client.query_all(self._query(run_id))]

    def _live(self, lease: Lease) -> bool:
        return lease.held and self._clock() - lease.last_seen < self._timeout

    def touched_by_others_since(self, moment: datetime) -> bool:
        """Did another worker hold this run's lease at or after `moment` (by the last acquire's reading)?"""
        return any(x.holder != self.identity and x.last_seen >= moment for x in self.seen)

    def holder_other_than_me(self, run_id: str) -> Lease | None:
        """A live lease of another worker on the run, if there is one (read-only)."""
        return next((x for x in self._read(run_id) if x.holder != self.identity and self._live(x)), None)

    def refusal(self, lease: Lease) -> str:
        until = (lease.last_seen + self._timeout).isoformat(timespec="seconds")
        return (
            f"another worker ({lease.holder}) is cleaning this run, last seen {lease.last_seen.isoformat()}; "
            f"wait for it to finish, or after {until} run again to take over its lease"
        )

    def acquire(self, run_id: str) -> Lease:
        """Take the run's lease, or raise LeaseHeld naming the holder; stale leases are taken over.

        One Composite call creates this worker's lease record and reads every lease of the run; if another
        worker's live lease was there first, this one is closed again and the worker refuses.
        """
        now = self._clock()
        mine, leases = self._create_and_read(run_id, now)
        self.seen = [x for x in leases if x.record_id != mine]
        contenders = [x for x in leases if x.record_id == mine or (x.holder != self.identity and self._live(x))]
        if contenders and contenders[0].record_id != mine:
            self._close(mine)
            raise LeaseHeld(self.refusal(contenders[0]))
        for lease in leases:
            if lease.record_id != mine and lease.held:
                self._close(lease.record_id)
                log.info("lease.taken_over", previous=lease.holder, last_seen=lease.last_seen.isoformat())
        self._last_beat = now
        return Lease(mine, self.identity, now)

    def _record(self, run_id: str, now: datetime) -> dict[str, Any]:
        return {
            billing.RUN_LOOKUP: run_id,
            "blng__ErrorCode__c": LEASE_CODE,
            "blng__ErrorName__c": self.identity[:255],
            "blng__Summary__c": f"sfcleanup clean-up in progress since {now.isoformat(timespec='seconds')}",
        }

    def _create_and_read(self, run_id: str, now: datetime) -> tuple[str, list[Lease]]:
        version = self._client.api_version
        query = self._query(run_id)
        subrequests: list[dict[str, Any]] = [
            {
                "method": "POST",
                "url": f"/services/data/v{version}/sobjects/{billing.ERROR_LOG}/",
                "referenceId": "lease",
                "body": self._record(run_id, now),
            },
            {
                "method": "GET",
                "url": f"/services/data/v{version}/query/?{urlencode({'q': query})}",
                "referenceId": "all",
            },
        ]
        try:
            created, listed = self._client.composite(subrequests)
        except AmbiguousWrite:
            # The answer was lost: if the record was created it is the newest one with this identity.
            leases = self._read(run_id)
            found = [x for x in leases if x.holder == self.identity]
            if not found:
                raise StopRun("recording the lease on the run lost its answer; run again") from None
            return found[-1].record_id, leases
        if int(created.get("httpStatusCode", 500)) >= 300 or int(listed.get("httpStatusCode", 500)) >= 300:
            raise StopRun(f"could not record the lease on the run: {created.get('body')} {listed.get('body')}")
        return str(created["body"]["id"]), [self._parse(r) for r in listed["body"].get("records", [])]

    def heartbeat(self, lease: Lease) -> None:
        """Show the lease is alive (at most once a minute: each beat is an API call)."""
        now = self._clock()
        if self._last_beat is not None and now - self._last_beat < HEARTBEAT_EVERY:
            return
        self._client.update_record(
            billing.ERROR_LOG,
            lease.record_id,
            {"blng__Summary__c": f"sfcleanup alive at {now.isoformat(timespec='seconds')}"},
        )
        self._last_beat = now

    def release(self, lease: Lease) -> None:
        self._close(lease.record_id)

    @staticmethod
    def release_patch(lease: Lease) -> tuple[str, str, dict[str, Any]]:
        """The update that releases `lease`, to send along with another (the run's final status)."""
        return billing.ERROR_LOG, lease.record_id, {"blng__ErrorCode__c": RELEASED_CODE}

    def _close(self, record_id: str) -> None:
        self._client.update_record(billing.ERROR_LOG, record_id, {"blng__ErrorCode__c": RELEASED_CODE})
