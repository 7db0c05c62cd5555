"""Raw HTTP on a socket, for requests that no well-behaved client library sends."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import weakref

from nova_vsphere_driver.simulator import soap

#: A complete, valid SOAP request needing no session.
RETRIEVE_CONTENT = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    b'<soapenv:Body><RetrieveServiceContent xmlns="urn:vim25">'
    b'<_this type="ServiceInstance">ServiceInstance</_this>'
    b"</RetrieveServiceContent></soapenv:Body></soapenv:Envelope>"
)


def soap_request(body: bytes, *, path: str = "/sdk", extra: str = "",
                 length: int | str | None = None) -> bytes:
    """A POST of ``body`` with Content-Length (``length`` overrides the real one)."""
    length = len(body) if length is None else length
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: text/xml; charset=utf-8\r\nSOAPAction: urn:vim25/{soap.API_VERSION}\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode() + body


def chunked(body: bytes, size: int = 100) -> bytes:
    """``body`` in chunked transfer coding, ``size`` bytes a chunk."""
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n\r\n"


def basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Authorization: Basic {token}\r\n"


def connect(server, timeout: float = 10.0) -> socket.socket:
    """A connected socket to ``server`` (TLS-wrapped, verified, when it serves HTTPS)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    if server.tls_enabled:
        context = ssl.create_default_context(cafile=server.ca_file)
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    return sock


class Answer:
    """One HTTP response read off a socket."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<Answer {self.status} {self.body[:200]!r}>"


#: One buffered reader per socket: answers to pipelined requests follow each other.
_READERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def read_answer(sock: socket.socket, method: str = "POST") -> Answer:
    """Read one response; raises ``ConnectionError`` when the server closed without one."""
    rfile = _READERS.get(sock)
    if rfile is None:
        rfile = _READERS[sock] = sock.makefile("rb")
    line = rfile.readline(65537)
    if not line:
        raise ConnectionError("the server closed the connection without answering")
    version, status, _reason = (line.decode("latin-1").rstrip("\r\n").split(" ", 2) + [""])[:3]
    if not version.startswith("HTTP/1.") or not status.isdigit():
        raise AssertionError(f"not an HTTP response: {line[:200]!r}")
    status_code = int(status)
    headers = http.client.parse_headers(rfile)
    if status_code == 100:
        return read_answer(sock, method)
    if method == "HEAD" or status_code in (204, 304):
        body = b""
    elif "chunked" in (headers.get("Transfer-Encoding") or ""):
        body = b""
        while True:
            size = int(rfile.readline().split(b";")[0], 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += rfile.read(size)
            rfile.readline()
    elif headers.get("Content-Length") is not None:
        body = rfile.read(int(headers["Content-Length"]))
    else:
        body = rfile.read()
    return Answer(status_code, headers, body)


def exchange(server, data: bytes, method: str = "POST", timeout: float = 10.0) -> Answer:
    """Send ``data`` on a new connection and read the answer."""
    with connect(server, timeout) as sock:
        sock.sendall(data)
        return read_answer(sock, method)


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Does the server close ``sock`` (EOF or reset) within ``timeout``, sending nothing more?"""
    sock.settimeout(timeout)
    try:
        return not sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def login_request(user: str, password: str) -> bytes:
    """A SOAP Login request (XML-escaped credentials)."""
    from xml.sax.saxutils import escape

    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        '<soapenv:Body><Login xmlns="urn:vim25">'
        '<_this type="SessionManager">SessionManager</_this>'
        f"<userName>{escape(user)}</userName><password>{escape(password)}</password>"
        "</Login></soapenv:Body></soapenv:Envelope>"
    ).encode()
    return soap_request(body)


def exchange_from(server, source: str, data: bytes, timeout: float = 10.0) -> Answer:
    """``exchange`` from the loopback address ``source`` (e.g. 127.0.0.2)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout,
                                    source_address=(source, 0))
    with sock:
        sock.sendall(data)
        return read_answer(sock)
