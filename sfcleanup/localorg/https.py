"""The HTTPS way in: a real TLS socket on 127.0.0.1 in front of a LocalOrg.

simple-salesforce builds every URL as https://, so a separate process (the worker under test, `sf`, curl) can
only reach the local org over TLS. The certificate comes from a throwaway `trustme` CA made at start; its PEM is
written to a temporary file (`LocalOrgServer.ca_bundle`) for `verify=` or REQUESTS_CA_BUNDLE.

    with LocalOrgServer(org) as server:
        session = requests.Session()
        session.verify = str(server.ca_bundle)
        sf = Salesforce(instance_url=server.instance_url, session_id=org.access_token, session=session)

`sfcleanup localorg serve` (`server.serve_main`) runs one from the command line.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import sys
import tempfile
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme

from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.http import HttpRequest, HttpResponse, error_body

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
