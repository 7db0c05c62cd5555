"""The simulator's HTTP front: body framing, caps, timeouts, TLS per connection, logging."""

from __future__ import annotations

import ctypes
import gc
import logging
import socket
import struct
import sys
import threading
import time
import weakref

import pytest
import requests

from nova_vsphere_driver.simulator import Simulator, SimulatorServer
from tests.fixtures import connect as pyvmomi_connect
from tests.unit.simulator import raw_http
from tests.unit.simulator.helpers import wait_until
from tests.unit.simulator.raw_http import RETRIEVE_CONTENT, chunked, exchange, soap_request

QUICK = {"head_timeout": 0.5, "read_timeout": 0.5, "idle_timeout": 1.0,
         "handshake_timeout": 0.5}


@pytest.fixture
def quick_server():
    """A simulator whose front times out within a second."""
    with SimulatorServer(Simulator(), **QUICK) as server:
        yield server


@pytest.fixture
def quick_tls_server():
    with SimulatorServer(Simulator(), tls_enabled=True, **QUICK) as server:
        yield server


def _serves(server) -> bool:
    """The server still answers a fresh SOAP client."""
    answer = exchange(server, soap_request(RETRIEVE_CONTENT), timeout=5)
    return answer.status == 200 and b"RetrieveServiceContentResponse" in answer.body


def _auth(server) -> str:
    sim = server.simulator
    return raw_http.basic_auth(sim.username, sim.password)


# -- chunked bodies (govmomi sends them) -------------------------------------------------


def test_chunked_soap_request_is_read(sim_server):
    head = (b"POST /sdk HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    # Chunk extensions and a trailer field, as HTTP/1.1 allows.
    body = chunked(RETRIEVE_CONTENT, 77).replace(b"\r\n", b";ext=1\r\n", 1)
    body = body[:-2] + b"X-Trailer: 1\r\n\r\n"
    with raw_http.connect(sim_server) as sock:
        # Two requests on one connection: the first body was consumed exactly.
        for _ in range(2):
            sock.sendall(head + body)
            answer = raw_http.read_answer(sock)
            assert answer.status == 200, answer
            assert b"<rootFolder" in answer.body


def test_chunked_body_from_a_streaming_client(sim_server):
    # requests sends a generator body with Transfer-Encoding: chunked.
    pieces = [RETRIEVE_CONTENT[i:i + 50] for i in range(0, len(RETRIEVE_CONTENT), 50)]
    resp = requests.post(f"http://127.0.0.1:{sim_server.port}/sdk", data=iter(pieces),
                         headers={"Content-Type": "text/xml"}, timeout=10)
    assert resp.status_code == 200 and "<rootFolder" in resp.text


# -- invalid framing and sizes: refused before anything else -----------------------------


_ROUTES = [("POST", "/sdk"), ("POST", "/simulator/control"),
           ("PUT", "/folder/x.txt?dcPath=dc1&dsName=shared-a"), ("POST", "/nfc/nothing")]


@pytest.mark.parametrize("method,path", _ROUTES)
@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "+5", "0x10", "", "12 34", "٣"])
def test_invalid_content_length_is_400(quick_server, method, path, length):
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()
    with raw_http.connect(quick_server) as sock:
        sock.sendall(head + b"<x/>")
        answer = raw_http.read_answer(sock)
        assert answer.status == 400, answer
        assert b"Content-Length" in answer.body
        assert raw_http.closed_by_peer(sock, 2)
    assert _serves(quick_server)


def test_conflicting_content_lengths_are_400(quick_server):
    answer = exchange(quick_server, soap_request(b"<x/>", length="4\r\nContent-Length: 5"))
    assert answer.status == 400 and b"conflicting" in answer.body


@pytest.mark.parametrize("method,path", _ROUTES)
@pytest.mark.parametrize("length", [str(5 * 1024 ** 3), "9" * 30])
def test_announced_body_above_the_cap_is_413_unread_and_unauthenticated(
        quick_server, method, path, length):
    # Only the head is sent: the answer must not wait for the body.
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()
    answer = exchange(quick_server, head, timeout=5)
    assert answer.status == 413, answer
    assert answer.headers["Connection"] == "close"


@pytest.mark.parametrize("method,path", [("POST", "/sdk"), ("POST", "/nfc/nothing")])
def test_chunked_body_above_the_cap_is_413(quick_server, method, path):
    head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
    # One chunk announcing 80 GiB: refused at its size line.
    answer = exchange(quick_server, head + b"1400000000\r\n", timeout=5)
    assert answer.status in (404, 413), answer
    if path == "/sdk":
        assert answer.status == 413
    # Many small chunks adding up past the control route's 1 MiB.
    head = ("POST /simulator/control HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            f"{_auth(quick_server)}\r\n").encode()
    with raw_http.connect(quick_server) as sock:
        sock.sendall(head)
        piece = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
        try:
            for _ in range(17):
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before everything was sent
        answer = raw_http.read_answer(sock)
    assert answer.status == 413, answer


def test_chunked_body_of_an_unauthenticated_control_request_is_not_read(quick_server):
    head = b"POST /simulator/control HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with raw_http.connect(quick_server) as sock:
        sock.sendall(head + b"4\r\n{\"a\"\r\n")
        answer = raw_http.read_answer(sock)
        assert answer.status == 401
        assert raw_http.closed_by_peer(sock, 2)


@pytest.mark.parametrize("body,reason", [
    (b"zz\r\nabc\r\n0\r\n\r\n", b"chunk size"),
    (b"-3\r\nabc\r\n0\r\n\r\n", b"chunk size"),
    (b"3\r\nabcdef\r\n0\r\n\r\n", b"CRLF"),
    (b"3" + b" " * 2000 + b"\r\nabc\r\n0\r\n\r\n", b"size line"),
    (b"3\r\nabc\r\n0\r\n" + b"X: y\r\n" * 101 + b"\r\n", b"trailer"),
])
def test_malformed_chunks_are_400(quick_server, body, reason):
    head = b"POST /sdk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = exchange(quick_server, head + body)
    assert answer.status == 400, answer
    assert reason in answer.body


def test_transfer_codings_other_than_chunked_are_refused(quick_server):
    head = b"POST /sdk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    answer = exchange(quick_server, head + b"0\r\n\r\n")
    # RFC 9112 6.1: an unknown transfer coding is 501 Not Implemented.
    assert answer.status == 501 and b"gzip" in answer.body
    both = (b"POST /sdk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 5\r\n\r\n")
    answer = exchange(quick_server, both + b"0\r\n\r\n")
    assert answer.status == 400 and b"both" in answer.body


def test_unauthorized_upload_body_is_not_read_as_the_next_request(quick_server):
    # The body of a refused PUT is not a request: it must not be answered.
    smuggled = b"GET /sdk/vimServiceVersions.xml HTTP/1.1\r\nHost: x\r\n\r\n"
    head = (f"PUT /folder/f.txt?dcPath=dc1&dsName=shared-a HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(smuggled)}\r\n\r\n").encode()
    with raw_http.connect(quick_server) as sock:
        sock.sendall(head + smuggled)
        assert raw_http.read_answer(sock, "PUT").status == 401
        assert raw_http.closed_by_peer(sock, 2)


def test_expect_100_continue_only_for_accepted_uploads(quick_server):
    def put(auth: str) -> tuple[bytes, socket.socket]:
        sock = raw_http.connect(quick_server)
        sock.sendall((f"PUT /folder/e.txt?dcPath=dc1&dsName=shared-a HTTP/1.1\r\nHost: x\r\n"
                      f"Content-Length: 5\r\nExpect: 100-continue\r\n{auth}\r\n").encode())
        sock.settimeout(5)
        return sock.recv(25), sock

    first, sock = put("")
    with sock:
        assert first.startswith(b"HTTP/1.1 401")
    first, sock = put(_auth(quick_server))
    with sock:
        assert first.startswith(b"HTTP/1.1 100")
        sock.sendall(b"hello")
        answer = raw_http.read_answer(sock, "PUT")
    assert answer.status == 201
    assert quick_server.simulator.files.get("shared-a", "e.txt").data == b"hello"


# -- timeouts --------------------------------------------------------------------------------


def test_body_shorter_than_its_content_length_times_out_with_408(quick_server):
    started = time.monotonic()
    answer = exchange(quick_server, soap_request(RETRIEVE_CONTENT[:40],
                                                 length=len(RETRIEVE_CONTENT)), timeout=10)
    assert answer.status == 408, answer
    assert time.monotonic() - started < 5
    assert _serves(quick_server)


def test_idle_keep_alive_connection_is_closed(quick_server):
    with raw_http.connect(quick_server) as sock:
        sock.sendall(soap_request(RETRIEVE_CONTENT))
        assert raw_http.read_answer(sock).status == 200
        started = time.monotonic()
        assert raw_http.closed_by_peer(sock, 5)
        assert 0.8 < time.monotonic() - started < 4  # idle_timeout is 1 s


def _send_holding_the_gil(sock: socket.socket, data: bytes) -> None:
    """send(2) through libc without releasing the GIL: no Python thread runs meanwhile."""
    libc = ctypes.PyDLL(None)  # a PyDLL call keeps the GIL
    assert libc.send(sock.fileno(), data, len(data), 0) == len(data)


def test_request_arrived_during_a_stall_is_served_not_dropped(quick_server):
    """The idle timeout ran out while the process stood still (here: one thread
    holding the GIL for 1.5 s, as a long garbage collection does), and the
    client's next request came in meanwhile: it is answered, not hung up on."""
    with raw_http.connect(quick_server) as sock:
        sock.sendall(soap_request(RETRIEVE_CONTENT))
        assert raw_http.read_answer(sock).status == 200
        answered = time.monotonic()
        interval = sys.getswitchinterval()
        sys.setswitchinterval(30)  # nothing takes the GIL from this thread
        try:
            while time.monotonic() - answered < 1.3:  # the server's 1 s wait times out
                pass
            _send_holding_the_gil(sock, soap_request(RETRIEVE_CONTENT))
            while time.monotonic() - answered < 1.5:
                pass
        finally:
            sys.setswitchinterval(interval)
        assert raw_http.read_answer(sock).status == 200
        # And the connection then idles out as usual.
        assert raw_http.closed_by_peer(sock, 5)


def test_silent_connection_is_closed(quick_server):
    with raw_http.connect(quick_server) as sock:
        assert raw_http.closed_by_peer(sock, 5)  # head_timeout is 0.5 s


def test_request_head_dribbled_slowly_is_cut_off(quick_server):
    """Slowloris: each byte comes in time, the whole head does not."""
    with raw_http.connect(quick_server) as sock:
        sock.sendall(b"POST /sdk HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 5:
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if raw_http.closed_by_peer(sock, 0.1):
                closed = True
                break
        assert closed
        assert time.monotonic() - started < 3  # head_timeout is 0.5 s
    assert _serves(quick_server)


# -- stopping ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True])
def test_stop_hangs_up_kept_alive_connections_and_lets_the_simulator_go(tls):
    """A stopped simulator answers nothing more, and none of it stays in memory.

    Its kept-alive connections used to be served for up to the idle timeout
    (960 s), their threads holding the simulator and its whole inventory.
    """
    server = SimulatorServer(Simulator(), tls_enabled=tls).start()
    simulator = weakref.ref(server.simulator)
    with raw_http.connect(server) as sock:
        sock.sendall(soap_request(RETRIEVE_CONTENT))
        assert raw_http.read_answer(sock).status == 200
        server.stop()
        del server
        assert raw_http.closed_by_peer(sock, 10)  # hung up by stop(), not by a timeout
    wait_until(lambda: gc.collect() >= 0 and simulator() is None, timeout=10, interval=0.1,
               what="the stopped simulator is still referenced (by a connection's thread?)")


def _watching_the_root_folder(si):
    """(a new property collector with a filter on the root folder's name, its current version)."""
    from pyVmomi import vim, vmodl

    pc_type = vmodl.query.PropertyCollector
    collector = si.content.propertyCollector.CreatePropertyCollector()
    collector.CreateFilter(pc_type.FilterSpec(
        objectSet=[pc_type.ObjectSpec(obj=si.content.rootFolder)],
        propSet=[pc_type.PropertySpec(type=vim.Folder, pathSet=["name"])]), True)
    return collector, collector.WaitForUpdatesEx("", pc_type.WaitOptions(maxWaitSeconds=0)).version


def test_stop_ends_a_wait_for_updates_without_a_time_limit():
    """Its thread would otherwise wait on, holding the simulator, for half an hour."""
    server = SimulatorServer(Simulator()).start()
    simulator = weakref.ref(server.simulator)
    si = pyvmomi_connect(server)
    collector, version = _watching_the_root_folder(si)
    outcome = []

    def wait():
        try:
            outcome.append(collector.WaitForUpdatesEx(version))  # no time limit
        except Exception as exc:  # the connection is hung up
            outcome.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    counts = server.simulator.request_counts
    wait_until(lambda: counts.get("WaitForUpdatesEx", 0) >= 2,
               timeout=10, what="the wait reached the server")
    server.stop()
    del server
    waiter.join(10)
    assert outcome and isinstance(outcome[0], Exception)
    wait_until(lambda: gc.collect() >= 0 and simulator() is None, timeout=10, interval=0.1,
               what="the stopped simulator is still referenced (by a waiting thread?)")


def test_waits_for_updates_run_again_after_a_stop_and_start():
    from pyVmomi import vmodl

    pc_type = vmodl.query.PropertyCollector
    server = SimulatorServer(Simulator()).start()
    try:
        server.stop()
        server.start()
        si = pyvmomi_connect(server)
        collector, version = _watching_the_root_folder(si)
        started = time.monotonic()
        # Nothing changes: the wait lasts its time and ends with no update.
        assert collector.WaitForUpdatesEx(version, pc_type.WaitOptions(maxWaitSeconds=1)) is None
        assert time.monotonic() - started >= 0.9
    finally:
        server.stop()


# -- TLS: the handshake runs per connection ----------------------------------------------


def test_silent_tcp_client_does_not_block_https_clients():
    # Silent clients could hold a handshake for 60 s each here.
    with SimulatorServer(Simulator(), tls_enabled=True, handshake_timeout=60) as server:
        silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
        try:
            # With the handshake inside accept(), this waited for the silent clients.
            started = time.monotonic()
            si = pyvmomi_connect(server)
            assert si.content.about.apiType == "VirtualCenter"
            assert time.monotonic() - started < 20
        finally:
            for sock in silent:
                sock.close()


def test_tls_handshake_times_out(quick_tls_server):
    with socket.create_connection(("127.0.0.1", quick_tls_server.port)) as sock:
        started = time.monotonic()
        assert raw_http.closed_by_peer(sock, 5)
        assert time.monotonic() - started < 3  # handshake_timeout is 0.5 s
    assert _serves(quick_tls_server)


def test_plain_http_to_the_tls_port_is_refused(quick_tls_server, caplog, capfd):
    caplog.set_level(logging.INFO, "nova_vsphere_driver.simulator.server")
    with socket.create_connection(("127.0.0.1", quick_tls_server.port)) as sock:
        sock.sendall(soap_request(RETRIEVE_CONTENT))
        assert raw_http.closed_by_peer(sock, 5)
    assert _serves(quick_tls_server)
    _wait_for_log(caplog, "connection ended")
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.exc_info]


# -- client disconnects are one log line ------------------------------------------------------


def _wait_for_log(caplog, *texts: str) -> None:
    deadline = time.monotonic() + 5
    while not any(t in r.getMessage() for r in caplog.records for t in texts):
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        time.sleep(0.02)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("tls", [False, True])
def test_client_disconnects_are_logged_as_one_line(tls, caplog, capfd):
    caplog.set_level(logging.INFO, "nova_vsphere_driver.simulator.server")
    with SimulatorServer(Simulator(), tls_enabled=tls, **QUICK) as server:
        # Gone in the middle of a body, and gone before reading a long answer.
        sock = raw_http.connect(server)
        sock.sendall(soap_request(RETRIEVE_CONTENT[:30], length=len(RETRIEVE_CONTENT)))
        time.sleep(0.05)
        _reset(sock)
        # (Through TLS the reset may read as an early end of the body.)
        _wait_for_log(caplog, "connection ended", "body ended")
        assert _serves(server)
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.exc_info]


def test_connections_are_served_concurrently(quick_server):
    """A client stuck in its body does not hold up the others."""
    stuck = raw_http.connect(quick_server)
    stuck.sendall(soap_request(b"<", length=1000))
    try:
        results = []
        threads = [threading.Thread(target=lambda: results.append(_serves(quick_server)))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert results == [True] * 4
    finally:
        stuck.close()
