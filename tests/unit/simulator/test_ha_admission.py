"""vSphere HA in the simulator: dasConfig from the inventory and the API, power-ons admitted
as HA's admission control would."""

from __future__ import annotations

import pytest
from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator import Simulator
from nova_vsphere_driver.simulator.inventory import InventoryError, default_inventory
from tests.unit.simulator.helpers import bind, create_vm, fault_of, run

Cluster = vim.cluster
GIB = 1024


def _reconfigure(si, sim, das):
    run(bind(si, sim.cluster("cluster-b")).ReconfigureComputeResource_Task(
        Cluster.ConfigSpecEx(dasConfig=das), True))


def test_ha_is_off_unless_configured(si):
    cluster = si.content.rootFolder.childEntity[0].hostFolder.childEntity[0]
    assert cluster.configurationEx.dasConfig.enabled is False


def test_failover_level_admits_what_survives_losing_the_largest_hosts(si, sim):
    # cluster-b: esx-b1, esx-b2 (512 GiB), esx-b3, esx-b4 (192 GiB): 1408 GiB.
    _reconfigure(si, sim, Cluster.DasConfigInfo(
        enabled=True, admissionControlEnabled=True,
        admissionControlPolicy=Cluster.FailoverLevelAdmissionControlPolicy(failoverLevel=2)))
    das = bind(si, sim.cluster("cluster-b")).configurationEx.dasConfig
    assert das.enabled and das.admissionControlPolicy.failoverLevel == 2
    # 1408 - 2 x 512 = 384 GiB may run.
    create_vm(si, sim, "first", "esx-b1", memory_mb=300 * GIB, power_on=True)
    second = create_vm(si, sim, "second", "esx-b3", memory_mb=100 * GIB)
    fault = fault_of(second.PowerOnVM_Task())
    assert isinstance(fault, vim.fault.InsufficientFailoverResourcesFault)
    assert sim.vm("second").power_state == "poweredOff"
    run(bind(si, sim.vm("first")).PowerOffVM_Task())
    run(second.PowerOnVM_Task())


def test_percentage_and_dedicated_hosts(si, sim):
    _reconfigure(si, sim, Cluster.DasConfigInfo(
        enabled=True, admissionControlEnabled=True,
        admissionControlPolicy=Cluster.FailoverResourcesAdmissionControlPolicy(
            cpuFailoverResourcesPercent=10, memoryFailoverResourcesPercent=90,
            autoComputePercentages=False)))
    # 10% of 1408 GiB may run: 140.8 GiB.
    vm = create_vm(si, sim, "big", "esx-b1", memory_mb=141 * GIB)
    assert isinstance(fault_of(vm.PowerOnVM_Task()), vim.fault.InsufficientFailoverResourcesFault)
    _reconfigure(si, sim, Cluster.DasConfigInfo(
        admissionControlPolicy=Cluster.FailoverHostAdmissionControlPolicy(
            failoverHosts=[bind(si, sim.host("esx-b2"))])))
    run(vm.PowerOnVM_Task())  # the dedicated policy holds no capacity back elsewhere
    with pytest.raises(vim.fault.InsufficientFailoverResourcesFault):
        run(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=bind(si, sim.host("esx-b2")))))
    parked = create_vm(si, sim, "parked", "esx-b2")
    assert isinstance(fault_of(parked.PowerOnVM_Task()),
                      vim.fault.InsufficientFailoverResourcesFault)
    with pytest.raises(vmodl.fault.InvalidArgument):  # a failover host outside the cluster
        _reconfigure(si, sim, Cluster.DasConfigInfo(
            admissionControlPolicy=Cluster.FailoverHostAdmissionControlPolicy(
                failoverHosts=[bind(si, sim.host("esx-a1"))])))


def test_inventory_configures_ha_after_its_vms_run():
    inventory = default_inventory()
    dc = inventory["datacenters"][0]
    # More running than HA would admit now: the inventory's VMs run anyway.
    dc["vms"] = [{"name": f"old-{i}", "cluster": "cluster-a", "host": f"esx-a{1 + i}",
                  "memory_mb": 200 * GIB, "power": "on"} for i in range(3)]
    dc["clusters"][0]["ha"] = {"admission": {"policy": "failover_hosts", "failover_level": 1}}
    sim = Simulator(inventory)
    config = sim.cluster("cluster-a").das_config
    assert config.admissionControlPolicy.failoverLevel == 1
    assert all(vm.powered_on for vm in sim.vms())
    dc["clusters"][0]["ha"] = {"admission": {"policy": "dedicated", "hosts": ["esx-b1"]}}
    with pytest.raises(InventoryError, match="dedicated failover hosts"):
        Simulator(inventory)
    dc["clusters"][0]["ha"] = {"admission": {"policy": "slots"}}
    with pytest.raises(InventoryError, match="policy must be one of"):
        Simulator(inventory)
