#!/usr/bin/env python3
"""Scale benchmark: one cluster of 64 hosts and 10,000 VMs, read through the cluster cache.

Prints absolute figures and ratios to baselines measured in the same run
(the machine is shared and noisy: compare ratios across runs, not seconds).
The simulator runs in its own process, as vCenter would:

* the driver's first read of the cluster (the cache's first update set,
  decoded by pyVmomi) against pyVmomi's raw RetrievePropertiesEx of the
  same properties (target: at most 1.5x), and a full read without the cache;
* a fresh resource update -- ``get_available_resource`` then
  ``update_provider_tree`` with ``cluster_read_max_age = 0``, as Nova's
  periodic task and every claim make it -- when nothing changed, after 100
  and after 1,000 changes: latency, SOAP requests, and the latency as a
  share of the raw read (targets: at most 3 requests and under 5% when
  nothing changed, under 10% after 100 changes);
* the cache's memory per VM (target: under 2 KiB);
* 50 concurrent spawns through the driver into that cluster: wall time, and
  time the spawns spent waiting for cluster reads;
* with ``--nova`` (``tox -e bench`` runs it): 20 boots through real Nova
  (one multi-create) into a 16-host cluster holding 3,000 other VMs against
  the same into an empty 16-host cluster, in one stack (target: at most
  1.5x); ``--nova-full-reads`` adds the same with the cache off.

Usage: python tools/bench/scale.py [--hosts 64] [--vms 10000] [--spawns 50] [--nova]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import dataclasses
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)

# Nova decides its concurrency mode before oslo.vmware is imported.
from nova_vsphere_driver.testing import nova_env  # noqa: E402

nova_env.prepare()

import nova.conf  # noqa: E402
from pyVim.connect import Disconnect, SmartConnect  # noqa: E402
from pyVim.task import WaitForTask  # noqa: E402
from pyVmomi import vim, vmodl  # noqa: E402

from nova_vsphere_driver.vsphere import cluster_state  # noqa: E402
from nova_vsphere_driver.vsphere.cluster_cache import ClusterCache  # noqa: E402
from nova_vsphere_driver.vsphere.cluster_state import ClusterStateReader  # noqa: E402
from nova_vsphere_driver.vsphere.session import VSphereSession  # noqa: E402

CONF = nova.conf.CONF
PC = vmodl.query.PropertyCollector
USER, PASSWORD = "bench", "bench-password"
CLUSTER = "big"


def build_inventory(hosts: int, vms: int, clusters: dict[str, tuple[int, int]] | None = None,
                    ) -> dict:
    """One datacenter; ``clusters``: name -> (hosts, VMs), default one cluster ``big``."""
    clusters = clusters or {CLUSTER: (hosts, vms)}
    cluster_list, vm_list = [], []
    for name, (n_hosts, n_vms) in clusters.items():
        host_names = [f"{name}-esx{h:02d}" for h in range(n_hosts)]
        cluster_list.append({"name": name, "hosts": [
            {"name": h, "cores": 32, "mhz": 2400, "memory_mb": 1024 * 1024}
            for h in host_names]})
        for i in range(n_vms):
            vm_list.append({"name": f"{name}-vm{i:05d}", "cluster": name,
                            "host": host_names[i % n_hosts], "cpus": 1 + i % 4,
                            "memory_mb": 1024 * (1 + i % 4), "datastore": "shared",
                            "power": "on" if i % 5 else "off"})
    return {"datacenters": [{
        "name": "dc1", "datastores": [{"name": "shared", "capacity_gb": 1024 * 1024}],
        "networks": ["VM Network"], "clusters": cluster_list, "vms": vm_list}]}


class SimulatorProcess:
    """``python -m nova_vsphere_driver.simulator`` with the benchmark's inventory."""

    def __init__(self, inventory: dict) -> None:
        self._dir = tempfile.mkdtemp(prefix="bench-scale-")
        self._path = os.path.join(self._dir, "inventory.json")
        with open(self._path, "w") as out:
            json.dump(inventory, out)
        self.port = 0
        self.ca_file = ""
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> SimulatorProcess:
        # HTTPS, as the driver speaks to vCenter.
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "nova_vsphere_driver.simulator", "--listen", "127.0.0.1:0",
             "--tls", "--inventory", self._path, "--user", USER, "--password", PASSWORD],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self._proc.stdout:
            if match := re.search(r"listening on https://127\.0\.0\.1:(\d+)/sdk", line):
                self.port = int(match.group(1))
            elif match := re.search(r"CA certificate: (\S+)", line):
                self.ca_file = match.group(1)
            if self.port and self.ca_file:
                return self
        raise RuntimeError("the simulator exited before serving")

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=60)

    def requests(self) -> dict[str, int]:
        """SOAP requests served so far, by method (the simulator's control endpoint)."""
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.port}/simulator/control",
            data=json.dumps({"action": "stats"}).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": "Basic " +
                     base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()})
        with urllib.request.urlopen(request, timeout=60, context=self.tls()) as reply:
            return json.load(reply)["result"]["by_method"]

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def connect(self):
        return SmartConnect(host="127.0.0.1", port=self.port, user=USER, pwd=PASSWORD,
                            sslContext=self.tls())


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {m: n - before.get(m, 0) for m, n in after.items() if n != before.get(m, 0)}


def session_for(sim: SimulatorProcess) -> VSphereSession:
    return VSphereSession("127.0.0.1", sim.port, USER, PASSWORD, ca_file=sim.ca_file,
                          api_retry_count=2, task_poll_interval=0.05)


def find_cluster(session: VSphereSession, name: str):
    return next(c for c in ClusterStateReader(session).find_clusters() if c.name == name)


# -- reads -------------------------------------------------------------------------------------


def raw_read(si, cluster_moid: str, page: int) -> float:
    """pyVmomi's RetrievePropertiesEx of the cluster read's properties, paged; seconds."""
    content = si.RetrieveContent()
    cluster = vim.ClusterComputeResource(cluster_moid, si._stub)
    view = content.viewManager.CreateContainerView(cluster, [vim.HostSystem,
                                                             vim.VirtualMachine], True)

    def follow(name, kind, path, then=()):
        return PC.TraversalSpec(name=name, type=kind, path=path, skip=False,
                                selectSet=list(then))

    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[follow(
            "view", vim.view.ContainerView, "view",
            [follow("hostDs", vim.HostSystem, "datastore"),
             follow("hostNet", vim.HostSystem, "network"),
             follow("hostTask", vim.HostSystem, "recentTask")])]),
            PC.ObjectSpec(obj=cluster, skip=False)],
        propSet=[PC.PropertySpec(type=kind, pathSet=paths) for kind, paths in (
            (vim.ClusterComputeResource, cluster_state.CLUSTER_PROPS),
            (vim.HostSystem, cluster_state.HOST_PROPS),
            (vim.VirtualMachine, cluster_state.VM_PROPS),
            (vim.Datastore, cluster_state.DS_PROPS),
            (vim.dvs.DistributedVirtualPortgroup, cluster_state.PG_PROPS),
            (vim.Network, cluster_state.NET_PROPS), (vim.Task, cluster_state.TASK_PROPS))])
    pc = content.propertyCollector
    started = time.perf_counter()
    objects = []
    result = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=page))
    while result is not None:
        objects.extend(result.objects)
        if not result.token:
            break
        result = pc.ContinueRetrievePropertiesEx(result.token)
    elapsed = time.perf_counter() - started
    view.DestroyView()
    return elapsed


def first_read(sim: SimulatorProcess, page: int) -> tuple[float, float, int, object]:
    """(seconds of the cache's first read, seconds of a full read, VMs, cache)."""
    session = session_for(sim)
    ref = find_cluster(session, CLUSTER)
    cache = ClusterCache(ClusterStateReader(session, page_size=page))
    started = time.perf_counter()
    state = cache.current(ref)
    cached_s = time.perf_counter() - started
    reader = ClusterStateReader(session, page_size=page)
    started = time.perf_counter()
    full = reader.cluster_state(ref)  # (its view made first, as the cache's filter)
    full_s = time.perf_counter() - started
    assert full == cache.current(ref), "the cache and a full read differ"
    return cached_s, full_s, len(state.vms), cache


def deep_size(root) -> int:
    """Bytes held by ``root`` and everything it references (each object once)."""
    seen: set[int] = set()
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (bool, type)):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif dataclasses.is_dataclass(obj):
            stack.extend(getattr(obj, f.name) for f in dataclasses.fields(obj))
        elif hasattr(obj, "__dict__") and not callable(obj):
            stack.append(vars(obj))
    return total


# -- resource updates ---------------------------------------------------------------------------


def start_driver(sim: SimulatorProcess, cache: bool, max_age: float = 0.0):
    from nova_vsphere_driver import conf as vsphere_conf
    from nova_vsphere_driver import driver as vsphere_driver

    vsphere_conf.register_opts(CONF)
    for key, value in dict(host_ip="127.0.0.1", host_port=sim.port, host_username=USER,
                           host_password=PASSWORD, cluster_names=[CLUSTER],
                           task_poll_interval=0.05, api_retry_count=2, cluster_cache=cache,
                           cluster_read_max_age=max_age, ca_file=sim.ca_file).items():
        CONF.set_override(key, value, group="vsphere")
    CONF.set_override("poll_interval", 3600, group="vsphere_drs")
    CONF.set_override("balance_interval", 0, group="vsphere_drs")
    CONF.set_override("disable_group_policy_check_upcall", True, group="workarounds")
    drv = vsphere_driver.VSphereDriver(None)
    drv.init_host("bench-compute")
    return drv


def resource_update(drv, node: str) -> float:
    from nova.compute import provider_tree

    tree = provider_tree.ProviderTree()
    tree.new_root(node, "rp-bench")
    started = time.perf_counter()
    drv.get_available_resource(node)
    drv.update_provider_tree(tree, node)
    return time.perf_counter() - started


def make_changes(sim: SimulatorProcess, vm_moids: list[str], count: int,
                 threads: int = 16) -> None:
    """``count`` VMs powered off or on (each one change), from ``threads`` sessions."""
    targets = vm_moids[:count]

    def worker(part: list[str]) -> None:
        si = sim.connect()
        try:
            for moid in part:
                vm = vim.VirtualMachine(moid, si._stub)
                on = vm.runtime.powerState == "poweredOn"
                WaitForTask(vm.PowerOffVM_Task() if on else vm.PowerOnVM_Task(), si=si)
        finally:
            Disconnect(si)

    parts = [targets[i::threads] for i in range(threads)]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, [p for p in parts if p]))


# -- concurrent spawns ---------------------------------------------------------------------------


def concurrent_spawns(drv, node: str, count: int) -> tuple[float, float, float]:
    """(wall seconds, seconds waiting for cluster reads summed over spawns, longest wait)."""
    from nova import context as nova_context
    from nova import objects
    from nova.tests import fixtures as nova_fixtures

    objects.register_all()
    database = nova_fixtures.Database(database="api")
    database.setUp()
    waits: list[float] = []
    lock = threading.Lock()
    states = drv.services.states
    read, read_cluster = states.read, states.read_cluster

    def timed(fn):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with lock:
                    waits.append(time.perf_counter() - started)
        return wrapper

    states.read, states.read_cluster = timed(read), timed(read_cluster)
    ctx = nova_context.get_admin_context()

    def spawn(index: int) -> None:
        flavor = objects.Flavor(name="bench", vcpus=1, memory_mb=1024, root_gb=0,
                                ephemeral_gb=0, swap=0, flavorid="1", extra_specs={})
        instance = objects.Instance(
            uuid=f"00000000-0000-4000-8000-{index:012d}", node=node, host="bench-compute",
            display_name=f"spawn-{index}", project_id="p", user_id="u", image_ref="",
            flavor=flavor, vcpus=1, memory_mb=1024, root_gb=0)
        drv.spawn(ctx, instance, None, [], None, {}, network_info=[])

    try:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            list(pool.map(spawn, range(count)))
        wall = time.perf_counter() - started
    finally:
        states.read, states.read_cluster = read, read_cluster
        database.cleanUp()
    return wall, sum(waits), max(waits, default=0.0)


# -- Nova in the loop ---------------------------------------------------------------------------


def nova_boots(boots: int, loaded_vms: int, cache: bool) -> dict[str, tuple[float, int]]:
    """{cluster: (seconds, property reads)} of ``boots`` servers (one multi-create each)."""
    from nova_vsphere_driver.testing.nova_stack import NovaStack, quiet_logging

    inventory = build_inventory(0, 0, {"empty16": (16, 0), "loaded16": (16, loaded_vms)})
    inventory["datacenters"][0]["distributed_switches"] = [
        {"name": "dvs-01", "portgroups": [{"name": "br-int", "vlan": 0}]}]
    results = {}
    with quiet_logging(), NovaStack(clusters=("empty16", "loaded16"), inventory=inventory,
                                    vsphere={"cluster_cache": cache}) as stack:
        flavor = stack.create_flavor("bench", 1, 512, root_gb=1)
        for cluster in ("empty16", "loaded16"):
            counts = stack.sim.request_counts
            with stack.sim.registry.lock:
                before = dict(counts)
            started = time.perf_counter()
            servers = stack.boot_many(f"boot-{cluster}", flavor, boots, cluster=cluster,
                                      timeout=3600)
            elapsed = time.perf_counter() - started
            if any(s["status"] != "ACTIVE" for s in servers):
                raise RuntimeError(f"boots into {cluster} failed: "
                                   f"{[s['status'] for s in servers]}")
            with stack.sim.registry.lock:
                reads = sum(counts.get(m, 0) - before.get(m, 0)
                            for m in ("RetrievePropertiesEx", "ContinueRetrievePropertiesEx",
                                      "WaitForUpdatesEx"))
            results[cluster] = (elapsed, reads)
    return results


# -- the run ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--vms", type=int, default=10000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--spawns", type=int, default=50)
    parser.add_argument("--nova", action="store_true",
                        help="also boot through real Nova into a loaded and an empty cluster")
    parser.add_argument("--nova-boots", type=int, default=20)
    parser.add_argument("--nova-vms", type=int, default=3000)
    parser.add_argument("--nova-full-reads", action="store_true",
                        help="with --nova: the same boots with the cluster cache off (slow)")
    args = parser.parse_args(argv)

    print(f"One cluster of {args.hosts} hosts and {args.vms} VMs; simulator in its own "
          f"process; pages of {args.page_size}.")
    with SimulatorProcess(build_inventory(args.hosts, args.vms)) as sim:
        si = sim.connect()
        cluster_moid = next(c._moId for c in si.content.viewManager.CreateContainerView(
            si.content.rootFolder, [vim.ClusterComputeResource], True).view)
        raws, firsts, fulls = [], [], []
        cache = None
        for _ in range(2):
            raws.append(raw_read(si, cluster_moid, args.page_size))
            cached_s, full_s, vms, cache = first_read(sim, args.page_size)
            firsts.append(cached_s)
            fulls.append(full_s)
        raw, first, full = min(raws), min(firsts), min(fulls)
        print(f"raw pyVmomi read of the cluster read's properties: {raw:.2f} s (baseline)")
        print(f"first read through the cluster cache: {first:.2f} s = x{first / raw:.2f} "
              "of the raw read (target <= 1.5)")
        print(f"full read without the cache (pyVmomi, ClusterContents): {full:.2f} s = "
              f"x{full / raw:.2f}")
        memory = deep_size(cache._clusters)  # noqa: SLF001 (what the cache holds)
        print(f"cache memory: {memory / 1024 / 1024:.1f} MiB for {vms} VMs and "
              f"{args.hosts} hosts = {memory / vms:.0f} bytes per VM (target < 2048)")

        drv = start_driver(sim, cache=True)
        node = next(iter(drv.services.nodes))
        view = si.content.viewManager.CreateContainerView(
            vim.ClusterComputeResource(cluster_moid, si._stub), [vim.VirtualMachine], True)
        vm_moids = [vm._moId for vm in view.view]
        resource_update(drv, node)  # warm up
        for changes in (0, 100, 1000):
            if changes:
                make_changes(sim, vm_moids, changes)
            before = sim.requests()
            seconds = resource_update(drv, node)
            calls = delta(sim.requests(), before)
            print(f"fresh resource update after {changes:4d} changes: {seconds * 1000:7.1f} ms "
                  f"= {100 * seconds / raw:5.2f}% of the raw read; {sum(calls.values())} SOAP "
                  f"request(s) {calls}")
        stats = drv.services.states.cache.stats
        wall, waited, longest = concurrent_spawns(drv, node, args.spawns)
        print(f"{args.spawns} concurrent spawns: {wall:.1f} s wall; waiting for cluster reads "
              f"{waited:.1f} s summed over the spawns ({waited / args.spawns * 1000:.0f} ms "
              f"each on average, longest {longest * 1000:.0f} ms); full reads during them: "
              f"{stats.full_reads - 1}")
        drv.cleanup_host("bench-compute")
        Disconnect(si)

    if args.nova:
        modes = [True, False] if args.nova_full_reads else [True]
        for cache_on in modes:
            results = nova_boots(args.nova_boots, args.nova_vms, cache_on)
            (empty_s, empty_reads), (loaded_s, loaded_reads) = \
                results["empty16"], results["loaded16"]
            label = "cluster cache" if cache_on else "full reads"
            print(f"Nova, {label}: {args.nova_boots} boots into 16 hosts: empty cluster "
                  f"{empty_s:.1f} s ({empty_reads} property reads), holding "
                  f"{args.nova_vms} VMs {loaded_s:.1f} s ({loaded_reads} property reads) = "
                  f"x{loaded_s / empty_s:.2f} (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
