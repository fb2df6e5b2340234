"""The HTTPS way in: a real TLS socket on 127.0.0.1 in front of a LocalOrg.

simple-salesforce builds every URL as https://, so a separate process (the worker under test, `sf`, curl) can
only reach the local org over TLS. The certificate comes from a throwaway `trustme` CA made at start; its PEM is
written to a temporary file (`LocalOrgServer.ca_bundle`) for `verify=` or REQUESTS_CA_BUNDLE.

    with LocalOrgServer(org) as server:
        session = requests.Session()
        session.verify = str(server.ca_bundle)
        sf = Salesforce(instance_url=server.instance_url, session_id=org.access_token, session=session)

`sfcleanup localorg serve` (`serve_main`) runs one from the command line and prints one JSON line with the
instance URL, the access token and the CA bundle once it accepts connections.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sqlite3
import ssl
import struct
import sys
import tempfile
import threading
import tomllib
import traceback
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NoReturn

import trustme
from pydantic import ValidationError

from sfcleanup.localorg import schema, seed
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile, LatencyModel
from sfcleanup.localorg.http import HttpRequest, HttpResponse, error_body
from sfcleanup.localorg.store import Store

HOST = "127.0.0.1"
# A client that connects and never finishes the TLS handshake must not hold a thread for long.
HANDSHAKE_TIMEOUT_S = 10.0
# Idle keep-alive connections are closed after this; urllib3 notices and opens a new one.
IDLE_TIMEOUT_S = 120.0
_MAX_LINE = 65_536
# Responses that by definition carry no body, and so no Content-Length either (RFC 9110, 8.6).
_NO_BODY = frozenset({204, 304})
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


class _BadBody(Exception):
    """The request body could not be read as framed; the connection cannot be reused."""


class _Server(ThreadingHTTPServer):
    # Handler threads are joined on close (not daemons), so closing the server leaves no request half-done.
    daemon_threads = False
    block_on_close = True

    def __init__(self, org: LocalOrg, context: ssl.SSLContext, port: int) -> None:
        self.org = org
        self.ssl_context = context
        self._connections: set[ssl.SSLSocket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((HOST, port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the connection's own thread, not in accept(): a slow or silent
        # client then cannot stall the accept loop for everyone else.
        if not isinstance(request, socket.socket):
            return
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except OSError:
            return
        with self._connections_lock:
            self._connections.add(tls)
        try:
            tls.do_handshake()
            _Handler(tls, client_address, self)
        except OSError:
            # Resets, broken pipes, TLS alerts and timeouts are the client's business, not a server error.
            pass
        finally:
            with self._connections_lock:
                self._connections.discard(tls)
            tls.close()

    def drop_idle_connections(self) -> None:
        """Wake every connection thread blocked reading its next request, so close() does not wait for idle
        keep-alive clients. A request being handled still gets its response: only the read side is shut."""
        with self._connections_lock:
            connections = list(self._connections)
        for tls in connections:
            # The plain socket's shutdown, not SSLSocket.shutdown, which would drop TLS under a live writer.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(tls, socket.SHUT_RD)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: urllib3 reuses connections, as it does with Salesforce
    server_version = "sfcleanup-localorg"
    timeout = IDLE_TIMEOUT_S
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a rehearsal of a million-record clean-up must not print a line per request."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _BadBody as exc:
            self.close_connection = True
            self._send(HttpResponse.json(400, error_body("MALFORMED_REQUEST", str(exc))))
            return
        request = HttpRequest.build(self.command, self.path, dict(self.headers.items()), body)
        try:
            response = self.server.org.handle(request)
        except Exception:
            # A bug in the org: answer as Salesforce does for an unhandled error, and keep the traceback visible.
            traceback.print_exc(file=sys.stderr)
            response = HttpResponse.json(500, error_body("UNKNOWN_EXCEPTION", "An unexpected error occurred."))
        if response.reset_connection:
            self._reset()
            return
        self._send(response)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # requests streams file uploads (Bulk API CSV) chunked, without a Content-Length.
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise _BadBody(f"Content-Length is not a number: {length_text!r}") from None
        if length < 0:
            raise _BadBody(f"Content-Length is negative: {length}")
        body = self.rfile.read(length)
        if len(body) < length:
            raise _BadBody(f"the body ended after {len(body)} of {length} bytes")
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(_MAX_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadBody(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                # Trailers, if any, end with an empty line; they carry nothing the org needs.
                while self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n"):
                raise _BadBody("a chunk ended early")
            parts.append(chunk)

    def _send(self, response: HttpResponse) -> None:
        status = response.status
        body = b"" if status in _NO_BODY else response.body
        self.send_response(status, _reason(status))
        for name, value in response.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if status not in _NO_BODY:
            # Every response is framed by its length so the client can reuse the connection.
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _reset(self) -> None:
        """Drop the connection without a response, as a network failure after the org applied the request.

        Linger 0 makes the close send a TCP RST; the client sees a reset, not a clean end of stream.
        """
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class LocalOrgServer:
    """A LocalOrg served over HTTPS on 127.0.0.1; listening and serving from construction until close().

    Sets `org.instance_url` to the served URL so OAuth token responses point clients back here.
    """

    def __init__(self, org: LocalOrg, *, port: int = 0) -> None:
        self.org = org
        self._tempdir = tempfile.TemporaryDirectory(prefix="sfcleanup-localorg-")
        authority = trustme.CA(organization_name="sfcleanup local org")
        certificate = authority.issue_cert(HOST, "localhost")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        certificate.configure_cert(context)
        self.ca_bundle = Path(self._tempdir.name) / "ca.pem"
        authority.cert_pem.write_to_path(str(self.ca_bundle))
        try:
            self._httpd = _Server(org, context, port)
        except BaseException:
            self._tempdir.cleanup()
            raise
        self.port: int = self._httpd.server_address[1]
        self.instance_url = f"https://{HOST}:{self.port}"
        org.instance_url = self.instance_url
        self._closed = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"localorg-https-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, let requests in flight finish, drop idle connections, remove the CA bundle."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.drop_idle_connections()
        self._httpd.server_close()
        self._thread.join()
        self._tempdir.cleanup()

    def __enter__(self) -> LocalOrgServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- command line -------------------------------------------------------------------------------------------


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: callers (scripts, the benchmark) read stderr line by line.
        raise _ArgumentError(message)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a rate between 0 and 1")
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _port(text: str) -> int:
    value = _count(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return value


def _picklist_value(text: str) -> tuple[tuple[str, str], str]:
    """OBJECT.FIELD=VALUE: a picklist value this org's admin has not added, e.g.
    blng__InvoiceRun__c.blng__CleanUpStatus__c=Completed with errors."""
    target, sep, value = text.partition("=")
    sobject_name, dot, field_name = target.partition(".")
    spec = schema.sobject(sobject_name)
    field = spec.field(field_name) if spec is not None and dot else None
    if not sep or not value or spec is None or field is None or not field.picklist:
        raise argparse.ArgumentTypeError(f"{text!r} is not OBJECT.FIELD=VALUE naming a picklist field of the schema")
    if value not in field.picklist:
        raise argparse.ArgumentTypeError(f"{value!r} is not a value of {spec.name}.{field.name}")
    return (spec.name, field.name), value


def _parser() -> _Parser:
    parser = _Parser(
        prog="sfcleanup localorg serve",
        description="Serve a seeded local Salesforce Billing org over HTTPS on 127.0.0.1.",
    )
    parser.add_argument("--port", type=_port, default=0, help="TCP port; 0 picks a free one (default)")
    parser.add_argument("--scenario", choices=seed.SCENARIOS, default="demo", help="what to seed (default demo)")
    parser.add_argument("--records", type=_count(1), help="billing sources for the scale scenario")
    parser.add_argument("--token", help="the access token to accept (default: a random one)")
    parser.add_argument("--state", type=Path, help="SQLite file to keep the org in; seeded only when empty")
    parser.add_argument("--faults", type=Path, help="a fault profile (TOML, fields of FaultProfile)")
    parser.add_argument("--latency", choices=("cloud", "none"), help="simulated latency (default: the profile's)")
    parser.add_argument("--lock-failure-rate", type=_rate)
    parser.add_argument("--unavailable-rate", type=_rate)
    parser.add_argument("--reset-after-write-rate", type=_rate)
    parser.add_argument("--session-expiry-after-calls", type=_count(1))
    parser.add_argument("--daily-api-limit", type=_count(1))
    parser.add_argument("--lock-wait-s", type=_seconds)
    parser.add_argument("--seed", type=_count(0), help="seed of the fault RNG")
    parser.add_argument(
        "--without-picklist-value",
        type=_picklist_value,
        action="append",
        default=[],
        metavar="OBJECT.FIELD=VALUE",
        help="rehearse an org whose admin never added this picklist value (repeatable)",
    )
    return parser


_PROFILE_FLAGS = (
    "lock_failure_rate",
    "unavailable_rate",
    "reset_after_write_rate",
    "session_expiry_after_calls",
    "daily_api_limit",
    "lock_wait_s",
    "seed",
)


def _profile(args: argparse.Namespace) -> FaultProfile:
    """The TOML profile (if any), then the flags given on top of it."""
    base = FaultProfile()
    if args.faults is not None:
        try:
            base = FaultProfile.from_toml(args.faults)
        except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
            raise ValueError(f"--faults {args.faults}: {_one_line(exc)}") from None
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in _PROFILE_FLAGS if getattr(args, name) is not None
    }
    if args.latency is not None:
        overrides["latency"] = LatencyModel.cloud() if args.latency == "cloud" else LatencyModel()
    return FaultProfile.model_validate({**base.model_dump(), **overrides})


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "profile"
        return f"{where}: {first['msg']}"
    return " ".join(str(exc).split()) or type(exc).__name__


def serve_main(argv: Sequence[str] | None = None) -> int:
    """`sfcleanup localorg serve`: exit 0 after SIGTERM/SIGINT, 2 on bad arguments (one line on stderr)."""
    prog = "sfcleanup localorg serve"
    try:
        args = _parser().parse_args(argv)
        seed.check_records(args.scenario, args.records)
        profile = _profile(args)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except (_ArgumentError, ValueError) as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2

    try:
        store = Store(args.state)
    except (sqlite3.Error, OSError) as exc:
        print(f"{prog}: error: cannot open --state {args.state}: {_one_line(exc)}", file=sys.stderr)
        return 2
    try:
        # A --state file that already holds an org is served as it is: re-seeding would undo a rehearsal.
        if store.count_all() == 0:
            seed.seed(store, args.scenario, records=args.records)
        for key, value in args.without_picklist_value:
            removed = store.removed_picklist_values.get(key, frozenset())
            store.removed_picklist_values[key] = removed | {value}
        org = LocalOrg(store, faults=profile, access_token=args.token)
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            try:
                server = LocalOrgServer(org, port=args.port)
            except OSError as exc:
                print(f"{prog}: error: cannot listen on {HOST}:{args.port}: {_one_line(exc)}", file=sys.stderr)
                return 2
            with server:
                announcement = {
                    "instance_url": server.instance_url,
                    "access_token": org.access_token,
                    "ca_bundle": str(server.ca_bundle),
                }
                print(json.dumps(announcement), flush=True)
                # A bounded wait, so the signal handler's flag is seen even where a blocking wait is not woken.
                while not stop.wait(0.5):
                    pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve_main())
