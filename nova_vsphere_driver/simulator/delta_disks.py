"""Delta disks (linked clones): their parent chain, its consolidation, PromoteDisks_Task.

A delta disk's file names its parent (``FileEntry.parent``, the
descriptor's ``parentFileNameHint``); the guest reads the delta first and
the parent where the delta has nothing. The simulator does not model guest
writes block by block: a layer's data, when it has any, is a prefix of the
disk, so a chain reads as its base's data with each child's laid over it.

vCenter never grows a disk that has a parent ("disks with parents cannot be
expanded", at CreateVM and ReconfigVM alike). A client that must grow one
first makes it standalone: ``VirtualMachine.PromoteDisks_Task(unlink=True)``
consolidates the parents' data into the VM's own disk, which then takes
its full size on the datastore and has no parent any more. A copy of a
delta disk (``CopyVirtualDisk_Task``) is one consolidated disk as well.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator.datastore_files import parse_datastore_path
from nova_vsphere_driver.simulator.disk_files import disk_data
from nova_vsphere_driver.simulator.vim_data import clone
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.virtual_machine import VirtualMachine
    from nova_vsphere_driver.simulator.service import Simulator

#: Deeper than any chain vCenter builds (it allows 255 delta levels).
MAX_CHAIN = 256


def overlay(layers: Iterable[bytes | None]) -> bytes | None:
    """What a chain reads as, from its ``layers``' data, child-most first."""
    result: bytes | None = None
    for data in reversed(list(layers)):
        if data is None:
            continue
        result = data if result is None or len(data) >= len(result) \
            else data + result[len(data):]
    return result


def file_chain(sim: Simulator, ds_path: str) -> list[str]:
    """The datastore paths of the disk at ``ds_path`` and of its parents, as its files say."""
    paths: list[str] = []
    path: str | None = ds_path
    while path:
        if path in paths or len(paths) >= MAX_CHAIN:
            raise vim.fault.InvalidDiskFormat(msg=f"the parent chain of {ds_path} loops")
        paths.append(path)
        ds_name, rel = parse_datastore_path(path)
        path = sim.files.get(ds_name, rel).parent  # FileNotFound when a parent is gone
    return paths


def backing_chain(backing) -> list[str]:
    """The datastore paths of a disk backing and of its parents, as the device says."""
    paths = []
    while backing is not None and len(paths) < MAX_CHAIN:
        paths.append(backing.fileName)
        backing = getattr(backing, "parent", None)
    return paths


def consolidated(sim: Simulator, paths: list[str]) -> bytes | None:
    """The data of the chain ``paths`` (child-most first) as one disk."""
    layers = []
    for path in paths:
        ds_name, rel = parse_datastore_path(path)
        layers.append(disk_data(sim.files.get(ds_name, rel)))
    return overlay(layers)


def has_parent(disk) -> bool:
    parent = getattr(disk.backing, "parent", None)
    return parent is not None and bool(getattr(parent, "fileName", None))


def growth_refused(disk, index: int, old_kb: int, new_kb: int) -> vim.fault.InvalidDeviceOperation:
    """vCenter's answer to an edit that grows ``disk``, a disk with a parent."""
    return vim.fault.InvalidDeviceOperation(
        deviceIndex=index, property="capacityInKB", badOp="edit",
        msg=f"Invalid operation for device '{index}': disks with parents cannot be expanded "
        f"({disk.backing.fileName} is a delta disk of {disk.backing.parent.fileName}; "
        f"{old_kb} KB to {new_kb} KB)")


def promote(vm: VirtualMachine, disks: list | None, unlink: bool) -> None:
    """PromoteDisks_Task's work, under the registry lock: every check, then the change.

    ``disks`` unset or empty: every disk of the VM that has a parent. A
    disk without one needs no work (vCenter completes such a call
    successfully).
    """
    if not unlink:
        # Without unlink vCenter consolidates the backings no other VM
        # shares; which ones are shared is not modelled here.
        raise vmodl.fault.NotSupported(
            msg="The simulator promotes disks only with unlink=true")
    vm._require_connected()
    if vm.powered_on and vm.snapshots:
        raise vim.fault.InvalidState(
            msg=f"The disks of {vm.name} cannot be promoted while it is powered on and has "
            "snapshots")
    current = {d.key: d for d in vm.disks()}
    chosen = []
    for given in disks or []:
        found = current.get(given.key)
        if found is None:
            raise invalid_argument("disks", f"{vm.name} has no virtual disk with key "
                                   f"{given.key}")
        chosen.append(found)
    linked = [d for d in (chosen or current.values()) if has_parent(d)]
    if not linked:
        return
    sim = vm.sim
    plans = []
    need: dict[str, int] = {}
    for disk in linked:
        ds_name, rel = parse_datastore_path(disk.backing.fileName)
        entry = sim.files.get(ds_name, rel)
        capacity_kb = int(disk.capacityInKB or (disk.capacityInBytes or 0) // 1024
                          or entry.disk_capacity_kb or 0)
        # A standalone disk takes its capacity on the datastore, as every
        # other disk the simulator makes.
        grow = max(capacity_kb * 1024 - entry.size, 0)
        need[ds_name] = need.get(ds_name, 0) + grow
        plans.append((disk.key, ds_name, rel, grow,
                      consolidated(sim, backing_chain(disk.backing))))
    for ds_name, size in need.items():
        datastore = sim.datastore_by_name(ds_name)
        if datastore is None:
            raise vim.fault.InvalidDatastorePath(datastorePath=f"[{ds_name}]",
                                                 msg=f"Datastore '{ds_name}' not found")
        datastore.ensure_space(size)  # NoDiskSpace: nothing changed
    config = clone(vm.config)
    devices = {d.key: d for d in config.hardware.device}
    for key, ds_name, rel, grow, data in plans:
        entry = sim.files.grow(ds_name, rel, grow)
        entry.extent = data
        entry.parent = None
        devices[key].backing.parent = None
    now = datetime.datetime.now(datetime.timezone.utc)
    config.changeVersion = now.isoformat()
    config.modified = now
    vm.config = config
    sim.registry.touch(vm)
