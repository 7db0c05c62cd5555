"""Linked-clone delta disks, guest OS types and FindByDatastorePath, through pyVmomi.

vCenter creates a delta disk (a disk whose backing has a parent) only with
its parent's capacity -- "disks with parents cannot be expanded" -- at
CreateVM and ReconfigVM alike; it refuses a guestId it does not know; and
SearchIndex.FindByDatastorePath finds a registered VM by its .vmx.
"""

from __future__ import annotations

import pytest
from pyVmomi import vim, vmodl

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

