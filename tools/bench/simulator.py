#!/usr/bin/env python3
"""Simulator benchmark: big inventory load, and property reads through pyVmomi and oslo.vmware.

Prints absolute figures and ratios to baselines measured in the same run
(the machine is shared and noisy: compare ratios across runs, not seconds):

* inventory load (64 hosts, 10,000 VMs) vs building the same number of bare
  pyVmomi ConfigInfo objects (the floor any pyVmomi-based simulator pays);
* median latency of one RetrievePropertiesEx of three properties over all
  64 hosts through a ContainerView vs the median of CurrentTime, the cheapest
  authenticated round trip, on the same connection.

Usage: python tools/bench/simulator.py [--hosts 64] [--vms 10000] [--repeat 50]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from pyVmomi import vim, vmodl  # noqa: E402

from nova_vsphere_driver.simulator import Simulator, SimulatorServer  # noqa: E402

PC = vmodl.query.PropertyCollector
HOST_PATHS = ["name", "summary.quickStats", "runtime.connectionState"]


def build_inventory(hosts: int, vms: int) -> dict:
    per_cluster = 8
    clusters = []
    for c in range(max(1, hosts // per_cluster)):
        clusters.append({"name": f"cl{c}", "hosts": [
            {"name": f"esx{c}-{h}", "cores": 16 + 8 * (h % 3), "mhz": 2400,
             "memory_mb": 524288 + 131072 * (h % 2)} for h in range(per_cluster)]})
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


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_ms(fn, repeat: int) -> float:
    fn()  # warm up (connection, caches)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def host_spec(view):
    return PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[
            PC.TraversalSpec(name="view", type=vim.view.ContainerView, path="view",
                             skip=False)])],
        propSet=[PC.PropertySpec(type=vim.HostSystem, pathSet=HOST_PATHS)])


def bench_pyvmomi(server: SimulatorServer, repeat: int, hosts: int) -> tuple[float, float]:
    from pyVim.connect import Disconnect, SmartConnect

    sim = server.simulator
    si = SmartConnect(host="127.0.0.1", port=server.port, user=sim.username,
                      pwd=sim.password, protocol="http")
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    spec = host_spec(view)
    pc = content.propertyCollector

    def read():
        result = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=1000))
        assert len(result.objects) == hosts, len(result.objects)

    read_ms = median_ms(read, repeat)
    base_ms = median_ms(si.CurrentTime, repeat)
    Disconnect(si)
    return read_ms, base_ms


def bench_oslo_vmware(server: SimulatorServer, repeat: int, hosts: int) -> tuple[float, float]:
    from oslo_vmware import api, vim_util

    sim = server.simulator
    session = api.VMwareAPISession("127.0.0.1", sim.username, sim.password, api_retry_count=1,
                                   task_poll_interval=0.1, port=server.port, scheme="http",
                                   insecure=True)
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

    read_ms = median_ms(read, repeat)
    base_ms = median_ms(lambda: session.invoke_api(vim_obj, "CurrentTime",
                                                   vim_util.get_moref("ServiceInstance",
                                                                      "ServiceInstance")),
                        repeat)
    session.logout()
    return read_ms, base_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--vms", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)

    inventory = build_inventory(args.hosts, args.vms)
    rss_before = rss_mb()
    start = time.perf_counter()
    sim = Simulator(inventory)
    load_s = time.perf_counter() - start
    rss_after = rss_mb()

    start = time.perf_counter()
    floor = [vim.vm.ConfigInfo(name=f"vm-{i}", hardware=vim.vm.VirtualHardware(
        numCPU=1, memoryMB=1024)) for i in range(args.vms)]
    floor_s = time.perf_counter() - start
    del floor

    print(f"inventory: {len(sim.hosts())} hosts, {len(sim.vms())} VMs, "
          f"{len(sim.registry)} managed objects")
    print(f"load time: {load_s:.2f} s  (x{load_s / floor_s:.1f} the time to build "
          f"{args.vms} bare pyVmomi ConfigInfo objects: {floor_s:.3f} s)")
    print(f"peak RSS: {rss_after:.0f} MB (before load {rss_before:.0f} MB, "
          f"growth {rss_after - rss_before:.0f} MB)")

    with SimulatorServer(sim) as server:
        for name, bench in (("pyVmomi", bench_pyvmomi), ("oslo.vmware", bench_oslo_vmware)):
            read_ms, base_ms = bench(server, args.repeat, len(sim.hosts()))
            print(f"{name:12s} RetrievePropertiesEx of {len(HOST_PATHS)} properties x "
                  f"{len(sim.hosts())} hosts via ContainerView: median {read_ms:.2f} ms "
                  f"(x{read_ms / base_ms:.1f} of CurrentTime round trip {base_ms:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
