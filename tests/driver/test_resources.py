"""The giant hypervisor: each cluster is one node whose placement inventory is real.

The driver reads the simulator over SOAP; inventories land in Nova's own
ProviderTree. Expected values are computed from the simulator's host and
datastore objects, not hard-coded.
"""

from __future__ import annotations

import logging
import math
import re
import time

import nova.conf
import os_resource_classes as orc
import os_traits
import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from nova_vsphere_driver import HYPERVISOR_TYPE
from nova_vsphere_driver import driver as vsphere_driver
from nova_vsphere_driver.simulator.inventory import default_inventory
from tests.driver.conftest import configure, new_tree, node_of
from tests.fixtures import Disconnect, connect, running_simulator

GIB = 1024 ** 3
RESOURCES = (orc.VCPU, orc.MEMORY_MB, orc.DISK_GB)


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def start(conf_overrides, wsdl_file):
    """start(server, clusters, drs={...}, **vsphere_opts) -> a driver after init_host."""
    drivers = []

    def start(server, clusters=("cluster-a", "cluster-b"), drs=None, **opts):
        configure(conf_overrides, server, clusters,
                  **{"api_retry_count": 0, "wsdl_location": wsdl_file, **opts})
        # No DRS pass on a timer: a host entering maintenance must stay loaded.
        conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0, **(drs or {}))
        drv = vsphere_driver.VSphereDriver(None)
        drv.init_host("compute-1")
        drivers.append(drv)
        return drv

    yield start
    for drv in drivers:
        drv.cleanup_host("compute-1")


@pytest.fixture
def pyvmomi(tls_sim):
    """pyVmomi on the same simulator: the operator's view of vCenter."""
    service_instance = connect(tls_sim)
    yield service_instance
    try:
        Disconnect(service_instance)
    except Exception:
        pass



def inventory(drv, nodename: str, tree=None) -> dict:
    tree = tree or new_tree(nodename)
    drv.update_provider_tree(tree, nodename)
    return tree.data(nodename).inventory


def pyvmomi_entity(client, vimtype, name: str):
    content = client.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vimtype], True)
    try:
        return next(e for e in view.view if e.name == name)
    finally:
        view.Destroy()


def enter_maintenance(client, host_name: str) -> None:
    """What an operator does in vCenter (the host is empty, so the task completes)."""
    host = pyvmomi_entity(client, vim.HostSystem, host_name)
    WaitForTask(host.EnterMaintenanceMode_Task(timeout=30))
    assert host.runtime.inMaintenanceMode


def usable_hosts(sim, cluster: str) -> list:
    return [h for h in sim.cluster(cluster).hosts if h.usable()]


def expected_memory_max_unit(sim, cluster: str, reserved_mb: int = 0) -> int:
    """The best usable host's free memory now (no VM moved)."""
    return max(h.memory_mb - reserved_mb - h.used_memory_mb() for h in usable_hosts(sim, cluster))


def expected_disk(sim, cluster: str, regex=None) -> tuple[int, int]:
    """(total GiB, best datastore's free GiB) over datastores the usable hosts mount."""
    stores = {ds.name: ds for h in usable_hosts(sim, cluster) for ds in h.datastores
              if ds.accessible and (regex is None or re.search(regex, ds.name))}
    total = sum(ds.capacity for ds in stores.values()) // GIB
    best = max(ds.free_space() for ds in stores.values()) // GIB
    return total, best


def loaded_inventory() -> dict:
    """The default inventory with powered-on VMs filling cluster-a's hosts unevenly.

    Free memory (MB) afterwards: esx-a1 98304, esx-a2 163840, esx-a3 98304,
    esx-a4 98304 -- the best host is not the biggest one.
    """
    inv = default_inventory()
    per_host = {"esx-a1": 5, "esx-a2": 3, "esx-a3": 9, "esx-a4": 1}
    inv["datacenters"][0]["vms"] = [
        {"name": f"load-{host}-{i}", "cluster": "cluster-a", "host": host, "cpus": 4,
         "memory_mb": 32768, "power": "on"}
        for host, count in per_host.items() for i in range(count)]
    return inv


# -- nodes ---------------------------------------------------------------------------------


def test_one_node_per_configured_cluster(tls_sim, start):
    one = start(tls_sim, ["cluster-a"])
    assert len(one.get_available_nodes()) == 1
    [node_a] = one.get_available_nodes()
    assert one.node_is_available(node_a)
    assert not one.node_is_available("no-such-node")

    two = start(tls_sim, ["cluster-a", "cluster-b"])
    nodes = two.get_available_nodes()
    assert len(nodes) == 2 and len(set(nodes)) == 2
    assert node_a in nodes
    assert all(two.node_is_available(n) for n in nodes)
    # Each node reports its own cluster's hosts.
    sim = tls_sim.simulator
    vcpus = {two.get_available_resource(n)["vcpus"] for n in nodes}
    assert vcpus == {sum(h.threads for h in sim.cluster(c).hosts)
                     for c in ("cluster-a", "cluster-b")}


def test_node_names_are_unique_across_vcenters(tls_sim, start):
    with running_simulator(tls=True) as other:
        first = start(tls_sim, ["cluster-a"])
        second = start(other, ["cluster-a"])
        [n1], [n2] = first.get_available_nodes(), second.get_available_nodes()
        assert n1 != n2
        assert set(first.get_nodenames_by_uuid()).isdisjoint(second.get_nodenames_by_uuid())
        assert first.get_available_resource(n1)["uuid"] != \
            second.get_available_resource(n2)["uuid"]


def test_node_name_survives_a_cluster_rename(tls_sim, start, pyvmomi):
    before = start(tls_sim)
    nodes, by_uuid = set(before.get_available_nodes()), before.get_nodenames_by_uuid()
    assert set(by_uuid.values()) == nodes
    node_a = node_of(before, "cluster-a")
    # A restart alone changes nothing.
    again = start(tls_sim)
    assert set(again.get_available_nodes()) == nodes
    assert again.get_nodenames_by_uuid() == by_uuid

    cluster = pyvmomi_entity(pyvmomi, vim.ClusterComputeResource, "cluster-a")
    WaitForTask(cluster.Rename_Task(newName="production-west"))
    assert tls_sim.simulator.cluster("production-west") is not None

    renamed = start(tls_sim, ["production-west", "cluster-b"])
    assert set(renamed.get_available_nodes()) == nodes
    assert renamed.get_nodenames_by_uuid() == by_uuid
    assert node_of(renamed, "production-west") == node_a
    # get_available_resource's uuid is the one get_nodenames_by_uuid gives.
    assert by_uuid[renamed.get_available_resource(node_a)["uuid"]] == node_a


# -- totals, reservations, usable hosts ------------------------------------------------------


def test_totals_are_over_usable_hosts(tls_sim, start, pyvmomi):
    sim = tls_sim.simulator
    drv = start(tls_sim)
    node = node_of(drv, "cluster-a")
    hosts = sim.cluster("cluster-a").hosts
    inv = inventory(drv, node)
    assert inv[orc.VCPU]["total"] == sum(h.threads for h in hosts)
    assert inv[orc.MEMORY_MB]["total"] == sum(h.memory_mb for h in hosts)
    assert inv[orc.VCPU]["max_unit"] == max(h.threads for h in hosts)
    assert inv[orc.MEMORY_MB]["max_unit"] == max(h.memory_mb for h in hosts)

    # The biggest host goes into maintenance, the smallest disconnects.
    enter_maintenance(pyvmomi, "esx-a3")
    sim.disconnect_host("esx-a4")
    usable = usable_hosts(sim, "cluster-a")
    assert [h.name for h in usable] == ["esx-a1", "esx-a2"]
    inv = inventory(drv, node)
    assert inv[orc.VCPU]["total"] == sum(h.threads for h in usable)
    assert inv[orc.MEMORY_MB]["total"] == sum(h.memory_mb for h in usable)
    assert inv[orc.VCPU]["max_unit"] == max(h.threads for h in usable)
    assert inv[orc.MEMORY_MB]["max_unit"] == expected_memory_max_unit(sim, "cluster-a")
    for rc in RESOURCES:
        assert inv[rc]["reserved"] == 0
        assert inv[rc]["min_unit"] == 1 and inv[rc]["step_size"] == 1

    # Back in service: counted again.
    sim.reconnect_host("esx-a4")
    inv = inventory(drv, node)
    assert inv[orc.VCPU]["total"] == sum(h.threads for h in usable_hosts(sim, "cluster-a"))
    # The other cluster never changed.
    node_b = node_of(drv, "cluster-b")
    assert inventory(drv, node_b)[orc.MEMORY_MB]["total"] == \
        sum(h.memory_mb for h in sim.cluster("cluster-b").hosts)


def test_reservations_are_per_usable_host(tls_sim, start, pyvmomi, conf_overrides):
    sim = tls_sim.simulator
    conf_overrides(None, reserved_host_disk_mb=3000)
    drv = start(tls_sim, ["cluster-a"], reserved_host_memory_mb=8192, reserved_host_cpus=2)
    node = node_of(drv, "cluster-a")
    inv = inventory(drv, node)
    assert inv[orc.MEMORY_MB]["reserved"] == 8192 * 4
    assert inv[orc.VCPU]["reserved"] == 2 * 4
    assert inv[orc.DISK_GB]["reserved"] == math.ceil(3000 / 1024)
    # What one host can take excludes its own reservation.
    assert inv[orc.MEMORY_MB]["max_unit"] == expected_memory_max_unit(sim, "cluster-a", 8192)

    enter_maintenance(pyvmomi, "esx-a1")
    sim.disconnect_host("esx-a2")
    inv = inventory(drv, node)
    assert inv[orc.MEMORY_MB]["reserved"] == 8192 * 2
    assert inv[orc.VCPU]["reserved"] == 2 * 2
    assert inv[orc.MEMORY_MB]["total"] == sum(h.memory_mb for h in usable_hosts(sim, "cluster-a"))


def test_host_entering_maintenance_is_not_usable(conf_overrides, start, wsdl_file):
    inv_data = default_inventory()
    inv_data["datacenters"][0]["vms"] = [
        {"name": "pinned", "cluster": "cluster-a", "host": "esx-a3", "cpus": 2,
         "memory_mb": 4096, "power": "on"}]
    with running_simulator(inv_data, tls=True) as server:
        sim = server.simulator
        drv = start(server, ["cluster-a"])
        node = node_of(drv, "cluster-a")
        client = connect(server)
        task = None
        try:
            host = pyvmomi_entity(client, vim.HostSystem, "esx-a3")
            # A VM is on it and nobody moves it: the task keeps running.
            task = host.EnterMaintenanceMode_Task(timeout=120)
            deadline = time.monotonic() + 10
            while not sim.host("esx-a3").entering_maintenance and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sim.host("esx-a3").entering_maintenance
            assert task.info.state == "running"
            assert not sim.host("esx-a3").in_maintenance
            inv = inventory(drv, node)
            others = [h for h in sim.cluster("cluster-a").hosts if h.name != "esx-a3"]
            assert inv[orc.VCPU]["total"] == sum(h.threads for h in others)
            assert inv[orc.MEMORY_MB]["total"] == sum(h.memory_mb for h in others)
            assert inv[orc.MEMORY_MB]["max_unit"] == max(h.memory_mb for h in others)
        finally:
            if task is not None:
                task.CancelTask()
            Disconnect(client)


# -- allocation ratios ----------------------------------------------------------------------


def test_allocation_ratios_follow_nova_options(tls_sim, start, conf_overrides):
    conf = nova.conf.CONF
    drv = start(tls_sim, ["cluster-a"])
    node = node_of(drv, "cluster-a")
    # A new provider gets Nova's initial ratios.
    inv = inventory(drv, node)
    assert inv[orc.VCPU]["allocation_ratio"] == conf.initial_cpu_allocation_ratio
    assert inv[orc.MEMORY_MB]["allocation_ratio"] == conf.initial_ram_allocation_ratio
    assert inv[orc.DISK_GB]["allocation_ratio"] == conf.initial_disk_allocation_ratio

    conf_overrides(None, initial_cpu_allocation_ratio=8.0, initial_ram_allocation_ratio=1.25,
                   initial_disk_allocation_ratio=2.0)
    tree = new_tree(node)
    inv = inventory(drv, node, tree)
    assert (inv[orc.VCPU]["allocation_ratio"], inv[orc.MEMORY_MB]["allocation_ratio"],
            inv[orc.DISK_GB]["allocation_ratio"]) == (8.0, 1.25, 2.0)

    # A ratio set in placement (here: on the provider) is kept ...
    changed = {rc: dict(record) for rc, record in inv.items()}
    changed[orc.VCPU]["allocation_ratio"] = 3.0
    tree.update_inventory(node, changed)
    inv = inventory(drv, node, tree)
    assert inv[orc.VCPU]["allocation_ratio"] == 3.0
    assert inv[orc.MEMORY_MB]["allocation_ratio"] == 1.25

    # ... unless nova.conf sets one: that wins.
    conf_overrides(None, cpu_allocation_ratio=2.0, ram_allocation_ratio=1.0)
    inv = inventory(drv, node, tree)
    assert inv[orc.VCPU]["allocation_ratio"] == 2.0
    assert inv[orc.MEMORY_MB]["allocation_ratio"] == 1.0


def test_memory_max_unit_never_exceeds_a_host(tls_sim, start, conf_overrides):
    # Memory overcommit lets a host take more VMs, not one VM bigger than itself.
    conf_overrides(None, ram_allocation_ratio=1.5, cpu_allocation_ratio=16.0)
    sim = tls_sim.simulator
    drv = start(tls_sim, ["cluster-a"])
    inv = inventory(drv, node_of(drv, "cluster-a"))
    hosts = sim.cluster("cluster-a").hosts
    assert inv[orc.MEMORY_MB]["allocation_ratio"] == 1.5
    assert inv[orc.MEMORY_MB]["max_unit"] <= max(h.memory_mb for h in hosts)
    assert inv[orc.VCPU]["max_unit"] <= max(h.threads for h in hosts)


# -- max_unit: what one host can take ---------------------------------------------------------


@pytest.fixture
def loaded_sim():
    with running_simulator(loaded_inventory(), tls=True) as server:
        yield server


def test_max_unit_is_the_best_hosts_free_memory(loaded_sim, start):
    sim = loaded_sim.simulator
    drv = start(loaded_sim, ["cluster-a"], drs={"make_room": False})
    node = node_of(drv, "cluster-a")
    inv = inventory(drv, node)
    hosts = sim.cluster("cluster-a").hosts
    best_free = expected_memory_max_unit(sim, "cluster-a")
    # The scenario: the best host now is neither the biggest nor an empty one.
    assert best_free < max(h.memory_mb for h in hosts)
    assert inv[orc.MEMORY_MB]["max_unit"] == best_free
    ratio = inv[orc.VCPU]["allocation_ratio"]
    assert inv[orc.VCPU]["max_unit"] == max(
        min(h.threads, math.floor(h.threads * ratio - sum(v.num_cpus for v in h.powered_on_vms())))
        for h in hosts)
    # Totals stay the whole cluster's.
    assert inv[orc.MEMORY_MB]["total"] == sum(h.memory_mb for h in hosts)


def test_max_unit_with_make_room(loaded_sim, start):
    sim = loaded_sim.simulator
    drv = start(loaded_sim, ["cluster-a"], drs={"make_room": True, "max_room_moves": 4})
    inv = inventory(drv, node_of(drv, "cluster-a"))
    hosts = sim.cluster("cluster-a").hosts
    best_free = expected_memory_max_unit(sim, "cluster-a")
    max_unit = inv[orc.MEMORY_MB]["max_unit"]
    assert best_free <= max_unit <= max(h.memory_mb for h in hosts)
    # Other hosts have room for a few 32 GiB VMs: moving them frees more than
    # any host has free now.
    assert max_unit > best_free
    # Reporting it moved nothing.
    assert {h.name: h.used_memory_mb() for h in hosts} == {
        "esx-a1": 5 * 32768, "esx-a2": 3 * 32768, "esx-a3": 9 * 32768, "esx-a4": 32768}


def test_make_room_with_no_moves_allowed_is_the_best_free_host(loaded_sim, start):
    sim = loaded_sim.simulator
    drv = start(loaded_sim, ["cluster-a"], drs={"make_room": True, "max_room_moves": 0})
    inv = inventory(drv, node_of(drv, "cluster-a"))
    assert inv[orc.MEMORY_MB]["max_unit"] == expected_memory_max_unit(sim, "cluster-a")


# -- max_unit with the host groups every instance must honour --------------------------------


def bind_instances(server, cluster: str, hosts: list[str], affine: bool = False) -> None:
    """The operator's setup in vCenter: host group "reserved" (``hosts``), VM group
    "openstack" and a must VM-Host rule: its VMs run on (``affine``) or off the group."""
    si = connect(server)
    try:
        sim = server.simulator
        ref = si.content.searchIndex.FindByInventoryPath(f"dc1/host/{cluster}")
        members = [vim.HostSystem(sim.host(h).moid, si._stub) for h in hosts]
        rule = vim.cluster.VmHostRuleInfo(name="openstack-placement", enabled=True,
                                          mandatory=True, vmGroupName="openstack")
        if affine:
            rule.affineHostGroupName = "reserved"
        else:
            rule.antiAffineHostGroupName = "reserved"
        spec = vim.cluster.ConfigSpecEx(
            groupSpec=[vim.cluster.GroupSpec(operation="add", info=vim.cluster.HostGroup(
                           name="reserved", host=members)),
                       vim.cluster.GroupSpec(operation="add", info=vim.cluster.VmGroup(
                           name="openstack", vm=[]))],
            rulesSpec=[vim.cluster.RuleSpec(operation="add", info=rule)])
        WaitForTask(ref.ReconfigureComputeResource_Task(spec, True))
    finally:
        Disconnect(si)


@pytest.mark.parametrize("affine", [False, True], ids=["must-run-off", "must-run-on"])
def test_max_unit_counts_only_hosts_the_instance_vm_group_rules_allow(loaded_sim, start,
                                                                      affine):
    sim = loaded_sim.simulator
    free = {h.name: h.memory_mb - h.used_memory_mb() for h in sim.cluster("cluster-a").hosts}
    best = max(free, key=free.get)  # esx-a2: the only host with 160 GiB free
    drv = start(loaded_sim, ["cluster-a"], drs={"make_room": False,
                                                "instance_vm_group": "openstack"})
    node = node_of(drv, "cluster-a")
    assert inventory(drv, node)[orc.MEMORY_MB]["max_unit"] == free[best]
    # Instances must keep off the best host from now on: a flavor that fits only
    # there is no longer advertised.
    if affine:
        bind_instances(loaded_sim, "cluster-a", [h for h in free if h != best], affine=True)
    else:
        bind_instances(loaded_sim, "cluster-a", [best])
    inv = inventory(drv, node)
    assert inv[orc.MEMORY_MB]["max_unit"] == max(f for h, f in free.items() if h != best)
    assert inv[orc.MEMORY_MB]["max_unit"] < free[best]
    # Totals stay the cluster's: the rule binds where instances go, not what exists.
    assert inv[orc.MEMORY_MB]["total"] == sum(h.memory_mb for h in sim.cluster("cluster-a").hosts)
    # A driver whose instances join another VM group is not bound by this one's rules.
    other = start(loaded_sim, ["cluster-a"], drs={"make_room": False,
                                                  "instance_vm_group": "elsewhere"})
    assert inventory(other, node)[orc.MEMORY_MB]["max_unit"] == free[best]


def test_spawn_keeps_to_the_instance_vm_group_rules_and_joins_the_group(loaded_sim, start,
                                                                       nova_db):
    from nova import context as nova_context
    from nova import exception

    from tests.driver.conftest import make_instance

    sim = loaded_sim.simulator
    free = {h.name: h.memory_mb - h.used_memory_mb() for h in sim.cluster("cluster-a").hosts}
    best = max(free, key=free.get)
    bind_instances(loaded_sim, "cluster-a", [best])
    drv = start(loaded_sim, ["cluster-a"], drs={"make_room": False,
                                                "instance_vm_group": "openstack"})
    node = node_of(drv, "cluster-a")
    ctx = nova_context.get_admin_context()
    # Without the rule the balanced policy would pick the emptiest host, the reserved one.
    inst = make_instance(node, vcpus=2, memory_mb=32768, root_gb=1, name="bound")
    drv.spawn(ctx, inst, None, [], None, {}, network_info=[])
    vm = sim.vm(inst.uuid)
    assert vm.get_property("runtime.host")._moId != sim.host(best).moid
    group = next(g for g in sim.cluster("cluster-a").groups if g.name == "openstack")
    assert {r._moId for r in group.vm} == {vm.moid}
    # A flavor only the reserved host could take is refused before any VM exists.
    big = make_instance(node, vcpus=2, memory_mb=free[best], root_gb=1, name="too-big")
    with pytest.raises(exception.ComputeResourcesUnavailable) as err:
        drv.spawn(ctx, big, None, [], None, {}, network_info=[])
    assert "reserved" in str(err.value)
    assert not drv.instance_exists(big)
    assert big.uuid not in drv.services.drs.claims(drv.services.nodes[node].moref)
    drv.destroy(ctx, inst, [])
    group = next(g for g in sim.cluster("cluster-a").groups if g.name == "openstack")
    assert not group.vm  # vCenter drops a destroyed VM from its groups; the group stays


# -- disk --------------------------------------------------------------------------------------


def test_disk_over_matching_datastores_of_usable_hosts(conf_overrides, start):
    inv_data = default_inventory()
    dc = inv_data["datacenters"][0]
    dc["datastores"].append({"name": "local-a4", "capacity_gb": 900, "hosts": ["esx-a4"]})
    with running_simulator(inv_data, tls=True) as server:
        sim = server.simulator
        drv = start(server, ["cluster-a"])
        node = node_of(drv, "cluster-a")
        # Some space is taken on shared-a.
        sim.files.write("shared-a", "images/big.vmdk", size=5000 * GIB)
        sim.registry.touch()
        inv = inventory(drv, node)
        total, best = expected_disk(sim, "cluster-a")
        assert total == 8192 + 4096 + 900
        assert (inv[orc.DISK_GB]["total"], inv[orc.DISK_GB]["max_unit"]) == (total, best)
        assert best == 4096  # shared-all now has most free space

        # The host that alone mounts local-a4 disconnects: local-a4 no longer counts.
        sim.disconnect_host("esx-a4")
        inv = inventory(drv, node)
        assert inv[orc.DISK_GB]["total"] == expected_disk(sim, "cluster-a")[0] == 8192 + 4096

        # An inaccessible datastore does not count either.
        sim.datastore_by_name("shared-all").accessible = False
        sim.registry.touch()
        inv = inventory(drv, node)
        assert (inv[orc.DISK_GB]["total"], inv[orc.DISK_GB]["max_unit"]) == \
            expected_disk(sim, "cluster-a") == (8192, 8192 - 5000)


def test_disk_follows_datastore_regex(tls_sim, start):
    sim = tls_sim.simulator
    sim.files.write("shared-a", "images/big.vmdk", size=1000 * GIB)
    drv = start(tls_sim, ["cluster-a"], datastore_regex="^shared-a$")
    inv = inventory(drv, node_of(drv, "cluster-a"))
    assert (inv[orc.DISK_GB]["total"], inv[orc.DISK_GB]["max_unit"]) == \
        expected_disk(sim, "cluster-a", "^shared-a$") == (8192, 8192 - 1000)
    assert drv.get_available_resource(node_of(drv, "cluster-a"))["local_gb"] == 8192


# -- a cluster with no usable host ---------------------------------------------------------------


def test_no_usable_host_keeps_the_node_but_takes_nothing(tls_sim, start, pyvmomi, caplog):
    sim = tls_sim.simulator
    drv = start(tls_sim, ["cluster-a"])
    node = node_of(drv, "cluster-a")
    tree = new_tree(node)
    before = inventory(drv, node, tree)
    assert set(before) == set(RESOURCES)
    tree.add_traits(node, "CUSTOM_OPERATOR_TAG")

    enter_maintenance(pyvmomi, "esx-a1")
    enter_maintenance(pyvmomi, "esx-a2")
    sim.disconnect_host("esx-a3")
    sim.disconnect_host("esx-a4")
    caplog.set_level(logging.WARNING)
    inv = inventory(drv, node, tree)
    assert drv.get_available_nodes() == [node]
    # Every resource class stays (instances there keep their allocations) but
    # all of it is reserved.
    assert set(inv) == set(RESOURCES)
    for rc in RESOURCES:
        assert inv[rc]["total"] >= 1
        assert inv[rc]["reserved"] == inv[rc]["total"], rc
        assert 1 <= inv[rc]["max_unit"] <= inv[rc]["total"]
    assert any("no usable host" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING), caplog.text
    traits = tree.data(node).traits
    assert "CUSTOM_OPERATOR_TAG" in traits
    assert os_traits.HW_CPU_X86_AVX2 not in traits
    resources = drv.get_available_resource(node)
    assert resources["hypervisor_hostname"] == node
    # As in Nova's resource tracker, update_provider_tree follows at once
    # (and reuses the cluster read get_available_resource made).
    assert inventory(drv, node, tree)[orc.VCPU]["reserved"] == inv[orc.VCPU]["total"]

    # Hosts come back: schedulable again.
    sim.reconnect_host("esx-a3")
    inv = inventory(drv, node, tree)
    assert inv[orc.VCPU]["reserved"] == 0
    assert inv[orc.VCPU]["total"] == sim.host("esx-a3").threads
    assert inv[orc.DISK_GB]["reserved"] == 0


# -- traits ----------------------------------------------------------------------------------------


def test_cpu_traits_are_those_common_to_usable_hosts(tls_sim, start):
    sim = tls_sim.simulator
    drv = start(tls_sim)
    node_a, node_b = node_of(drv, "cluster-a"), node_of(drv, "cluster-b")
    tree_b = new_tree(node_b)
    drv.update_provider_tree(tree_b, node_b)
    traits_b = tree_b.data(node_b).traits
    assert {os_traits.HW_ARCH_X86_64, os_traits.HW_CPU_X86_AVX512F,
            os_traits.HW_CPU_X86_SHA, os_traits.HW_CPU_X86_AVX2} <= traits_b

    tree_a = new_tree(node_a)
    # Traits somebody else put on the provider; one is a CPU trait the driver
    # manages, which cluster-a's hosts do not all have.
    tree_a.update_traits(node_a, ["CUSTOM_RACK_7", os_traits.COMPUTE_NET_ATTACH_INTERFACE,
                                  os_traits.HW_CPU_X86_AVX512F])
    drv.update_provider_tree(tree_a, node_a)
    traits_a = tree_a.data(node_a).traits
    assert {os_traits.HW_ARCH_X86_64, os_traits.HW_CPU_X86_AVX2, os_traits.HW_CPU_X86_AESNI,
            os_traits.HW_CPU_X86_SSE42} <= traits_a
    assert os_traits.HW_CPU_X86_AVX512F not in traits_a  # only esx-a3 has it
    assert os_traits.HW_CPU_X86_SHA not in traits_a
    assert {"CUSTOM_RACK_7", os_traits.COMPUTE_NET_ATTACH_INTERFACE} <= traits_a

    # Only esx-a3 is left usable: its features become the cluster's.
    for name in ("esx-a1", "esx-a2", "esx-a4"):
        sim.disconnect_host(name)
    drv.update_provider_tree(tree_a, node_a)
    traits_a = tree_a.data(node_a).traits
    assert {os_traits.HW_CPU_X86_AVX512F, os_traits.HW_CPU_X86_SHA, "CUSTOM_RACK_7"} <= traits_a


# -- get_available_resource ----------------------------------------------------------------------


def test_available_resource_agrees_with_the_provider_tree(loaded_sim, start):
    sim = loaded_sim.simulator
    drv = start(loaded_sim)
    for node in drv.get_available_nodes():
        inv = inventory(drv, node)
        res = drv.get_available_resource(node)
        assert res["vcpus"] == inv[orc.VCPU]["total"]
        assert res["memory_mb"] == inv[orc.MEMORY_MB]["total"]
        assert res["local_gb"] == inv[orc.DISK_GB]["total"]
        assert res["hypervisor_hostname"] == node
        assert drv.get_nodenames_by_uuid()[res["uuid"]] == node
        assert res["hypervisor_type"] == HYPERVISOR_TYPE
    node_a = node_of(drv, "cluster-a")
    res = drv.get_available_resource(node_a)
    on = [vm for h in sim.cluster("cluster-a").hosts for vm in h.powered_on_vms()]
    assert res["memory_mb_used"] == sum(vm.memory_mb for vm in on)
    assert res["vcpus_used"] == sum(vm.num_cpus for vm in on)


# -- SOAP round trips ----------------------------------------------------------------------------

#: Hosts and VMs of the big cluster. Each VM costs the client milliseconds of
#: suds parsing per read (tens of them while the simulator sends runtime.host
#: as xsi:type="ManagedObject", which suds searches its whole schema for), so
#: the size is what keeps this test within seconds.
BIG_HOSTS, BIG_VMS = 32, 128


def cluster_inventory(clusters: dict[str, tuple[int, int]]) -> dict:
    """Clusters of ``name: (hosts, VMs)``; a fifth of the VMs are powered off."""
    cluster_list, vms = [], []
    for name, (n_hosts, n_vms) in clusters.items():
        cluster_list.append({"name": name, "hosts": [
            {"name": f"{name}-{i:02d}", "cores": 16, "memory_mb": 524288,
             "cpu_features": ["sse4_2", "avx2"]} for i in range(n_hosts)]})
        vms += [{"name": f"{name}-vm-{i:04d}", "cluster": name,
                 "host": f"{name}-{i % n_hosts:02d}", "cpus": 1 + i % 4,
                 "memory_mb": 1024 * (1 + i % 8), "power": "on" if i % 5 else "off"}
                for i in range(n_vms)]
    return {"datacenters": [{
        "name": "dc1", "datastores": [{"name": "ds-shared", "capacity_gb": 65536}],
        "clusters": cluster_list, "vms": vms}]}


def counting(sim):
    def calls(fn) -> dict[str, int]:
        with sim.registry.lock:
            sim.request_counts.clear()
        fn()
        with sim.registry.lock:
            return dict(sim.request_counts)

    return calls


def test_reading_a_cluster_costs_the_same_round_trips_whatever_its_size(start):
    inv_data = cluster_inventory({"small": (2, 2), "big": (BIG_HOSTS, BIG_VMS)})
    with running_simulator(inv_data, tls=True) as server:
        sim = server.simulator
        calls = counting(sim)
        # The full read (the cluster cache's costs: test_cluster_cache.py).
        drv = start(server, ["small", "big"], maximum_objects=10000, cluster_cache=False)
        small, big = node_of(drv, "small"), node_of(drv, "big")
        assert len(sim.cluster("big").hosts) == BIG_HOSTS
        assert sum(len(h.vms) for h in sim.cluster("big").hosts) == BIG_VMS

        trees = {small: new_tree(small), big: new_tree(big)}
        small_calls = calls(lambda: drv.update_provider_tree(trees[small], small))
        big_calls = calls(lambda: drv.update_provider_tree(trees[big], big))
        assert small_calls == big_calls
        assert big_calls == {"RetrievePropertiesEx": 1}
        assert trees[big].data(big).inventory[orc.VCPU]["total"] == 32 * BIG_HOSTS
        assert trees[small].data(small).inventory[orc.VCPU]["total"] == 32 * 2

        # get_available_resource reads the same way.
        assert calls(lambda: drv.get_available_resource(small)) == {"RetrievePropertiesEx": 1}


def test_clusters_are_read_in_pages_of_maximum_objects(start):
    page = 7
    with running_simulator(cluster_inventory({"paged": (4, 20)}), tls=True) as server:
        sim = server.simulator
        calls = counting(sim)
        drv = start(server, ["paged"], maximum_objects=page, cluster_cache=False)
        node = node_of(drv, "paged")
        cluster = sim.cluster("paged")
        vms = [vm for h in cluster.hosts for vm in h.vms]
        stores = {ds.moid for h in cluster.hosts for ds in h.datastores}
        networks = {n.moid for h in cluster.hosts for n in h.networks}
        # The cluster itself, its hosts and VMs, and what the hosts mount.
        objects = 1 + len(cluster.hosts) + len(vms) + len(stores) + len(networks)
        tree = new_tree(node)
        counts = calls(lambda: drv.update_provider_tree(tree, node))
        assert counts.get("RetrievePropertiesEx") == 1
        assert 1 + counts.get("ContinueRetrievePropertiesEx", 0) == math.ceil(objects / page)
        assert set(counts) <= {"RetrievePropertiesEx", "ContinueRetrievePropertiesEx"}
        # Nothing was lost between pages.
        inv = tree.data(node).inventory
        assert inv[orc.VCPU]["total"] == 32 * 4
        res = drv.get_available_resource(node)
        on = [vm for vm in vms if vm.powered_on]
        assert res["vcpus_used"] >= sum(vm.num_cpus for vm in on)
        assert res["memory_mb_used"] >= sum(vm.memory_mb for vm in on)


def test_claims_between_periodic_updates_reuse_the_newest_cluster_read(
        tls_sim, start, nova_db, conf_overrides):
    from nova import context as nova_context

    from tests.driver.conftest import make_instance

    sim = tls_sim.simulator
    calls = counting(sim)
    drv = start(tls_sim, ["cluster-a"], drs={"make_room": False}, cluster_read_max_age=30,
                cluster_cache=False)
    node = node_of(drv, "cluster-a")
    tree = new_tree(node)
    hosts = sim.cluster("cluster-a").hosts
    # Nova's periodic: one read serves get_available_resource and the provider tree.
    assert calls(lambda: drv.get_available_resource(node)) == {"RetrievePropertiesEx": 1}
    assert calls(lambda: drv.update_provider_tree(tree, node)) == {}
    assert tree.data(node).inventory[orc.MEMORY_MB]["max_unit"] == \
        max(h.memory_mb for h in hosts)

    # A spawn reads the cluster to place its VM. The claim after it (Nova asks for
    # the provider tree again) reuses that read, with the new VM counted through
    # its DRS claim: the biggest host is no longer the one that takes most.
    ctx = nova_context.get_admin_context()
    big = max(hosts, key=lambda h: h.memory_mb)
    instance = make_instance(node, memory_mb=200 * 1024, root_gb=0)
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    assert sim.vm(instance.uuid).host is big
    assert calls(lambda: drv.update_provider_tree(tree, node)) == {}
    expected = max(max(h.memory_mb for h in hosts if h is not big),
                   big.memory_mb - 200 * 1024)
    assert tree.data(node).inventory[orc.MEMORY_MB]["max_unit"] == expected
    conf_overrides("vsphere", cluster_read_max_age=0)
    assert calls(lambda: drv.update_provider_tree(tree, node)) == {"RetrievePropertiesEx": 1}
    assert tree.data(node).inventory[orc.MEMORY_MB]["max_unit"] == expected  # the same

    # What changes behind Nova's back shows at the next periodic update.
    conf_overrides("vsphere", cluster_read_max_age=30)
    total = tree.data(node).inventory[orc.MEMORY_MB]["total"]
    lost = next(h for h in hosts if h is not big)
    sim.disconnect_host(lost.name)
    drv.update_provider_tree(tree, node)
    assert tree.data(node).inventory[orc.MEMORY_MB]["total"] == total  # the reused read
    drv.get_available_resource(node)
    drv.update_provider_tree(tree, node)
    assert tree.data(node).inventory[orc.MEMORY_MB]["total"] == total - lost.memory_mb
    drv.destroy(ctx, instance, [])
