"""``nova-vsphere-simulator``: run the bundled fake vCenter until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import gc
import ipaddress
import logging
import secrets
import signal
import socket
import sys
import threading

from nova_vsphere_driver.simulator import inventory as inventory_mod
from nova_vsphere_driver.simulator import persistence
from nova_vsphere_driver.simulator.server import SimulatorServer
from nova_vsphere_driver.simulator.service import DEFAULT_USER, Simulator


@contextlib.contextmanager
def _long_lived_objects():
    """The objects made inside (the inventory, a loaded state) are left out of later collections.

    They live as long as the process: without this, each full run of the
    cyclic garbage collector scans all of them again -- several seconds
    while a 10,000-VM inventory loads, and a second now and then while it
    is served. Garbage made meanwhile is collected at the end. What is
    frozen is freed by reference counting only: a reference cycle among
    start-up objects that are deleted later stays until the process ends.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        gc.enable()


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"--listen must be HOST:PORT, got {value!r}")
    try:
        port_no = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--listen port must be a number, got {port!r}") from None
    if not 0 <= port_no <= 65535:
        raise argparse.ArgumentTypeError(f"--listen port out of range: {port_no}")
    return host.strip("[]") or "127.0.0.1", port_no


def is_loopback(host: str) -> bool:
    """Does ``host`` (an address or a name) mean this machine's loopback only?"""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback
                               for info in infos)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nova-vsphere-simulator",
        description="A vCenter simulator speaking the vim25 SOAP API (a test tool: "
        "bind it to loopback).")
    parser.add_argument("--listen", type=_listen, default=("127.0.0.1", 8989),
                        metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:8989;"
                        " port 0 picks a free one); an address other than loopback needs "
                        "--allow-remote")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow --listen on an address other machines can reach")
    parser.add_argument("--user", default=DEFAULT_USER, help="user name it accepts")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--password",
                        help="password it accepts (default: a random one, printed at start); "
                        "visible to every local user in the process list: prefer "
                        "--password-file")
    secret.add_argument("--password-file", metavar="FILE",
                        help="read the password it accepts from the first line of FILE "
                        "(not printed at start)")
    parser.add_argument("--tls", action="store_true",
                        help="serve HTTPS (a CA and certificate are generated unless "
                        "--cert/--key are given)")
    parser.add_argument("--cert", help="PEM certificate for HTTPS")
    parser.add_argument("--key", help="PEM private key for HTTPS")
    parser.add_argument("--inventory", metavar="FILE",
                        help="YAML or JSON inventory (default: 2 clusters of 4 hosts)")
    parser.add_argument("--state", metavar="FILE",
                        help="keep the simulator's state (inventory, VMs, files, tasks) in "
                        "FILE: loaded at start if it exists (then --inventory is not used), "
                        "saved periodically and at exit; large file contents go to "
                        "FILE.blobs/")
    parser.add_argument("--save-interval", type=float, default=30.0, metavar="SECONDS",
                        help="seconds between saves of --state when something changed "
                        "(default 30): a killed simulator loses at most that much")
    parser.add_argument("--session-timeout", type=float, default=1800.0,
                        help="idle seconds before a session expires (default 1800)")
    parser.add_argument("--memory-overcommit", type=float, default=1.0,
                        help="host memory admission ratio (default 1.0: no overcommit)")
    parser.add_argument("--debug", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if bool(args.cert) != bool(args.key):
        print("error: --cert and --key go together", file=sys.stderr)
        return 2
    host, port = args.listen
    if not args.allow_remote and not is_loopback(host):
        print(f"error: --listen {host}:{port} is reachable from other machines; the simulator "
              "is a test tool: add --allow-remote to listen there anyway", file=sys.stderr)
        return 2
    if not args.user:
        print("error: --user must not be empty", file=sys.stderr)
        return 2
    if args.password_file is not None:
        try:
            with open(args.password_file, encoding="utf-8") as secret_file:
                password = secret_file.readline().rstrip("\r\n")
        except (OSError, UnicodeError) as exc:
            print(f"error: --password-file {args.password_file}: "
                  f"{getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return 2
        if not password:
            print(f"error: --password-file {args.password_file}: its first line is empty",
                  file=sys.stderr)
            return 2
    elif args.password is None:
        password = secrets.token_urlsafe(12)
    elif not args.password:
        print("error: --password must not be empty (omit it for a random one)", file=sys.stderr)
        return 2
    else:
        password = args.password
    if args.save_interval <= 0:
        print("error: --save-interval must be a positive number of seconds", file=sys.stderr)
        return 2
    state = persistence.StateFile(args.state) if args.state else None
    with _long_lived_objects():
        try:
            if state is not None and state.exists():
                # The saved state replaces any inventory: start from an empty one.
                data = {"datacenters": []}
            else:
                data = inventory_mod.read_file(args.inventory) if args.inventory else None
            sim = Simulator(data, username=args.user, password=password,
                            session_idle_timeout=args.session_timeout,
                            memory_overcommit=args.memory_overcommit)
        except inventory_mod.InventoryError as exc:
            print(f"error: --inventory: {exc}", file=sys.stderr)
            return 2
        # Before anything is printed: whoever reads the banner may stop us at once.
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        server = SimulatorServer(sim, host=host, port=port, tls_enabled=args.tls or bool(args.cert),
                                 cert_file=args.cert, key_file=args.key, state_file=args.state,
                                 save_interval=args.save_interval)
        try:
            server.start()
        except persistence.StateError as exc:
            print(f"error: --state: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            where = "--state" if exc.filename else f"--listen {host}:{port}"
            print(f"error: {where}: {exc.strerror or exc}" +
                  (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
            return 2
    hosts = len(sim.hosts())
    print(f"vCenter simulator listening on {server.url}", flush=True)
    print(f"  user: {sim.username}", flush=True)
    if args.password_file is not None:
        print(f"  password: from {args.password_file}", flush=True)
    else:
        print(f"  password: {sim.password}" + ("" if args.password else " (generated)"),
              flush=True)
    if server.ca_file:
        print(f"  CA certificate: {server.ca_file}", flush=True)
    print(f"  inventory: {hosts} hosts, {len(sim.vms())} VMs", flush=True)
    if state is not None:
        print(f"  state: {state.path} (saved every {args.save_interval:g} s and at exit)",
              flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
