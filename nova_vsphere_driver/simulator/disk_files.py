"""Virtual disks as datastore files: a descriptor, its extent, and uploaded VMDK images.

On VMFS a disk made by vCenter is two files: ``x.vmdk`` (a text descriptor)
and ``x-flat.vmdk`` (the extent holding the data); the datastore browser
lists them as one disk. The simulator keeps such a disk as one entry (the
descriptor, served over HTTP as its text) whose ``extent`` field holds the
data; ``x-flat.vmdk`` names that extent: an HTTP PUT to it stores the disk's
data, deleting it drops the data. That is how clients (Nova's in-tree driver
too) fill a new flat disk with an image: CreateVirtualDisk_Task, delete the
extent, upload the image as the extent.

A file uploaded as-is (a hosted monolithic sparse or a stream-optimized
VMDK) is a plain file whose bytes are the VMDK; CopyVirtualDisk_Task turns a
hosted sparse one into a VMFS disk, and refuses a stream-optimized one, which
vCenter only takes through ImportVApp.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator import vmdk_stream
from nova_vsphere_driver.simulator.datastore_files import FileEntry, normalize

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

FLAT_SUFFIX = "-flat.vmdk"


def flat_extent_owner(sim: Simulator, ds_name: str, rel: str) -> FileEntry | None:
    """The disk whose extent ``rel`` (``x-flat.vmdk``) names, or None."""
    rel = normalize(rel)
    if not rel.endswith(FLAT_SUFFIX):
        return None
    descriptor = rel[:-len(FLAT_SUFFIX)] + ".vmdk"
    if not sim.files.exists(ds_name, descriptor):
        return None
    entry = sim.files.get(ds_name, descriptor)
    if entry.is_dir or entry.disk_capacity_kb is None or entry.data is not None:
        return None
    return entry


def disk_data(entry: FileEntry) -> bytes | None:
    """The data of the disk ``entry`` is (its extent's, or an uploaded file's bytes)."""
    return entry.extent if entry.extent is not None else entry.data


@dataclasses.dataclass(frozen=True)
class DiskSource:
    capacity_kb: int
    data: bytes | None
    #: A hosted sparse image: vCenter's copy of it is preallocated unless told otherwise.
    hosted_sparse: bool = False
    thin: bool = False


def disk_source(name: str, entry: FileEntry) -> DiskSource:
    """What CopyVirtualDisk_Task reads from the file ``entry`` (``name`` for faults)."""
    header = vmdk_stream.sparse_header(entry.data)
    if header is not None:
        if header.stream_optimized:
            raise vim.fault.InvalidDiskFormat(
                msg=f"{name} is a stream-optimized disk, which can only be imported "
                "(ResourcePool.ImportVApp)")
        try:
            header, data = vmdk_stream.hosted_sparse_content(entry.data)
        except vmdk_stream.InvalidVmdk as exc:
            raise vim.fault.InvalidDiskFormat(msg=f"{name}: {exc}") from None
        return DiskSource(capacity_kb=header.capacity_kb, data=data, hosted_sparse=True)
    capacity_kb = entry.disk_capacity_kb or (entry.size + 1023) // 1024
    return DiskSource(capacity_kb=capacity_kb, data=disk_data(entry), thin=entry.thin)
