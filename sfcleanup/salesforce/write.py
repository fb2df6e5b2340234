"""The Composite writer: up to five sObject Collections of 200 records in one API call, allOrNone false.

Rows that fail on a lock are re-queued and retried at the end, in smaller batches, then one parent at a time.
Other row errors are recorded and do not stop the phase. When the connection drops after a call was sent,
the records are read back first and only those the org did not apply are sent again.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import structlog

from sfcleanup import batches
from sfcleanup.billing import Rule
from sfcleanup.changes import Change, Values
from sfcleanup.config import WriteSettings
from sfcleanup.errors import AmbiguousWrite, TransientExhausted
from sfcleanup.journal import Journal
from sfcleanup.outcomes import Failure, PhaseResult, RowOutcome, RowResult
from sfcleanup.salesforce import composite
from sfcleanup.salesforce.classify import RowVerdict, classify_row
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.composite import SubResult
from sfcleanup.salesforce.concurrency import Observation, Tuning, shared
from sfcleanup.salesforce.read import current_values, values_read_back, values_subrequest
from sfcleanup.salesforce.retry import WRITE_RESENDS, sends
from sfcleanup.salesforce.shapes import SaveResult

log = structlog.get_logger("sfcleanup.write")
# Calls cut ahead of those in flight, to find ones free of the busy lock points; each holds up to 1,000 changes,
# so the window is what memory the writer holds: a few calls more than are in flight, not a multiple of them.
WINDOW_SLACK = 4
# Calls in flight at most. Salesforce allows 25 concurrent long-running requests, but each call in flight holds
# about 4.5 MB here (its 1,000 changes, the request body, the parsed answer): measured at 100,000 sources on the
# Composite route, peak RSS was 108 MB with 4 in flight and 175 MB with up to 19. Twelve keep it near 150 MB.
IN_FLIGHT_CEILING = 12


def _groups(call: batches.Call) -> set[str]:
    return {c.group for collection in call for c in collection}


def _payload(change: Change) -> dict[str, object]:
    return {"attributes": {"type": change.sobject}, "id": change.id, **change.after}


def _row_results(call: batches.Call, responses: list[SubResult]) -> list[RowResult]:
    """Pair each record with its row result; a collection refused whole fails each of its rows.

    `responses` are in the call's order, matched by referenceId; within a collection, Salesforce documents
    row results in request order.
    """
    results: list[RowResult] = []
    for collection, response in zip(call, responses, strict=True):
        body = response.body
        if response.failure is not None or not isinstance(body, list):
            failure = response.failure
            code = (failure.error_code if failure else None) or f"HTTP_{response.status}"
            message = failure.message if failure else ""
            results.extend(RowResult(c, RowOutcome.FAILED, code, message) for c in collection)
            continue
        for change, row in zip(collection, body, strict=True):
            saved = SaveResult.model_validate(row)
            if saved.success:
                results.append(RowResult(change, RowOutcome.UPDATED))
                continue
            error = saved.first_error()
            outcome = RowOutcome.LOCKED if classify_row(error.status_code) is RowVerdict.LOCKED else RowOutcome.FAILED
            results.append(RowResult(change, outcome, error.status_code, error.message))
    return results


@dataclass(frozen=True)
class Sent:
    """One call's row results, how long it took, and whether the org pushed back while it ran."""

    results: list[RowResult]
    seconds: float
    pushed_back: bool

    def observation(self, locked: int) -> Observation:
        rows = len(self.results)
        return Observation(rows, locked, self.seconds / rows if rows else None, self.pushed_back)


class CompositeWriter:
    def __init__(
        self,
        client: SalesforceClient,
        settings: WriteSettings,
        journal: Journal,
        *,
        progress: Callable[[int], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sleep = sleep
        self._client = client
        self._settings = settings
        self._journal = journal
        self._progress = progress or (lambda _: None)
        self._batch = 0
        # Calls in flight: starts at `max_in_flight` and adapts to the org's answers for the whole session.
        self._level = shared(client, "composite", settings.max_in_flight, Tuning(ceiling=IN_FLIGHT_CEILING))
        # While `apply_and_read_back` runs: the values read back in the calls that wrote them, per record.
        self._read_back: dict[str, Values | None] | None = None
        self._read_back_lock = threading.Lock()

    def apply(
        self, phase: str, rule: Rule, changes: Iterable[Change], *, one_parent_at_a_time: bool = False
    ) -> PhaseResult:
        """Write `changes` (a ChangeSet, or any list: lists are put in lock-point order here)."""
        outcome = PhaseResult()
        if isinstance(changes, list | tuple):
            changes = batches.in_group_order(changes)
        size = self._settings.batch_size
        locked = self._send_all(phase, rule, self._calls(changes, size, one_parent=one_parent_at_a_time), outcome)
        for round_number in range(1, self._settings.lock_retry_rounds + 1):
            if not locked:
                break
            last = round_number == self._settings.lock_retry_rounds
            log.info("write.lock_retry", phase=phase, round=round_number, records=len(locked), one_parent=last)
            self._sleep(self._settings.lock_retry_pause_s * round_number)
            calls = self._calls(batches.in_group_order(locked), self._settings.lock_retry_batch_size, one_parent=last)
            locked = self._send_all(phase, rule, calls, outcome)
        outcome.failures.extend(
            Failure(c.id, c.sobject, "UNABLE_TO_LOCK_ROW", "still locked after every retry round") for c in locked
        )
        return outcome

    def apply_and_read_back(
        self, phase: str, rule: Rule, changes: Iterable[Change]
    ) -> tuple[PhaseResult, dict[str, Values | None]]:
        """`apply` (at most 200 changes: a canary batch), each call carrying, after its writes, a query of its
        records: the read-back costs no call of its own. Returns, per record a call updated, the values the org
        held right after (None: no longer shown); a record confirmed after a lost answer, or whose query did not
        answer, is left out for the caller to read again."""
        self._read_back = {}
        try:
            return self.apply(phase, rule, changes), self._read_back
        finally:
            self._read_back = None

    def _calls(self, changes: Iterable[Change], per_collection: int, *, one_parent: bool) -> Iterator[batches.Call]:
        if one_parent:
            return batches.one_group_per_call(changes, per_collection=self._settings.batch_size)
        return batches.pack(
            changes, per_collection=per_collection, collections_per_call=self._settings.collections_per_call
        )

    def _send_all(self, phase: str, rule: Rule, calls: Iterator[batches.Call], outcome: PhaseResult) -> list[Change]:
        """Send every call, as many at once as the adaptive level allows, never two at once that share a lock
        point. Journaling and tallying stay on this thread; only the HTTP calls run in the pool.
        """
        locked: list[Change] = []
        level = self._level
        started_at = level.level
        # A window of upcoming calls, filled lazily from `calls`: enough to find ones free of the busy groups.
        waiting: list[tuple[batches.Call, set[str]]] = []
        running: dict[Future[Sent], tuple[str, set[str]]] = {}
        with ThreadPoolExecutor(max_workers=IN_FLIGHT_CEILING, thread_name_prefix="sfcleanup-write") as pool:
            try:
                while True:
                    window = WINDOW_SLACK + level.level // 2
                    waiting += [
                        (call, _groups(call)) for call in itertools.islice(calls, max(0, window - len(waiting)))
                    ]
                    if not waiting and not running:
                        break
                    busy = set().union(*(groups for _, groups in running.values()))
                    while len(running) < level.level:
                        index = next((i for i, (_, groups) in enumerate(waiting) if not groups & busy), None)
                        if index is None:
                            break
                        call, groups = waiting.pop(index)
                        batch = self._start(phase, call)
                        busy |= groups
                        # Pool threads do not inherit context variables: hand them this one's, with the batch.
                        with structlog.contextvars.bound_contextvars(batch=batch, object=rule.sobject):
                            context = contextvars.copy_context()
                        future = pool.submit(context.run, self._timed_send, rule, call)
                        running[future] = (batch, groups)
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        batch, _ = running.pop(future)
                        sent = future.result()
                        found = self._finish(phase, rule, batch, sent.results, outcome)
                        level.observe(sent.observation(len(found)))
                        locked += found
            finally:
                # A stop (limit, auth) must not lose the answers of calls that did complete.
                for future in list(running):
                    if future.exception() is None:
                        batch, _ = running.pop(future)
                        self._finish(phase, rule, batch, future.result().results, outcome)
        log.info(
            "write.concurrency", phase=phase, started=started_at, in_flight=level.level, highest=level.highest,
            lowest=level.lowest, backoffs=level.decreases,
        )  # fmt: skip
        return locked

    def _timed_send(self, rule: Rule, call: batches.Call) -> Sent:
        """`_send`, with what the concurrency level learns from it: its time, and any push-back meanwhile."""
        pushbacks = self._client.usage.pushbacks
        started = time.monotonic()
        results = self._send(rule, call)
        return Sent(results, time.monotonic() - started, self._client.usage.pushbacks > pushbacks)

    def _start(self, phase: str, call: batches.Call) -> str:
        self._batch += 1
        batch = f"{phase}-{self._batch}"
        self._journal.pending(phase, batch, [c for collection in call for c in collection])
        return batch

    def _finish(
        self, phase: str, rule: Rule, batch: str, results: list[RowResult], outcome: PhaseResult
    ) -> list[Change]:
        locked: list[Change] = []
        with structlog.contextvars.bound_contextvars(batch=batch, object=rule.sobject):
            self._journal.outcomes(phase, batch, results)
            updated = sum(1 for r in results if r.outcome is RowOutcome.UPDATED)
            log.debug("write.batch", records=len(results), updated=updated)
        for result in results:
            if result.outcome.applied:
                outcome.updated += 1
            elif result.outcome is RowOutcome.LOCKED:
                locked.append(result.change)
            else:
                outcome.failures.append(result.failure())
        self._progress(len(results))
        return locked

    def _send(self, rule: Rule, call: batches.Call) -> list[RowResult]:
        """One composite call; after a lost answer, read back, keep what was applied, send the rest again."""
        confirmed: list[RowResult] = []
        for _ in sends(WRITE_RESENDS):
            subrequests = [
                composite.subrequest(
                    "PATCH",
                    f"/services/data/v{self._client.api_version}/composite/sobjects",
                    index,
                    {"allOrNone": False, "records": [_payload(c) for c in collection]},
                    prefix="c",
                )
                for index, collection in enumerate(call)
            ]
            reading = self._read_back is not None
            if reading:
                subrequests.append(
                    values_subrequest(self._client.api_version, rule, [c.id for col in call for c in col])
                )
            try:
                # A read-back must run after the writes: collateSubrequests false (see client.composite).
                answers = self._client.composite(subrequests, collate=not reading)
                results = _row_results(call, answers[: len(call)])
                if reading:
                    self._keep_read_back(rule, results, answers[-1])
                return confirmed + results
            except AmbiguousWrite as exc:
                log.warning("write.ambiguous", reason=str(exc), records=sum(len(c) for c in call))
                applied = self._applied(rule, [c for collection in call for c in collection])
                confirmed += [RowResult(c, RowOutcome.CONFIRMED) for col in call for c in col if c.id in applied]
                call = [[c for c in col if c.id not in applied] for col in call]
                call = [col for col in call if col]
                if not call:
                    return confirmed
        raise TransientExhausted("writes kept losing their answers; run again: the journal shows what was applied")

    def _keep_read_back(self, rule: Rule, results: list[RowResult], answer: SubResult) -> None:
        updated = [r.change.id for r in results if r.outcome is RowOutcome.UPDATED]
        rows = values_read_back(rule, answer, updated)
        with self._read_back_lock:
            if self._read_back is not None:
                self._read_back.update(rows)

    def _applied(self, rule: Rule, changes: list[Change]) -> set[str]:
        """Ids whose fields already hold the after-values: the org applied them before the connection dropped."""
        current = current_values(self._client, rule, [c.id for c in changes])
        return {c.id for c in changes if c.id in current and all(current[c.id].get(k) == v for k, v in c.after.items())}
