"""VirtualMachine and Folder methods through pyVmomi: success paths and documented faults.

Every test asserts the end state twice: through the API (what a client
sees) and through the simulator's own state (what the API is built from).
"""

from __future__ import annotations

import pytest
from pyVmomi import vim, vmodl

from tests.fixtures import connect, running_simulator
from tests.unit.simulator.helpers import (
    GB,
    Dev,
    bind,
    create_vm,
    dc1,
    fault_of,
    run,
    vm_spec,
    wait_until,
)


def _free(si, sim, ds_name):
    return bind(si, sim.datastores[ds_name]).summary.freeSpace


def _mem_usage(si, sim, host):
    return bind(si, sim.host(host)).summary.quickStats.overallMemoryUsage


# -- Folder.CreateVM_Task / CreateFolder ------------------------------------------------


def test_create_vm_registers_the_vm_and_its_files(si, sim):
    free_before = _free(si, sim, "shared-a")
    vm = create_vm(si, sim, "web-1", "esx-a2", cpus=2, memory_mb=2048, disk_gb=10,
                   network="VM Network")

    assert isinstance(vm, vim.VirtualMachine)
    assert vm.name == "web-1"
    assert vm.runtime.host._moId == sim.host("esx-a2").moid
    assert vm.runtime.powerState == "poweredOff"
    assert vm.config.hardware.numCPU == 2 and vm.config.hardware.memoryMB == 2048
    assert vm.summary.config.vmPathName == "[shared-a] web-1/web-1.vmx"
    disks = [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk)]
    assert [d.backing.fileName for d in disks] == ["[shared-a] web-1/web-1.vmdk"]
    assert disks[0].capacityInKB == 10 * 1024 * 1024
    nics = [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualEthernetCard)]
    assert len(nics) == 1 and nics[0].macAddress.startswith("00:50:56:")
    assert [n.name for n in vm.network] == ["VM Network"]
    # Listed by its folder, host, pool and datastore.
    assert vm in dc1(si).vmFolder.childEntity
    assert vm in bind(si, sim.host("esx-a2")).vm
    assert vm in bind(si, sim.cluster("cluster-a").resource_pool).vm
    assert vm in bind(si, sim.datastores["shared-a"]).vm
    # The disk takes its capacity from the datastore.
    assert free_before - _free(si, sim, "shared-a") >= 10 * GB
    state = sim.vm("web-1")
    assert state.host is sim.host("esx-a2") and state in sim.host("esx-a2").vms
    assert sim.files.exists("shared-a", "web-1/web-1.vmdk")
    assert sim.files.exists("shared-a", "web-1/web-1.vmx")


def test_a_scsi_controller_takes_unit_7_of_its_own_bus(si, sim):
    """vCenter gives a new SCSI controller scsiCtlrUnitNumber 7, the unit its disks never
    take (Nova's in-tree driver reads it when it picks a unit for a new disk)."""
    vm = create_vm(si, sim, "scsi-1", disk_gb=1)
    [controller] = [d for d in vm.config.hardware.device
                    if isinstance(d, Dev.VirtualSCSIController)]
    assert controller.scsiCtlrUnitNumber == 7
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[Dev.VirtualDeviceSpec(
        operation="add", device=Dev.ParaVirtualSCSIController(
            key=-1, busNumber=1, sharedBus="noSharing"))])))
    assert sorted(d.scsiCtlrUnitNumber for d in vm.config.hardware.device
                  if isinstance(d, Dev.VirtualSCSIController)) == [7, 7]


def test_create_vm_with_a_duplicate_name_fails_and_leaves_nothing(si, sim):
    create_vm(si, sim, "dup", disk_gb=1)
    free = _free(si, sim, "shared-a")
    folder = dc1(si).vmFolder
    pool = bind(si, sim.cluster("cluster-a").resource_pool)
    fault = fault_of(folder.CreateVM_Task(vm_spec("dup", disk_gb=1), pool,
                                          bind(si, sim.host("esx-a1"))))
    assert isinstance(fault, vim.fault.DuplicateName)
    assert fault.name == "dup"
    assert len([v for v in sim.vms() if v.name == "dup"]) == 1
    assert _free(si, sim, "shared-a") == free


def test_create_vm_without_space_on_the_datastore_fails_cleanly(si, sim):
    free = _free(si, sim, "shared-a")
    folder = dc1(si).vmFolder
    pool = bind(si, sim.cluster("cluster-a").resource_pool)
    too_big = free // GB + 1
    fault = fault_of(folder.CreateVM_Task(vm_spec("huge", disk_gb=too_big), pool,
                                          bind(si, sim.host("esx-a1"))))
    assert isinstance(fault, vim.fault.NoDiskSpace)  # a FileFault, as CreateVM documents
    assert fault.datastore == "shared-a"
    with pytest.raises(KeyError):
        sim.vm("huge")
    assert not sim.files.exists("shared-a", "huge")
    assert _free(si, sim, "shared-a") == free


@pytest.mark.parametrize("case", ["maintenance", "disconnected", "unmounted", "no-host"])
def test_create_vm_placement_faults(si, sim, case):
    folder = dc1(si).vmFolder
    pool = bind(si, sim.cluster("cluster-a").resource_pool)
    host = sim.host("esx-a3")
    spec = vm_spec("placed")
    if case == "maintenance":
        host.in_maintenance = True
        expected = vim.fault.InvalidHostState
    elif case == "disconnected":
        sim.disconnect_host("esx-a3")
        expected = vim.fault.InvalidHostState
    elif case == "unmounted":
        spec = vm_spec("placed", "shared-b")  # mounted only in cluster-b
        expected = vim.fault.InvalidDatastore
    else:
        host = None  # DRS is off on cluster-a: vCenter needs a host
        expected = vmodl.fault.InvalidArgument
    fault = fault_of(folder.CreateVM_Task(spec, pool, bind(si, host) if host else None))
    assert isinstance(fault, expected), fault
    assert all(v.name != "placed" for v in sim.vms())


def test_create_vm_without_host_lets_vcenter_drs_pick(si, sim):
    cluster = sim.cluster("cluster-b")
    cluster.drs_config.enabled = True
    pool = bind(si, cluster.resource_pool)
    vm = run(dc1(si).vmFolder.CreateVM_Task(vm_spec("drs-placed", "shared-b"), pool))
    # The host with the most free memory: a 512 GB host of cluster-b.
    assert vm.runtime.host.name in ("esx-b1", "esx-b2")
    assert sim.vm("drs-placed").host.cluster is cluster


def test_create_vm_in_a_folder_that_cannot_hold_vms(si, sim):
    host_folder = dc1(si).hostFolder
    pool = bind(si, sim.cluster("cluster-a").resource_pool)
    with pytest.raises(vmodl.fault.NotSupported):
        host_folder.CreateVM_Task(vm_spec("misfiled"), pool, bind(si, sim.host("esx-a1")))


@pytest.mark.parametrize("name", ["", "x" * 81])
def test_create_vm_with_an_invalid_name(si, sim, name):
    pool = bind(si, sim.cluster("cluster-a").resource_pool)
    fault = fault_of(dc1(si).vmFolder.CreateVM_Task(vm_spec(name), pool,
                                                    bind(si, sim.host("esx-a1"))))
    assert isinstance(fault, vim.fault.InvalidName)


def test_create_folder_and_its_faults(si, sim):
    vm_folder = dc1(si).vmFolder
    sub = vm_folder.CreateFolder("tenants")
    assert isinstance(sub, vim.Folder) and sub.name == "tenants"
    assert sub in vm_folder.childEntity
    assert set(sub.childType) >= {"Folder", "VirtualMachine"}
    nested = sub.CreateFolder("project-1")
    assert nested.parent == sub
    # A VM may be created in the new folder.
    vm = run(nested.CreateVM_Task(vm_spec("in-sub"), bind(si, sim.cluster("cluster-a")
                                                          .resource_pool),
                                  bind(si, sim.host("esx-a1"))))
    assert vm.parent == nested
    with pytest.raises(vim.fault.DuplicateName) as exc:
        vm_folder.CreateFolder("tenants")
    assert exc.value.name == "tenants"
    with pytest.raises(vim.fault.InvalidName):
        vm_folder.CreateFolder("")
    with pytest.raises(vim.fault.InvalidName):
        vm_folder.CreateFolder("y" * 81)
    assert [c.name for c in sim.find_entity("tenants").children] == ["project-1"]


# -- power ----------------------------------------------------------------------------


def test_power_on_consumes_host_resources_and_power_off_frees_them(si, sim):
    vm = create_vm(si, sim, "pw", "esx-a1", cpus=4, memory_mb=8192)
    host = bind(si, sim.host("esx-a1"))
    before = host.summary.quickStats
    assert before.overallMemoryUsage == 0 and before.overallCpuUsage == 0

    run(vm.PowerOnVM_Task())
    assert vm.runtime.powerState == "poweredOn"
    assert vm.runtime.bootTime is not None
    stats = host.summary.quickStats
    assert stats.overallMemoryUsage == 8192
    # CPU demand: half of 4 vCPUs at the host's 2600 MHz.
    assert stats.overallCpuUsage == sim.vm("pw").cpu_usage_mhz() == 2 * 2600
    assert vm.summary.quickStats.overallCpuUsage == 2 * 2600
    assert vm.summary.quickStats.hostMemoryUsage == 8192
    assert sim.vm("pw").powered_on

    run(vm.PowerOffVM_Task())
    assert vm.runtime.powerState == "poweredOff"
    stats = host.summary.quickStats
    assert stats.overallMemoryUsage == 0 and stats.overallCpuUsage == 0
    assert vm.summary.quickStats.overallCpuUsage == 0


def test_power_state_faults(si, sim):
    vm = create_vm(si, sim, "pf")
    for method in ("PowerOffVM_Task", "ResetVM_Task", "SuspendVM_Task"):
        fault = fault_of(getattr(vm, method)())
        assert isinstance(fault, vim.fault.InvalidPowerState), method
        assert fault.existingState == "poweredOff"
    run(vm.PowerOnVM_Task())
    fault = fault_of(vm.PowerOnVM_Task())
    assert isinstance(fault, vim.fault.InvalidPowerState)
    assert fault.existingState == "poweredOn"
    assert vm.runtime.powerState == "poweredOn"


def test_suspend_releases_memory_and_power_on_resumes(si, sim):
    vm = create_vm(si, sim, "sus", "esx-a1", memory_mb=4096, power_on=True)
    run(vm.SuspendVM_Task())
    assert vm.runtime.powerState == "suspended"
    assert _mem_usage(si, sim, "esx-a1") == 0
    fault = fault_of(vm.SuspendVM_Task())
    assert isinstance(fault, vim.fault.InvalidPowerState)
    run(vm.PowerOnVM_Task())
    assert vm.runtime.powerState == "poweredOn"
    assert _mem_usage(si, sim, "esx-a1") == 4096
    # A suspended VM may also be powered off (its suspended state is discarded).
    run(vm.SuspendVM_Task())
    run(vm.PowerOffVM_Task())
    assert sim.vm("sus").power_state == "poweredOff"


def test_reset_reboots_a_running_vm(si, sim):
    vm = create_vm(si, sim, "rst", power_on=True)
    boot = vm.runtime.bootTime
    sim.vm("rst").boot_time = boot.replace(year=boot.year - 1)
    run(vm.ResetVM_Task())
    assert vm.runtime.powerState == "poweredOn"
    assert vm.runtime.bootTime.year == boot.year


def test_power_on_fails_when_the_host_cannot_admit_the_vm(si, sim):
    # esx-a4 has 128 GB: two 80 GB VMs cannot run there together.
    first = create_vm(si, sim, "big-1", "esx-a4", memory_mb=80 * 1024, power_on=True)
    second = create_vm(si, sim, "big-2", "esx-a4", memory_mb=80 * 1024)
    fault = fault_of(second.PowerOnVM_Task())
    assert isinstance(fault, vim.fault.InsufficientResourcesFault)
    # The documented subclass, with sizes in bytes.
    assert isinstance(fault, vim.fault.InsufficientHostMemoryCapacityFault)
    assert fault.requested == 80 * 1024 * 1024 * 1024
    assert fault.unreserved == 48 * 1024 * 1024 * 1024
    assert fault.host._moId == sim.host("esx-a4").moid
    assert second.runtime.powerState == "poweredOff"
    assert _mem_usage(si, sim, "esx-a4") == 80 * 1024
    run(first.PowerOffVM_Task())
    run(second.PowerOnVM_Task())
    assert _mem_usage(si, sim, "esx-a4") == 80 * 1024


def test_memory_overcommit_is_configurable():
    with running_simulator(memory_overcommit=1.5) as server:
        si = connect(server)
        sim = server.simulator
        create_vm(si, sim, "oc-1", "esx-a4", memory_mb=80 * 1024, power_on=True)
        create_vm(si, sim, "oc-2", "esx-a4", memory_mb=80 * 1024, power_on=True)
        assert _mem_usage(si, sim, "esx-a4") == 160 * 1024
        third = create_vm(si, sim, "oc-3", "esx-a4", memory_mb=80 * 1024)
        assert isinstance(fault_of(third.PowerOnVM_Task()), vim.fault.InsufficientResourcesFault)


def test_power_on_with_a_host_moves_the_vm_within_its_cluster(si, sim):
    vm = create_vm(si, sim, "moved-on", "esx-a1", memory_mb=2048)
    run(vm.PowerOnVM_Task(bind(si, sim.host("esx-a3"))))
    assert vm.runtime.host.name == "esx-a3"
    assert _mem_usage(si, sim, "esx-a3") == 2048
    assert vm not in bind(si, sim.host("esx-a1")).vm


def test_vm_operations_on_a_disconnected_host(si, sim):
    vm = create_vm(si, sim, "orphaned", "esx-a2", power_on=True)
    sim.disconnect_host("esx-a2")
    assert vm.runtime.connectionState == "disconnected"
    assert vm.summary.runtime.connectionState == "disconnected"
    assert isinstance(fault_of(vm.PowerOffVM_Task()), vim.fault.InvalidState)
    sim.reconnect_host("esx-a2")
    assert vm.runtime.connectionState == "connected"
    run(vm.PowerOffVM_Task())


def test_shutdown_guest_powers_off_asynchronously(si, sim):
    vm = create_vm(si, sim, "guest", "esx-a1", memory_mb=2048, power_on=True)
    assert vm.guest.toolsRunningStatus == "guestToolsRunning"
    assert vm.ShutdownGuest() is None
    wait_until(lambda: vm.runtime.powerState == "poweredOff")
    assert _mem_usage(si, sim, "esx-a1") == 0
    assert not sim.vm("guest").powered_on
    with pytest.raises(vim.fault.InvalidPowerState):
        vm.ShutdownGuest()


def test_guest_operations_need_vmware_tools(si, sim):
    vm = create_vm(si, sim, "no-tools", power_on=True)
    sim.vm("no-tools").tools_installed = False
    sim.registry.touch()
    assert vm.guest.toolsRunningStatus == "guestToolsNotRunning"
    with pytest.raises(vim.fault.ToolsUnavailable):
        vm.ShutdownGuest()
    with pytest.raises(vim.fault.ToolsUnavailable):
        vm.RebootGuest()
    assert vm.runtime.powerState == "poweredOn"


def test_reboot_guest_restarts_the_guest(si, sim):
    vm = create_vm(si, sim, "rb", power_on=True)
    boot = vm.runtime.bootTime
    sim.vm("rb").boot_time = boot.replace(year=boot.year - 1)
    assert vm.RebootGuest() is None
    assert vm.runtime.powerState == "poweredOn"
    assert vm.runtime.bootTime.year == boot.year
    run(vm.PowerOffVM_Task())
    with pytest.raises(vim.fault.InvalidPowerState):
        vm.RebootGuest()


# -- ReconfigVM_Task ----------------------------------------------------------------------


def test_reconfigure_cpu_memory_and_annotation(si, sim):
    vm = create_vm(si, sim, "rc", cpus=1, memory_mb=1024)
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(numCPUs=4, memoryMB=4096, annotation="resized",
                                             extraConfig=[vim.option.OptionValue(
                                                 key="nvp.vm-uuid", value="abc")])))
    assert vm.config.hardware.numCPU == 4
    assert vm.summary.config.memorySizeMB == 4096
    assert vm.config.annotation == "resized"
    assert {o.key: o.value for o in vm.config.extraConfig}["nvp.vm-uuid"] == "abc"
    assert sim.vm("rc").memory_mb == 4096


def test_reconfigure_memory_of_a_running_vm(si, sim):
    vm = create_vm(si, sim, "hot", "esx-a1", memory_mb=1024, power_on=True)
    fault = fault_of(vm.ReconfigVM_Task(vim.vm.ConfigSpec(memoryMB=2048)))
    assert isinstance(fault, vim.fault.InvalidPowerState)
    assert vm.config.hardware.memoryMB == 1024
    run(vm.PowerOffVM_Task())
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(memoryHotAddEnabled=True)))
    run(vm.PowerOnVM_Task())
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(memoryMB=3072)))
    assert _mem_usage(si, sim, "esx-a1") == 3072
    # Hot-add still has to fit on the host.
    fault = fault_of(vm.ReconfigVM_Task(vim.vm.ConfigSpec(memoryMB=300 * 1024)))
    assert isinstance(fault, vim.fault.InsufficientResourcesFault)
    assert sim.vm("hot").memory_mb == 3072


def test_reconfigure_disks_consumes_and_frees_datastore_space(si, sim):
    vm = create_vm(si, sim, "disks")
    free = _free(si, sim, "shared-a")
    controller = next(d for d in vm.config.hardware.device
                      if isinstance(d, Dev.VirtualSCSIController))
    add = Dev.VirtualDeviceSpec(operation="add", fileOperation="create", device=Dev.VirtualDisk(
        key=-1, controllerKey=controller.key, unitNumber=1, capacityInKB=20 * 1024 * 1024,
        backing=Dev.VirtualDisk.FlatVer2BackingInfo(fileName="", diskMode="persistent")))
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[add])))
    disk = next(d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk))
    assert disk.backing.fileName == "[shared-a] disks/disks.vmdk"
    assert free - _free(si, sim, "shared-a") == 20 * GB

    # Growing the disk takes more space ...
    disk.capacityInKB = 30 * 1024 * 1024
    disk.capacityInBytes = None
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        Dev.VirtualDeviceSpec(operation="edit", device=disk)])))
    assert free - _free(si, sim, "shared-a") == 30 * GB
    # ... shrinking it is refused (vCenter: InvalidDeviceOperation, a VmConfigFault) ...
    disk.capacityInKB = 5 * 1024 * 1024
    fault = fault_of(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        Dev.VirtualDeviceSpec(operation="edit", device=disk)])))
    assert isinstance(fault, vim.fault.InvalidDeviceOperation)
    # ... and removing it with its file frees the space.
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        Dev.VirtualDeviceSpec(operation="remove", fileOperation="destroy", device=disk)])))
    assert not any(isinstance(d, Dev.VirtualDisk) for d in vm.config.hardware.device)
    assert _free(si, sim, "shared-a") == free
    assert not sim.files.exists("shared-a", "disks/disks.vmdk")


def test_reconfigure_rename_to_a_taken_name(si, sim):
    create_vm(si, sim, "taken")
    vm = create_vm(si, sim, "renamer")
    fault = fault_of(vm.ReconfigVM_Task(vim.vm.ConfigSpec(name="taken")))
    assert isinstance(fault, vim.fault.DuplicateName)
    assert vm.name == "renamer"


def test_reconfigure_a_device_that_does_not_exist(si, sim):
    vm = create_vm(si, sim, "nodev")
    ghost = Dev.VirtualDisk(key=4242, controllerKey=1000, unitNumber=3, capacityInKB=1024)
    fault = fault_of(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        Dev.VirtualDeviceSpec(operation="remove", device=ghost)])))
    assert isinstance(fault, (vmodl.fault.InvalidArgument, vim.fault.InvalidDeviceSpec))


# -- RelocateVM_Task / MigrateVM_Task -------------------------------------------------------


def test_vmotion_moves_the_load_and_both_host_vm_lists(si, sim):
    vm = create_vm(si, sim, "mover", "esx-a1", cpus=2, memory_mb=4096, power_on=True)
    a1, a2 = bind(si, sim.host("esx-a1")), bind(si, sim.host("esx-a2"))
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=a2)))
    assert vm.runtime.host == a2
    assert vm in a2.vm and vm not in a1.vm
    assert a1.summary.quickStats.overallMemoryUsage == 0
    assert a2.summary.quickStats.overallMemoryUsage == 4096
    assert a2.summary.quickStats.overallCpuUsage == 2600  # 2 vCPUs x 50% x 2600 MHz
    assert vm.runtime.powerState == "poweredOn"
    assert sim.vm("mover").host is sim.host("esx-a2")
    assert sim.vm("mover") in sim.host("esx-a2").vms


def test_migrate_vm_moves_the_vm_and_checks_its_power_state(si, sim):
    vm = create_vm(si, sim, "mig", "esx-a1", memory_mb=2048, power_on=True)
    a3 = bind(si, sim.host("esx-a3"))
    fault = fault_of(vm.MigrateVM_Task(host=a3, priority="defaultPriority",
                                       state="poweredOff"))
    assert isinstance(fault, vim.fault.InvalidPowerState)
    assert vm.runtime.host.name == "esx-a1"
    run(vm.MigrateVM_Task(host=a3, priority="highPriority", state="poweredOn"))
    assert vm.runtime.host == a3 and vm in a3.vm
    assert a3.summary.quickStats.overallMemoryUsage == 2048
    with pytest.raises(vmodl.fault.InvalidArgument):
        vm.MigrateVM_Task(priority="defaultPriority")


@pytest.mark.parametrize("target_state", ["maintenance", "disconnected"])
def test_vmotion_to_an_unusable_host_is_invalid_state(si, sim, target_state):
    vm = create_vm(si, sim, "stuck", "esx-a1", power_on=True)
    if target_state == "maintenance":
        sim.host("esx-a2").in_maintenance = True
    else:
        sim.disconnect_host("esx-a2")
    fault = fault_of(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=bind(si, sim.host("esx-a2")))))
    assert isinstance(fault, vim.fault.InvalidState)
    assert vm.runtime.host.name == "esx-a1"
    assert sim.vm("stuck") in sim.host("esx-a1").vms


def test_vmotion_to_a_host_without_room(si, sim):
    create_vm(si, sim, "filler", "esx-a4", memory_mb=100 * 1024, power_on=True)
    vm = create_vm(si, sim, "guest", "esx-a1", memory_mb=64 * 1024, power_on=True)
    fault = fault_of(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=bind(si, sim.host("esx-a4")))))
    assert isinstance(fault, vim.fault.InsufficientResourcesFault)
    assert vm.runtime.host.name == "esx-a1"
    assert _mem_usage(si, sim, "esx-a4") == 100 * 1024


def test_relocate_to_a_host_of_another_cluster_needs_its_pool(si, sim):
    vm = create_vm(si, sim, "crosser", "esx-a1", datastore="shared-all", memory_mb=2048,
                   power_on=True)
    b1 = bind(si, sim.host("esx-b1"))
    # Without a pool the VM's current pool is the target, and esx-b1 is not in it.
    fault = fault_of(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=b1)))
    assert isinstance(fault, vmodl.fault.InvalidArgument)
    assert vm.runtime.host.name == "esx-a1"
    pool_b = bind(si, sim.cluster("cluster-b").resource_pool)
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=b1, pool=pool_b)))
    assert vm.runtime.host == b1 and vm.resourcePool == pool_b
    assert vm in pool_b.vm
    assert vm not in bind(si, sim.cluster("cluster-a").resource_pool).vm
    assert b1.summary.quickStats.overallMemoryUsage == 2048


def test_relocate_to_a_host_without_the_vms_datastore(si, sim):
    vm = create_vm(si, sim, "pinned", "esx-a1", disk_gb=1)  # on shared-a
    pool_b = bind(si, sim.cluster("cluster-b").resource_pool)
    fault = fault_of(vm.RelocateVM_Task(vim.vm.RelocateSpec(
        host=bind(si, sim.host("esx-b1")), pool=pool_b)))
    assert isinstance(fault, vim.fault.InvalidDatastore)
    assert vm.runtime.host.name == "esx-a1"


def test_storage_vmotion_moves_files_and_space(si, sim):
    vm = create_vm(si, sim, "svm", "esx-a1", disk_gb=50, power_on=True)
    free_a, free_all = _free(si, sim, "shared-a"), _free(si, sim, "shared-all")
    target = bind(si, sim.datastores["shared-all"])
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(datastore=target)))
    assert vm.summary.config.vmPathName == "[shared-all] svm/svm.vmx"
    disk = next(d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk))
    assert disk.backing.fileName == "[shared-all] svm/svm.vmdk"
    assert vm.datastore == [target]
    assert _free(si, sim, "shared-a") - free_a >= 50 * GB
    assert free_all - _free(si, sim, "shared-all") >= 50 * GB
    assert not sim.files.exists("shared-a", "svm")
    assert sim.files.exists("shared-all", "svm/svm.vmdk")


# -- CloneVM_Task ----------------------------------------------------------------------------


def test_clone_copies_hardware_and_disks(si, sim):
    src = create_vm(si, sim, "golden", "esx-a1", cpus=2, memory_mb=2048, disk_gb=8,
                    network="VM Network")
    free = _free(si, sim, "shared-a")
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(host=bind(si, sim.host("esx-a2"))),
                            powerOn=True, template=False)
    clone = run(src.CloneVM_Task(dc1(si).vmFolder, "golden-copy", spec))
    assert isinstance(clone, vim.VirtualMachine) and clone.name == "golden-copy"
    assert clone.runtime.host.name == "esx-a2"
    assert clone.runtime.powerState == "poweredOn"
    assert clone.config.hardware.numCPU == 2 and clone.config.hardware.memoryMB == 2048
    assert clone.config.instanceUuid != src.config.instanceUuid
    assert clone.config.uuid != src.config.uuid
    src_nic = next(d for d in src.config.hardware.device if isinstance(d, Dev.VirtualEthernetCard))
    nic = next(d for d in clone.config.hardware.device if isinstance(d, Dev.VirtualEthernetCard))
    assert nic.macAddress != src_nic.macAddress
    disk = next(d for d in clone.config.hardware.device if isinstance(d, Dev.VirtualDisk))
    assert disk.backing.fileName == "[shared-a] golden-copy/golden-copy.vmdk"
    assert disk.capacityInKB == 8 * 1024 * 1024
    assert free - _free(si, sim, "shared-a") >= 8 * GB
    assert bind(si, sim.host("esx-a2")).summary.quickStats.overallMemoryUsage == 2048
    # The source is untouched.
    assert src.runtime.powerState == "poweredOff" and src.runtime.host.name == "esx-a1"


def test_clone_to_a_taken_name_and_as_template(si, sim):
    src = create_vm(si, sim, "tmpl-src")
    fault = fault_of(src.CloneVM_Task(dc1(si).vmFolder, "tmpl-src",
                                      vim.vm.CloneSpec(location=vim.vm.RelocateSpec(),
                                                       powerOn=False, template=False)))
    assert isinstance(fault, vim.fault.DuplicateName)
    tmpl = run(src.CloneVM_Task(dc1(si).vmFolder, "tmpl", vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(), powerOn=False, template=True)))
    assert tmpl.config.template is True and tmpl.summary.config.template is True


# -- Destroy_Task / UnregisterVM / Rename_Task -------------------------------------------------


def test_destroy_removes_the_vm_and_frees_its_files(si, sim):
    free = _free(si, sim, "shared-a")
    vm = create_vm(si, sim, "doomed", "esx-a1", disk_gb=5, power_on=True)
    fault = fault_of(vm.Destroy_Task())
    assert isinstance(fault, vim.fault.InvalidPowerState)
    assert sim.vm("doomed")
    run(vm.PowerOffVM_Task())
    moid = vm._moId
    assert run(vm.Destroy_Task()) is None
    assert moid not in sim.registry
    assert vm not in dc1(si).vmFolder.childEntity
    assert vm not in bind(si, sim.host("esx-a1")).vm
    assert not sim.files.exists("shared-a", "doomed")
    assert _free(si, sim, "shared-a") == free
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        vm.name  # noqa: B018


def test_unregister_keeps_the_files(si, sim):
    vm = create_vm(si, sim, "unreg", "esx-a1", disk_gb=5, power_on=True)
    with pytest.raises(vim.fault.InvalidPowerState):
        vm.UnregisterVM()
    run(vm.PowerOffVM_Task())
    free = _free(si, sim, "shared-a")
    assert vm.UnregisterVM() is None
    assert vm._moId not in sim.registry
    assert vm not in bind(si, sim.host("esx-a1")).vm
    assert sim.files.exists("shared-a", "unreg/unreg.vmdk")
    assert _free(si, sim, "shared-a") == free
    # The name is free again in the folder.
    create_vm(si, sim, "unreg", "esx-a2", datastore="shared-all")


def test_rename(si, sim):
    vm = create_vm(si, sim, "old-name")
    create_vm(si, sim, "other")
    run(vm.Rename_Task("new-name"))
    assert vm.name == "new-name"
    assert vm.config.name == "new-name"
    assert vm.summary.config.name == "new-name"
    index = si.content.searchIndex
    assert index.FindChild(dc1(si).vmFolder, "new-name") == vm
    assert index.FindChild(dc1(si).vmFolder, "old-name") is None
    fault = fault_of(vm.Rename_Task("other"))
    assert isinstance(fault, vim.fault.DuplicateName)
    assert fault.name == "other"
    assert isinstance(fault_of(vm.Rename_Task("z" * 81)), vim.fault.InvalidName)
    assert sim.vm("new-name").name == "new-name"
    # Other entities rename too.
    cluster = bind(si, sim.cluster("cluster-b"))
    run(cluster.Rename_Task("cluster-b2"))
    assert cluster.name == "cluster-b2"


# -- snapshots ----------------------------------------------------------------------------


def test_snapshot_tree_create_and_remove(si, sim):
    vm = create_vm(si, sim, "snappy", power_on=True)
    assert vm.snapshot is None
    first = run(vm.CreateSnapshot_Task("s1", "first", False, False))
    second = run(vm.CreateSnapshot_Task("s2", None, True, False))
    assert isinstance(first, vim.vm.Snapshot)
    info = vm.snapshot
    assert info.currentSnapshot == second
    root = info.rootSnapshotList[0]
    assert (root.name, root.description, root.snapshot) == ("s1", "first", first)
    assert root.state == "poweredOn"
    assert [c.name for c in root.childSnapshotList] == ["s2"]
    assert second.vm == vm
    assert vm.rootSnapshot == [first]

    # Removing s1 without its children re-parents s2 to the root.
    run(first.RemoveSnapshot_Task(removeChildren=False))
    info = vm.snapshot
    assert [r.name for r in info.rootSnapshotList] == ["s2"]
    assert info.currentSnapshot == second
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        first.config  # noqa: B018

    third = run(vm.CreateSnapshot_Task("s3", "", False, False))
    run(second.RemoveSnapshot_Task(removeChildren=True))
    assert vm.snapshot is None
    assert third._moId not in sim.registry
    assert sim.vm("snappy").snapshots == []


def test_migrate_to_a_drs_cluster_pool_lets_drs_pick_the_host(si, sim):
    cluster_b = sim.cluster("cluster-b")
    cluster_b.drs_config.enabled = True
    vm = create_vm(si, sim, "drs-mig", "esx-a1", datastore="shared-all", memory_mb=2048,
                   power_on=True)
    pool_b = bind(si, cluster_b.resource_pool)
    run(vm.MigrateVM_Task(pool=pool_b, priority="defaultPriority"))
    assert vm.runtime.host.name in ("esx-b1", "esx-b2")  # the most free memory
    assert vm.resourcePool == pool_b
    # Without DRS a host is required.
    cluster_b.drs_config.enabled = False
    pool_a = bind(si, sim.cluster("cluster-a").resource_pool)
    fault = fault_of(vm.MigrateVM_Task(pool=pool_a, priority="defaultPriority"))
    assert isinstance(fault, vmodl.fault.InvalidArgument)


def test_vmotion_to_a_host_with_too_few_cpus(si, sim):
    vm = create_vm(si, sim, "wide", "esx-a1", cpus=20, power_on=True)
    fault = fault_of(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=bind(si, sim.host("esx-a4")))))
    assert isinstance(fault, vim.fault.NotEnoughCpus)  # a VmConfigFault
    assert (fault.numCpuVm, fault.numCpuDest) == (20, 16)
    assert vm.runtime.host.name == "esx-a1"


def test_clone_to_another_datastore(si, sim):
    src = create_vm(si, sim, "src-ds", "esx-a1", disk_gb=3)
    free = _free(si, sim, "shared-all")
    clone = run(src.CloneVM_Task(dc1(si).vmFolder, "dst-ds", vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(datastore=bind(si, sim.datastores["shared-all"])),
        powerOn=False, template=False)))
    assert clone.summary.config.vmPathName == "[shared-all] dst-ds/dst-ds.vmx"
    assert free - _free(si, sim, "shared-all") >= 3 * GB
    assert [d.name for d in clone.datastore] == ["shared-all"]
