"""`python -m tests.killed_worker KILL_POINT ARGS...`: `sfcleanup ARGS...`, which kills its own process with
SIGKILL the moment the org's answer to one chosen request arrives, before the worker reads it.

KILL_POINT is JSON: {"method": the request's method (or any), "path": a regular expression searched in the
URL's path (or any), "body": text the request's body must hold (optional), "nth": which such request}. The
org has done what the request asked; the worker never learns it. Chosen by what a request does rather than by
how many calls came before, the point is the same step of the run every time, and stays that step when calls
are added elsewhere.

Nothing in the worker knows: the answer is caught where every request leaves (`requests.Session.send`), and
SIGKILL gives the worker no chance to finish a write, a journal entry or a `finally`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
from urllib.parse import urlsplit

import requests

from sfcleanup.cli import main


def _holds(body: object, text: str) -> bool:
    if not text:
        return True
    if isinstance(body, bytes):
        return text.encode() in body
    return isinstance(body, str) and text in body


def kill_after(method: str = "", path: str = "", nth: int = 1, body: str = "") -> None:
    """From now on, this process dies by SIGKILL when the answer to the `nth` matching request arrives."""
    send = requests.Session.send
    pattern = re.compile(path)
    lock = threading.Lock()
    matched = [0]

    def answered_then_killed(
        self: requests.Session, request: requests.PreparedRequest, **kwargs: object
    ) -> requests.Response:
        matches = (
            method in ("", request.method)
            and pattern.search(urlsplit(request.url or "").path) is not None
            and _holds(request.body, body)
        )
        response = send(self, request, **kwargs)
        if matches:
            with lock:
                matched[0] += 1
                if matched[0] == nth:
                    os.kill(os.getpid(), signal.SIGKILL)
        return response

    setattr(requests.Session, "send", answered_then_killed)  # noqa: B010 - for this process only


if __name__ == "__main__":
    kill_after(**json.loads(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
