"""Linked-clone delta disks, guest OS types and FindByDatastorePath, through pyVmomi.

vCenter creates a delta disk (a disk whose backing has a parent) only with
its parent's capacity -- "disks with parents cannot be expanded" -- at
CreateVM and ReconfigVM alike, and never grows one (an edit of its
capacity); PromoteDisks_Task with unlink makes it a standalone disk with
its chain's data, which can then grow. It refuses a guestId it does not
know; and SearchIndex.FindByDatastorePath finds a registered VM by its .vmx.
"""

from __future__ import annotations

import pytest
from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator.objects.nfc_lease import disk_content
from tests.unit.simulator.helpers import (
    Dev,
    bind,
    create_vm,
    dc1,
    fault_of,
    run,
    vm_spec,
)

GB_KB = 1024 * 1024
BASE = "images/base.vmdk"


def _base_disk(sim, capacity_kb: int = GB_KB) -> str:
    """A VMFS disk to be the parent of linked clones; its datastore path."""
    sim.files.write("shared-a", BASE, None, size=capacity_kb * 1024,
                    disk_capacity_kb=capacity_kb, thin=True)
    return f"[shared-a] {BASE}"


def _delta(parent: str, capacity_kb: int | None, key: int = -101,
           unit: int = 0) -> Dev.VirtualDeviceSpec:
    disk = Dev.VirtualDisk(
        key=key, controllerKey=-100 if key == -101 else 1000, unitNumber=unit,
        backing=Dev.VirtualDisk.FlatVer2BackingInfo(
            fileName="[shared-a]", diskMode="persistent", thinProvisioned=True,
            parent=Dev.VirtualDisk.FlatVer2BackingInfo(fileName=parent,
                                                       diskMode="persistent")))
    if capacity_kb is not None:
        disk.capacityInKB = capacity_kb
    return Dev.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk)


def _create(si, sim, spec):
    host = sim.host("esx-a1")
    return bind(si, host.datacenter().vm_folder).CreateVM_Task(
        spec, bind(si, host.cluster.resource_pool), bind(si, host))


def _spec_with_delta(name: str, parent: str, capacity_kb: int | None) -> vim.vm.ConfigSpec:
    spec = vm_spec(name)
    spec.deviceChange = [*spec.deviceChange, _delta(parent, capacity_kb)]
    return spec


def _disks(vm) -> list:
    return [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk)]


@pytest.mark.parametrize("capacity_kb", [2 * GB_KB, GB_KB // 2])
def test_create_vm_refuses_a_delta_disk_of_another_capacity_than_its_parent(si, sim,
                                                                           capacity_kb):
    parent = _base_disk(sim)
    fault = fault_of(_create(si, sim, _spec_with_delta("bigger", parent, capacity_kb)))
    assert isinstance(fault, vim.fault.InvalidDeviceOperation)
    assert fault.deviceIndex == 1 and fault.badOp == "add" and fault.badFileOp == "create"
    assert "disks with parents cannot be expanded" in fault.msg
    # Nothing was made: no VM, no folder, no delta file; the parent is as it was.
    assert "bigger" not in {vm.name for vm in sim.vms()}
    assert not sim.files.exists("shared-a", "bigger")
    assert sim.files.get("shared-a", BASE).disk_capacity_kb == GB_KB


@pytest.mark.parametrize("capacity_kb", [GB_KB, None], ids=["same", "unset"])
def test_create_vm_makes_a_delta_disk_of_its_parents_capacity(si, sim, capacity_kb):
    parent = _base_disk(sim)
    vm = run(_create(si, sim, _spec_with_delta("linked", parent, capacity_kb)))
    [disk] = _disks(vm)
    assert disk.capacityInKB == GB_KB
    assert disk.backing.parent.fileName == parent
    ds, rel = disk.backing.fileName[1:].split("] ")
    assert sim.files.get(ds, rel).disk_capacity_kb == GB_KB


def test_reconfigure_refuses_a_bigger_delta_disk_and_leaves_the_vm_as_it_was(si, sim):
    parent = _base_disk(sim)
    vm = create_vm(si, sim, "plain", disk_gb=1)
    before = [d.key for d in vm.config.hardware.device]
    spec = vim.vm.ConfigSpec(deviceChange=[_delta(parent, 3 * GB_KB, key=-5, unit=1)])
    spec.deviceChange[0].device.controllerKey = _disks(vm)[0].controllerKey
    fault = fault_of(vm.ReconfigVM_Task(spec))
    assert isinstance(fault, vim.fault.InvalidDeviceOperation)
    assert fault.deviceIndex == 0
    assert [d.key for d in vm.config.hardware.device] == before
    assert [e.path for e in sim.files.listdir("shared-a", "plain")
            if e.path.endswith(".vmdk")] == ["plain/plain.vmdk"]
    # Of the parent's capacity it is accepted.
    spec.deviceChange[0].device.capacityInKB = GB_KB
    run(vm.ReconfigVM_Task(spec))
    added = next(d for d in _disks(vm) if d.backing.parent is not None)
    assert added.capacityInKB == GB_KB and added.backing.parent.fileName == parent


def test_create_vm_refuses_a_guest_type_vcenter_does_not_know(si, sim):
    spec = vm_spec("odd-guest")
    spec.guestId = "ubuntu"
    fault = fault_of(_create(si, sim, spec))
    assert isinstance(fault, vmodl.fault.InvalidArgument)
    assert fault.invalidProperty == "configSpec.guestId"
    assert "odd-guest" not in {vm.name for vm in sim.vms()}
    spec.guestId = "ubuntu64Guest"
    vm = run(_create(si, sim, spec))
    assert vm.config.guestId == "ubuntu64Guest"


def test_find_by_datastore_path_finds_registered_vms_by_their_vmx(si, sim):
    vm = create_vm(si, sim, "findme", datastore="shared-a")
    index = si.content.searchIndex
    dc = dc1(si)
    vmx = vm.config.files.vmPathName
    assert vmx == "[shared-a] findme/findme.vmx"
    assert index.FindByDatastorePath(dc, vmx)._moId == vm._moId
    assert index.FindByDatastorePath(dc, "[shared-a] findme/other.vmx") is None
    # Unregistered, its files stay but nothing is found.
    vm.UnregisterVM()
    assert sim.files.exists("shared-a", "findme/findme.vmx")
    assert index.FindByDatastorePath(dc, vmx) is None
    with pytest.raises(vim.fault.InvalidDatastore):
        index.FindByDatastorePath(dc, "[no-such-ds] findme/findme.vmx")
    with pytest.raises(vim.fault.InvalidDatastore):
        index.FindByDatastorePath(dc, "no brackets")



# -- growing a delta disk, and unlinking it first (PromoteDisks_Task) ---------------------

#: The parent's data: no zero bytes, so every byte is checked.
DATA = bytes(range(1, 256)) * 4096


def _entry(sim, path: str):
    ds, rel = path[1:].split("] ", 1)
    return sim.files.get(ds, rel)


def _linked_vm(si, sim, name: str = "linked", parent: str | None = None):
    """A VM whose one disk is a delta of ``parent`` (made: a 1 GB disk holding DATA)."""
    if parent is None:
        parent = _base_disk(sim)
        _entry(sim, parent).extent = DATA
    vm = run(_create(si, sim, _spec_with_delta(name, parent, None)))
    [disk] = _disks(vm)
    return vm, disk, parent


def _grow_spec(disk, capacity_kb: int, in_bytes: bool = False) -> vim.vm.ConfigSpec:
    if in_bytes:
        disk.capacityInBytes = capacity_kb * 1024
    else:
        disk.capacityInKB = capacity_kb
    return vim.vm.ConfigSpec(deviceChange=[Dev.VirtualDeviceSpec(operation="edit",
                                                                 device=disk)])


@pytest.mark.parametrize("in_bytes", [False, True], ids=["capacityInKB", "capacityInBytes"])
def test_reconfigure_refuses_to_grow_a_disk_with_a_parent(si, sim, in_bytes):
    vm, disk, parent = _linked_vm(si, sim)
    used = sim.files.used_bytes("shared-a")
    fault = fault_of(vm.ReconfigVM_Task(_grow_spec(disk, 2 * GB_KB, in_bytes)))
    assert isinstance(fault, vim.fault.InvalidDeviceOperation)
    assert fault.deviceIndex == 0 and fault.badOp == "edit"
    assert "disks with parents cannot be expanded" in fault.msg
    [after] = _disks(vm)
    assert after.capacityInKB == GB_KB and after.backing.parent.fileName == parent
    assert _entry(sim, after.backing.fileName).disk_capacity_kb == GB_KB
    assert sim.files.used_bytes("shared-a") == used
    # An edit that leaves the capacity alone is fine.
    run(vm.ReconfigVM_Task(_grow_spec(after, GB_KB, in_bytes)))
    assert _disks(vm)[0].backing.parent.fileName == parent


def test_an_edit_neither_unlinks_nor_grows_a_delta_disk_by_dropping_its_parent(si, sim):
    vm, disk, parent = _linked_vm(si, sim)
    disk.backing.parent = None
    fault = fault_of(vm.ReconfigVM_Task(_grow_spec(disk, 2 * GB_KB)))
    assert isinstance(fault, vim.fault.InvalidDeviceOperation)
    # Without growth the edit goes through, and the disk keeps the parent its file has.
    run(vm.ReconfigVM_Task(_grow_spec(disk, GB_KB)))
    [after] = _disks(vm)
    assert after.backing.parent.fileName == parent
    assert _entry(sim, after.backing.fileName).parent == parent


def test_promote_with_unlink_makes_a_standalone_disk_with_the_parents_data(si, sim):
    vm, disk, parent = _linked_vm(si, sim)
    other, _, _ = _linked_vm(si, sim, "sibling", parent)  # shares the parent
    delta = _entry(sim, disk.backing.fileName)
    used, delta_size = sim.files.used_bytes("shared-a"), delta.size
    assert delta.parent == parent and delta_size < GB_KB * 1024 and delta.extent is None

    assert run(vm.PromoteDisks_Task(unlink=True, disks=[disk])) is None
    [after] = _disks(vm)
    assert after.backing.parent is None
    assert after.backing.fileName == disk.backing.fileName and after.key == disk.key
    assert after.capacityInKB == GB_KB
    entry = _entry(sim, after.backing.fileName)
    assert entry.parent is None and entry.extent == DATA
    assert entry.size == GB_KB * 1024  # the datastore space of a full disk
    assert sim.files.used_bytes("shared-a") == used + GB_KB * 1024 - delta_size
    assert disk_content(sim, after.backing) == DATA
    # The parent and the other clone of it are untouched.
    base = _entry(sim, parent)
    assert base.extent == DATA and base.disk_capacity_kb == GB_KB
    assert _disks(other)[0].backing.parent.fileName == parent
    # Standalone, it can grow; promoting it again is no work and succeeds.
    run(vm.ReconfigVM_Task(_grow_spec(after, 2 * GB_KB)))
    assert _disks(vm)[0].capacityInKB == 2 * GB_KB
    assert _entry(sim, after.backing.fileName).extent == DATA
    run(vm.PromoteDisks_Task(unlink=True))
    assert _disks(vm)[0].backing.parent is None


def test_promote_lays_each_deltas_data_over_its_parents(si, sim):
    vm, disk, parent = _linked_vm(si, sim)
    _entry(sim, disk.backing.fileName).extent = b"\xaa" * 100  # written by the guest
    # A second level: a clone whose parent is the first VM's delta disk.
    spec = vm_spec("second")
    change = _delta(disk.backing.fileName, None)
    change.device.backing.parent.parent = Dev.VirtualDisk.FlatVer2BackingInfo(
        fileName=parent, diskMode="persistent")
    spec.deviceChange = [*spec.deviceChange, change]
    second = run(_create(si, sim, spec))
    [top] = _disks(second)
    _entry(sim, top.backing.fileName).extent = b"\xbb" * 10

    run(second.PromoteDisks_Task(unlink=True))  # no disks given: all linked ones
    [after] = _disks(second)
    assert after.backing.parent is None
    assert _entry(sim, after.backing.fileName).extent == \
        b"\xbb" * 10 + b"\xaa" * 90 + DATA[100:]
    assert _disks(vm)[0].backing.parent.fileName == parent  # the first VM is still linked


def test_a_copy_of_a_delta_disk_is_one_disk_with_the_chains_data(si, sim):
    vm, disk, _ = _linked_vm(si, sim)
    manager = si.content.virtualDiskManager
    run(manager.CopyVirtualDisk_Task(sourceName=disk.backing.fileName, sourceDatacenter=dc1(si),
                                     destName="[shared-a] linked/copy.vmdk",
                                     destDatacenter=dc1(si)))
    copy = sim.files.get("shared-a", "linked/copy.vmdk")
    assert copy.parent is None and copy.extent == DATA
    assert copy.disk_capacity_kb == GB_KB and copy.size == GB_KB * 1024


def test_promote_without_room_for_the_full_disk_changes_nothing(si, sim):
    vm, disk, parent = _linked_vm(si, sim)
    datastore = sim.datastore_by_name("shared-a")
    # Room for a little more than the delta, not for the whole disk.
    sim.files.write("shared-a", "filler.bin", None, size=datastore.free_space() - 1024 * 1024)
    used = sim.files.used_bytes("shared-a")
    fault = fault_of(vm.PromoteDisks_Task(unlink=True, disks=[disk]))
    assert isinstance(fault, vim.fault.NoDiskSpace)
    [after] = _disks(vm)
    assert after.backing.parent.fileName == parent
    entry = _entry(sim, after.backing.fileName)
    assert entry.parent == parent and entry.extent is None
    assert sim.files.used_bytes("shared-a") == used


def test_promote_refusals_change_nothing(si, sim):
    vm, disk, parent = _linked_vm(si, sim)
    # unlink=false (consolidating unshared parents in place) is not modelled.
    fault = fault_of(vm.PromoteDisks_Task(unlink=False, disks=[disk]))
    assert isinstance(fault, vmodl.fault.NotSupported)
    # A disk the VM does not have.
    stranger = Dev.VirtualDisk(key=4242, controllerKey=disk.controllerKey, unitNumber=5,
                               backing=Dev.VirtualDisk.FlatVer2BackingInfo(
                                   fileName=disk.backing.fileName, diskMode="persistent"))
    fault = fault_of(vm.PromoteDisks_Task(unlink=True, disks=[stranger]))
    assert isinstance(fault, vmodl.fault.InvalidArgument)
    # Powered on with a snapshot (vCenter: only without snapshots while running).
    run(vm.PowerOnVM_Task())
    run(vm.CreateSnapshot_Task(name="s1", memory=False, quiesce=False))
    fault = fault_of(vm.PromoteDisks_Task(unlink=True))
    assert isinstance(fault, vim.fault.InvalidState)
    [after] = _disks(vm)
    assert after.backing.parent.fileName == parent
    assert _entry(sim, after.backing.fileName).parent == parent
