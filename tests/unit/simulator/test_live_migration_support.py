"""What live migration and host operations need of the simulator, through pyVmomi:
cross-cluster vMotion of a running VM, NIC checks and re-backing on relocation,
cancelling a vMotion in flight, and host boot time / uptime."""

from __future__ import annotations

import datetime
import time

import pytest
from pyVmomi import vim, vmodl

from tests.unit.simulator.helpers import Dev, bind, create_vm, fault_of, run


def _nic(vm):
    return next(d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualEthernetCard))


def test_running_vm_moves_to_another_cluster_with_its_files(si, sim):
    vm = create_vm(si, sim, "traveller", "esx-a1", datastore="shared-a", disk_gb=2,
                   memory_mb=4096, network="VM Network", power_on=True)
    b2 = bind(si, sim.host("esx-b2"))
    pool_b = bind(si, sim.cluster("cluster-b").resource_pool)
    spec = vim.vm.RelocateSpec(host=b2, pool=pool_b,
                               datastore=bind(si, sim.datastores["shared-b"]))
    run(vm.RelocateVM_Task(spec))
    assert vm.runtime.host == b2 and vm.resourcePool == pool_b
    assert vm.runtime.powerState == "poweredOn"
    assert vm.summary.config.vmPathName.startswith("[shared-b] ")
    assert vm in b2.vm and vm not in bind(si, sim.host("esx-a1")).vm
    assert b2.summary.quickStats.overallMemoryUsage == 4096
    assert [n.name for n in vm.network] == ["VM Network"]
    assert sim.cluster("cluster-b").num_vmotions == 1


def test_vmotion_to_a_host_without_the_nics_network_is_refused(si, sim):
    vm = create_vm(si, sim, "wired", "esx-a1", datastore="shared-all", network="VM Network",
                   power_on=True)
    b1 = sim.host("esx-b1")
    b1.networks = [n for n in b1.networks if n.name != "VM Network"]
    spec = vim.vm.RelocateSpec(host=bind(si, b1),
                               pool=bind(si, sim.cluster("cluster-b").resource_pool))
    fault = fault_of(vm.RelocateVM_Task(spec))
    assert isinstance(fault, vim.fault.CannotAccessNetwork)
    assert fault.backing == "VM Network" and fault.connected is True
    assert vm.runtime.host.name == "esx-a1"
    # Powered off, a NIC without its network is no reason to refuse (a warning in vCenter).
    run(vm.PowerOffVM_Task())
    run(vm.RelocateVM_Task(spec))
    assert vm.runtime.host.name == "esx-b1"


def test_relocation_may_re_back_a_nic_and_nothing_else(si, sim):
    vm = create_vm(si, sim, "rewired", "esx-a1", datastore="shared-all", network="VM Network",
                   power_on=True)
    b3 = sim.host("esx-b3")
    b3.networks = [n for n in b3.networks if n.name != "VM Network"]
    pg = next(n for n in b3.networks if getattr(n, "key", None) and n.name == "br-int")
    nic = _nic(vm)
    nic.backing = Dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
        port=vim.dvs.PortConnection(switchUuid=pg.switch.uuid, portgroupKey=pg.key))
    pool_b = bind(si, sim.cluster("cluster-b").resource_pool)
    bad = vim.vm.RelocateSpec(host=bind(si, b3), pool=pool_b, deviceChange=[
        Dev.VirtualDeviceSpec(operation="add", device=Dev.VirtualCdrom(key=-1))])
    assert isinstance(fault_of(vm.RelocateVM_Task(bad)), vmodl.fault.InvalidArgument)
    spec = vim.vm.RelocateSpec(host=bind(si, b3), pool=pool_b, deviceChange=[
        Dev.VirtualDeviceSpec(operation="edit", device=nic)])
    run(vm.RelocateVM_Task(spec))
    assert vm.runtime.host.name == "esx-b3"
    backing = _nic(vm).backing
    assert backing.port.portgroupKey == pg.key
    assert _nic(vm).macAddress == nic.macAddress
    assert [n.name for n in vm.network] == ["br-int"]


def test_cancelling_a_slow_vmotion_stops_it_at_once(si, sim):
    vm = create_vm(si, sim, "slow-mover", "esx-a1", power_on=True)
    sim.faults.add_latency("RelocateVM_Task", 30)
    task = vm.RelocateVM_Task(vim.vm.RelocateSpec(host=bind(si, sim.host("esx-a2"))))
    deadline = time.monotonic() + 5
    while task.info.state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert task.info.cancelable is True
    started = time.monotonic()
    task.CancelTask()
    fault = fault_of(task, timeout=5)
    assert time.monotonic() - started < 2
    assert isinstance(fault, vmodl.fault.RequestCanceled)
    assert task.info.cancelled is True
    assert vm.runtime.host.name == "esx-a1" and vm.runtime.powerState == "poweredOn"
    with pytest.raises(vim.fault.InvalidState):
        task.CancelTask()


def test_host_boot_time_and_uptime_agree(si, sim):
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2, hours=3)
    sim.host("esx-b1").booted_at(when)
    host = bind(si, sim.host("esx-b1"))
    assert abs((host.runtime.bootTime - when).total_seconds()) < 1
    assert abs(host.summary.quickStats.uptime - (2 * 86400 + 3 * 3600)) <= 2
    with pytest.raises(ValueError):
        sim.host("esx-b1").booted_at(datetime.datetime(2024, 1, 1))


def test_vcenter_drs_places_a_vm_moving_with_its_files_into_its_cluster(si, sim):
    vm = create_vm(si, sim, "to-drs", "esx-a1", datastore="shared-a", disk_gb=1,
                   memory_mb=2048, power_on=True)
    sim.cluster("cluster-b").drs_config.enabled = True
    pool_b = bind(si, sim.cluster("cluster-b").resource_pool)
    # shared-a is not mounted in cluster-b: without a datastore no host qualifies.
    fault = fault_of(vm.RelocateVM_Task(vim.vm.RelocateSpec(pool=pool_b)))
    assert isinstance(fault, vim.fault.InsufficientResourcesFault)
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(
        pool=pool_b, datastore=bind(si, sim.datastores["shared-b"]))))
    assert vm.runtime.host.name in ("esx-b1", "esx-b2")  # the most free memory
    assert vm.resourcePool == pool_b and vm.runtime.powerState == "poweredOn"
