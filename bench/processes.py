"""The processes a comparison starts: the org server each contender runs against, and the contender's child.

`served` runs `sfcleanup.localorg.server` over HTTPS on a copy of the template and always stops it; `run_child`
runs one contender and takes its wall time and its own peak RSS from `os.wait4`.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

FAULT_SEED = 7
# High enough that no contender is ever stopped by the daily allowance: the benchmark measures, it does not ration.
DAILY_API_LIMIT = 10_000_000
SERVER_START_TIMEOUT_S = 300.0
SERVER_STOP_TIMEOUT_S = 60.0
# ru_maxrss is in KiB on Linux and in bytes on macOS; divide by this to get KiB.
_RSS_UNIT = 1024 if sys.platform == "darwin" else 1


# --- the org server ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Org:
    instance_url: str
    token: str
    ca_bundle: str
    process: subprocess.Popen[bytes] = field(compare=False, repr=False)
    log: Path = field(compare=False, repr=False)

    def api_calls(self) -> int:
        return int(self.stats()["api_calls"])

    def stats(self) -> dict[str, Any]:
        """The org's counters (`api_calls`, `api_calls_by_endpoint`, ...)."""
        self.check_alive()
        try:
            # verify= on the request itself: REQUESTS_CA_BUNDLE in the environment would override a session's.
            answer = requests.get(f"{self.instance_url}/_localorg/stats", verify=self.ca_bundle, timeout=30)
            answer.raise_for_status()
        except requests.RequestException:
            self.check_alive()
            raise
        stats: dict[str, Any] = answer.json()
        return stats

    def check_alive(self) -> None:
        """Raise ServerGone when the server has exited: a run it did not serve to the end measures nothing."""
        code = self.process.poll()
        if code is not None:
            raise ServerGone(f"the org server exited with {code} during the run: {tail(self.log, 600)!r}")


class ServerGone(Exception):
    """The org server stopped under a contender (a crash, or a signal from outside the benchmark)."""


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


@contextmanager
def served(state: Path, records: int, rate: float, log: Path) -> Iterator[Org]:
    """Serve `state` over HTTPS until the block ends; the server is always stopped (SIGTERM, then SIGKILL)."""
    argv = [
        sys.executable, "-m", "sfcleanup.localorg.server", "--port", "0",
        "--scenario", "scale", "--records", str(records), "--state", str(state),
        "--latency", "cloud", "--lock-failure-rate", str(rate), "--seed", str(FAULT_SEED),
        "--daily-api-limit", str(DAILY_API_LIMIT),
    ]  # fmt: skip
    with log.open("ab") as errors:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = _read_line(proc.stdout, SERVER_START_TIMEOUT_S)
        if not line:
            raise RuntimeError(f"the org server did not start (exit {proc.poll()}): {tail(log)}")
        announced = json.loads(line)
        # A copy of the CA beside the state file: the server's own copy lives in its temporary directory, which
        # goes as soon as the server stops, and a stats call after that must say "server gone", not "no CA".
        ca_bundle = Path(f"{state}.ca.pem")
        shutil.copyfile(announced["ca_bundle"], ca_bundle)
        yield Org(announced["instance_url"], announced["access_token"], str(ca_bundle), proc, log)
    finally:
        _stop(proc)


def _read_line(stream: IO[bytes], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline().decode() if ready else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


# --- one contender in its own process ------------------------------------------------------------------------
@dataclass(frozen=True)
class ChildRun:
    exit_code: int
    wall_s: float
    maxrss_kib: int
    output: dict[str, Any] | None
    timed_out: bool


def child_env(org: Org) -> dict[str, str]:
    env = dict(os.environ)
    # requests prefers REQUESTS_CA_BUNDLE over session.verify, so the org's CA must be the one it names.
    env["REQUESTS_CA_BUNDLE"] = org.ca_bundle
    env.pop("CURL_CA_BUNDLE", None)
    # A proxy in the environment must not sit between a contender and the org on 127.0.0.1.
    no_proxy = ",".join(p for p in (env.get("NO_PROXY", ""), "127.0.0.1,localhost") if p)
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def run_child(argv: list[str], env: dict[str, str], log: Path, timeout: float) -> ChildRun:
    """Start, wait with os.wait4 (the child's own rusage), kill its process group if it outlives `timeout`."""
    with tempfile.TemporaryFile() as out, log.open("ab") as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=errors, stdin=subprocess.DEVNULL, start_new_session=True
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        # A timer, not polling with WNOHANG: polling would add its interval to the measured wall time.
        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        # Tell Popen the child is reaped, so it does not try to wait for it again.
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace").strip()
    output = None
    if text:
        try:
            output = json.loads(text.splitlines()[-1])
        except json.JSONDecodeError:
            output = None
    return ChildRun(proc.returncode, wall, int(usage.ru_maxrss) // _RSS_UNIT, output, timed_out.is_set())
