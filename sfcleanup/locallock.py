"""Two workers on one machine with the same journal directory: an exclusive lock on the run's journal lock
file stops the second before it reads anything from the org; and the identity a worker leases runs under."""

from __future__ import annotations

import fcntl
import getpass
import os
import socket
from pathlib import Path
from typing import IO

from sfcleanup.lease import LeaseHeld


def default_identity(journal_dir: Path) -> str:
    """Stable across restarts on one machine and journal directory, so a restarted worker resumes its lease."""
    return f"{getpass.getuser()}@{socket.gethostname()}:{journal_dir.resolve()}"


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
