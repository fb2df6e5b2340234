"""SIGINT (Ctrl-C) and SIGTERM (what Kubernetes and most schedulers send): stop at a safe point, never
half-way through a write.

While nothing is being written, a signal stops the process at once, as Ctrl-C always does
(KeyboardInterrupt): reading and planning can be dropped anywhere. While runs are being written the signal
only sets a flag; the worker raises `Interrupted` at its next safe point (once the answers of the batches in
flight are journaled, or before a pause), winds the run down (lease released, CleanUp Status set) and the
command exits 3. A second signal while winding down stops at once, as a crash would: the journal and the
lease are built for that.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from sfcleanup.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    def __init__(self) -> None:
        self.received: str | None = None  # the name of the first signal received, e.g. "SIGTERM"
        self._deferring = 0
        self._raised = False

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Handle SIGINT and SIGTERM in this process until the block ends (signals reach the main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self.received, self._raised = None, False
        previous = {number: signal.signal(number, self._handle) for number in SIGNALS}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """While the block runs, a first signal waits for the next `check` instead of stopping at once."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1

    @contextmanager
    def immediate(self) -> Iterator[None]:
        """Inside a deferred block, a stretch that only reads: a signal stops it at once (KeyboardInterrupt),
        one that already arrived included."""
        saved, self._deferring = self._deferring, 0
        try:
            if self.received is not None:
                raise KeyboardInterrupt(self.received)
            yield
        finally:
            self._deferring = saved

    def _handle(self, number: int, frame: FrameType | None) -> None:
        first = self.received is None
        self.received = signal.Signals(number).name
        if not self._deferring or not first:
            raise KeyboardInterrupt(self.received)

    def check(self) -> None:
        """A safe point: raise Interrupted (once) if a signal arrived while writing."""
        if self.received is not None and not self._raised:
            self._raised = True
            raise Interrupted(
                f"{self.received} received: stopped after journaling the batch in flight; run again to continue"
            )


# The process's own, installed by the command line for the whole command.
PROCESS = Interrupts()
