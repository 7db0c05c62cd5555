"""What resize and cold migration need of the simulator, as vCenter does it.

Typed arrays on the wire, a powered-off VM relocated into another cluster
(pool, host and datastore in one RelocateSpec), and ReconfigVM_Task changing
vCPUs, memory and root disk capacity -- or swapping the root disk -- all or
nothing.
"""

from __future__ import annotations

import pytest
from oslo_vmware import api as vmware_api
from oslo_vmware import vim_util
from pyVmomi import vim

from tests.unit.simulator.helpers import GB, Dev, bind, create_vm, fault_of, run

KB_PER_GB = 1024 * 1024


def _disk(vm):
    return next(d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk))


def test_device_array_goes_out_as_its_declared_type(sim_server, si, sim):
    """``config.hardware.device`` is an ArrayOfVirtualDevice, whatever device comes first.

    Nova's in-tree driver (``vim_util.get_array_items``) finds the devices
    under that name; the array used to be named after its first element
    (ArrayOfVirtualIDEController), which suds read as anyType.
    """
    vm = create_vm(si, sim, "typed", "esx-a1", disk_gb=1, network="VM Network")
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=[
        vim.option.OptionValue(key="nova.resize.host", value="host-1")])))
    session = vmware_api.VMwareAPISession("127.0.0.1", sim.username, sim.password, 2, 0.05,
                                          port=sim_server.port, scheme="http")
    try:
        ref = vim_util.get_moref(vm._moId, "VirtualMachine")
        value = session.invoke_api(vim_util, "get_object_property", session.vim, ref,
                                   "config.hardware.device")
        assert type(value).__name__ == "ArrayOfVirtualDevice"
        devices = value.VirtualDevice
        kinds = [type(d).__name__ for d in devices]
        assert "VirtualIDEController" in kinds and "VirtualDisk" in kinds
        assert len(devices) == len(vm.config.hardware.device)
        options = session.invoke_api(vim_util, "get_object_property", session.vim, ref,
                                     "config.extraConfig")
        assert type(options).__name__ == "ArrayOfOptionValue"
        assert [(o.key, o.value) for o in options.OptionValue] == [("nova.resize.host",
                                                                     "host-1")]
    finally:
        session.logout()


def test_relocate_into_another_cluster_with_pool_host_and_datastore(si, sim):
    vm = create_vm(si, sim, "mover", "esx-a1", datastore="shared-a", cpus=2, memory_mb=2048,
                   disk_gb=4)
    other = create_vm(si, sim, "stays", "esx-a2", datastore="shared-a")
    third = create_vm(si, sim, "third", "esx-a3", datastore="shared-a")
    cluster_a = bind(si, sim.cluster("cluster-a"))
    run(cluster_a.ReconfigureComputeResource_Task(vim.cluster.ConfigSpecEx(rulesSpec=[
        vim.cluster.RuleSpec(operation="add", info=vim.cluster.AntiAffinityRuleSpec(
            name="apart", enabled=True, mandatory=True, vm=[vm, other, third]))]), True))
    free_b = bind(si, sim.datastores["shared-b"]).summary.freeSpace
    pool_b = bind(si, sim.cluster("cluster-b").resource_pool)
    b2 = bind(si, sim.host("esx-b2"))

    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(
        pool=pool_b, host=b2, datastore=bind(si, sim.datastores["shared-b"]))))

    assert vm.runtime.host == b2 and vm.resourcePool == pool_b
    assert vm.runtime.powerState == "poweredOff"
    assert vm.summary.config.vmPathName == "[shared-b] mover/mover.vmx"
    assert _disk(vm).backing.fileName == "[shared-b] mover/mover.vmdk"
    assert not sim.files.exists("shared-a", "mover")
    assert free_b - bind(si, sim.datastores["shared-b"]).summary.freeSpace >= 4 * GB
    assert vm in b2.vm and vm not in bind(si, sim.host("esx-a1")).vm
    # vCenter drops a VM that leaves a cluster from that cluster's rules.
    rule = next(r for r in sim.cluster("cluster-a").rules if r.name == "apart")
    assert {r._moId for r in rule.vm} == {other._moId, third._moId}
    # And it can come back the same way.
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(
        pool=bind(si, sim.cluster("cluster-a").resource_pool),
        host=bind(si, sim.host("esx-a1")), datastore=bind(si, sim.datastores["shared-a"]))))
    assert vm.runtime.host.name == "esx-a1"
    assert vm.summary.config.vmPathName == "[shared-a] mover/mover.vmx"


def test_relocate_into_another_cluster_without_a_mounted_datastore_changes_nothing(si, sim):
    vm = create_vm(si, sim, "stuck", "esx-a1", datastore="shared-a", disk_gb=1)
    fault = fault_of(vm.RelocateVM_Task(vim.vm.RelocateSpec(
        pool=bind(si, sim.cluster("cluster-b").resource_pool),
        host=bind(si, sim.host("esx-b1")))))
    assert isinstance(fault, vim.fault.InvalidDatastore)
    assert vm.runtime.host.name == "esx-a1"
    assert vm.resourcePool._moId == sim.cluster("cluster-a").resource_pool.moid


def test_reconfigure_resizes_a_powered_off_vm_and_grows_its_disk(si, sim):
    vm = create_vm(si, sim, "grower", "esx-a1", datastore="shared-a", cpus=2, memory_mb=2048,
                   disk_gb=10)
    free = bind(si, sim.datastores["shared-a"]).summary.freeSpace
    disk = _disk(vm)
    disk.capacityInKB = 20 * KB_PER_GB
    disk.capacityInBytes = 20 * GB
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(
        numCPUs=8, memoryMB=16384,
        cpuAllocation=vim.ResourceAllocationInfo(limit=4000, reservation=0),
        deviceChange=[Dev.VirtualDeviceSpec(operation="edit", device=disk)])))
    assert (vm.config.hardware.numCPU, vm.config.hardware.memoryMB) == (8, 16384)
    assert vm.config.cpuAllocation.limit == 4000
    assert _disk(vm).capacityInKB == 20 * KB_PER_GB
    assert _disk(vm).backing.fileName == disk.backing.fileName
    assert free - bind(si, sim.datastores["shared-a"]).summary.freeSpace == 10 * GB


def test_reconfigure_that_shrinks_a_disk_changes_nothing(si, sim):
    vm = create_vm(si, sim, "shrinker", "esx-a1", cpus=2, memory_mb=2048, disk_gb=10)
    disk = _disk(vm)
    disk.capacityInKB = 5 * KB_PER_GB
    disk.capacityInBytes = 5 * GB
    fault = fault_of(vm.ReconfigVM_Task(vim.vm.ConfigSpec(
        numCPUs=4, deviceChange=[Dev.VirtualDeviceSpec(operation="edit", device=disk)])))
    assert isinstance(fault, vim.fault.InvalidDeviceOperation)
    assert vm.config.hardware.numCPU == 2  # all or nothing
    assert _disk(vm).capacityInKB == 10 * KB_PER_GB


@pytest.mark.parametrize("too_many", [True, False])
def test_reconfigure_beyond_the_hosts_processors_is_refused(si, sim, too_many):
    vm = create_vm(si, sim, "wide", "esx-a4", cpus=2)  # esx-a4: 8 cores, 8 threads
    cpus = sim.host("esx-a4").threads + (1 if too_many else 0)
    task = vm.ReconfigVM_Task(vim.vm.ConfigSpec(numCPUs=cpus, memoryMB=4096))
    if too_many:
        assert isinstance(fault_of(task), vim.fault.NotEnoughCpus)
        assert vm.config.hardware.numCPU == 2 and vm.config.hardware.memoryMB == 1024
    else:
        run(task)
        assert vm.config.hardware.numCPU == cpus


def test_reconfigure_swaps_the_root_disk_for_a_copy_in_one_step(si, sim):
    vm = create_vm(si, sim, "swapper", "esx-a1", datastore="shared-a", disk_gb=10)
    dc = si.content.rootFolder.childEntity[0]
    disk = _disk(vm)
    run(si.content.virtualDiskManager.CopyVirtualDisk_Task(
        sourceName=disk.backing.fileName, sourceDatacenter=dc,
        destName="[shared-a] swapper/copy.vmdk", destDatacenter=dc))
    grown = _disk(vm)
    grown.capacityInKB = 15 * KB_PER_GB
    grown.capacityInBytes = 15 * GB
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        Dev.VirtualDeviceSpec(operation="edit", device=grown)])))

    new = Dev.VirtualDisk(key=-101, controllerKey=disk.controllerKey,
                          unitNumber=disk.unitNumber, capacityInKB=10 * KB_PER_GB,
                          backing=Dev.VirtualDisk.FlatVer2BackingInfo(
                              fileName="[shared-a] swapper/copy.vmdk", diskMode="persistent"))
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        Dev.VirtualDeviceSpec(operation="remove", fileOperation="destroy", device=_disk(vm)),
        Dev.VirtualDeviceSpec(operation="add", device=new)])))

    disks = [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk)]
    assert [d.backing.fileName for d in disks] == ["[shared-a] swapper/copy.vmdk"]
    assert disks[0].capacityInKB == 10 * KB_PER_GB
    assert (disks[0].controllerKey, disks[0].unitNumber) == (disk.controllerKey,
                                                             disk.unitNumber)
    assert not sim.files.exists("shared-a", "swapper/swapper.vmdk")  # destroyed with it
