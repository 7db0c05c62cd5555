"""nova-vsphere-demo: real Nova, the vSphere driver and its DRS, against the simulator.

One command, no configuration.  It starts the bundled vCenter simulator
(default inventory) and Nova in this process (API, conductor, scheduler,
placement, and nova-compute loading ``vsphere.VSphereDriver``), then drives
everything through Nova's REST API and vCenter's API as an operator would:

1. clusters as Nova sees them: placement inventory, usage, max_unit;
2. an ESXi host goes into maintenance while servers boot (some in an
   anti-affinity server group, which becomes a DRS rule in vCenter);
3. where each server runs;
4. the host comes back, and a DRS balancing pass moves load onto it: per-host
   load before and after, and every vMotion with its reason;
5. everything is deleted again, and nothing may be left in vCenter.

Exit status: 0 when every step did what it should, 1 when one did not (the
message says which), 2 when Nova is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator

from nova_vsphere_driver.cmd.chart import (
    PLOT_HINT,
    HostBar,
    Panel,
    bar,
    plotting_available,
    write_load_chart,
)
from nova_vsphere_driver.testing import nova_env

GIB = 1024
#: One host per cluster is patched while the servers boot; when they come
#: back empty, the balancing pass has something to do whichever cluster
#: Nova's scheduler filled.
MAINTENANCE_HOSTS = ("esx-a1", "esx-b1")
BAR_WIDTH = 30


class DemoFailure(Exception):
    """A step did not do what it should; the message says what."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nova-vsphere-demo",
        description="Run real Nova services in-process with the vSphere driver against the "
        "bundled vCenter simulator: boot servers, watch the driver's DRS place, balance "
        "and clean up. Needs Nova: pip install 'nova-vsphere-driver[nova]'.")
    parser.add_argument("--servers", type=int, default=6, metavar="N",
                        help="application servers to boot besides the 3 web servers of the "
                        "anti-affinity group and 2 database servers (default: 6)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also write the per-host load before/after balancing as a PNG")
    parser.add_argument("--verbose", action="store_true",
                        help="show Nova's and the driver's INFO logs on stderr")
    args = parser.parse_args(argv)
    if args.servers < 0 or args.servers > 40:
        parser.error("--servers must be between 0 and 40")
    if args.plot:
        folder = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(folder):
            parser.error(f"--plot {args.plot}: no such directory {folder}")
        if not args.plot.lower().endswith(".png"):
            parser.error(f"--plot {args.plot}: the file name must end in .png")
        if not plotting_available():
            parser.error(f"--plot needs matplotlib: {PLOT_HINT}")
    return args


class Out:
    """Progress lines on stdout, flushed at once."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.started = time.monotonic()
        self.step_no = 0
        self.steps = 8

    def __call__(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def step(self, title: str) -> None:
        self.step_no += 1
        self(f"\n[{self.step_no}/{self.steps}] {title}")


class _Benign(logging.Filter):
    """Nova retries these itself; they say nothing about the demo's outcome."""

    NEEDLES = ("resource provider generation conflict", "placement.concurrent_update")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        return not any(n in message for n in self.NEEDLES)


@contextlib.contextmanager
def quiet(verbose: bool) -> Iterator[None]:
    """Our progress lines and real warnings only (or everything with --verbose)."""
    from nova_vsphere_driver.testing.nova_stack import quiet_logging

    level = logging.INFO if verbose else logging.WARNING
    with warnings.catch_warnings(), quiet_logging(level):
        warnings.simplefilter("ignore")
        if not verbose:
            # Nova's own start-up chatter ("first start on this host") and
            # library noise are not warnings about the demo.
            for name, lvl in (("nova", logging.ERROR), ("stevedore", logging.CRITICAL),
                              ("suds", logging.CRITICAL), ("retrying", logging.ERROR),
                              ("oslo_policy", logging.ERROR), ("placement", logging.ERROR)):
                logging.getLogger(name).setLevel(lvl)
        benign = _Benign()
        for handler in logging.getLogger().handlers:
            handler.addFilter(benign)
        yield


class Demo:
    def __init__(self, args: argparse.Namespace, out: Out) -> None:
        self.args = args
        self.out = out
        self.stack = None
        self.servers: dict[str, dict] = {}  # name -> server
        self.group: dict | None = None
        self.moves = 0

    # -- helpers ------------------------------------------------------------------

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            raise DemoFailure(message)

    def inventory_table(self, cluster: str) -> None:
        stack = self.stack
        uuid = stack.provider_uuid(cluster)
        inventories = stack.inventories(cluster)
        usages = stack.usages(cluster)
        hosts = stack.sim_cluster(cluster).hosts
        usable = [h for h in hosts if h.usable()]
        self.out(f"  {cluster}: Nova node {stack.nodes[cluster]} (provider {uuid[:8]}…), "
                 f"{len(usable)} of {len(hosts)} ESXi hosts usable")
        self.out(f"    {'resource':<10} {'total':>9} {'used':>9} {'free':>9} {'max_unit':>9} "
                 f"{'ratio':>6}")
        for rc in ("VCPU", "MEMORY_MB", "DISK_GB"):
            inv = inventories.get(rc)
            if inv is None:
                continue
            used = usages.get(rc, 0)
            free = int((inv["total"] - inv["reserved"]) * inv["allocation_ratio"]) - used
            self.out(f"    {rc:<10} {inv['total']:>9} {used:>9} {free:>9} {inv['max_unit']:>9} "
                     f"{inv['allocation_ratio']:>6.1f}")

    def loads(self, cluster: str) -> tuple[dict, float]:
        """{host name: (DRS load or None, cpu %, memory %, VMs)} and the imbalance."""
        from nova_vsphere_driver import drs

        snapshot = self.stack.cluster_snapshot(cluster)
        loads = drs.normalized_loads(snapshot)
        usage = snapshot.usage
        rows = {}
        for host in sorted(snapshot.hosts, key=lambda h: h.name):
            u = usage[host.id]
            cpu = u.cpu_demand_mhz / host.cpu_capacity_mhz if host.cpu_capacity_mhz else 0.0
            mem = (u.memory_committed_mb / host.memory_capacity_mb
                   if host.memory_capacity_mb else 0.0)
            rows[host.name] = (loads.get(host.id) if host.usable else None, cpu, mem, u.vms,
                               host.state.value)
        return rows, drs.imbalance(snapshot)

    def print_loads(self, rows: dict, label: str) -> None:
        self.out(f"    {label}")
        for name, (load, cpu, mem, vms, state) in rows.items():
            if load is None:
                self.out(f"      {name:<8} {'·' * 3:<{BAR_WIDTH}}  not usable ({state})")
                continue
            self.out(f"      {name:<8} {bar(load, BAR_WIDTH)} {load:5.2f}  cpu {cpu:4.0%}  "
                     f"mem {mem:4.0%}  {vms} VM{'s' if vms != 1 else ''}")

    def server_name(self, instance_uuid: str | None) -> str:
        for name, server in self.servers.items():
            if server["id"] == instance_uuid:
                return name
        return instance_uuid or "?"

    def vm_server_name(self, moid: str) -> str:
        vm = self.stack.sim_vm_by_moid(moid)
        return self.server_name(vm.config.instanceUuid) if vm is not None else moid

    def wait_servers(self, names: list[str], timeout: float = 180.0) -> None:
        """Print each server as it becomes ACTIVE; DemoFailure on ERROR or timeout."""
        pending = set(names)
        deadline = time.monotonic() + timeout
        while pending:
            for server in self.stack.api.get_servers():
                name = server["name"]
                if name not in pending or server["status"] not in ("ACTIVE", "ERROR"):
                    continue
                if server["OS-EXT-STS:task_state"] is not None:
                    continue
                pending.discard(name)
                self.servers[name] = server
                if server["status"] == "ERROR":
                    fault = (server.get("fault") or {}).get("message", "no fault recorded")
                    raise DemoFailure(f"server {name} failed to boot: {fault}")
                vm = self.stack.sim_vm(server["id"])
                self.check(vm is not None and vm.powered_on,
                           f"server {name} is ACTIVE but has no running VM in vCenter")
                self.out(f"    {name:<8} ACTIVE on {self.stack.cluster_of(server)} / "
                         f"{vm.host.name}")
            if pending and time.monotonic() > deadline:
                raise DemoFailure(f"servers {', '.join(sorted(pending))} not ACTIVE after "
                                  f"{timeout:.0f} s")
            if pending:
                time.sleep(0.1)

    # -- the steps ------------------------------------------------------------------

    def start(self) -> None:
        from nova_vsphere_driver.testing.nova_stack import NovaStack

        self.out.step("Starting the vCenter simulator and Nova (API, conductor, scheduler, "
                      "placement, nova-compute with compute_driver = vsphere.VSphereDriver)")
        began = time.monotonic()
        # Balancing runs when the demo asks (step 6), not on a timer, so the
        # "before" picture is the one the pass starts from.
        stack = NovaStack(name="nova-vsphere-demo",
                          drs={"poll_interval": 600, "balance_interval": 0})
        stack.setUp()
        self.stack = stack
        sim = stack.sim
        self.out(f"  vCenter simulator: https://127.0.0.1:{stack.sim_server.port}/sdk "
                 f"(user {sim.username})")
        for cluster in stack.clusters:
            hosts = stack.sim_cluster(cluster).hosts
            self.out(f"  {cluster}: {', '.join(h.name for h in hosts)}")
        self.out(f"  Nova up in {time.monotonic() - began:.1f} s: nova-compute "
                 f"{stack.compute_host!r} reports {len(stack.nodes)} compute nodes, one per "
                 "cluster")

    def show_clusters(self, title: str) -> None:
        self.out.step(title)
        for cluster in self.stack.clusters:
            self.inventory_table(cluster)

    def maintenance_on(self) -> None:
        stack = self.stack
        self.out.step(f"An operator patches {' and '.join(MAINTENANCE_HOSTS)}: they enter "
                      "maintenance mode in vCenter while the servers boot")
        before = {c: stack.inventories(c)["MEMORY_MB"]["total"] for c in stack.clusters}
        for host in MAINTENANCE_HOSTS:
            stack.wait_task(stack.run_host_task(host, "EnterMaintenanceMode_Task", timeout=0))
        stack.run_periodics()
        for cluster in stack.clusters:
            after = stack.inventories(cluster)["MEMORY_MB"]["total"]
            self.out(f"  {cluster} MEMORY_MB total in placement {before[cluster]} -> {after}")
            hosts = [h for h in stack.sim_cluster(cluster).hosts if h.name in MAINTENANCE_HOSTS]
            self.check(after == before[cluster] - sum(h.memory_mb for h in hosts),
                       f"{cluster}: placement inventory did not follow the hosts in "
                       "maintenance")

    def boot(self) -> None:
        stack = self.stack
        self.out.step("Booting servers through Nova's API")
        web = stack.create_flavor("web", 4, 16 * GIB)
        app = stack.create_flavor("app", 8, 32 * GIB)
        db = stack.create_flavor("db", 16, 128 * GIB)
        hosts_a = len(stack.sim_cluster("cluster-a").hosts)
        # max_server_per_host: Nova counts members per nova-compute service,
        # which runs whole clusters here; the driver keeps them on separate
        # ESXi hosts with a DRS anti-affinity rule.
        self.group = stack.api.post_server_groups({
            "name": "web", "policy": "anti-affinity",
            "rules": {"max_server_per_host": hosts_a}})
        self.out("  server group 'web' (anti-affinity), 3 servers of flavor web (4 vCPU, "
                 "16 GiB) in cluster-a")
        web_names = [f"web-{i}" for i in range(1, 4)]
        for name in web_names:
            stack.boot(name, web, wait=False, group=self.group["id"], cluster="cluster-a")
            self.wait_servers([name])
        names = []
        if self.args.servers:
            self.out(f"  {self.args.servers} x app (8 vCPU, 32 GiB) and 2 x db (16 vCPU, "
                     "128 GiB), two multi-create requests; Nova's scheduler picks the clusters")
            stack.api.post_server(stack.server_body("app", app, min_count=self.args.servers))
            names += [f"app-{i}" for i in range(1, self.args.servers + 1)]
        else:
            self.out("  2 x db (16 vCPU, 128 GiB), one multi-create request")
        stack.api.post_server(stack.server_body("db", db, min_count=2))
        names += ["db-1", "db-2"]
        if self.args.servers == 1:
            names[names.index("app-1")] = "app"
        self.wait_servers(names)
        for host in MAINTENANCE_HOSTS:
            stranded = stack.sim_host(host).vms
            self.check(not stranded, f"{len(stranded)} VM(s) landed on {host}, which is in "
                       "maintenance")

    def where(self) -> None:
        from pyVmomi import vim

        stack = self.stack
        self.out.step("Where the servers run (Nova's view and vCenter's)")
        self.out(f"  {'server':<8} {'status':<7} {'cluster':<10} {'ESXi host':<10} "
                 f"{'vCPUs':>5} {'GiB':>4}  group")
        group_members = set(stack.api.get_server_group(self.group["id"])["members"])
        for name in sorted(self.servers, key=lambda n: (n.split("-")[0], len(n), n)):
            server = stack.api.get_server(self.servers[name]["id"])
            vm = stack.sim_vm(server["id"])
            member = "web (anti-affinity)" if server["id"] in group_members else ""
            self.out(f"  {name:<8} {server['status']:<7} {stack.cluster_of(server):<10} "
                     f"{vm.host.name:<10} {vm.num_cpus:>5} {vm.memory_mb // GIB:>4}  {member}")
            self.check(server["status"] == "ACTIVE", f"server {name} is {server['status']}")
        web_hosts = [stack.sim_vm(self.servers[f"web-{i}"]["id"]).host.name
                     for i in range(1, 4)]
        self.check(len(set(web_hosts)) == 3, f"anti-affinity broken: web servers share "
                   f"hosts {web_hosts}")
        rules = [r for r in stack.sim_cluster("cluster-a").rules
                 if self.group["id"] in (r.name or "")]
        self.check(len(rules) == 1, f"expected one DRS rule for server group web in "
                   f"cluster-a, found {len(rules)}")
        rule = rules[0]
        members = sorted(self.server_name(stack.sim_vm_by_moid(r._moId).config.instanceUuid)
                         for r in rule.vm or [])
        kind = {vim.cluster.AntiAffinityRuleSpec: "anti-affinity",
                vim.cluster.AffinityRuleSpec: "affinity"}.get(type(rule), type(rule).__name__)
        self.out(f"  vCenter DRS rule '{rule.name}' in cluster-a: {kind}, "
                 f"{'must' if rule.mandatory else 'should'}, members {', '.join(members)}")
        self.check(kind == "anti-affinity" and bool(rule.mandatory),
                   f"DRS rule {rule.name} is {kind}, mandatory={rule.mandatory}; expected a "
                   "mandatory anti-affinity rule")
        self.check(members == ["web-1", "web-2", "web-3"],
                   f"DRS rule members {members} are not the web servers")
        self.out(f"  web servers on {', '.join(web_hosts)}: one per ESXi host")

    def balance(self) -> list:
        stack = self.stack
        self.out.step(f"{' and '.join(MAINTENANCE_HOSTS)} are back: they leave maintenance, "
                      "and the driver's DRS runs a balancing pass on each cluster")
        for host in MAINTENANCE_HOSTS:
            stack.wait_task(stack.run_host_task(host, "ExitMaintenanceMode_Task", timeout=0))
        stack.run_periodics()
        panels = []
        for cluster in stack.clusters:
            node = stack.nodes[cluster]
            before, imb_before = self.loads(cluster)
            host_ids = {h.id: h.name for h in stack.cluster_snapshot(cluster).hosts}
            report = stack.driver.balance_cluster(node, dry_run=False)
            after, imb_after = self.loads(cluster)
            self.out(f"\n  {cluster}: imbalance {report.imbalance_before:.3f} -> "
                     f"{report.imbalance_after:.3f} planned, {len(report.moves)} vMotion(s)")
            self.print_loads(before, "load before  (DRS load = demand / capacity, CPU and "
                             "memory weighted by cluster use)")
            for i, move in enumerate(report.moves, 1):
                name = self.vm_server_name(move.vm)
                self.out(f"    move {i}: {name} ({move.memory_mb // GIB} GiB) "
                         f"{host_ids.get(move.source, move.source)} -> "
                         f"{host_ids.get(move.target, move.target)} [{move.kind.value}]")
                self.out(f"      why: {move.reason}")
            if not report.moves:
                self.out("    no move planned: the imbalance is within the migration threshold's "
                         "tolerance, or no vMotion is worth its cost")
            for problem in report.unresolved:
                self.out(f"    unresolved: {problem}")
            self.print_loads(after, "load after")
            failed = [o for o in report.outcomes if not o.ok]
            self.check(not failed, f"{len(failed)} vMotion(s) failed in {cluster}: "
                       + "; ".join(f"{o.move.vm_name or o.move.vm}: {o.error}" for o in failed))
            self.check(imb_after <= imb_before + 1e-9,
                       f"{cluster}: imbalance rose from {imb_before:.4f} to {imb_after:.4f}")
            for move in report.moves:
                vm = stack.sim_vm_by_moid(move.vm)
                self.check(vm is not None and vm.host.moid == move.target and vm.powered_on,
                           f"{self.vm_server_name(move.vm)} is not running on "
                           f"{host_ids.get(move.target)} after its vMotion")
            self.moves += len(report.moves)
            panels.append(Panel(
                f"{cluster}  imbalance {imb_before:.3f} -> {imb_after:.3f}  "
                f"({len(report.moves)} vMotion(s))",
                tuple(HostBar(name, before[name][0], after[name][0]) for name in before)))
        for name, server in self.servers.items():
            shown = stack.api.get_server(server["id"])
            self.check(shown["status"] == "ACTIVE", f"server {name} is {shown['status']} "
                       "after balancing")
        self.out(f"\n  {self.moves} vMotion(s); every server still ACTIVE on its cluster")
        return panels

    def cleanup(self) -> None:
        stack = self.stack
        self.out.step("Deleting every server; nothing may be left in vCenter")
        stack.delete_all()
        left = stack.sim_vms()
        self.check(not left, f"{len(left)} VM(s) left in vCenter after deleting all servers")
        files = [p for s in self.servers.values() for p in stack.sim_files(s["id"])]
        self.check(not files, f"files left on datastores: {', '.join(files[:5])}")
        rules = [r.name for c in stack.clusters for r in stack.sim_cluster(c).rules]
        self.check(not rules, f"DRS rules left in vCenter: {', '.join(rules)}")
        self.out(f"  {len(self.servers)} servers deleted: no VM, no VM file and no DRS rule "
                 "left")

    def run(self) -> int:
        try:
            self.start()
            self.show_clusters("Clusters as Nova sees them (placement inventory)")
            self.maintenance_on()
            self.boot()
            self.where()
            self.show_clusters("Clusters as Nova sees them now (usage and max_unit)")
            panels = self.balance()
            if self.args.plot:
                write_load_chart(self.args.plot, panels,
                                 "DRS balancing pass: per-host load before and after")
                self.out(f"  wrote {self.args.plot}")
            self.cleanup()
        finally:
            if self.stack is not None:
                self.stack.cleanUp()
        self.out(f"\nDemo complete in {time.monotonic() - self.out.started:.0f} s: "
                 f"{len(self.servers)} servers booted, {self.moves} DRS vMotion(s), all "
                 "cleaned up.")
        return 0


def main(argv: list[str] | None = None, stream=None) -> int:
    args = parse_args(argv)
    out = Out(stream)
    missing = nova_env.missing_modules()
    if missing:
        out(f"nova-vsphere-demo needs Nova and the modules its test fixtures use; missing: "
            f"{', '.join(missing)}.\nInstall them with:  {nova_env.INSTALL_HINT}")
        return 2
    nova_env.prepare()
    mode = "eventlet" if nova_env.eventlet_mode() else "native threads"
    out(f"nova-vsphere-demo: Nova in-process ({mode}) + the vSphere driver + the bundled "
        "vCenter simulator")
    try:
        with quiet(args.verbose):
            return Demo(args, out).run()
    except DemoFailure as exc:
        out(f"\nFAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        out("\ninterrupted")
        return 130
    except Exception as exc:  # anything else: say what, where
        import traceback

        where = traceback.extract_tb(exc.__traceback__)[-1]
        out(f"\nFAILED: {type(exc).__name__}: {exc}\n  (at {where.filename}:{where.lineno}; "
            "run with --verbose for Nova's logs)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
