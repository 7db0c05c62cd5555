"""``nova-vsphere-drs``: look at and balance a cluster with our DRS, from a shell.

``status`` shows each host's load and the cluster's imbalance, ``plan``
lists what a balancing pass (and the evacuation of hosts entering
maintenance) would do and why, in waves, with the pass's expected duration;
``apply`` carries it out as vMotions and shows its progress while they run.
``status`` and ``plan`` print with OpenStack's formatters (``-f table``,
``json``, ``yaml``, ...: the tool is a cliff application, like OpenStack's
own CLIs). Works against any vCenter or the bundled simulator, with
nova-compute's configuration file or with options. Nova is not needed.

A pass on a real cluster can run for an hour: Ctrl-C during ``apply`` stops
it after the running wave of vMotions (every VM is then where a valid
intermediate state of the plan has it; vCenter finishes the vMotions under
way either way), and ``apply`` prints what was done and what was not. A
second Ctrl-C quits at once.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from cliff import app as cliff_app
from cliff import columns, command, commandmanager, show

#: Width of the load bars in ``status``.
BAR = 30
#: Widest a plan's reason column gets in a table before it wraps.
REASON_WIDTH = 60
#: Exit status after Ctrl-C stopped ``apply`` (the shell's for SIGINT).
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: Seconds between refreshes of the live progress line on a terminal.
REFRESH_SECONDS = 1.0


class UsageError(Exception):
    """A bad option or configuration; the message names it. Exit status 2."""

    code = 2


class ClusterError(Exception):
    """vCenter cannot be reached or has no such cluster. Exit status 1."""

    code = 1


# -- settings and the connection ---------------------------------------------------------


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """Options every command takes, before or after the command's name."""
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
    parser.add_argument("--cluster", help="cluster name, or datacenter/cluster as in [vsphere] "
                        "cluster_names (required)")
    parser.add_argument("--policy", help="DRS policy ([vsphere_drs] policy)")
    parser.add_argument("--threshold", type=int, choices=range(1, 6), metavar="1-5",
                        help="migration threshold ([vsphere_drs] migration_threshold)")
    parser.add_argument("--max-moves", type=int, help="moves per pass "
                        "([vsphere_drs] max_moves_per_pass)")
    parser.add_argument("--max-vmotions-per-host", type=int, metavar="N",
                        help="concurrent vMotions per host in a wave "
                        "([vsphere_drs] max_vmotions_per_host)")
    parser.add_argument("--cpu-ratio", type=float, default=4.0,
                        help="vCPU overcommit per host thread (Nova's cpu allocation ratio)")
    parser.add_argument("--memory-ratio", type=float, default=1.0,
                        help="memory overcommit (Nova's ram allocation ratio)")


def settings_from(args: argparse.Namespace) -> dict:
    """Options from the config files (if any), overridden by the command line."""
    from oslo_config import cfg

    from nova_vsphere_driver import conf as vsphere_conf

    if not args.cluster:
        raise UsageError("--cluster is required")
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
        "max_vmotions_per_host": d.max_vmotions_per_host
        if args.max_vmotions_per_host is None else args.max_vmotions_per_host,
        "instance_vm_group": d.instance_vm_group, "wsdl": v.wsdl_location,
    }
    if settings["max_vmotions_per_host"] < 1:
        raise UsageError("--max-vmotions-per-host must be at least 1")
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


class Connection:
    """vCenter, the cluster and our DRS over it, for one command."""

    def __init__(self, args: argparse.Namespace) -> None:
        settings = settings_from(args)
        # Before oslo.vmware is imported: it fixes oslo.service's backend, and
        # this tool wants native threads, not eventlet.
        from oslo_service import backend

        if backend.get_backend_type() is None:
            backend.init_backend(backend.BackendType.THREADING)
        from oslo_vmware import exceptions as vexc

        from nova_vsphere_driver import drs
        from nova_vsphere_driver.drs_runtime.controller import ClusterDrs, DrsSettings
        from nova_vsphere_driver.vsphere import cluster_paths
        from nova_vsphere_driver.vsphere.cluster_state import ClusterStateReader
        from nova_vsphere_driver.vsphere.session import VSphereSession

        try:
            self.session = VSphereSession(
                settings["host"], settings["port"], settings["user"], settings["password"],
                scheme="http" if args.http else "https", ca_file=settings["ca_file"],
                insecure=settings["insecure"], wsdl_location=settings["wsdl"],
                api_retry_count=1)
        except vexc.VMwareDriverException as exc:
            raise ClusterError(f"cannot log in to {settings['host']}:{settings['port']} as "
                               f"{settings['user']}: {exc}") from None
        try:
            self.reader = ClusterStateReader(self.session)
            try:
                # A name, or datacenter/name, as in [vsphere] cluster_names.
                [self.cluster] = cluster_paths.select(self.reader.find_clusters(),
                                                      [args.cluster])
            except cluster_paths.NoSuchCluster as exc:
                raise ClusterError(f"--cluster {args.cluster!r}: no such cluster ({exc})") \
                    from None
            except cluster_paths.ClusterNameError as exc:
                raise ClusterError(f"--cluster {args.cluster!r}: {exc}") from None
            try:
                self.drs = ClusterDrs(self.session, DrsSettings(
                    policy=settings["policy"], migration_threshold=settings["threshold"],
                    max_moves_per_pass=settings["max_moves"],
                    max_vmotions_per_host=settings["max_vmotions_per_host"],
                    reserved_host_cpus=settings["reserved_cpus"],
                    reserved_host_memory_mb=settings["reserved_memory_mb"],
                    instance_vm_group=settings["instance_vm_group"]))
            except ValueError as exc:
                raise UsageError(f"--policy {settings['policy']!r}: {exc}") from None
            self.limits = drs.Limits(memory_ratio=args.memory_ratio, cpu_ratio=args.cpu_ratio)
        except BaseException:
            self.close()
            raise

    def state(self):
        """The cluster as vCenter has it now."""
        return self.reader.cluster_state(self.cluster)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.session.logout()


# -- what the commands show --------------------------------------------------------------


def _bar(fraction: float) -> str:
    filled = max(0, min(BAR, round(fraction * BAR)))
    return "#" * filled + "." * (BAR - filled)


def format_duration(seconds: float) -> str:
    from nova_vsphere_driver.drs_runtime.controller import format_duration as fmt

    return fmt(seconds)


def _table(field_names: Sequence[str], rows: Sequence[Sequence[Any]],
           align: dict[str, str] | None = None,
           max_width: dict[str, int] | None = None) -> str:
    """A nested table inside a field of ``-f table`` (prettytable, as cliff's own)."""
    import prettytable

    table = prettytable.PrettyTable(list(field_names))
    table.align = "l"
    for name, side in (align or {}).items():
        table.align[name] = side
    for name, width in (max_width or {}).items():
        table.max_width[name] = width
    table.add_rows([list(r) for r in rows])
    return table.get_string()


class HostLoads(columns.FormattableColumn):
    """Per-host load: a table with load bars for people, a list of records for machines."""

    def human_readable(self) -> str:
        rows = [(h["host"], h["state"], "-" if h["load"] is None else f"{h['load']:.2f}",
                 _bar(h["load"] or 0.0),
                 f"{h['memory_used_gib']:.0f}/{h['memory_limit_gib']:.0f}",
                 f"{h['vcpus_used']}/{h['vcpu_limit']}", h["vms"]) for h in self._value]
        return _table(("host", "state", "load", "", "memory GiB", "vCPUs", "VMs"), rows,
                      {"load": "r", "memory GiB": "r", "vCPUs": "r", "VMs": "r"})


class PlannedMoves(columns.FormattableColumn):
    """A plan's moves with their wave, for people as a table."""

    def human_readable(self) -> str:
        if not self._value:
            return "(none)"
        rows = [(m["wave"], m["vm"], m["from"], m["to"], f"{m['memory_gib']:.1f}", m["kind"],
                 f"{m['imbalance_after']:.4f}", m["reason"]) for m in self._value]
        return _table(("wave", "vm", "from", "to", "GiB", "kind", "imbalance after", "reason"),
                      rows, {"wave": "r", "GiB": "r", "imbalance after": "r"},
                      {"reason": REASON_WIDTH})


class Lines(columns.FormattableColumn):
    """A list of strings: one per line for people."""

    def human_readable(self) -> str:
        return "\n".join(self._value) if self._value else "(none)"


class Duration(columns.FormattableColumn):
    """Seconds: "12m30s" for people, the number for machines."""

    def human_readable(self) -> str:
        return format_duration(self._value)


def status_fields(snapshot, limits) -> dict[str, Any]:
    from nova_vsphere_driver import drs

    usage = drs.host_usage(snapshot)
    loads = drs.normalized_loads(snapshot)
    hosts = []
    for host in sorted(snapshot.hosts, key=lambda h: h.name):
        u = usage.get(host.id, drs.HostUsage())
        load = loads.get(host.id)
        hosts.append({
            "host": str(host.name), "state": str(host.state.value),
            "load": None if load is None else round(load, 4),
            "memory_used_gib": round(u.memory_committed_mb / 1024, 2),
            "memory_limit_gib": round(host.memory_limit_mb(limits) / 1024, 2),
            "vcpus_used": u.vcpus_committed, "vcpu_limit": int(host.vcpu_limit(limits)),
            "vms": u.vms})
    return {"cluster": str(snapshot.name), "imbalance": round(drs.imbalance(snapshot), 4),
            "hosts": HostLoads(hosts)}


def plan_fields(report, note: str | None = None) -> dict[str, Any]:
    names = report.host_names
    wave_of = {id(m): i for i, wave in enumerate(report.waves, 1) for m in wave}
    # str(): vCenter's names arrive as a str subclass YAML will not write.
    moves = [{"wave": wave_of.get(id(m)), "vm": str(m.vm_name or m.vm),
              "from": str(names.get(m.source, m.source)),
              "to": str(names.get(m.target, m.target)),
              "memory_gib": round(m.memory_mb / 1024, 2), "kind": str(m.kind.value),
              "imbalance_after": round(m.imbalance_after, 4), "reason": str(m.reason)}
             for m in report.moves]
    fields = {
        "cluster": str(report.cluster), "pass": report.kind,
        "imbalance_before": round(report.imbalance_before, 4),
        "imbalance_after": round(report.imbalance_after, 4),
        "moves": len(report.moves), "waves": len(report.waves),
        "max_vmotions_per_host": report.max_vmotions_per_host,
        "memory_gib": round(report.memory_mb / 1024, 2),
        "expected_duration": Duration(round(report.expected_seconds, 1)),
        "plan": PlannedMoves(moves), "unresolved": Lines([str(u) for u in report.unresolved]),
    }
    if note:
        fields["note"] = note
    return fields


def print_report(report, out: TextIO) -> None:
    """What a pass did (or would do), move by move, in plain lines."""
    verb = "did" if report.applied else "would do"
    print(f"{report.kind} on {report.cluster}: imbalance {report.imbalance_before:.4f} -> "
          f"{report.imbalance_after:.4f}; {len(report.moves)} move(s) it {verb} "
          f"({report.summary()}):", file=out)
    failed = {o.move.vm: o.error for o in report.failed}
    not_run = {m.vm for m in report.not_run}
    for move in report.moves:
        status = (f"  FAILED: {failed[move.vm]}" if move.vm in failed
                  else "  NOT RUN" if move.vm in not_run else "")
        print(f"  {report.describe(move)} (imbalance {move.imbalance_before:.4f} -> "
              f"{move.imbalance_after:.4f}){status}", file=out)
    for item in report.unresolved:
        print(f"  unresolved: {item}", file=out)
    if report.applied:
        done = report.done
        print(f"{report.kind} {'stopped' if report.stopped else 'ended'}: {len(done)} of "
              f"{len(report.moves)} move(s) done ({sum(m.memory_mb for m in done) / 1024:.1f}"
              f" GiB moved), {len(report.failed)} failed, {len(report.not_run)} not run, in "
              f"{format_duration(report.elapsed_seconds)} (expected "
              f"{format_duration(report.expected_seconds)})", file=out)


# -- progress while vMotions run ---------------------------------------------------------


class ProgressDisplay:
    """Shows a pass's progress: one line kept up to date on a terminal (refreshed
    every second, so elapsed time and ETA move between events), plain lines
    otherwise (one per wave start and end and per move)."""

    def __init__(self, out: TextIO, live: bool, label: str,
                 clock=time.monotonic) -> None:
        self.out = out
        self.live = live
        self.label = label
        self._clock = clock
        self._last = None
        self._last_at = 0.0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._ticker = None
        if live:
            self._ticker = threading.Thread(target=self._tick, name="drs-progress",
                                            daemon=True)
            self._ticker.start()

    def line(self, p, since: float = 0.0) -> str:
        elapsed = p.elapsed_seconds + since
        eta = ("-" if p.eta_seconds is None
               else format_duration(max(0.0, p.eta_seconds - since)))
        return (f"{self.label}: wave {p.wave} of {p.waves}: {p.done} done, {p.failed} failed, "
                f"{p.remaining} remaining, {p.memory_mb_moved / 1024:.1f} GiB moved, "
                f"elapsed {format_duration(elapsed)}, ETA {eta}")

    def __call__(self, p) -> None:
        with self._lock:
            self._last, self._last_at = p, self._clock()
            if self.live:
                if p.event == "move failed":
                    self._write(f"\r\x1b[K{self.label}: vMotion of "
                                f"{p.move.vm_name or p.move.vm} FAILED: {p.error}\n")
                self._write(f"\r\x1b[K{self.line(p)}")
                return
            if p.event == "move done":
                what = f"moved {p.move.vm_name or p.move.vm} ({p.move.memory_mb / 1024:.1f} GiB)"
            elif p.event == "move failed":
                what = f"FAILED {p.move.vm_name or p.move.vm}: {p.error}"
            else:
                what = p.event
            self._write(f"{self.line(p)} -- {what}\n")

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _tick(self) -> None:
        while not self._closed.wait(REFRESH_SECONDS):
            with self._lock:
                if self._last is not None and self._last.event not in ("wave done", "stopped"):
                    self._write(f"\r\x1b[K{self.line(self._last, self._clock() - self._last_at)}")

    def close(self) -> None:
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self.live and self._last is not None:
                self._write("\n")


@contextlib.contextmanager
def stop_on_interrupt(out: TextIO) -> Iterator[threading.Event]:
    """An event the first Ctrl-C sets (the pass stops after its running wave);
    a second Ctrl-C interrupts at once. Outside the main thread: never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def interrupted(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        out.write("\nCtrl-C: stopping after the running wave of vMotions (Ctrl-C again to "
                  "quit at once; vCenter finishes the vMotions under way)\n")
        out.flush()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


# -- the commands ----------------------------------------------------------------------


class _ClusterCommand:
    """Mixin: the app's connection, opened on first use."""

    app: DrsApp

    def connection(self) -> Connection:
        return self.app.connection()


class Status(_ClusterCommand, show.ShowOne):
    """Each host's load, memory, vCPUs and VMs, and the cluster's imbalance."""

    def take_action(self, parsed_args):
        conn = self.connection()
        fields = status_fields(conn.drs.cluster_snapshot(conn.state()), conn.limits)
        return tuple(fields), tuple(fields.values())


class Plan(_ClusterCommand, show.ShowOne):
    """What the next pass would do and why, in waves, with its expected duration.

    The evacuation of hosts entering maintenance when there are any, else a
    balancing pass. Changes nothing.
    """

    def take_action(self, parsed_args):
        conn = self.connection()
        state = conn.state()
        evacuation = conn.drs.evacuate(state, conn.limits, apply=False)
        if evacuation is not None:
            fields = plan_fields(evacuation, note="balancing is planned once the "
                                 "evacuation is done")
        else:
            fields = plan_fields(conn.drs.balance(state, conn.limits, apply=False))
        return tuple(fields), tuple(fields.values())


class Apply(_ClusterCommand, command.Command):
    """Run the pass as vMotions, with progress; Ctrl-C stops after the running wave.

    Hosts entering maintenance are evacuated first, then the cluster is
    balanced. Prints what was done, failed and not run.
    """

    def take_action(self, parsed_args) -> int:
        conn = self.connection()
        out = self.app.stdout
        live = bool(getattr(out, "isatty", lambda: False)())
        ok = True
        with stop_on_interrupt(out) as stop:
            state = conn.state()
            evacuation = self._run(conn, out, live, stop, "evacuation",
                                   lambda p: conn.drs.evacuate(state, conn.limits, True, p,
                                                               stop))
            if evacuation is not None:
                print_report(evacuation, out)
                ok = not evacuation.failed and not evacuation.unresolved
                if evacuation.stopped or evacuation.failed:
                    return EXIT_INTERRUPTED if evacuation.stopped else 1
                state = conn.state()
            report = self._run(conn, out, live, stop, "balance",
                               lambda p: conn.drs.balance(state, conn.limits, True, p, stop))
        print_report(report, out)
        if report.stopped:
            return EXIT_INTERRUPTED
        return 0 if ok and not report.failed else 1

    @staticmethod
    def _run(conn, out, live, stop, label, run):
        display = ProgressDisplay(out, live, f"{label} on {conn.cluster.name}")
        try:
            return run(display)
        finally:
            display.close()


class DrsApp(cliff_app.App):
    """The ``nova-vsphere-drs`` application: global options, then a command."""

    #: Warnings and errors on stderr; -v adds the DRS module's log (each move's
    #: reason, each vMotion), -vv everything.
    DEFAULT_VERBOSE_LEVEL = 0

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        commands = commandmanager.CommandManager("nova_vsphere_driver.drs_cli")
        commands.add_command("status", Status)
        commands.add_command("plan", Plan)
        commands.add_command("apply", Apply)
        super().__init__(
            description="Per-host load, balancing plans and vMotions for a vSphere cluster, "
            "decided by nova-vsphere-driver's DRS module.", version=_version(),
            command_manager=commands, stdout=stdout, stderr=stderr)
        self._connection: Connection | None = None
        self.exit_code: int | None = None
        self._log_handlers: list[logging.Handler] = []

    def build_option_parser(self, description, version, argparse_kwargs=None):
        parser = super().build_option_parser(description, version, argparse_kwargs)
        add_global_options(parser)
        return parser

    def configure_logging(self) -> None:
        root = logging.getLogger("")
        before, level = set(root.handlers), root.level
        super().configure_logging()
        self._log_handlers = [h for h in root.handlers if h not in before]
        self._root_level = level

    def restore_logging(self) -> None:
        root = logging.getLogger("")
        for handler in self._log_handlers:
            root.removeHandler(handler)
        if self._log_handlers:
            root.setLevel(self._root_level)

    def interact(self) -> None:
        # No interactive shell: every run is one command against vCenter.
        self.stderr.write("error: a command is needed: status, plan or apply "
                          "(see --help)\n")
        self.exit_code = 2

    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = Connection(self.options)
        return self._connection

    def clean_up(self, cmd, result, err) -> None:
        if isinstance(err, (UsageError, ClusterError)):
            self.exit_code = err.code
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def run_subcommand(self, argv: list[str]) -> int:
        result = super().run_subcommand(argv)
        return self.exit_code if result and self.exit_code is not None else result


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("nova-vsphere-driver")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    app = DrsApp(stdout=stdout, stderr=stderr)
    try:
        result = app.run(sys.argv[1:] if argv is None else argv)
    finally:
        app.restore_logging()
    return app.exit_code if app.exit_code is not None and result else result


if __name__ == "__main__":
    sys.exit(main())
