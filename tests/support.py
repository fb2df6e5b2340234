"""Helpers for tests: a seeded local org, a worker client connected to it in-process, a connected app's key."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sfcleanup.localorg import schema
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.seed import ScenarioInfo, seed
from sfcleanup.localorg.store import Store
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.local import local_connector, open_local_org
from sfcleanup.salesforce.retry import no_wait_policy


def make_org(
    scenario: str = "demo", faults: FaultProfile | None = None, **seed_options: int
) -> tuple[LocalOrg, ScenarioInfo]:
    if scenario == "demo" and not seed_options:
        store, info = demo_store()
    else:
        store = Store()
        info = seed(store, scenario, **seed_options)  # type: ignore[arg-type]
    return LocalOrg(store, faults=faults or FaultProfile(lock_wait_s=0.2)), info


# Seeding the demo org costs more than many tests that use it: it is seeded once per test process and each test
# gets a copy. The seed is deterministic (same records, ids and values), so a copy is the org seeding would give,
# with times counted from when the template was seeded rather than a few seconds later. Its dates are counted
# from the day it was seeded, so a session that runs past midnight (UTC) seeds the templates again.
_DEMO: dict[date, tuple[Store, ScenarioInfo]] = {}
_STATE_FILES: dict[tuple[date, bool], tuple[Path, ScenarioInfo]] = {}
_TEMPLATE_DIR: tempfile.TemporaryDirectory[str] | None = None


def demo_store() -> tuple[Store, ScenarioInfo]:
    """A fresh in-memory store holding the demo scenario, copied from this process's template."""
    today = datetime.now(UTC).date()
    if today not in _DEMO:
        template = Store()
        _DEMO.clear()
        _DEMO[today] = template, seed(template, "demo")
    template, info = _DEMO[today]
    return _copy_store(template), copy.deepcopy(info)


def _copy_store(source: Store) -> Store:
    store = Store()
    with source.lock, store.lock:
        source.conn.backup(store.conn)
    return store


def seeded_state(state: Path, *, production: bool = False) -> ScenarioInfo:
    """Write at `state` the file `open_local_org(state, production=production)` would seed, from a template."""
    global _TEMPLATE_DIR
    key = datetime.now(UTC).date(), production
    if key not in _STATE_FILES:
        if _TEMPLATE_DIR is None:
            _TEMPLATE_DIR = tempfile.TemporaryDirectory(prefix="sfcleanup-templates-")
        name = f"demo-{key[0].isoformat()}-{'production' if production else 'sandbox'}.sqlite3"
        template = Path(_TEMPLATE_DIR.name) / name
        org, info = open_local_org(template, production=production)
        org.store.close()  # the last connection to close checkpoints the WAL: the one file holds everything
        assert info is not None and not Path(f"{template}-wal").exists()
        _STATE_FILES[key] = template, info
    template, info = _STATE_FILES[key]
    shutil.copyfile(template, state)
    return copy.deepcopy(info)


def copy_state(source: Path, target: Path) -> None:
    """Copy a state file as its connections see it, including what its write-ahead log holds."""
    with closing(sqlite3.connect(source)) as reading, closing(sqlite3.connect(target)) as writing:
        reading.backup(writing)


def copy_org(org: LocalOrg) -> LocalOrg:
    """A new in-memory org, as `make_org` makes one, holding a copy of every row `org` holds."""
    return LocalOrg(_copy_store(org.store), faults=FaultProfile(lock_wait_s=0.2))


def brief_sleep(seconds: float) -> None:
    """The worker's waits, kept but cut to a few milliseconds.

    A sleep that returns at once turns Bulk API polling into a busy loop: it starves the local org's job threads
    of the interpreter (a one-row job then takes seconds) and spends the org's daily API calls until the run stops
    at the reserve, which made generated cases fail at random.
    """
    time.sleep(min(seconds, 0.005))


class Terminal(io.StringIO):
    """Standard input from a person at a terminal: while the prompt waits, `meanwhile` happens, then they
    type `answer`."""

    def __init__(self, answer: str, meanwhile: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self._answer, self._meanwhile = answer, meanwhile

    def isatty(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> str:
        self._meanwhile()
        return self._answer


def make_client(org: LocalOrg, attempts: int = 6) -> SalesforceClient:
    return SalesforceClient(local_connector(org), api_version="62.0", retry=no_wait_policy(attempts), timeout_s=30)


class KeyPair:
    """An RSA key and the connected app's self-signed certificate for it."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfcleanup test connected app")])
        now = datetime.now(UTC)
        self.certificate_pem = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        self.private_pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def write_key(self, directory: Path) -> Path:
        path = directory / "sfcleanup.key"
        path.write_text(self.private_pem)
        return path


@contextmanager
def serve(*options: str) -> Iterator[dict[str, str]]:
    """`sfcleanup localorg serve` in a process of its own; yields its JSON line, stops it with SIGTERM."""
    server = subprocess.Popen(
        [sys.executable, "-m", "sfcleanup.localorg.server", "--port", "0", *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield json.loads(server.stdout.readline())
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


def worker_env(endpoint: dict[str, str]) -> dict[str, str]:
    """The environment for a worker process: the served org's token, and no SFCLEANUP_ settings of the host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFCLEANUP_")}
    env["SFCLEANUP_ORG__ACCESS_TOKEN"] = endpoint["access_token"]
    return env


def state_snapshot(state: Path) -> dict[str, list[dict[str, object]]]:
    """Every row of a local org kept in a state file, read through a connection of its own."""
    store = Store(state)
    try:
        return store.snapshot()
    finally:
        store.close()


def local_args(state: Path, tmp_path: Path, *extra: str) -> list[str]:
    """A command line for `sfcleanup.cli.main` against the local org kept in `state`, journaling under tmp_path."""
    local = ["--org", "local", "--state", str(state), "--journal-dir", str(tmp_path / "j"), "--log-level", "warning"]
    return [*extra, *local]


def sobject_spec(name: str) -> SObjectSpec:
    """The local org's schema entry for `name`, which a test names knowing it exists."""
    found = schema.sobject(name)
    assert found is not None, name
    return found
