"""The cluster cache: kept by vCenter's update stream, always equal to a fresh full read.

Every kind of change a cluster sees is made through vCenter's API (pyVmomi
on its own session) or as vCenter would report it (operator events of the
simulator); after each, the cache's state of every cluster must equal a
full read of it, and cost one WaitForUpdatesEx. Then the driver's resource
numbers and DRS decisions with the cache on and off, over random operations.
"""

from __future__ import annotations

import collections
import random
import threading

import pytest
from pyVmomi import vim, vmodl

from nova_vsphere_driver import driver as vsphere_driver
from nova_vsphere_driver.drs_runtime.cluster_snapshot import to_cluster_snapshot
from nova_vsphere_driver.simulator.inventory import default_inventory
from nova_vsphere_driver.vsphere.cluster_cache import ClusterCache
from nova_vsphere_driver.vsphere.cluster_state import ClusterStateReader
from nova_vsphere_driver.vsphere.session import CallRefused, VSphereSession
from tests.driver.conftest import WSDL_LOCATION, configure, new_tree, node_of
from tests.fixtures import Disconnect, connect, running_simulator
from tests.unit.simulator.helpers import bind, create_vm, run, wait_until

GB = 1024
Cluster = vim.cluster


def _session(server) -> VSphereSession:
    sim = server.simulator
    return VSphereSession("127.0.0.1", server.port, sim.username, sim.password,
                          ca_file=server.ca_file, wsdl_location=WSDL_LOCATION[-1],
                          api_retry_count=2, task_poll_interval=0.05)


class Watch:
    """A cluster cache and a full reader on one session, over both clusters."""

    def __init__(self, server, page_size: int) -> None:
        self.server = server
        self.sim = server.simulator
        self.session = _session(server)
        self.cache = ClusterCache(ClusterStateReader(self.session, page_size=page_size))
        self.full = ClusterStateReader(self.session)
        self.clusters = {c.name: c for c in self.full.find_clusters()}

    def calls(self, fn) -> dict[str, int]:
        sim = self.sim
        with sim.registry.lock:
            sim.request_counts.clear()
        fn()
        with sim.registry.lock:
            return dict(sim.request_counts)

    def check(self, what: str) -> None:
        """Each cluster's cached state equals a fresh full read, and costs one call."""
        for ref in self.clusters.values():
            cached = self.cache.current(ref)
            assert cached == self.full.cluster_state(ref), f"{what}: {ref.name} differs"
        ref = self.clusters["cluster-a"]
        assert self.calls(lambda: self.cache.current(ref)) == {"WaitForUpdatesEx": 1}, what


@pytest.fixture(params=[1000, 2], ids=["pages-of-1000", "truncated-by-2"])
def watch(request, tls_sim):
    watch = Watch(tls_sim, request.param)
    for ref in watch.clusters.values():
        watch.cache.current(ref)
    yield watch
    watch.session.logout()


@pytest.fixture
def si(tls_sim):
    si = connect(tls_sim)
    yield si
    Disconnect(si)


def _reconfigure(si, sim, cluster: str, **spec):
    return run(bind(si, sim.cluster(cluster)).ReconfigureComputeResource_Task(
        Cluster.ConfigSpecEx(**spec), True))


def test_the_cache_equals_a_fresh_read_after_every_kind_of_change(watch, si):
    sim = watch.sim
    watch.check("first read")
    first_reads = watch.cache.stats.full_reads
    assert first_reads == 2  # one per cluster, at the first read

    vm = create_vm(si, sim, "tracked", "esx-a1", datastore="shared-all", disk_gb=1,
                   network="VM Network")
    watch.check("VM created")
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(memoryMB=3 * GB, numCPUs=2)))
    watch.check("VM reconfigured")
    run(vm.PowerOnVM_Task())
    watch.check("VM powered on")
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=bind(si, sim.host("esx-a2")))))
    watch.check("vMotion inside the cluster")
    run(vm.MigrateVM_Task(pool=bind(si, sim.cluster("cluster-b").resource_pool),
                          host=bind(si, sim.host("esx-b1")), priority="defaultPriority"))
    watch.check("vMotion out of cluster-a into cluster-b")
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(
        pool=bind(si, sim.cluster("cluster-a").resource_pool),
        host=bind(si, sim.host("esx-a3")))))
    watch.check("vMotion back into cluster-a")
    run(vm.Rename_Task("renamed"))
    watch.check("VM renamed")

    others = [create_vm(si, sim, f"member-{i}", "esx-a2") for i in range(2)]
    _reconfigure(si, sim, "cluster-a", rulesSpec=[Cluster.RuleSpec(
        operation="add", info=Cluster.AntiAffinityRuleSpec(name="apart", enabled=True,
                                                           vm=others))])
    watch.check("VM-VM rule added")
    _reconfigure(si, sim, "cluster-a", groupSpec=[
        Cluster.GroupSpec(operation="add", info=Cluster.VmGroup(name="vms", vm=others)),
        Cluster.GroupSpec(operation="add", info=Cluster.HostGroup(
            name="rack", host=[bind(si, sim.host("esx-a2"))]))],
        rulesSpec=[Cluster.RuleSpec(operation="add", info=Cluster.VmHostRuleInfo(
            name="pinned", enabled=True, mandatory=True, vmGroupName="vms",
            affineHostGroupName="rack"))])
    watch.check("groups and a VM-Host rule added")
    (rule,) = [r for r in sim.cluster("cluster-a").rules if r.name == "apart"]
    _reconfigure(si, sim, "cluster-a",
                 rulesSpec=[Cluster.RuleSpec(operation="remove", removeKey=rule.key)])
    watch.check("rule removed")
    run(si.content.virtualDiskManager.CreateVirtualDisk_Task(
        "[shared-a] loose.vmdk", None, vim.VirtualDiskManager.FileBackedVirtualDiskSpec(
            capacityKb=4 * 1024 * 1024, diskType="preallocated", adapterType="lsiLogic")))
    watch.check("datastore space taken")
    sim.unmount_datastore("shared-all", "esx-a4")
    watch.check("datastore unmounted from a host")
    sim.set_datastore_accessible("shared-a", False)
    watch.check("datastore inaccessible")
    sim.set_datastore_accessible("shared-a", True)
    sim.mount_datastore("shared-all", "esx-a4")
    watch.check("datastore back")

    dvs = bind(si, next(iter(sim.registry.all("VmwareDistributedVirtualSwitch"))))
    portgroup = run(dvs.CreateDVPortgroup_Task(vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
        name="tenant-7", type="earlyBinding", numPorts=8)))
    watch.check("port group added")
    run(portgroup.Rename_Task("tenant-8"))
    watch.check("port group renamed")
    run(portgroup.Destroy_Task())
    watch.check("port group removed")

    # A host entering maintenance (its task runs while a VM still runs on it) ...
    entering = bind(si, sim.host("esx-a3"))
    task = entering.EnterMaintenanceMode_Task(0)
    watch.check("host entering maintenance")
    assert watch.cache.current(watch.clusters["cluster-a"]).host(
        sim.host("esx-a3").moid).entering_maintenance
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=bind(si, sim.host("esx-a1")))))
    run(task)
    watch.check("host in maintenance")
    run(entering.ExitMaintenanceMode_Task(0))
    sim.disconnect_host("esx-a4")
    watch.check("host disconnected")
    sim.reconnect_host("esx-a4")
    watch.check("host reconnected")
    run(bind(si, sim.host("esx-b4")).EnterMaintenanceMode_Task(0))
    run(bind(si, sim.host("esx-b4")).Destroy_Task())
    watch.check("host removed from cluster-b")

    run(vm.PowerOffVM_Task())
    run(vm.Destroy_Task())
    watch.check("VM destroyed")
    # All of that from the update stream: no full read since the first.
    assert watch.cache.stats.full_reads == first_reads


def test_truncated_update_sets_carry_a_large_change(tls_sim, si):
    watch = Watch(tls_sim, page_size=5)
    ref = watch.clusters["cluster-b"]
    watch.cache.current(ref)
    for i in range(12):
        create_vm(si, tls_sim.simulator, f"wave-{i}", f"esx-b{1 + i % 4}")
    calls = watch.calls(lambda: watch.cache.current(ref))
    # 12 VMs, their hosts, the creation tasks' hosts: at least 3 sets of 5.
    assert calls["WaitForUpdatesEx"] >= 3 and set(calls) == {"WaitForUpdatesEx"}
    watch.check("after truncated sets")
    watch.session.logout()


def test_a_session_lost_during_an_update_starts_over_with_one_full_read(watch, si):
    sim = watch.sim
    ref = watch.clusters["cluster-a"]
    reads = watch.cache.stats.full_reads
    create_vm(si, sim, "before-expiry", "esx-a1", power_on=True)
    # The sessions end while the update call is in vCenter: its collector and
    # filters end with them.
    sim.faults.add_latency("WaitForUpdatesEx", 0.6)
    timer = threading.Timer(0.2, sim.expire_sessions)
    timer.start()
    state = watch.cache.current(ref)
    timer.join()
    sim.faults.clear()
    assert "before-expiry" in {vm.name for vm in state.vms}
    assert watch.cache.stats.full_reads == reads + 2  # both clusters read again, once
    si = connect(watch.server)  # (its session ended too)
    create_vm(si, sim, "after-expiry", "esx-a2")
    watch.check("after the session was lost")
    Disconnect(si)


def test_a_simulator_restart_starts_over_with_one_full_read(watch, si):
    sim = watch.sim
    reads = watch.cache.stats.full_reads
    watch.server.restart()
    si = connect(watch.server)
    create_vm(si, sim, "after-restart", "esx-a1")
    watch.check("after a restart")
    assert watch.cache.stats.full_reads == reads + 2
    Disconnect(si)


def test_an_invalid_collector_version_starts_over(watch, si):
    sim = watch.sim
    reads = watch.cache.stats.full_reads
    sim.faults.fail_next("WaitForUpdatesEx", "InvalidCollectorVersion")
    create_vm(si, sim, "version-lost", "esx-b2")
    watch.check("after InvalidCollectorVersion")
    assert watch.cache.stats.full_reads == reads + 2


def test_a_filter_whose_view_vanished_is_made_again(watch, si):
    sim = watch.sim
    reads = watch.cache.stats.full_reads
    with sim.registry.lock:  # vCenter dropped the view under the cache's filter of cluster-a
        views = {f.spec.objectSet[0].obj._moId for f in sim.registry.all("PropertyFilter")
                 if f.spec.objectSet[-1].obj._moId == sim.cluster("cluster-a").moid}
        for moid in views:
            sim.registry.remove(moid)
    create_vm(si, sim, "after-the-view", "esx-a4")
    watch.check("after the view vanished")
    assert watch.cache.stats.full_reads == reads + 1  # that cluster only


def test_a_failed_update_raises_and_never_serves_the_old_state(watch, si):
    sim = watch.sim
    ref = watch.clusters["cluster-a"]
    sim.faults.fail_next("WaitForUpdatesEx", "SystemError", count=1)
    create_vm(si, sim, "unseen", "esx-a1")
    with pytest.raises(Exception, match="SystemError|injected"):
        watch.cache.current(ref)
    assert "unseen" in {vm.name for vm in watch.cache.current(ref).vms}


@pytest.mark.parametrize("fault", ["SecurityError", "NotAuthenticated"])
def test_a_refused_full_read_is_an_error_never_an_empty_cluster(watch, si, fault):
    sim = watch.sim
    ref = watch.clusters["cluster-a"]
    logins = sim.request_counts["Login"]
    # The collector's version is lost; the full read that follows is refused
    # (on a valid session: a missing privilege, a vCenter in trouble).
    sim.faults.fail_next("WaitForUpdatesEx", "InvalidCollectorVersion")
    sim.faults.fail_next("WaitForUpdatesEx", fault)
    create_vm(si, sim, "behind-a-refusal", "esx-a1")
    with pytest.raises(CallRefused) as err:
        watch.cache.current(ref)
    assert err.value.fault_list == [fault]
    assert sim.request_counts["Login"] == logins  # the session was valid
    state = watch.cache.current(ref)
    assert "behind-a-refusal" in {vm.name for vm in state.vms} and state.hosts
    watch.check("after a refused full read")


def test_a_slow_update_fails_within_the_api_timeout(tls_sim, si):
    session = VSphereSession("127.0.0.1", tls_sim.port, tls_sim.simulator.username,
                             tls_sim.simulator.password, ca_file=tls_sim.ca_file,
                             wsdl_location=WSDL_LOCATION[-1], api_retry_count=1,
                             api_timeout=1.0)
    cache = ClusterCache(ClusterStateReader(session))
    ref = next(c for c in ClusterStateReader(session).find_clusters() if c.name == "cluster-a")
    cache.current(ref)
    tls_sim.simulator.faults.add_latency("WaitForUpdatesEx", 6)
    import time

    started = time.monotonic()
    with pytest.raises(Exception, match="timed out|WaitForUpdatesEx"):
        cache.current(ref)
    elapsed = time.monotonic() - started
    tls_sim.simulator.faults.clear()
    # api_retry_count = 1: two attempts of at most api_timeout, a 0.5 s pause
    # (2.5 s); one attempt that waited for its answer would take 6 s. The
    # bound in between leaves a loaded machine its margin.
    assert elapsed < 5, elapsed
    assert cache.current(ref).ref == ref
    session.logout()


# -- the driver with the cache on and off ---------------------------------------------------


def _driver(conf_overrides, server, cache: bool):
    configure(conf_overrides, server, cluster_cache=cache)
    drv = vsphere_driver.VSphereDriver(None)
    drv.init_host(f"compute-{'cached' if cache else 'full'}")
    return drv


def _decisions(drv, node: str) -> dict:
    # Nova's periodic update: get_available_resource, then update_provider_tree.
    resources = drv.get_available_resource(node)
    tree = new_tree(node)
    drv.update_provider_tree(tree, node)
    state = drv.services.states.read(node)
    plan = drv.balance_cluster(node, dry_run=True)
    evacuation = drv.services.drs.evacuate(state, drv.services.limits(), apply=False)
    return {
        "resources": resources,
        "inventory": tree.data(node).inventory,
        "traits": tree.data(node).traits,
        "snapshot": drv.services.drs.cluster_snapshot(state),
        "balance": [(m.vm, m.source, m.target) for m in plan.moves],
        "evacuation": None if evacuation is None else
        [(m.vm, m.source, m.target) for m in evacuation.moves],
    }


def _random_operation(rng: random.Random, si, sim, made: list, entering: dict) -> str:
    vms = sim.vms()
    hosts = [h for h in sim.hosts() if h.connection_state == "connected"]
    op = rng.choice(["create", "create", "power", "power", "vmotion", "vmotion", "migrate",
                     "destroy", "resize", "maintenance", "maintenance", "disconnect", "rule"])
    if op != "create" and not vms and op in ("power", "vmotion", "migrate", "destroy",
                                             "resize", "rule"):
        op = "create"
    if op == "create":
        if not hosts:
            sim.reconnect_host(rng.choice(sim.hosts()).name)
            return "reconnect"
        host = rng.choice([h for h in hosts if h.usable()] or hosts)
        vm = create_vm(si, sim, f"rand-{len(made)}", host.name,
                       datastore="shared-all", memory_mb=rng.choice([1, 2, 4, 8]) * GB,
                       cpus=rng.choice([1, 2, 4]))
        made.append(vm)
        if rng.random() < 0.7 and host.usable():
            run(vm.PowerOnVM_Task())
        return f"create {vm.name}"
    vm = rng.choice(vms) if vms else None
    ref = bind(si, vm) if vm is not None else None
    if op == "power":
        run(ref.PowerOffVM_Task() if vm.powered_on else ref.PowerOnVM_Task())
    elif op == "vmotion":
        targets = [h for h in vm.cluster.hosts if h.usable() and h is not vm.host]
        if targets:
            run(ref.RelocateVM_Task(vim.vm.RelocateSpec(host=bind(si, rng.choice(targets)))))
    elif op == "migrate":
        cluster = rng.choice([c for c in sim.registry.all("ClusterComputeResource")
                              if c is not vm.cluster])
        targets = [h for h in cluster.hosts if h.usable()]
        if targets:
            run(ref.MigrateVM_Task(pool=bind(si, cluster.resource_pool),
                                   host=bind(si, rng.choice(targets)),
                                   priority="defaultPriority"))
    elif op == "destroy":
        if vm.powered_on:
            run(ref.PowerOffVM_Task())
        run(ref.Destroy_Task())
    elif op == "resize":
        if vm.powered_on:
            run(ref.PowerOffVM_Task())
        run(ref.ReconfigVM_Task(vim.vm.ConfigSpec(memoryMB=rng.choice([2, 6, 12]) * GB)))
    elif op == "maintenance":
        host = rng.choice(sim.hosts())
        if host.in_maintenance:
            run(bind(si, host).ExitMaintenanceMode_Task(0))
        elif host.moid in entering:  # waiting for its VMs to leave: cancel it
            entering.pop(host.moid).CancelTask()
        elif host.connection_state == "connected":
            # Done at once when the host is empty; else it waits for its VMs to be
            # moved (an evacuation for our DRS to plan).
            entering[host.moid] = bind(si, host).EnterMaintenanceMode_Task(0)
            wait_until(lambda: entering[host.moid].info.state != "queued", 5)
    elif op == "disconnect":
        host = rng.choice(sim.hosts())
        if host.connection_state == "connected":
            sim.disconnect_host(host.name)
        else:
            sim.reconnect_host(host.name)
    elif op == "rule":
        mates = [v for v in vms if v.cluster is vm.cluster][:3]
        if len(mates) >= 2:
            _reconfigure(si, sim, vm.cluster.name, rulesSpec=[Cluster.RuleSpec(
                operation="add", info=Cluster.AntiAffinityRuleSpec(
                    name=f"rule-{rng.random():.6f}", enabled=True,
                    vm=[bind(si, v) for v in mates]))])
    return f"{op} {vm.name if vm is not None else ''}"


def test_resources_and_drs_decisions_are_the_same_with_the_cache_on_and_off(
        conf_overrides, nova_db):
    conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
    inventory = default_inventory()
    # Busy first hosts: something for balancing to move.
    inventory["datacenters"][0]["vms"] = [
        {"name": f"old-{c}{i}", "cluster": f"cluster-{c}", "host": f"esx-{c}{1 + (i % 5) // 3}",
         "cpus": 2, "memory_mb": (4 + 4 * (i % 3)) * GB, "datastore": "shared-all",
         "power": "on"} for c in "ab" for i in range(10)]
    seen: collections.Counter[str] = collections.Counter()
    with running_simulator(inventory, tls=True) as server:
        cached = _driver(conf_overrides, server, cache=True)
        full = _driver(conf_overrides, server, cache=False)
        si = connect(server)
        rng = random.Random(1313)
        made: list = []
        entering: dict = {}
        try:
            for step in range(40):
                try:
                    what = _random_operation(rng, si, server.simulator, made, entering)
                except vmodl.MethodFault as fault:  # refused (a host in maintenance, ...)
                    what = f"refused: {fault.msg}"
                for cluster in ("cluster-a", "cluster-b"):
                    node = node_of(cached, cluster)
                    assert node == node_of(full, cluster)
                    mine = _decisions(cached, node)
                    seen["balance moves"] += bool(mine["balance"])
                    seen["evacuations"] += bool(mine["evacuation"])
                    assert mine == _decisions(full, node), \
                        f"step {step} ({what}), {cluster}"
            assert cached.services.states.cache.stats.full_reads == 2
            # The sequence made the decisions worth comparing.
            assert seen["balance moves"] and seen["evacuations"], seen
        finally:
            Disconnect(si)
            cached.cleanup_host("compute-cached")
            full.cleanup_host("compute-full")


def test_an_unchanged_cluster_is_converted_and_searched_once(conf_overrides, tls_sim,
                                                            nova_db):
    conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
    drv = _driver(conf_overrides, tls_sim, cache=True)
    try:
        node = node_of(drv, "cluster-a")
        drs, states = drv.services.drs, drv.services.states
        state = states.read(node)
        # The cache hands out one ClusterState while nothing changes; DRS converts it
        # once and answers max_unit once for it.
        assert states.read(node) is state
        assert drs.cluster_snapshot(state) is drs.cluster_snapshot(state)
        limits = drv.services.limits()
        before = drs.max_unit(state, limits)
        assert drs.max_unit(state, limits) is before
        # A claim in flight is a change: the host it fills can take less now.
        drs.claims(state.ref.moref).claim("a-new-vm", before.memory_host, vcpus=1,
                                          memory_mb=before.memory_mb_without_moves)
        claimed = drs.max_unit(state, limits, make_room=False)
        assert claimed.memory_mb_without_moves < before.memory_mb_without_moves
        drs.release(state.ref.moref, "a-new-vm")
        assert drs.max_unit(state, limits) == before
        # A changed cluster is converted anew.
        tls_sim.simulator.disconnect_host("esx-a1")
        changed = states.read(node)
        assert changed is not state
        assert drs.cluster_snapshot(changed) is not drs.cluster_snapshot(state)
        assert drs.max_unit(changed, limits) != before
    finally:
        tls_sim.simulator.reconnect_host("esx-a1")
        drv.cleanup_host("compute-cached")


def test_a_changed_cluster_converts_only_the_changed_vms(conf_overrides, tls_sim, nova_db):
    conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
    drv = _driver(conf_overrides, tls_sim, cache=True)
    si = connect(tls_sim)
    made = []
    try:
        node = node_of(drv, "cluster-a")
        drs, states = drv.services.drs, drv.services.states
        made = [create_vm(si, tls_sim.simulator, f"keep-{i}", "esx-a1", datastore="shared-all",
                          memory_mb=GB, cpus=1) for i in range(3)]
        for vm in made:
            run(vm.PowerOnVM_Task())
        state = states.read(node)
        before = drs.cluster_snapshot(state)
        on = before.vm_by_id[made[0]._moId]
        assert on.powered_on
        run(made[0].PowerOffVM_Task())
        changed = states.read(node)
        after = drs.cluster_snapshot(changed)
        # What converting from scratch gives, with the VMs that did not change
        # carried over as the same objects and the powered-off one converted anew.
        assert after == to_cluster_snapshot(
            changed, reserved_host_cpus=drv.services.drs.settings.reserved_host_cpus,
            reserved_host_memory_mb=drv.services.drs.settings.reserved_host_memory_mb)
        assert not after.vm_by_id[on.id].powered_on
        assert all(v is before.vm_by_id[v.id] for v in after.vms if v.id != on.id)
        assert len(after.vms) == len(before.vms) >= 3
    finally:
        for vm in made:
            if vm.runtime.powerState == "poweredOn":
                run(vm.PowerOffVM_Task())
            run(vm.Destroy_Task())
        Disconnect(si)
        drv.cleanup_host("compute-cached")
