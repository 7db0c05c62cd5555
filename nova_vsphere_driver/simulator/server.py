"""HTTP(S) front end of the simulator: /sdk SOAP, WSDL, datastore files, control."""

from __future__ import annotations

import base64
import hmac
import http.cookies
import http.server
import json
import logging
import socket
import ssl
import threading
import urllib.parse
from typing import Any

from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator import soap, tls, vmdk_stream
from nova_vsphere_driver.simulator.faults import make_fault
from nova_vsphere_driver.simulator.objects.nfc_lease import LeaseGone, find_download
from nova_vsphere_driver.simulator.objects.vapp_import import find_upload
from nova_vsphere_driver.simulator.service import Simulator

LOG = logging.getLogger(__name__)
COOKIE_NAME = "vmware_soap_session"
_MAX_BODY = 64 * 1024 * 1024
_MAX_UPLOAD = 4 * 1024 * 1024 * 1024


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without this every small response waits for the peer's delayed ACK
    # (about 40 ms per call).
    disable_nagle_algorithm = True
    server_version = "VMware-vCenter-simulator"
    sys_version = ""

    # -- plumbing -------------------------------------------------------------

    @property
    def sim(self) -> Simulator:
        return self.server.simulator  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        LOG.debug("%s - " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str = "text/xml; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self, limit: int) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            self._send(413, b"request too large", "text/plain")
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _session_key(self) -> str | None:
        raw = self.headers.get("Cookie")
        if raw:
            jar = http.cookies.SimpleCookie()
            try:
                jar.load(raw)
            except http.cookies.CookieError:
                return None
            morsel = jar.get(COOKIE_NAME)
            if morsel is not None:
                return morsel.value.strip('"')
        # pyVmomi clients may also carry the session in a vcSessionCookie header.
        return self.headers.get("vmware_soap_session") or None

    def _authorized(self) -> bool:
        """A live SOAP session cookie, or HTTP Basic with the credentials."""
        key = self._session_key()
        with self.sim.registry.lock:
            session = self.sim.sessions.get(key) if key else None
            if session is not None and not session.expired():
                return True
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return (hmac.compare_digest(user.encode(), self.sim.username.encode())
                    and hmac.compare_digest(password.encode(), self.sim.password.encode()))
        return False

    # -- routing --------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        if path == "/sdk" or path.startswith("/sdk/"):
            self._soap()
        elif path == "/simulator/control":
            self._control()
        elif path.startswith("/nfc/"):
            self._nfc_upload(path)  # vCenter takes stream-optimized disks by POST too
        else:
            self._send(404, b"not found", "text/plain")

    def do_GET(self) -> None:  # noqa: N802
        parts = urllib.parse.urlsplit(self.path)
        try:
            if parts.path.startswith("/folder"):
                self._datastore_file(parts)
            elif parts.path.startswith("/sdk/") or parts.path.startswith("/wsdl/"):
                self._static(parts.path.rsplit("/", 1)[-1])
            elif parts.path.startswith("/nfc/"):
                self._nfc_download(parts.path)
            else:
                self._send(404, b"not found", "text/plain")
        except Exception as exc:  # a simulator bug: answer rather than hang up
            LOG.exception("GET %s failed", self.path)
            self._send(500, f"simulator failure: {exc}".encode(), "text/plain")

    do_HEAD = do_GET  # noqa: N815

    def do_PUT(self) -> None:  # noqa: N802
        parts = urllib.parse.urlsplit(self.path)
        if parts.path.startswith("/folder"):
            self._datastore_file(parts)
        elif parts.path.startswith("/nfc/") and self.command == "PUT":
            self._nfc_upload(parts.path)
        else:
            self._send(404, b"not found", "text/plain")

    def do_DELETE(self) -> None:  # noqa: N802
        self.do_PUT()

    # -- SOAP -----------------------------------------------------------------

    def _soap(self) -> None:
        body = self._read_body(_MAX_BODY)
        if body is None:
            return
        try:
            call = soap.decode_request(body)
        except soap.SoapDecodeError as exc:
            self._send(500, soap.encode_client_fault(f"Unable to parse request: {exc}"))
            return
        try:
            result, new_session = self.sim.invoke(call, self._session_key())
        except vmodl.MethodFault as fault:
            try:
                payload = soap.encode_fault(fault)
            except Exception as exc:  # a fault the simulator built incompletely
                LOG.exception("cannot encode the %s fault of %s", type(fault).__name__,
                              call.name)
                payload = soap.encode_fault(vmodl.fault.SystemError(reason=str(exc)),
                                            f"simulator failure: {exc}")
            self._send(500, payload)
            return
        except Exception as exc:  # a simulator bug: still answer in SOAP
            LOG.exception("simulator failure in %s", call.name)
            self._send(500, soap.encode_fault(vmodl.fault.SystemError(reason=str(exc)),
                                              f"simulator failure: {exc}"))
            return
        headers = {}
        if new_session is not None:
            headers["Set-Cookie"] = f'{COOKIE_NAME}="{new_session.key}"; Path=/; HttpOnly'
        try:
            payload = soap.encode_response(call.method, result)
        except Exception as exc:
            LOG.exception("cannot encode the result of %s", call.name)
            payload = soap.encode_fault(vmodl.fault.SystemError(reason=str(exc)),
                                        f"simulator failure: {exc}")
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

    # -- datastore files ---------------------------------------------------------

    def _datastore_file(self, parts: urllib.parse.SplitResult) -> None:
        if not self._authorized():
            self._send(401, b"authentication required", "text/plain",
                       {"WWW-Authenticate": 'Basic realm="VMware HTTP server"'})
            return
        query = urllib.parse.parse_qs(parts.query)
        ds_name = (query.get("dsName") or [""])[0]
        dc_path = (query.get("dcPath") or [""])[0]
        rel = urllib.parse.unquote(parts.path[len("/folder"):]).lstrip("/")
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
                data = self._read_body(_MAX_UPLOAD)
                if data is None:
                    return
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

    def _body_chunks(self):
        """The request body piece by piece (Content-Length or chunked transfer encoding)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                data = self.rfile.read(size)
                self.rfile.readline()
                yield data
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(left, 256 * 1024))
            if not data:
                raise ConnectionError(f"the client sent {left} bytes less than announced")
            left -= len(data)
            yield data

    def _nfc_upload(self, path: str) -> None:
        """Receive an import lease's disk; the URL's token is the ticket (no cookie needed)."""
        found = find_upload(self.sim, path)
        if found is None:
            self.close_connection = True
            self._reply(404, b"no such NFC transfer (unknown, or the lease ended)", "text/plain")
            return
        lease, disk = found
        chunks = self._body_chunks()
        try:
            lease.receive(disk, chunks)
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
        body = self._read_body(1024 * 1024)
        if body is None:
            return
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


class SimulatorServer:
    """Serve a :class:`Simulator` over HTTP or HTTPS on loopback.

    Usable as a context manager (the in-process test fixture). ``restart()``
    drops the listener and every session but keeps the inventory, like a
    vCenter service restart.
    """

    def __init__(self, simulator: Simulator | None = None, host: str = "127.0.0.1",
                 port: int = 0, tls_enabled: bool = False, cert_file: str | None = None,
                 key_file: str | None = None) -> None:
        self.simulator = simulator or Simulator()
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
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            _HTTPServer.address_family = family
            httpd = _HTTPServer((self.host, self.port), _Handler)
            if self.tls_enabled:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(self.cert_file, self.key_file)
                httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
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
        return self

    def stop(self) -> None:
        with self._lock:
            httpd, self._httpd = self._httpd, None
            thread, self._thread = self._thread, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def restart(self) -> None:
        """Stop listening, forget every session, listen again on the same port."""
        self.stop()
        self.simulator.expire_sessions()
        self.start()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
