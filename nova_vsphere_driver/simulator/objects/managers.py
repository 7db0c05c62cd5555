"""FileManager and VirtualDiskManager: datastore files by path."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator import delta_disks
from nova_vsphere_driver.simulator.datastore_files import parse_datastore_path
from nova_vsphere_driver.simulator.disk_files import disk_source, flat_extent_owner
from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.datastore import Datastore
    from nova_vsphere_driver.simulator.service import Simulator


def _datastore(sim: Simulator, ds_path: str) -> tuple[Datastore, str]:
    ds_name, rel = parse_datastore_path(ds_path)
    ds = sim.datastore_by_name(ds_name)
    if ds is None:
        raise vim.fault.InvalidDatastorePath(datastorePath=ds_path,
                                             msg=f"Datastore '{ds_name}' not found")
    return ds, rel


def _in_use(sim: Simulator, ds_name: str, rel: str) -> bool:
    """Is the disk attached to a powered-on VM (locked on a real host)?"""
    target = f"[{ds_name}] {rel}"
    return any(vm.powered_on and target in vm.disk_files() for vm in sim.vms())


class FileManager(ManagedObject):
    vim_type = vim.FileManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "FileManager")

    def MakeDirectory(self, ctx: CallContext, name: str, datacenter=None,  # noqa: N802
                      createParentDirectories: bool = False) -> None:  # noqa: N803
        with self.sim.registry.lock:
            ds, rel = _datastore(self.sim, name)
            if not rel:
                raise invalid_argument("name", "a directory path is required")
            self.sim.files.mkdir(ds.name, rel, bool(createParentDirectories))
            self.sim.registry.touch(ds)

    def DeleteDatastoreFile_Task(self, ctx: CallContext, name: str, datacenter=None):  # noqa: N802
        def work():
            ds, rel = _datastore(self.sim, name)
            if flat_extent_owner(self.sim, ds.name, rel) is not None:
                rel = rel[:-len("-flat.vmdk")] + ".vmdk"  # an extent is locked with its disk
            if _in_use(self.sim, ds.name, rel):
                raise vim.fault.FileLocked(file=name, msg=f"File {name} is locked")
            ds.delete_file(parse_datastore_path(name)[1])

        return self.sim.tasks.start(ctx, None, "DeleteDatastoreFile_Task", work)

    def _move(self, source: str, dest: str, force: bool, copy: bool) -> None:
        src_ds, src = _datastore(self.sim, source)
        dst_ds, dst = _datastore(self.sim, dest)
        if copy:
            entry = self.sim.files.get(src_ds.name, src)
            size = entry.size if not entry.is_dir else sum(
                e.size for e in self.sim.files.listdir(src_ds.name, src, True))
            dst_ds.ensure_space(size)
        elif src_ds is not dst_ds:
            entry = self.sim.files.get(src_ds.name, src)
            dst_ds.ensure_space(entry.size)
        self.sim.files.move(src_ds.name, src, dst_ds.name, dst, force=bool(force), copy=copy)
        self.sim.registry.touch(src_ds, dst_ds)

    def MoveDatastoreFile_Task(self, ctx: CallContext, sourceName: str,  # noqa: N802,N803
                               sourceDatacenter=None, destinationName: str = "",  # noqa: N803
                               destinationDatacenter=None, force: bool = False):  # noqa: N803
        def work():
            self._move(sourceName, destinationName, force, copy=False)

        return self.sim.tasks.start(ctx, None, "MoveDatastoreFile_Task", work)

    def CopyDatastoreFile_Task(self, ctx: CallContext, sourceName: str,  # noqa: N802,N803
                               sourceDatacenter=None, destinationName: str = "",  # noqa: N803
                               destinationDatacenter=None, force: bool = False):  # noqa: N803
        def work():
            self._move(sourceName, destinationName, force, copy=True)

        return self.sim.tasks.start(ctx, None, "CopyDatastoreFile_Task", work)


def _check_disk_spec(spec, where: str) -> None:
    """A VirtualDiskSpec names a disk type and adapter type VirtualDiskManager knows.

    Its adapter types are the vmdk descriptor's (ide, busLogic, lsiLogic):
    as Nova's in-tree driver notes, it does not take the newer controller
    types (lsiLogicsas, paraVirtual).
    """
    manager = vim.VirtualDiskManager
    if spec.diskType not in manager.VirtualDiskType.values:
        raise invalid_argument(f"{where}.diskType")
    if spec.adapterType not in manager.VirtualDiskAdapterType.values:
        raise invalid_argument(f"{where}.adapterType")


class VirtualDiskManager(ManagedObject):
    vim_type = vim.VirtualDiskManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "VirtualDiskManager")

    def CreateVirtualDisk_Task(self, ctx: CallContext, name: str, datacenter=None,  # noqa: N802
                               spec=None):
        def work():
            file_backed = vim.VirtualDiskManager.FileBackedVirtualDiskSpec
            if spec is None or not isinstance(spec, file_backed):
                raise invalid_argument("spec", "a FileBackedVirtualDiskSpec is required")
            _check_disk_spec(spec, "spec")
            if not name.endswith(".vmdk"):
                raise invalid_argument("name", "a virtual disk name ends in .vmdk")
            ds, rel = _datastore(self.sim, name)
            if self.sim.files.exists(ds.name, rel):
                raise vim.fault.FileAlreadyExists(file=name, msg=f"File {name} already exists")
            capacity_kb = int(spec.capacityKb)
            if capacity_kb <= 0:
                raise invalid_argument("spec.capacityKb")
            ds.ensure_space(capacity_kb * 1024)
            self.sim.files.write(ds.name, rel, None, size=capacity_kb * 1024,
                                 disk_capacity_kb=capacity_kb, thin=spec.diskType == "thin",
                                 overwrite=False, create_parents=False)
            self.sim.registry.touch(ds)
            return name

        return self.sim.tasks.start(ctx, None, "CreateVirtualDisk_Task", work)

    def CopyVirtualDisk_Task(self, ctx: CallContext, sourceName: str,  # noqa: N802,N803
                             sourceDatacenter=None, destName: str = "",  # noqa: N803
                             destDatacenter=None, destSpec=None, force: bool = False):  # noqa: N803
        def work():
            if isinstance(destSpec, vim.VirtualDiskManager.VirtualDiskSpec):
                _check_disk_spec(destSpec, "destSpec")
            src_ds, src = _datastore(self.sim, sourceName)
            dst_ds, dst = _datastore(self.sim, destName)
            entry = self.sim.files.get(src_ds.name, src)
            if entry.is_dir:
                raise invalid_argument("sourceName", "not a virtual disk")
            if self.sim.files.exists(dst_ds.name, dst) and not force:
                raise vim.fault.FileAlreadyExists(file=destName,
                                                  msg=f"File {destName} already exists")
            # A hosted sparse image becomes a VMFS disk of its virtual capacity
            # (preallocated unless destSpec says otherwise, as on vCenter).
            source = disk_source(sourceName, entry)
            data = source.data
            if entry.parent:
                # A copy of a delta disk is one standalone disk holding what
                # the chain reads as (simulator/delta_disks.py).
                data = delta_disks.consolidated(
                    self.sim, delta_disks.file_chain(self.sim, f"[{src_ds.name}] {src}"))
            capacity_kb = source.capacity_kb
            dst_ds.ensure_space(capacity_kb * 1024)
            thin = source.thin
            if isinstance(destSpec, vim.VirtualDiskManager.VirtualDiskSpec) and destSpec.diskType:
                thin = destSpec.diskType == "thin"
            copied = self.sim.files.write(dst_ds.name, dst, None, size=capacity_kb * 1024,
                                          disk_capacity_kb=capacity_kb, thin=thin,
                                          overwrite=bool(force), create_parents=False)
            copied.extent = data or None
            self.sim.registry.touch(dst_ds)

        return self.sim.tasks.start(ctx, None, "CopyVirtualDisk_Task", work)

    def ExtendVirtualDisk_Task(self, ctx: CallContext, name: str, datacenter=None,  # noqa: N802
                               newCapacityKb: int = 0, eagerZero: bool | None = None):  # noqa: N803
        def work():
            ds, rel = _datastore(self.sim, name)
            entry = self.sim.files.get(ds.name, rel)
            if entry.disk_capacity_kb is None:
                raise invalid_argument("name", f"{name} is not a virtual disk")
            if _in_use(self.sim, ds.name, rel):
                raise vim.fault.FileLocked(file=name, msg=f"File {name} is locked")
            if newCapacityKb < entry.disk_capacity_kb:
                raise invalid_argument("newCapacityKb", "A virtual disk cannot be shrunk")
            grow = (newCapacityKb - entry.disk_capacity_kb) * 1024
            ds.ensure_space(grow)
            self.sim.files.grow(ds.name, rel, grow, newCapacityKb)
            users = []
            for vm in self.sim.vms():
                for disk in vm.disks():
                    if disk.backing.fileName == f"[{ds.name}] {rel}":
                        disk.capacityInKB = newCapacityKb
                        disk.capacityInBytes = newCapacityKb * 1024
                        users.append(vm)
            self.sim.registry.touch(ds, *users)

        return self.sim.tasks.start(ctx, None, "ExtendVirtualDisk_Task", work)

    def DeleteVirtualDisk_Task(self, ctx: CallContext, name: str, datacenter=None):  # noqa: N802
        def work():
            ds, rel = _datastore(self.sim, name)
            entry = self.sim.files.get(ds.name, rel)
            if entry.disk_capacity_kb is None and not rel.endswith(".vmdk"):
                raise invalid_argument("name", f"{name} is not a virtual disk")
            if _in_use(self.sim, ds.name, rel):
                raise vim.fault.FileLocked(file=name, msg=f"File {name} is locked")
            self.sim.files.delete(ds.name, rel)
            self.sim.registry.touch(ds)

        return self.sim.tasks.start(ctx, None, "DeleteVirtualDisk_Task", work)

    def QueryVirtualDiskUuid(self, ctx: CallContext, name: str, datacenter=None) -> str:  # noqa: N802
        ds, rel = _datastore(self.sim, name)
        self.sim.files.get(ds.name, rel)
        return str(uuid.uuid5(uuid.NAMESPACE_URL, name)).replace("-", " ")

    # -- moving a disk with its extent (image imports, simulator/disk_files.py) ---------

    def MoveVirtualDisk_Task(self, ctx: CallContext, sourceName: str,  # noqa: N802,N803
                             sourceDatacenter=None, destName: str = "",  # noqa: N803
                             destDatacenter=None, force: bool = False,  # noqa: N803
                             profile=None):
        def work():
            src_ds, src = _datastore(self.sim, sourceName)
            dst_ds, dst = _datastore(self.sim, destName)
            entry = self.sim.files.get(src_ds.name, src)
            if entry.is_dir or not src.endswith(".vmdk"):
                raise invalid_argument("sourceName", f"{sourceName} is not a virtual disk")
            if not destName.endswith(".vmdk"):
                raise invalid_argument("destName", "a virtual disk name ends in .vmdk")
            if _in_use(self.sim, src_ds.name, src):
                raise vim.fault.FileLocked(file=sourceName, msg=f"File {sourceName} is locked")
            if src_ds is not dst_ds:
                dst_ds.ensure_space(entry.size)
            self.sim.files.move(src_ds.name, src, dst_ds.name, dst, force=bool(force))
            self.sim.registry.touch(src_ds, dst_ds)

        return self.sim.tasks.start(ctx, None, "MoveVirtualDisk_Task", work)
