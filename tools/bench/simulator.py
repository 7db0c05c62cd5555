#!/usr/bin/env python3
"""Simulator benchmark: this simulator side by side with VMware's vcsim, in one run.

Both serve the same shape of inventory (8-host clusters, 64 hosts and 10,000
VMs by default) over HTTP on loopback, each in its own process, and are
measured the same way by the same clients:

* start-up: process start until a client is logged in; memory: the server
  process's resident set after start-up and its peak at the end;
* median latency of one RetrievePropertiesEx of three properties over all
  hosts through a ContainerView, through pyVmomi and through oslo.vmware,
  each also as a multiple of the server's cheapest authenticated round
  trip (CurrentTime);
* create + power-on throughput: 200 VMs (2% of the inventory, 20 to 200)
  from 4 threads (one session each, logged in before the clock starts),
  CreateVM_Task then PowerOnVM_Task, waiting for each task as pyVmomi
  clients do; made in 4 batches that alternate between the servers;
* a full read of every VM (name, power state, host) through a
  ContainerView, paged with maxObjects and ContinueRetrievePropertiesEx
  (vcsim ignores maxObjects and answers in one page).

The servers start one after the other and then run side by side, each
figure measured on both back to back, so that a slow spell of the machine
falls on both. The machine is shared and noisy: the ratios ours / vcsim
(times; for the throughput the inverse of the rates) are what to compare
across runs, never the seconds. vcsim is built from Debian's govmomi (tests/interop/golang.py);
where Go is missing its column is skipped with a message.

Usage: python tools/bench/simulator.py [--hosts 64] [--vms 10000] [--repeat 20]
           [--creates 200] [--threads 4] [--page-size 1000] [--rounds 1] [--no-vcsim]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)

from pyVim.connect import Disconnect, SmartConnect  # noqa: E402
from pyVim.task import WaitForTask  # noqa: E402
from pyVmomi import vim, vmodl  # noqa: E402

PC = vmodl.query.PropertyCollector
HOST_PATHS = ["name", "summary.quickStats", "runtime.connectionState"]
VM_PATHS = ["name", "runtime.powerState", "runtime.host"]
HOSTS_PER_CLUSTER = 8


def build_inventory(hosts: int, vms: int) -> dict:
    """This simulator's inventory: 8-host clusters, VMs spread over every host."""
    clusters = []
    for c in range(max(1, hosts // HOSTS_PER_CLUSTER)):
        clusters.append({"name": f"cl{c}", "hosts": [
            {"name": f"esx{c}-{h}", "cores": 16 + 8 * (h % 3), "mhz": 2400,
             "memory_mb": 524288 + 131072 * (h % 2)} for h in range(HOSTS_PER_CLUSTER)]})
    host_names = [(cl["name"], h["name"]) for cl in clusters for h in cl["hosts"]]
    vm_list = []
    for i in range(vms):
        cluster, host = host_names[i % len(host_names)]
        vm_list.append({"name": f"vm-{i:05d}", "cluster": cluster, "host": host,
                        "cpus": 1 + i % 4, "memory_mb": 1024 * (1 + i % 4),
                        "disk_gb": 10, "datastore": "shared", "power": "on" if i % 5 else "off"})
    return {"datacenters": [{"name": "dc1",
                             "datastores": [{"name": "shared", "capacity_gb": 1024 * 1024}],
                             "clusters": clusters, "vms": vm_list}]}


def process_memory_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) MB of process ``pid``."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024.0
    return values["VmRSS"], values["VmHWM"]


class Server:
    """One simulator process under test."""

    name = ""
    port = 0
    pid = 0
    username = ""
    password = ""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def connect(self):
        return SmartConnect(host="127.0.0.1", port=self.port, user=self.username,
                            pwd=self.password, protocol="http")


class OurSimulator(Server):
    """``python -m nova_vsphere_driver.simulator`` with the benchmark's inventory."""

    name = "ours"

    def __init__(self, hosts: int, vms: int) -> None:
        self._inventory = build_inventory(hosts, vms)
        self._proc: subprocess.Popen | None = None
        self._dir = tempfile.mkdtemp(prefix="bench-sim-")

    def start(self) -> None:
        path = os.path.join(self._dir, "inventory.json")
        with open(path, "w") as out:
            json.dump(self._inventory, out)
        self.username, self.password = "bench", "bench-password"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "nova_vsphere_driver.simulator", "--listen", "127.0.0.1:0",
             "--inventory", path, "--user", self.username, "--password", self.password],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.pid = self._proc.pid
        for line in self._proc.stdout:
            if match := re.search(r"listening on http://127\.0\.0\.1:(\d+)/sdk", line):
                self.port = int(match.group(1))
                return
        raise RuntimeError("the simulator exited before serving")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
            self._proc = None


class VcsimServer(Server):
    """VMware's vcsim with the same number of clusters, hosts and VMs."""

    name = "vcsim"

    def __init__(self, binary: str, hosts: int, vms: int) -> None:
        from tests.interop.vcsim import Vcsim, VcsimInventory

        clusters = max(1, hosts // HOSTS_PER_CLUSTER)
        # One resource pool per cluster: its VM count spreads the total.
        self._vcsim = Vcsim(binary, VcsimInventory(
            clusters=clusters, hosts_per_cluster=HOSTS_PER_CLUSTER, standalone_hosts=0,
            vms=max(1, vms // clusters)), tls_enabled=False, startup_timeout=1800)

    def start(self) -> None:
        self._vcsim.start()
        self.pid, self.port = self._vcsim.pid, self._vcsim.port
        self.username, self.password = self._vcsim.username, self._vcsim.password

    def stop(self) -> None:
        self._vcsim.stop()


def build_vcsim() -> tuple[str | None, str]:
    """(vcsim binary, '') or (None, why not)."""
    from tests.interop import golang

    reason = golang.missing()
    if reason is not None:
        return None, reason
    try:
        return golang.build("vcsim", os.path.join(golang.REPO, ".cache", "go-bin")), ""
    except golang.GoBuildError as exc:
        return None, str(exc)


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm up (connection, caches)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def container_spec(view, kind, paths: list[str]) -> PC.FilterSpec:
    return PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[
            PC.TraversalSpec(name="view", type=vim.view.ContainerView, path="view",
                             skip=False)])],
        propSet=[PC.PropertySpec(type=kind, pathSet=paths)])


def read_all(pc, spec, page_size: int) -> tuple[int, int]:
    """(objects, pages) of a paged RetrievePropertiesEx."""
    result = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=page_size))
    count, pages = len(result.objects), 1
    while result.token:
        result = pc.ContinueRetrievePropertiesEx(result.token)
        count, pages = count + len(result.objects), pages + 1
    return count, pages


def bench_pyvmomi_hosts(si, repeat: int, hosts: int) -> tuple[float, float]:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    spec = container_spec(view, vim.HostSystem, HOST_PATHS)
    pc = content.propertyCollector

    def read():
        result = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=1000))
        assert len(result.objects) == hosts, len(result.objects)

    return median_ms(read, repeat), median_ms(si.CurrentTime, repeat)


def bench_oslo_vmware_hosts(server: Server, wsdl: str, repeat: int,
                            hosts: int) -> tuple[float, float]:
    from oslo_vmware import api, vim_util

    session = api.VMwareAPISession("127.0.0.1", server.username, server.password,
                                   api_retry_count=1, task_poll_interval=0.1, port=server.port,
                                   scheme="http", insecure=True, wsdl_loc=wsdl)
    vim_obj = session.vim
    content = vim_obj.service_content
    view = session.invoke_api(vim_obj, "CreateContainerView", content.viewManager,
                              container=content.rootFolder, type=["HostSystem"], recursive=True)
    factory = vim_obj.client.factory
    tspec = factory.create("ns0:TraversalSpec")
    tspec.name, tspec.type, tspec.path, tspec.skip = "view", "ContainerView", "view", False
    ospec = factory.create("ns0:ObjectSpec")
    ospec.obj, ospec.skip, ospec.selectSet = view, True, [tspec]
    pspec = factory.create("ns0:PropertySpec")
    pspec.type, pspec.pathSet, pspec.all = "HostSystem", HOST_PATHS, False
    fspec = factory.create("ns0:PropertyFilterSpec")
    fspec.objectSet, fspec.propSet = [ospec], [pspec]
    options = factory.create("ns0:RetrieveOptions")
    options.maxObjects = 1000

    def read():
        result = session.invoke_api(vim_obj, "RetrievePropertiesEx",
                                    content.propertyCollector, specSet=[fspec], options=options)
        assert len(result.objects) == hosts, len(result.objects)

    instance = vim_util.get_moref("ServiceInstance", "ServiceInstance")
    read_ms = median_ms(read, repeat)
    base_ms = median_ms(lambda: session.invoke_api(vim_obj, "CurrentTime", instance), repeat)
    session.logout()
    return read_ms, base_ms


def create_targets(si) -> tuple[list, object]:
    """(host, its resource pool, its datastore name) for each host, and the VM folder."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    hosts = [(h, h.parent.resourcePool, h.datastore[0].name) for h in view.view]
    view.DestroyView()
    datacenter = next(e for e in content.rootFolder.childEntity
                      if isinstance(e, vim.Datacenter))
    return hosts, datacenter.vmFolder


def bench_create_power_on(server: Server, targets: tuple[list, object], first: int, count: int,
                          threads: int) -> float:
    """Seconds to create and power on VMs ``first`` .. ``first + count - 1``, ``threads``
    sessions at once."""
    hosts, folder = targets
    errors: list[BaseException] = []
    sessions: list = []
    try:
        for _ in range(threads):
            sessions.append(server.connect())
    except BaseException:
        for own in sessions:  # a failed login leaves no session behind
            Disconnect(own)
        raise

    def worker(index: int) -> None:
        own = sessions[index]
        try:
            for n in range(first + index, first + count, threads):
                host, pool, datastore = hosts[n % len(hosts)]
                name = f"bench-{n:04d}"
                spec = vim.vm.ConfigSpec(
                    name=name, numCPUs=1, memoryMB=512, guestId="otherGuest64",
                    files=vim.vm.FileInfo(vmPathName=f"[{datastore}] {name}/{name}.vmx"))
                # Each thread's own session: the objects go through its stub.
                task = vim.Folder(folder._moId, own._stub).CreateVM_Task(
                    spec, vim.ResourcePool(pool._moId, own._stub),
                    vim.HostSystem(host._moId, own._stub))
                WaitForTask(task, si=own)
                WaitForTask(task.info.result.PowerOnVM_Task(), si=own)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - start
    for own in sessions:
        Disconnect(own)
    if errors:
        raise errors[0]
    return elapsed


def bench_vm_read(si, repeat: int, page_size: int, expected: int) -> tuple[float, int]:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine],
                                                   True)
    spec = container_spec(view, vim.VirtualMachine, VM_PATHS)
    pages = []

    def read():
        count, used = read_all(content.propertyCollector, spec, page_size)
        assert count == expected, (count, expected)
        pages.append(used)

    return median_ms(read, repeat), pages[-1]


#: The created VMs are made in this many batches, alternating between the
#: servers (see measure_round).
CREATE_BATCHES = 4


def measure_round(servers: list[Server], args, wsdl: str) -> dict[str, dict[str, float]]:
    """Every figure of every server, in one round.

    The servers start one after the other (each start-up alone on the
    machine), then serve side by side: each figure is measured on every
    server back to back, and the creates alternate between them in
    batches, so that a slow spell of this shared machine falls on all of
    them alike instead of on whichever was measured then.
    """
    figures: dict[str, dict[str, float]] = {server.name: {} for server in servers}
    sessions = {}
    try:
        for server in servers:
            start = time.perf_counter()
            server.start()
            sessions[server.name] = server.connect()
            figures[server.name]["startup_s"] = time.perf_counter() - start
            figures[server.name]["rss_start_mb"] = process_memory_mb(server.pid)[0]
        vms = {}
        for server in servers:
            content = sessions[server.name].RetrieveContent()
            view = content.viewManager.CreateContainerView(content.rootFolder,
                                                           [vim.VirtualMachine], True)
            vms[server.name] = len(view.view)
            view.DestroyView()
        for server in servers:
            mine = figures[server.name]
            mine["host_read_ms"], mine["current_time_ms"] = bench_pyvmomi_hosts(
                sessions[server.name], args.repeat, args.hosts)
        for server in servers:
            mine = figures[server.name]
            mine["oslo_host_read_ms"], mine["oslo_current_time_ms"] = \
                bench_oslo_vmware_hosts(server, wsdl, args.repeat, args.hosts)
        targets = {server.name: create_targets(sessions[server.name]) for server in servers}
        elapsed = dict.fromkeys(figures, 0.0)
        bounds = [args.creates * b // CREATE_BATCHES for b in range(CREATE_BATCHES + 1)]
        for first, end in itertools.pairwise(bounds):
            for server in servers:
                elapsed[server.name] += bench_create_power_on(
                    server, targets[server.name], first, end - first, args.threads)
        for server in servers:
            mine = figures[server.name]
            mine["create_rate"] = args.creates / elapsed[server.name]
            expected = vms[server.name] + args.creates
            mine["vm_read_ms"], mine["vm_read_pages"] = bench_vm_read(
                sessions[server.name], max(1, args.repeat // 4), args.page_size, expected)
            mine["vms_read"] = expected
        for server in servers:
            figures[server.name]["rss_end_mb"], figures[server.name]["rss_peak_mb"] = \
                process_memory_mb(server.pid)
    finally:
        for server in servers:
            if server.name in sessions:
                Disconnect(sessions[server.name])
            server.stop()
    return figures


ROWS = [
    # (key, label, unit, format, lower is better)
    ("startup_s", "start-up (process start to logged-in client)", "s", "{:.2f}", True),
    ("rss_start_mb", "memory after start-up (resident)", "MB", "{:.0f}", True),
    ("rss_peak_mb", "memory peak (resident, end of run)", "MB", "{:.0f}", True),
    ("current_time_ms", "pyVmomi CurrentTime round trip (median)", "ms", "{:.2f}", True),
    ("host_read_ms", "pyVmomi RetrievePropertiesEx of 3 properties x hosts", "ms", "{:.2f}",
     True),
    ("oslo_host_read_ms", "oslo.vmware RetrievePropertiesEx of 3 properties x hosts", "ms",
     "{:.2f}", True),
    ("create_rate", "create + power-on, VMs per second", "VMs/s", "{:.1f}", False),
    ("vm_read_ms", "full read of every VM (name, power state, host), paged", "ms", "{:.0f}",
     True),
]


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def report(rounds: dict[str, list[dict[str, float]]], args) -> None:
    results = {name: medians(figures) for name, figures in rounds.items()}
    ours = results["ours"]
    vcsim = results.get("vcsim")
    print(f"{args.hosts} hosts in clusters of {HOSTS_PER_CLUSTER}, {args.vms} VMs; "
          f"{args.creates} VMs created from {args.threads} threads; full VM read of "
          f"{int(ours['vms_read'])} VMs in pages of {args.page_size} "
          f"({int(ours['vm_read_pages'])} pages here"
          + (f", {int(vcsim['vm_read_pages'])} from vcsim)" if vcsim else ")"))
    if args.rounds > 1:
        print(f"medians of {args.rounds} rounds (each runs both side by side); "
              "ratio range over the rounds in brackets")
    header = f"{'figure':62s} {'ours':>10s}"
    if vcsim:
        header += f" {'vcsim':>10s} {'ours/vcsim':>11s}"
    print(header)

    def ratio(a: dict[str, float], b: dict[str, float], key: str, lower_better: bool) -> float:
        # Times: ours / vcsim. Rates: vcsim's / ours, so that below 1.0 is
        # better for every row.
        return a[key] / b[key] if lower_better else b[key] / a[key]

    for key, label, unit, fmt, lower_better in ROWS:
        line = f"{label + ' (' + unit + ')':62s} {fmt.format(ours[key]):>10s}"
        if vcsim:
            line += f" {fmt.format(vcsim[key]):>10s} " \
                f"{'x' + format(ratio(ours, vcsim, key, lower_better), '.2f'):>11s}"
            if args.rounds > 1:
                each = [ratio(o, v, key, lower_better)
                        for o, v in zip(rounds["ours"], rounds["vcsim"], strict=True)]
                line += f"  [x{min(each):.2f}-x{max(each):.2f}]"
        print(line)
    for name, figures in results.items():
        print(f"{name:6s} pyVmomi RetrievePropertiesEx of {len(HOST_PATHS)} properties x "
              f"{args.hosts} hosts via ContainerView: median {figures['host_read_ms']:.2f} ms "
              f"(x{figures['host_read_ms'] / figures['current_time_ms']:.1f} of CurrentTime "
              f"round trip {figures['current_time_ms']:.2f} ms)")
        print(f"{name:6s} oslo.vmware RetrievePropertiesEx of {len(HOST_PATHS)} properties x "
              f"{args.hosts} hosts: median {figures['oslo_host_read_ms']:.2f} ms "
              f"(x{figures['oslo_host_read_ms'] / figures['oslo_current_time_ms']:.1f} of "
              f"CurrentTime round trip {figures['oslo_current_time_ms']:.2f} ms)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--vms", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--creates", type=int, default=None,
                        help="VMs to create and power on (default: 2%% of --vms, 20 to 200)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure both this many times and report medians (noisy machines)")
    parser.add_argument("--no-vcsim", action="store_true", help="measure this simulator only")
    args = parser.parse_args(argv)
    if args.creates is None:
        args.creates = min(200, max(20, args.vms // 50))

    from nova_vsphere_driver.simulator import wsdl

    wsdl_url = "file://" + wsdl.write_documents(tempfile.mkdtemp(prefix="bench-wsdl-"))
    binary = None
    if args.no_vcsim:
        print("vcsim: not measured (--no-vcsim)")
    else:
        binary, why = build_vcsim()
        if binary is None:
            print(f"vcsim: not measured, cannot build it: {why}")
    rounds: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        servers: list[Server] = [OurSimulator(args.hosts, args.vms)]
        if binary is not None:
            servers.append(VcsimServer(binary, args.hosts, args.vms))
        for name, figures in measure_round(servers, args, wsdl_url).items():
            rounds.setdefault(name, []).append(figures)
    report(rounds, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
