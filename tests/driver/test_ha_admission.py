"""vSphere HA admission control: what HA holds back for failovers is not offered to Nova.

cluster-a of the default inventory: esx-a1 and esx-a2 (256 GiB, 32 threads
each), esx-a3 (384 GiB, 48 threads), esx-a4 (128 GiB, 16 threads) -- 1 TiB
and 128 threads. Each policy through the provider tree as placement sees it,
and through spawns that the simulator admits (or refuses) as vSphere HA does.
"""

from __future__ import annotations

import pytest
from nova import context as nova_context
from nova import exception
from pyVmomi import vim

from nova_vsphere_driver import driver as vsphere_driver
from nova_vsphere_driver.simulator.inventory import default_inventory
from tests.driver.conftest import configure, make_instance, new_tree, node_of
from tests.fixtures import Disconnect, connect, running_simulator
from tests.unit.simulator.helpers import bind, run

GIB = 1024
TOTAL_MB = 1024 * GIB
TOTAL_THREADS = 128


@pytest.fixture
def ha_cluster(conf_overrides, nova_db):
    """start(admission) -> (driver, simulator server, node), cluster-a under that HA policy."""
    made = []

    def start(admission: dict):
        inventory = default_inventory()
        inventory["datacenters"][0]["clusters"][0]["ha"] = {"enabled": True,
                                                            "admission": admission}
        server = running_simulator(inventory, tls=True)
        made.append(server)
        sim_server = server.__enter__()
        configure(conf_overrides, sim_server, clusters=("cluster-a",), cluster_read_max_age=0)
        conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
        drv = vsphere_driver.VSphereDriver(None)
        drv.init_host("compute-1")
        made.append(drv)
        return drv, sim_server, node_of(drv, "cluster-a")

    yield start
    for thing in reversed(made):
        if isinstance(thing, vsphere_driver.VSphereDriver):
            thing.cleanup_host("compute-1")
        else:
            thing.__exit__(None, None, None)


def _inventory(drv, node: str) -> dict:
    tree = new_tree(node)
    drv.get_available_resource(node)
    drv.update_provider_tree(tree, node)
    return tree.data(node).inventory


def _spawn(drv, node: str, memory_gib: int, name: str):
    instance = make_instance(node, vcpus=2, memory_mb=memory_gib * GIB, root_gb=0, name=name)
    drv.spawn(nova_context.get_admin_context(), instance, None, [], None, {}, network_info=[])
    return instance


def test_failover_level_holds_back_the_largest_host(ha_cluster):
    drv, server, node = ha_cluster({"policy": "failover_hosts", "failover_level": 1})
    sim = server.simulator
    inv = _inventory(drv, node)
    # esx-a3 is the largest by memory and by threads: its capacity is reserved.
    assert (inv["MEMORY_MB"]["total"], inv["MEMORY_MB"]["reserved"]) == (TOTAL_MB, 384 * GIB)
    assert (inv["VCPU"]["total"], inv["VCPU"]["reserved"]) == (TOTAL_THREADS, 48)
    assert inv["MEMORY_MB"]["max_unit"] == 384 * GIB  # esx-a3 alone still fits it

    for i in range(3):
        _spawn(drv, node, 200, f"big-{i}")
    # 640 GiB admitted, 600 GiB in use: no VM over 40 GiB fits, whichever host has room.
    assert _inventory(drv, node)["MEMORY_MB"]["max_unit"] == 40 * GIB
    with pytest.raises(exception.ComputeResourcesUnavailable, match="HA"):
        _spawn(drv, node, 41, "over")
    assert "over" not in {vm.name for vm in sim.vms()}  # nothing left behind
    _spawn(drv, node, 40, "fits")
    assert _inventory(drv, node)["MEMORY_MB"]["max_unit"] == 1  # nothing more


def test_percentage_holds_back_that_share_of_the_cluster(ha_cluster):
    drv, _server, node = ha_cluster({"policy": "percentage", "cpu_percent": 25,
                                     "memory_percent": 50})
    inv = _inventory(drv, node)
    assert (inv["MEMORY_MB"]["total"], inv["MEMORY_MB"]["reserved"]) == (TOTAL_MB, 512 * GIB)
    assert (inv["VCPU"]["total"], inv["VCPU"]["reserved"]) == (TOTAL_THREADS, 32)
    _spawn(drv, node, 250, "first")
    _spawn(drv, node, 250, "second")
    assert _inventory(drv, node)["MEMORY_MB"]["max_unit"] == 12 * GIB
    with pytest.raises(exception.ComputeResourcesUnavailable):
        _spawn(drv, node, 13, "over")


def test_dedicated_failover_hosts_are_never_offered_nor_targets(ha_cluster):
    drv, server, node = ha_cluster({"policy": "dedicated", "hosts": ["esx-a3"]})
    sim = server.simulator
    inv = _inventory(drv, node)
    # esx-a3 is not a usable host: not in the totals, not in max_unit.
    assert (inv["MEMORY_MB"]["total"], inv["MEMORY_MB"]["reserved"]) == (640 * GIB, 0)
    assert inv["VCPU"]["total"] == TOTAL_THREADS - 48
    assert inv["MEMORY_MB"]["max_unit"] == 256 * GIB
    state = drv.services.states.read(node)
    assert state.host(sim.host("esx-a3").moid).failover
    assert sim.host("esx-a3").moid not in {h.id for h in
                                           drv.services.drs.cluster_snapshot(state).hosts}

    # Placement: never onto the idle (and largest) esx-a3.
    placed = [_spawn(drv, node, 48, f"vm-{i}") for i in range(4)]
    assert {sim.vm(i.uuid).host.name for i in placed} <= {"esx-a1", "esx-a2", "esx-a4"}
    # Balancing: esx-a1 loaded through vCenter, a plan spreads it but not onto esx-a3.
    si = connect(server)
    try:
        for vm in sim.vms():
            if vm.host.name != "esx-a1":
                run(bind(si, vm).RelocateVM_Task(vim.vm.RelocateSpec(
                    host=bind(si, sim.host("esx-a1")))))
        # HA refuses esx-a3 to vCenter's own clients too.
        with pytest.raises(vim.fault.InsufficientFailoverResourcesFault):
            run(bind(si, sim.vms()[0]).RelocateVM_Task(vim.vm.RelocateSpec(
                host=bind(si, sim.host("esx-a3")))))
    finally:
        Disconnect(si)
    plan = drv.balance_cluster(node, dry_run=True)
    assert plan.moves
    assert sim.host("esx-a3").moid not in {m.target for m in plan.moves}

