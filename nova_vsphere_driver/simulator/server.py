"""HTTP(S) front end of the simulator: /sdk SOAP, WSDL, datastore files, control."""

from __future__ import annotations

import _socket
import base64
import contextlib
import http.server
import io
import json
import logging
import re
import select
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator import persistence, soap, tls, vmdk_stream
from nova_vsphere_driver.simulator.faults import make_fault
from nova_vsphere_driver.simulator.objects.nfc_lease import LeaseGone, find_download
from nova_vsphere_driver.simulator.objects.vapp_import import find_upload
from nova_vsphere_driver.simulator.service import Client, Simulator
from nova_vsphere_driver.simulator.vim_faults import system_error

LOG = logging.getLogger(__name__)
COOKIE_NAME = "vmware_soap_session"
#: Where vCenter serves the storage policy API (oslo.vmware posts to /pbm).
PBM_PATHS = ("/pbm", "/pbm/sdk")
#: The cookie carrying a generic service ticket (as oslo.vmware's constants name it).
CGI_TICKET_COOKIE = "vmware_cgi_ticket"
_MAX_BODY = 64 * 1024 * 1024
_MAX_UPLOAD = 4 * 1024 * 1024 * 1024
_MAX_CONTROL_BODY = 1024 * 1024
#: A body on a request that takes none (GET, HEAD, DELETE) is read and dropped up to this.
_MAX_IGNORED_BODY = 64 * 1024
_READ_PIECE = 256 * 1024

#: Seconds a connection may take to deliver a request's line and headers once
#: it has started one (and a new connection its first request): a client
#: dribbling headers a byte at a time cannot hold a thread for longer.
HEAD_TIMEOUT = 30.0
#: Seconds any single read of a request body, or write of a response, may wait.
READ_TIMEOUT = 60.0
#: Seconds a kept-alive connection may wait idle for its next request. Longer
#: than pyVmomi's connection-pool idle timeout (900 s): pyVmomi sends on a
#: pooled connection without checking it first and does not retry, so a
#: server closing sooner would fail pyVmomi clients' calls after a pause.
IDLE_TIMEOUT = 960.0
#: Seconds a TLS client may take to complete its handshake.
HANDSHAKE_TIMEOUT = 10.0

#: Bytes a request's line and headers may take together (as envoy in front of
#: vCenter allows by default: 60 KiB).
HEAD_LIMIT = 64 * 1024

_CONTENT_LENGTH = re.compile(r"[0-9]+")
_HTTP_VERSION = re.compile(r"HTTP/([0-9]{1,10})\.([0-9]{1,10})")
#: Header fields a request may have, as http.client's limit.
_MAX_HEAD_FIELDS = 100
#: The cookies the front reads, each found by a regular expression: every
#: SOAP call carries one, and its value is a plain token, quoted or not
#: (http.cookies' full parser costs as much as a small call).
_COOKIES = {name: re.compile(r'(?:^|[;,])\s*' + re.escape(name) + r'=("[^"]*"|[^;,\s]*)')
            for name in (COOKIE_NAME, CGI_TICKET_COOKIE)}
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
#: A header field name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


#: How a client that hangs up, stalls or breaks TLS shows in a handler.
_CLIENT_GONE = (ConnectionError, TimeoutError, ssl.SSLError)


class _HttpError(Exception):
    """A request the front end refuses: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _HeadTooLarge(Exception):
    """The request's line and headers exceed HEAD_LIMIT."""


class _HeadReader:
    """The connection's reader while a request head is read: counts what it takes."""

    def __init__(self, rfile: io.BufferedReader, limit: int) -> None:
        self._rfile = rfile
        self.left = limit

    def readline(self, size: int = -1) -> bytes:
        line = self._rfile.readline(size)
        self.left -= len(line)
        if self.left < 0:
            raise _HeadTooLarge()
        return line


class _Headers:
    """A request's header fields, found by case-insensitive name (what the front reads)."""

    def __init__(self, fields: list[tuple[str, str, str]]) -> None:
        self._fields = fields  # (lower-case name, name, value)

    def get(self, name: str, default: Any = None) -> Any:
        lower = name.lower()
        for key, _name, value in self._fields:
            if key == lower:
                return value
        return default

    def get_all(self, name: str, default: Any = None) -> Any:
        lower = name.lower()
        return [value for key, _name, value in self._fields if key == lower] or default

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def keys(self) -> list[str]:
        return [name for _key, name, _value in self._fields]

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for _key, name, value in self._fields]

    def __str__(self) -> str:
        return "".join(f"{name}: {value}\n" for _key, name, value in self._fields)


class _TimedSocketReader(io.RawIOBase):
    """A connection's reads, each bounded by a timeout and optionally by a deadline.

    ``socketserver`` reads through a file with no timeout at all: a client
    that announces a body and never sends it holds its thread for ever.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.timeout: float | None = None
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        timeout = self.timeout
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request head not received in time")
            timeout = left if timeout is None else min(timeout, left)
        self._sock.settimeout(timeout)
        return self._sock.recv_into(buffer)


def _readable_now(sock: socket.socket) -> bool:
    """Whether ``sock`` has bytes to read at once (TLS: decrypted or still raw)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = select.poll()  # (select.select fails on descriptors above 1023)
    try:
        poller.register(sock, select.POLLIN)
    except (OSError, ValueError):  # closed meanwhile
        return False
    return any(events & select.POLLIN for _fd, events in poller.poll(0))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without this every small response waits for the peer's delayed ACK
    # (about 40 ms per call).
    disable_nagle_algorithm = True
    server_version = "VMware-vCenter-simulator"
    sys_version = ""
    # What http.server assumes before it has read a version: "HTTP/0.9"
    # would make it answer a garbled request line without a status line.
    default_request_version = "HTTP/1.0"

    # -- plumbing -------------------------------------------------------------

    @property
    def sim(self) -> Simulator:
        return self.server.simulator  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        LOG.debug("%s - " + format, self.address_string(), *args)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if LOG.isEnabledFor(logging.DEBUG):  # one line per request: only when asked for
            super().log_request(code, size)

    #: (second, its HTTP date): formatted once a second, not once a response.
    _date = (0, "")

    def date_time_string(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        second, text = _Handler._date
        if second != now:
            text = super().date_time_string(now)
            _Handler._date = (now, text)
        return text

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        # http.server reports malformed requests and timeouts here: one line each.
        LOG.info("%s - " + format, self.address_string(), *args)

    def setup(self) -> None:
        super().setup()
        # Every read goes through a timeout (see _TimedSocketReader).
        self.rfile.close()
        self._reader = _TimedSocketReader(self.connection)
        self._body_file = io.BufferedReader(self._reader, 64 * 1024)
        self.rfile = self._body_file
        self._requests_served = 0

    def handle_one_request(self) -> None:
        """Wait (bounded) for the next request, then read its head within HEAD_TIMEOUT."""
        front = self.server.front  # type: ignore[attr-defined]
        reader = self._reader
        reader.deadline = None
        reader.timeout = front.idle_timeout if self._requests_served else front.head_timeout
        if not self._request_arrived():
            self.close_connection = True
            return
        self._requests_served += 1
        reader.timeout = None
        reader.deadline = time.monotonic() + front.head_timeout
        self._framing: tuple[str, int] = ("none", 0)
        self._body_read = True
        self._expect_continue = False
        self.requestline = ""
        self.command = None
        # One byte more than the limit: a longer request line alone is http.server's 414.
        self.rfile = _HeadReader(self._body_file, HEAD_LIMIT + 1)  # type: ignore[assignment]
        try:
            super().handle_one_request()
        except _HeadTooLarge:
            self.rfile = self._body_file
            self.close_connection = True
            self.send_error(431, f"Request header fields too large (at most {HEAD_LIMIT} "
                            "bytes with the request line)")
        finally:
            self.rfile = self._body_file

    def _request_arrived(self) -> bool:
        """Wait (the reader's timeout) for the next request's first byte; False when the
        client closed the connection or sent nothing in time."""
        try:
            return bool(self.rfile.peek(1))  # b"": the client closed the connection
        except TimeoutError:
            # The wait may have timed out while the whole process stood still
            # (a long garbage collection, an overloaded host), with the next
            # request arrived meanwhile: hanging up then would fail a request
            # the client has already sent.
            if not _readable_now(self.connection):
                LOG.info("%s - closing a connection idle for %.0f s", self.address_string(),
                         self._reader.timeout)
                return False
        self._reader.timeout = self.server.front.head_timeout  # type: ignore[attr-defined]
        try:
            return bool(self.rfile.peek(1))
        except TimeoutError:  # a partial TLS record and nothing more
            return False

    def parse_request(self) -> bool:
        if self.raw_requestline in (b"\r\n", b"\n"):
            # RFC 9112 2.2: one empty line before a request line is ignored.
            self.raw_requestline = self.rfile.readline(65537)
        words = self.raw_requestline.split()
        if not words or len(self.raw_requestline) > 65536:
            self.request_version = self.default_request_version
            self.close_connection = True
            self.send_error(400 if not words else 414,
                            "Empty request line" if not words else "Request-URI Too Long")
            return False
        if len(words) == 2:
            # HTTP/0.9 (a request line without version): answered without a
            # status line, a client could not tell an error from a document.
            self.request_version = self.default_request_version
            self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
            self.close_connection = True
            self.send_error(400, "HTTP/0.9 requests are not supported")
            return False
        ok = self._parse_head()
        self.rfile = self._body_file
        if not ok:
            return False
        # The head is in: from here on each read (and write) has its own timeout.
        self._reader.deadline = None
        self._reader.timeout = self.server.front.read_timeout  # type: ignore[attr-defined]
        self.connection.settimeout(self._reader.timeout)
        return True

    def _parse_head(self) -> bool:
        """The request line and header fields (RFC 9112) into the attributes
        ``BaseHTTPRequestHandler.parse_request`` sets; False (with the error
        sent) when they are malformed. HTTP/1.0 and 1.1 only.

        Not http.server's own: it parses every head into an e-mail message
        (``http.client.parse_headers``), about a tenth of a millisecond -- as
        much as serving a small SOAP call.
        """
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3:
            self.send_error(400, f"Bad request syntax ({self.requestline!r})")
            return False
        command, path, version = words
        match = _HTTP_VERSION.fullmatch(version)
        if match is None:
            self.send_error(400, f"Bad request version ({version!r})")
            return False
        number = int(match.group(1)), int(match.group(2))
        if number >= (2, 0):
            self.send_error(505, f"Invalid HTTP version ({version})")
            return False
        self.request_version = version
        self.close_connection = number < (1, 1)
        # As http.server: "//host/x" would read as a URL without a scheme.
        self.command, self.path = command, ("/" + path.lstrip("/") if path[:2] == "//" else path)
        fields: list[tuple[str, str, str]] = []
        while True:
            line = self.rfile.readline(65537)
            if len(line) > 65536:
                self.send_error(431, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            if len(fields) >= _MAX_HEAD_FIELDS:
                self.send_error(431, "Too many headers")
                return False
            name, colon, value = line.decode("iso-8859-1").partition(":")
            if not colon or not _TOKEN.fullmatch(name):
                # Not "name: value" (no folded lines, no space before the colon).
                self.close_connection = True
                self.send_error(400, "Invalid header field")
                return False
            fields.append((name.lower(), name, value.strip()))
        self.headers = _Headers(fields)  # type: ignore[assignment]
        connection = self.headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if self.headers.get("Expect", "").lower() == "100-continue" and number >= (1, 1):
            return self.handle_expect_100()
        return True

    def handle_expect_100(self) -> bool:
        # "100 Continue" only once the request is accepted (see _body_pieces):
        # a refused or unauthenticated upload is never sent.
        self._expect_continue = True
        return True

    def _send(self, status: int, body: bytes, content_type: str = "text/xml; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.command == "HEAD" or not body:
            self.end_headers()
            return
        # Head and body in one write: each socket write gives up the GIL,
        # and getting it back waits for the threads serving other requests
        # (up to the interpreter's switch interval).
        self._headers_buffer.extend((b"\r\n", body))
        self.flush_headers()

    # -- request bodies -----------------------------------------------------------

    def _body_framing(self, limit: int) -> tuple[str, int]:
        """How the body is delimited: ("length", n), ("chunked", 0) or ("none", 0).

        Checked before anything else (authentication included): invalid
        framing is a 400, an announced body above ``limit`` a 413.
        """
        codings = [c.strip().lower()
                   for value in self.headers.get_all("Transfer-Encoding") or ()
                   for c in value.split(",") if c.strip()]
        lengths = {v.strip() for v in self.headers.get_all("Content-Length") or ()}
        if codings:
            if codings != ["chunked"]:
                raise _HttpError(501, "unsupported Transfer-Encoding "
                                 f"{', '.join(codings)!r}: only chunked is implemented")
            if lengths:
                # Two framings for one body: the way requests are smuggled past proxies.
                raise _HttpError(400, "both Content-Length and Transfer-Encoding given")
            return "chunked", 0
        if not lengths:
            return "none", 0
        if len(lengths) > 1:
            raise _HttpError(400, "conflicting Content-Length headers")
        value = lengths.pop()
        if not _CONTENT_LENGTH.fullmatch(value):
            raise _HttpError(400, f"invalid Content-Length {value[:40]!r}")
        if len(value) > 18 or int(value) > limit:
            raise _HttpError(413, f"request body too large (at most {limit} bytes here)")
        return "length", int(value)

    def _body_pieces(self) -> Iterator[bytes]:
        """The request body piece by piece, as framed; ``_HttpError`` when it is bad.

        Chunked bodies count against the same cap as announced ones; every
        read has READ_TIMEOUT (a body shorter than announced ends in a 408).
        """
        kind, length = self._framing
        if kind == "none":
            self._body_read = True
            return
        limit = self._limit
        if self._expect_continue:
            self._expect_continue = False
            self.send_response_only(100)
            self.end_headers()
        try:
            if kind == "length":
                left = length
                while left > 0:
                    data = self.rfile.read(min(left, _READ_PIECE))
                    if not data:
                        raise _HttpError(400, f"the body ended {left} bytes before its "
                                         "Content-Length")
                    left -= len(data)
                    yield data
            else:
                yield from self._chunked_pieces(limit)
        except TimeoutError:
            raise _HttpError(408, "request body not received within "
                             f"{self._reader.timeout:.0f} s") from None
        self._body_read = True

    def _chunked_pieces(self, limit: int) -> Iterator[bytes]:
        received = 0
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise _HttpError(400, "invalid chunk: size line truncated or too long")
            size_text = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise _HttpError(400, f"invalid chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                break
            received += size
            if received > limit:
                raise _HttpError(413, f"request body too large (at most {limit} bytes here)")
            while size > 0:
                data = self.rfile.read(min(size, _READ_PIECE))
                if not data:
                    raise _HttpError(400, "the body ended inside a chunk")
                size -= len(data)
                yield data
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _HttpError(400, "invalid chunk: no CRLF after its data")
        for _ in range(100):  # trailer fields, ignored
            line = self.rfile.readline(8192)
            if line in (b"\r\n", b"\n"):
                return
            if not line.endswith(b"\n"):
                raise _HttpError(400, "invalid chunked trailer")
        raise _HttpError(400, "too many chunked trailer fields")

    def _read_body(self) -> bytes:
        """The whole request body (within the route's cap)."""
        return b"".join(self._body_pieces())

    def _client(self) -> Client:
        return Client(address=self.client_address[0] if self.client_address else "",
                      user_agent=(self.headers.get("User-Agent") or "")[:256])

    def _cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` (one of ``_COOKIES``), or None."""
        raw = self.headers.get("Cookie")
        match = _COOKIES[name].search(raw) if raw else None
        return match.group(1).strip('"') if match is not None else None

    def _session_cookie(self) -> str | None:
        # pyVmomi clients may also carry the session in a vcSessionCookie header.
        return self._cookie(COOKIE_NAME) or self.headers.get("vmware_soap_session") or None

    def _authorized(self) -> bool:
        """A live SOAP session cookie, or HTTP Basic with the credentials.

        Wrong Basic credentials count as failed logins of the client (the
        same progressive delay as Login).
        """
        if self.sim.session_for_cookie(self._session_cookie()) is not None:
            return True
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        throttle, address = self.sim.login_throttle, self._client().address
        throttle.wait_turn(address)
        if not self.sim.credentials_match(user, password):
            throttle.failed(address)
            return False
        throttle.succeeded(address)
        return True

    # -- routing --------------------------------------------------------------

    def _route(self) -> tuple[Any, int]:
        """The handler of this request and the largest body it takes."""
        parts = urllib.parse.urlsplit(self.path)
        path, command = parts.path, self.command
        if command == "POST":
            if path == "/sdk" or path.startswith("/sdk/"):
                return self._soap, _MAX_BODY
            if path in PBM_PATHS:
                return (lambda: self._soap(soap.PBM_NS)), _MAX_BODY
            if path == "/simulator/control":
                return self._control, _MAX_CONTROL_BODY
            if path.startswith("/nfc/"):
                # vCenter takes stream-optimized disks by POST too
                return (lambda: self._nfc_upload(path)), _MAX_UPLOAD
        elif command in ("GET", "HEAD"):
            if path.startswith("/folder"):
                return (lambda: self._datastore_file(parts)), _MAX_IGNORED_BODY
            if path.startswith("/sdk/") or path.startswith("/wsdl/"):
                return (lambda: self._static(path.rsplit("/", 1)[-1])), _MAX_IGNORED_BODY
            if path.startswith("/pbm/"):
                return (lambda: self._pbm_wsdl(path.rsplit("/", 1)[-1])), _MAX_IGNORED_BODY
            if path.startswith("/nfc/"):
                return (lambda: self._nfc_download(path)), _MAX_IGNORED_BODY
        elif command == "PUT":
            if path.startswith("/folder"):
                return (lambda: self._datastore_file(parts)), _MAX_UPLOAD
            if path.startswith("/nfc/"):
                return (lambda: self._nfc_upload(path)), _MAX_UPLOAD
        elif command == "DELETE" and path.startswith("/folder"):
            return (lambda: self._datastore_file(parts)), _MAX_IGNORED_BODY
        return (lambda: self._send(404, b"not found", "text/plain")), _MAX_IGNORED_BODY

    def _dispatch(self) -> None:
        handler, self._limit = self._route()
        try:
            # Framing and size first: nothing (not even authentication) runs
            # for a request whose body is malformed or above the route's cap.
            self._framing = self._body_framing(self._limit)
            self._body_read = self._framing[0] == "none"
            handler()
        except _HttpError as exc:
            self._refuse(exc.status, exc.message)
        except _CLIENT_GONE:
            raise  # the server logs it as one line (_HTTPServer.handle_error)
        except Exception as exc:  # a simulator bug: answer rather than hang up
            LOG.exception("%s %s failed", self.command, self.path)
            self._refuse(500, f"simulator failure: {exc}")
        if not self._body_read:
            # Answered without reading the body (refused, not authorized): the
            # rest of the stream is not a next request.
            self.close_connection = True

    def _refuse(self, status: int, message: str) -> None:
        LOG.info("%s - %s %s refused: %d %s", self.address_string(), self.command,
                 self.path[:200], status, message)
        self.close_connection = True
        try:
            self._send(status, message.encode(), "text/plain", {"Connection": "close"})
        except OSError as exc:  # the client is gone already
            LOG.debug("answer %d not delivered: %s", status, exc)

    do_POST = do_GET = do_HEAD = do_PUT = do_DELETE = _dispatch  # noqa: N815

    # -- SOAP -----------------------------------------------------------------

    def _soap(self, namespace: str = soap.VIM_NS) -> None:
        """One SOAP call: vim25 on /sdk, the storage policy API (``namespace`` urn:pbm)
        on /pbm, each endpoint serving its own API's methods only."""
        with self.sim.answering():  # quick tasks run once the answer is sent
            self._answer_soap(namespace)

    def _answer_soap(self, namespace: str) -> None:
        body = self._read_body()
        try:
            call = soap.decode_request(body)
        except soap.SoapDecodeError as exc:
            self._send(500, soap.encode_client_fault(str(exc)))
            return
        if call.namespace != namespace:
            self._send(500, soap.encode_client_fault(
                f"Unable to parse request: {call.name} is not a method of {namespace}"))
            return
        # SPBM clients name their vCenter session in the vcSessionCookie header.
        cookie = self._session_cookie() or call.vc_session_cookie
        try:
            result, new_session = self.sim.invoke(call, cookie, self._client())
        except vmodl.MethodFault as fault:
            try:
                payload = soap.encode_fault(fault)
            except Exception:  # a fault the simulator built incompletely
                LOG.exception("cannot encode the %s fault of %s", type(fault).__name__,
                              call.name)
                payload = soap.encode_fault(system_error())
            self._send(500, payload)
            return
        except Exception:  # a simulator bug: still answer in SOAP, in vim25 words
            LOG.exception("simulator failure in %s", call.name)
            self._send(500, soap.encode_fault(system_error()))
            return
        headers = {}
        if new_session is not None:
            headers["Set-Cookie"] = f'{COOKIE_NAME}="{new_session.cookie}"; Path=/; HttpOnly'
        try:
            payload = soap.encode_response(call.method, result)
        except Exception:
            LOG.exception("cannot encode the result of %s", call.name)
            payload = soap.encode_fault(system_error())
            self._send(500, payload)
            return
        self._send(200, payload, headers=headers)

    def _static(self, name: str) -> None:
        if name == "vimServiceVersions.xml":
            self._send(200, soap.service_versions_xml())
            return
        # Imported here: generating the WSDL set is only needed by suds clients.
        from nova_vsphere_driver.simulator import wsdl

        host = self.headers.get("Host") or f"{self.server.server_address[0]}"
        docs = wsdl.wsdl_documents(f"{self.server.scheme}://{host}/sdk")  # type: ignore[attr-defined]
        body = docs.get(name)
        if body is None:
            self._send(404, b"not found", "text/plain")
        else:
            self._send(200, body)

    def _pbm_wsdl(self, name: str) -> None:
        """The storage policy API's WSDL set (oslo.vmware's), pointing at this server."""
        from nova_vsphere_driver.simulator import wsdl

        host = self.headers.get("Host") or f"{self.server.server_address[0]}"
        body = wsdl.pbm_documents(f"{self.server.scheme}://{host}/pbm/sdk").get(name)  # type: ignore[attr-defined]
        if body is None:
            self._send(404, b"not found", "text/plain")
        else:
            self._send(200, body)

    # -- datastore files ---------------------------------------------------------

    def _service_ticket_host(self) -> str | None:
        """The ESX host a ``vmware_cgi_ticket`` cookie was issued for (used up), or None."""
        ticket = self._cookie(CGI_TICKET_COOKIE)
        if ticket is None:
            return None
        return self.sim.session_manager.redeem_ticket(ticket, self.command, self.path)

    def _datastore_file(self, parts: urllib.parse.SplitResult) -> None:
        # A service ticket (SessionManager.AcquireGenericServiceTicket) makes
        # this an ESX host's /folder service: its datacenter is "ha-datacenter"
        # and it serves only the datastores the host mounts.
        esx_host = self._service_ticket_host()
        if esx_host is None and not self._authorized():
            self._send(401, b"authentication required", "text/plain",
                       {"WWW-Authenticate": 'Basic realm="VMware HTTP server"'})
            return
        query = urllib.parse.parse_qs(parts.query)
        ds_name = (query.get("dsName") or [""])[0]
        dc_path = (query.get("dcPath") or [""])[0]
        rel = urllib.parse.unquote(parts.path[len("/folder"):]).lstrip("/")
        if esx_host is not None and dc_path == "ha-datacenter":
            datastore = self.sim.datastore_by_name(ds_name)
            if datastore is not None and esx_host not in {h.name for h in datastore.hosts}:
                datastore = None
        else:
            datastore = self.sim.datastore_by_name(ds_name, dc_path)
        if datastore is None:
            self._send(404, f"datastore {ds_name!r} not found in {dc_path!r}".encode(),
                       "text/plain")
            return
        files = self.sim.files
        try:
            if self.command in ("GET", "HEAD"):
                entry = files.get(datastore.name, rel)
                if entry.is_dir:
                    listing = "\n".join(e.path for e in files.listdir(datastore.name, rel))
                    self._send(200, listing.encode(), "text/plain")
                    return
                data = entry.data if entry.data is not None else datastore.render(entry)
                headers = {}
                if self.command == "HEAD" and entry.data is None:
                    data = b""
                    headers["X-Disk-Capacity-KB"] = str(entry.disk_capacity_kb or 0)
                self._send(200, data, "application/octet-stream", headers)
            elif self.command == "PUT":
                data = self._read_body()
                datastore.store_file(rel, data)
                self._send(201, b"", "text/plain")
            else:  # DELETE
                datastore.delete_file(rel)
                self._send(204, b"", "text/plain")
        except vim.fault.FileNotFound as exc:
            self._send(404, (exc.msg or "not found").encode(), "text/plain")
        except vmodl.MethodFault as exc:
            status = 507 if isinstance(exc, vim.fault.NoDiskSpace) else 409
            self._send(status, (exc.msg or type(exc).__name__).encode(), "text/plain")

    # -- HttpNfcLease disk downloads (objects/nfc_lease.py) -----------------------

    def _nfc_download(self, path: str) -> None:
        """Stream an export lease's disk; the URL's token is the ticket (no cookie needed)."""
        download = find_download(self.sim, path)
        if download is None:
            self._send(404, b"no such NFC transfer (unknown, or the lease ended)", "text/plain")
            return
        # The stream's length is known only once it is generated: chunked.
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            for chunk in download():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except Exception as exc:  # lease ended or client gone: cut the transfer short
            LOG.info("NFC download %s interrupted: %s", path, exc)
            self.close_connection = True

    # -- HttpNfcLease disk uploads (objects/vapp_import.py) ----------------------------

    def _nfc_upload(self, path: str) -> None:
        """Receive an import lease's disk; the URL's token is the ticket (no cookie needed)."""
        found = find_upload(self.sim, path)
        if found is None:
            self.close_connection = True
            self._reply(404, b"no such NFC transfer (unknown, or the lease ended)", "text/plain")
            return
        lease, disk = found
        try:
            lease.receive(disk, self._body_pieces())
        except vmdk_stream.InvalidVmdk as exc:
            self.close_connection = True
            self._reply(400, f"invalid stream-optimized VMDK: {exc}".encode(), "text/plain")
        except LeaseGone as exc:
            self.close_connection = True
            self._reply(404, str(exc).encode(), "text/plain")
        except vmodl.MethodFault as exc:
            self.close_connection = True
            status = 507 if isinstance(exc, vim.fault.NoDiskSpace) else 500
            self._reply(status, f"{type(exc).__name__}: {exc.msg}".encode(), "text/plain")
        except OSError as exc:  # the client went away
            LOG.info("NFC upload %s interrupted: %s", path, exc)
            self.close_connection = True
        else:
            self._reply(200, b"", "text/plain")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        """Answer an upload whose client may already have hung up (oslo.vmware does)."""
        try:
            self._send(status, body, content_type)
        except OSError as exc:
            LOG.debug("upload answer %d not delivered: %s", status, exc)
            self.close_connection = True

    # -- control (fault injection while running) -------------------------------

    def _control(self) -> None:
        if not self._authorized():
            self._send(401, b"authentication required", "text/plain",
                       {"WWW-Authenticate": 'Basic realm="simulator control"'})
            return
        body = self._read_body()
        try:
            request = json.loads(body or b"{}")
            result = control(self.sim, request, self.server)  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return
        self._send(200, json.dumps({"ok": True, "result": result}).encode(), "application/json")


def control(sim: Simulator, request: dict, server: Any = None) -> Any:
    """Apply one fault-injection / operator action given as a JSON mapping."""
    action = request["action"]
    if action == "fail_next":
        fault = make_fault(request["fault"], request.get("message"))
        sim.faults.fail_next(request["method"], fault, int(request.get("count", 1)),
                             in_call=bool(request.get("in_call", False)))
    elif action == "latency":
        sim.faults.add_latency(request["method"], float(request["seconds"]),
                               task=request.get("task"),
                               queued=float(request.get("queued", 0.0)))
    elif action == "clear":
        sim.faults.clear()
    elif action == "expire_sessions":
        if request.get("before"):
            sim.faults.expire_sessions_before(request["before"], int(request.get("count", 1)))
        else:
            sim.expire_sessions()
    elif action == "disconnect_host":
        sim.disconnect_host(request["host"])
    elif action == "reconnect_host":
        sim.reconnect_host(request["host"])
    elif action == "restart":
        if server is None:
            raise ValueError("restart needs the server")
        threading.Thread(target=server.owner.restart, daemon=True).start()
    elif action == "stats":
        return {"requests": sim.request_count, "by_method": dict(sim.request_counts)}
    else:
        raise ValueError(f"unknown action {action!r}")
    return None


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    #: The SimulatorServer (timeouts, TLS context); set before serving.
    front: SimulatorServer

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        """Serve one connection, in its own thread (TLS handshake included).

        The listening socket stays plain: a handshake inside ``accept()``
        would run on the serving thread, where one client that connects and
        sends nothing would stop every other client from being accepted.
        """
        front = self.front
        context = front.tls_context
        if context is None:
            with front.serving(request):
                super().finish_request(request, client_address)
            return
        request.settimeout(front.handshake_timeout)
        with front.serving(request):
            # wrap_socket takes over the connection (``request`` is left detached).
            connection = context.wrap_socket(request, server_side=True)
        try:
            with front.serving(connection):
                super().finish_request(connection, client_address)
        finally:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client is gone already
            connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line for a client that went away or broke the protocol; a traceback
        only for a simulator bug."""
        exc = sys.exc_info()[1]
        peer = client_address[0] if isinstance(client_address, tuple) else client_address
        if isinstance(exc, (OSError, ssl.SSLError)):  # disconnects, resets, timeouts, TLS
            LOG.info("%s - connection ended: %s", peer,
                     f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        else:
            LOG.exception("%s - simulator failure serving a connection", peer)


class SimulatorServer:
    """Serve a :class:`Simulator` over HTTP or HTTPS on loopback.

    Usable as a context manager (the in-process test fixture). ``restart()``
    drops the listener and every session but keeps the inventory, like a
    vCenter service restart.

    With ``state_file``, the simulator's state survives the process: the
    first ``start()`` loads the file if it exists (else writes it at once),
    a save runs every ``save_interval`` seconds when something changed and
    at ``stop()``, and ``restart()`` goes through the file as a real restart
    would (simulator/persistence.py).
    """

    def __init__(self, simulator: Simulator | None = None, host: str = "127.0.0.1",
                 port: int = 0, tls_enabled: bool = False, cert_file: str | None = None,
                 key_file: str | None = None, *, head_timeout: float = HEAD_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT, idle_timeout: float = IDLE_TIMEOUT,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, state_file: str | None = None,
                 save_interval: float = 30.0) -> None:
        self.simulator = simulator or Simulator()
        self.state = persistence.StateFile(state_file) if state_file else None
        self.save_interval = save_interval
        self._keeper: persistence.StateKeeper | None = None
        self._state_opened = False
        self.head_timeout = head_timeout
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.tls_context: ssl.SSLContext | None = None
        self.host = host
        self.port = port
        self.tls_enabled = tls_enabled or bool(cert_file)
        self.ca_file: str | None = None
        self.cert_file = cert_file
        self.key_file = key_file
        if self.tls_enabled and not cert_file:
            self.ca_file, self.cert_file, self.key_file = tls.generate(
                hosts=(host, "localhost") if host not in ("localhost", "0.0.0.0") else
                ("127.0.0.1", "localhost"))
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Client connections being served (by this listener or one before a
        #: restart), and whether new ones may be: stop() closes them all.
        self._connections: set[socket.socket] = set()
        self._connections_open = False
        self._connections_lock = threading.Lock()

    @property
    def scheme(self) -> str:
        return "https" if self.tls_enabled else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self._url_host}:{self.port}/sdk"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def start(self) -> SimulatorServer:
        with self._lock:
            if self._httpd is not None:
                return self
            self._open_state()
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            _HTTPServer.address_family = family
            if self.tls_enabled and self.tls_context is None:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(self.cert_file, self.key_file)
                self.tls_context = context
            httpd = _HTTPServer((self.host, self.port), _Handler)
            httpd.front = self
            with self._connections_lock:
                self._connections_open = True
            self.simulator.allow_waits()  # (a start after stop())
            httpd.simulator = self.simulator  # type: ignore[attr-defined]
            httpd.scheme = self.scheme  # type: ignore[attr-defined]
            httpd.owner = self  # type: ignore[attr-defined]
            self.port = httpd.server_address[1]
            # Where export leases point their disk URLs (vCenter names the ESXi host).
            self.simulator.nfc_base_url = f"{self.scheme}://{self._url_host}:{self.port}"
            self.simulator.nfc_cert_file = self.cert_file if self.tls_enabled else None
            self._httpd = httpd
            self._thread = threading.Thread(target=httpd.serve_forever,
                                            # stop() waits up to one poll for the
                                            # loop to notice: keep it short (tests
                                            # start and stop a server per test).
                                            kwargs={"poll_interval": 0.01},
                                            name=f"vsphere-sim-{self.port}", daemon=True)
            self._thread.start()
            if self.state is not None and self._keeper is None:
                # The file holds the current state (just loaded or written, or
                # saved by the last stop): the first period saves only changes.
                self._keeper = persistence.StateKeeper(
                    self.simulator, self.state, self.save_interval,
                    saved_generation=self.simulator.registry.generation)
                self._keeper.start()
        return self

    def _open_state(self) -> None:
        """Load the state file at the first start (or create it)."""
        if self.state is None:
            return
        if not self._state_opened:
            if self.state.exists():
                count = self.state.load(self.simulator)
                LOG.info("loaded %d objects from %s", count, self.state.path)
            else:
                self.state.save(self.simulator)
            self._state_opened = True

    def save_state(self) -> persistence.SaveStats | None:
        """Save the state now (None: no state file, or nothing changed since the last save)."""
        keeper = self._keeper
        return keeper.save_if_changed() if keeper is not None else None

    @contextlib.contextmanager
    def serving(self, connection: socket.socket) -> Iterator[None]:
        """Serve ``connection`` inside the block; stop() ends it (at once if stopped)."""
        with self._connections_lock:
            if self._connections_open:
                self._connections.add(connection)
            else:
                _hang_up(connection)
        try:
            yield
        finally:
            with self._connections_lock:
                self._connections.discard(connection)

    def stop(self) -> None:
        """Stop listening and hang up every client connection.

        Kept-alive connections would otherwise go on being answered for up
        to ``idle_timeout`` (960 s), each of their threads keeping the
        stopped simulator, with its whole inventory, in memory.
        """
        self._stop(hang_up=True)

    def _stop(self, hang_up: bool) -> None:
        with self._lock:
            httpd, self._httpd = self._httpd, None
            thread, self._thread = self._thread, None
            keeper, self._keeper = self._keeper, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        if hang_up:
            self.simulator.end_waits()
            with self._connections_lock:
                self._connections_open = False
                connections, self._connections = self._connections, set()
            for connection in connections:
                _hang_up(connection)
        if keeper is not None:
            keeper.stop()  # saves once more

    def restart(self) -> None:
        """Stop listening, forget every session, listen again on the same port.

        Clients' connections stay open (their calls fail NotAuthenticated
        until they log in again): pyVmomi does not retry a call on a pooled
        connection the server closed. With a state file, the state is saved
        at the stop and loaded again from the file, as a restarted process
        would.
        """
        self._stop(hang_up=False)
        self.simulator.expire_sessions()
        if self.state is not None:
            self.state.load(self.simulator)
        self.start()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _hang_up(connection: socket.socket) -> None:
    """End a connection another thread serves: its reads see the end, its writes fail.

    The serving thread closes the socket itself. The plain socket's shutdown
    (on a TLS connection too): the TLS layer's own would drop its state
    under the serving thread's feet.
    """
    # The operating system's socket: under eventlet, socket.socket is its
    # GreenSocket, which wraps one (``fd``) and has no shutdown of its own to
    # call unbound.
    raw = connection if isinstance(connection, _socket.socket) else \
        getattr(connection, "fd", connection)
    try:
        _socket.socket.shutdown(raw, socket.SHUT_RDWR)
    except OSError:
        pass  # closed already, or the client is gone
