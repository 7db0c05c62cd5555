"""``nova-vsphere-drs``: look at and balance a cluster with our DRS, from a shell.

``status`` shows each host's load and the cluster's imbalance, ``plan``
lists what a balancing pass (and the evacuation of hosts entering
maintenance) would do and why, ``apply`` carries it out as vMotions.
Works against any vCenter or the bundled simulator, with nova-compute's
configuration file or with options. Nova is not needed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import TextIO

#: Width of the load bars in ``status``.
BAR = 30


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nova-vsphere-drs",
        description="Per-host load, balancing plans and vMotions for a vSphere cluster, "
        "decided by nova-vsphere-driver's DRS module.")
    parser.add_argument("--config-file", action="append", default=[], metavar="FILE",
                        help="nova.conf with [vsphere] and [vsphere_drs] sections (repeatable)")
    parser.add_argument("--host", help="vCenter address ([vsphere] host_ip)")
    parser.add_argument("--port", type=int, help="vCenter port ([vsphere] host_port)")
    parser.add_argument("--user", help="vCenter user ([vsphere] host_username)")
    parser.add_argument("--password-env", default="VSPHERE_PASSWORD", metavar="VAR",
                        help="environment variable holding the password when the config "
                        "file has none (default VSPHERE_PASSWORD; else it is prompted for)")
    parser.add_argument("--ca-file", help="CA bundle to verify vCenter ([vsphere] ca_file)")
    parser.add_argument("--insecure", action="store_true", default=None,
                        help="do not verify vCenter's certificate (test setups only)")
    parser.add_argument("--http", action="store_true",
                        help="plain HTTP (the simulator without --tls)")
    parser.add_argument("--cluster", required=True, help="cluster name")
    parser.add_argument("--policy", help="DRS policy ([vsphere_drs] policy)")
    parser.add_argument("--threshold", type=int, choices=range(1, 6), metavar="1-5",
                        help="migration threshold ([vsphere_drs] migration_threshold)")
    parser.add_argument("--max-moves", type=int, help="moves per pass "
                        "([vsphere_drs] max_moves_per_pass)")
    parser.add_argument("--cpu-ratio", type=float, default=4.0,
                        help="vCPU overcommit per host thread (Nova's cpu allocation ratio)")
    parser.add_argument("--memory-ratio", type=float, default=1.0,
                        help="memory overcommit (Nova's ram allocation ratio)")
    parser.add_argument("command", choices=("status", "plan", "apply"))
    return parser


class UsageError(Exception):
    """A bad option or configuration; the message names it."""


def _settings(args: argparse.Namespace) -> dict:
    """Options from the config files (if any), overridden by the command line."""
    from oslo_config import cfg

    from nova_vsphere_driver import conf as vsphere_conf

    conf = cfg.ConfigOpts()
    vsphere_conf.register_opts(conf)
    try:
        conf(args=[], project="nova", default_config_files=args.config_file)
    except cfg.Error as exc:
        raise UsageError(f"--config-file: {exc}") from None
    v, d = conf.vsphere, conf.vsphere_drs
    settings = {
        "host": args.host or v.host_ip, "port": args.port or v.host_port,
        "user": args.user or v.host_username, "password": v.host_password,
        "ca_file": args.ca_file or v.ca_file,
        "insecure": v.insecure if args.insecure is None else args.insecure,
        "policy": args.policy or d.policy,
        "threshold": args.threshold or d.migration_threshold,
        "max_moves": d.max_moves_per_pass if args.max_moves is None else args.max_moves,
        "reserved_cpus": v.reserved_host_cpus, "reserved_memory_mb": v.reserved_host_memory_mb,
        "max_vmotions_per_host": d.max_vmotions_per_host, "wsdl": v.wsdl_location,
    }
    for key, option, conf_name in (("host", "--host", "host_ip"),
                                   ("user", "--user", "host_username")):
        if not settings[key]:
            raise UsageError(f"{option} (or [vsphere] {conf_name} in --config-file) is required")
    if not settings["password"]:
        settings["password"] = os.environ.get(args.password_env) or (
            getpass.getpass(f"Password for {settings['user']}: ") if sys.stdin.isatty()
            else None)
    if not settings["password"]:
        raise UsageError(f"no password: set ${args.password_env} or [vsphere] host_password")
    return settings


def _bar(fraction: float) -> str:
    filled = max(0, min(BAR, round(fraction * BAR)))
    return "#" * filled + "." * (BAR - filled)


def print_status(snapshot, limits, out: TextIO) -> None:
    from nova_vsphere_driver import drs

    usage = drs.host_usage(snapshot)
    loads = drs.normalized_loads(snapshot)
    print(f"cluster {snapshot.name}: imbalance {drs.imbalance(snapshot):.4f} "
          "(standard deviation of normalized host load)", file=out)
    print(f"{'host':<16} {'state':<21} {'load':>5}  {'':<{BAR}}  {'memory GiB':>15}  "
          f"{'vCPUs':>9}  {'VMs':>4}", file=out)
    for host in sorted(snapshot.hosts, key=lambda h: h.name):
        u = usage.get(host.id, drs.HostUsage())
        load = loads.get(host.id)
        mem = f"{u.memory_committed_mb / 1024:.0f}/{host.memory_limit_mb(limits) / 1024:.0f}"
        cpus = f"{u.vcpus_committed}/{host.vcpu_limit(limits):.0f}"
        shown = f"{load:5.2f}" if load is not None else "    -"
        print(f"{host.name:<16} {host.state.value:<21} {shown}  {_bar(load or 0.0)}  "
              f"{mem:>15}  {cpus:>9}  {u.vms:>4}", file=out)


def print_report(report, out: TextIO) -> None:
    verb = "did" if report.applied else "would do"
    print(f"{report.kind} on {report.cluster}: imbalance {report.imbalance_before:.4f} -> "
          f"{report.imbalance_after:.4f}; {len(report.moves)} move(s) it {verb}:", file=out)
    failed = {o.move.vm: o.error for o in report.failed}
    for move in report.moves:
        status = f"  FAILED: {failed[move.vm]}" if move.vm in failed else ""
        print(f"  {report.describe(move)} (imbalance {move.imbalance_before:.4f} -> "
              f"{move.imbalance_after:.4f}){status}", file=out)
    for item in report.unresolved:
        print(f"  unresolved: {item}", file=out)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    settings = _settings(args)
    # Before oslo.vmware is imported: it fixes oslo.service's backend, and this
    # tool wants native threads, not eventlet.
    from oslo_service import backend

    if backend.get_backend_type() is None:
        backend.init_backend(backend.BackendType.THREADING)
    from oslo_vmware import exceptions as vexc

    from nova_vsphere_driver import drs
    from nova_vsphere_driver.drs_runtime.controller import ClusterDrs, DrsSettings
    from nova_vsphere_driver.vsphere.cluster_state import ClusterStateReader
    from nova_vsphere_driver.vsphere.session import VSphereSession

    try:
        session = VSphereSession(
            settings["host"], settings["port"], settings["user"], settings["password"],
            scheme="http" if args.http else "https", ca_file=settings["ca_file"],
            insecure=settings["insecure"], wsdl_location=settings["wsdl"], api_retry_count=1)
    except vexc.VMwareDriverException as exc:
        print(f"error: cannot log in to {settings['host']}:{settings['port']} as "
              f"{settings['user']}: {exc}", file=sys.stderr)
        return 1
    try:
        reader = ClusterStateReader(session)
        clusters = {c.name: c for c in reader.find_clusters()}
        if args.cluster not in clusters:
            print(f"error: --cluster {args.cluster!r}: no such cluster; clusters: "
                  f"{', '.join(sorted(clusters)) or '(none)'}", file=sys.stderr)
            return 1
        try:
            controller = ClusterDrs(session, DrsSettings(
                policy=settings["policy"], migration_threshold=settings["threshold"],
                max_moves_per_pass=settings["max_moves"],
                max_vmotions_per_host=settings["max_vmotions_per_host"],
                reserved_host_cpus=settings["reserved_cpus"],
                reserved_host_memory_mb=settings["reserved_memory_mb"]))
        except ValueError as exc:
            print(f"error: --policy {settings['policy']!r}: {exc}", file=sys.stderr)
            return 2
        limits = drs.Limits(memory_ratio=args.memory_ratio, cpu_ratio=args.cpu_ratio)
        state = reader.cluster_state(clusters[args.cluster])
        if args.command == "status":
            print_status(controller.cluster_snapshot(state), limits, out)
            return 0
        apply = args.command == "apply"
        ok = True
        evacuation = controller.evacuate(state, limits, apply=apply)
        if evacuation is not None:
            print_report(evacuation, out)
            ok = not evacuation.failed and not evacuation.unresolved
            if not apply:
                # Balancing is planned on what the evacuation leaves.
                print("balancing: planned once the evacuation is done", file=out)
                return 0 if ok else 1
            state = reader.cluster_state(clusters[args.cluster])
        report = controller.balance(state, limits, apply=apply)
        print_report(report, out)
        return 0 if ok and not report.failed else 1
    finally:
        session.logout()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
