"""Datastore and HostDatastoreBrowser: capacity, files, searches."""

from __future__ import annotations

import fnmatch
import posixpath
import uuid
from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator.datastore_files import FileEntry, normalize, parse_datastore_path
from nova_vsphere_driver.simulator.disk_files import flat_extent_owner
from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedEntity, ManagedObject

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.host import HostSystem
    from nova_vsphere_driver.simulator.service import Simulator

GB = 1024 ** 3


class Datastore(ManagedEntity):
    vim_type = vim.Datastore
    moid_prefix = "datastore"

    def __init__(self, sim: Simulator, name: str, parent: ManagedEntity, *, capacity_gb: int,
                 ds_type: str = "VMFS") -> None:
        super().__init__(sim, name, parent)
        self.capacity = int(capacity_gb * GB)
        self.ds_type = ds_type
        self.uuid = uuid.uuid4().hex[:8] + "-" + uuid.uuid4().hex[:8]
        self.hosts: list[HostSystem] = []
        self.accessible = True
        #: Made with the datastore (factory.ObjectFactory.datastore).
        self.browser: HostDatastoreBrowser

    @property
    def url(self) -> str:
        return f"ds:///vmfs/volumes/{self.uuid}/"

    def free_space(self) -> int:
        return max(self.capacity - self.sim.files.used_bytes(self.name), 0)

    def ensure_space(self, size: int) -> None:
        if size > self.free_space():
            raise vim.fault.NoDiskSpace(
                datastore=self.name,
                msg=f"There is not enough space on datastore {self.name}: {size} bytes needed, "
                f"{self.free_space()} free")

    def store_file(self, path: str, data: bytes) -> FileEntry:
        """Write a file (HTTP PUT), checking free space and parent folders."""
        with self.sim.registry.lock:
            path = normalize(path)
            disk = flat_extent_owner(self.sim, self.name, path)
            if disk is not None:
                # The extent of a disk (x-flat.vmdk): its space is the disk's.
                disk.extent = data or None
                self.sim.registry.touch(self)
                return disk
            existing = self.sim.files.exists(self.name, path) and \
                self.sim.files.get(self.name, path)
            growth = len(data) - (existing.size if existing and not existing.is_dir else 0)
            self.ensure_space(growth)
            entry = self.sim.files.write(self.name, path, data, create_parents=True)
            self.sim.registry.touch(self)
            return entry

    def delete_file(self, path: str) -> None:
        with self.sim.registry.lock:
            disk = flat_extent_owner(self.sim, self.name, path)
            if disk is not None:
                disk.extent = None  # the extent's data is gone; the descriptor stays
                self.sim.registry.touch(self)
                return
            self.sim.files.delete(self.name, path)
            self.sim.registry.touch(self)

    def render(self, entry: FileEntry) -> bytes:
        """Content served for files created without data (disks, vmx)."""
        if entry.disk_capacity_kb is not None:
            sectors = entry.disk_capacity_kb * 2
            return (
                "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
                f'createType="{"thin" if entry.thin else "monolithicFlat"}"\n\n'
                f'RW {sectors} VMFS "{posixpath.basename(entry.path)}"\n\n'
                'ddb.adapterType = "lsilogic"\n'
            ).encode()
        return b""

    def child_entities(self):
        return []

    def _get_summary(self):
        return vim.Datastore.Summary(
            datastore=self.ref, name=self.name, url=self.url, capacity=self.capacity,
            freeSpace=self.free_space(), uncommitted=0, accessible=self.accessible,
            multipleHostAccess=len(self.hosts) > 1, type=self.ds_type,
            maintenanceMode="normal")

    def _get_info(self):
        common = dict(name=self.name, url=self.url, freeSpace=self.free_space(),
                      maxFileSize=62 * 1024 * GB, maxVirtualDiskCapacity=62 * 1024 * GB,
                      maxMemoryFileSize=62 * 1024 * GB, containerId=self.uuid)
        if self.ds_type.upper().startswith("NFS"):
            return vim.host.NasDatastoreInfo(nas=vim.host.NasVolume(
                name=self.name, type=self.ds_type, capacity=self.capacity,
                remoteHost="nfs.simulator.local", remotePath=f"/export/{self.name}"),
                **common)
        return vim.host.VmfsDatastoreInfo(
            vmfs=vim.host.VmfsVolume(name=self.name, type="VMFS", capacity=self.capacity,
                                     blockSizeMb=1, maxBlocks=63 * 1024 * 1024,
                                     majorVersion=6, version="6.82", uuid=self.uuid,
                                     ssd=True, local=len(self.hosts) == 1,
                                     extent=[vim.host.ScsiDisk.Partition(
                                         diskName=f"naa.6000c29{self.uuid.replace('-', '')}",
                                         partition=1)]),
            **common)

    def _get_host(self):
        return [vim.Datastore.HostMount(
            key=h.ref, mountInfo=vim.host.MountInfo(path=f"/vmfs/volumes/{self.uuid}",
                                                    accessMode="readWrite", mounted=True,
                                                    accessible=True))
            for h in self.hosts]

    def _get_vm(self):
        return [vm.ref for vm in self.sim.vms() if self in vm.datastores]

    def _get_browser(self):
        return self.browser.ref

    def _get_capability(self):
        return vim.Datastore.Capability(directoryHierarchySupported=True,
                                        rawDiskMappingsSupported=False,
                                        perFileThinProvisioningSupported=True,
                                        storageIORMSupported=True,
                                        nativeSnapshotSupported=False)

    def _get_overallStatus(self):  # noqa: N802
        return vim.ManagedEntity.Status.green


def _file_info(entry: FileEntry, query_types: list[type]):
    name = posixpath.basename(entry.path)
    size = entry.size
    if entry.is_dir:
        return vim.host.DatastoreBrowser.FolderInfo(path=name, fileSize=0,
                                                    modification=entry.modified)
    if name.endswith(".vmdk") and entry.disk_capacity_kb is not None \
            and vim.host.DatastoreBrowser.VmDiskQuery in query_types:
        return vim.host.DatastoreBrowser.VmDiskInfo(
            path=name, fileSize=size, modification=entry.modified,
            capacityKb=entry.disk_capacity_kb,
            diskType=vim.vm.device.VirtualDisk.FlatVer2BackingInfo,
            thin=entry.thin, hardwareVersion=19)
    if name.endswith(".vmx"):
        return vim.host.DatastoreBrowser.VmConfigInfo(path=name, fileSize=size,
                                                      modification=entry.modified,
                                                      configVersion=19)
    return vim.host.DatastoreBrowser.FileInfo(path=name, fileSize=size,
                                              modification=entry.modified)


def _matches(entry: FileEntry, spec) -> bool:
    name = posixpath.basename(entry.path)
    patterns = getattr(spec, "matchPattern", None) or []
    if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
        return False
    queries = getattr(spec, "query", None) or []
    if not queries:
        return True
    for query in queries:
        if isinstance(query, vim.host.DatastoreBrowser.FolderQuery):
            if entry.is_dir:
                return True
        elif isinstance(query, vim.host.DatastoreBrowser.VmDiskQuery):
            if not entry.is_dir and name.endswith(".vmdk"):
                return True
        elif isinstance(query, vim.host.DatastoreBrowser.VmConfigQuery):
            if not entry.is_dir and name.endswith(".vmx"):
                return True
        elif isinstance(query, vim.host.DatastoreBrowser.Query):
            # FileQuery (and anything more general) matches everything.
            if type(query) is vim.host.DatastoreBrowser.Query:
                return True
    return False


class HostDatastoreBrowser(ManagedObject):
    vim_type = vim.host.DatastoreBrowser
    moid_prefix = "datastoreBrowser"

    def __init__(self, sim: Simulator, datastore: Datastore) -> None:
        super().__init__(sim, f"datastoreBrowser-{datastore.moid}")
        self.datastore = datastore

    def _get_datastore(self):
        return [self.datastore.ref]

    def _get_supportedType(self):  # noqa: N802
        return [vim.host.DatastoreBrowser.FolderQuery(), vim.host.DatastoreBrowser.VmDiskQuery(),
                vim.host.DatastoreBrowser.Query()]

    def _search_folder(self, ds: Datastore, folder: str, spec):
        files = self.sim.files
        entries = files.listdir(ds.name, folder)
        query_types = [type(q) for q in (getattr(spec, "query", None) or [])]
        matched = [_file_info(e, query_types) for e in entries if _matches(e, spec)]
        path = f"[{ds.name}] {folder}" if folder else f"[{ds.name}]"
        return vim.host.DatastoreBrowser.SearchResults(
            datastore=ds.ref, folderPath=path if path.endswith("/") or not folder else path + "/",
            file=matched)

    def _resolve(self, datastore_path: str) -> tuple[Datastore, str]:
        ds_name, folder = parse_datastore_path(datastore_path)
        if ds_name != self.datastore.name:
            ds = self.sim.datastore_by_name(ds_name)
            if ds is None:
                raise vim.fault.InvalidDatastorePath(
                    datastorePath=datastore_path,
                    msg=f"Invalid datastore path '{datastore_path}': no datastore {ds_name}")
            return ds, folder
        return self.datastore, folder

    def SearchDatastore_Task(self, ctx: CallContext, datastorePath: str, searchSpec=None):  # noqa: N802,N803
        def work():
            ds, folder = self._resolve(datastorePath)
            return self._search_folder(ds, folder, searchSpec)

        return self.sim.tasks.start(ctx, self.datastore, "SearchDatastore_Task", work)

    def SearchDatastoreSubFolders_Task(self, ctx: CallContext, datastorePath: str,  # noqa: N802,N803
                                       searchSpec=None):  # noqa: N803
        def work():
            ds, folder = self._resolve(datastorePath)
            folders = [folder] + [e.path for e in self.sim.files.listdir(ds.name, folder, True)
                                  if e.is_dir]
            return vim.host.DatastoreBrowser.SearchResults.Array(
                [self._search_folder(ds, f, searchSpec) for f in folders])

        return self.sim.tasks.start(ctx, self.datastore, "SearchDatastoreSubFolders_Task", work)

    def DeleteFile(self, ctx: CallContext, datastorePath: str) -> None:  # noqa: N802,N803
        ds, path = self._resolve(datastorePath)
        ds.delete_file(path)
