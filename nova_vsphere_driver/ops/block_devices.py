"""What Nova's ``block_device_info`` asks of a new VM: volumes, ephemeral and swap disks.

Pure functions over Nova's dicts (``nova.virt.driver.block_device_info_get_*``)
and the flavor, read as Nova's in-tree vmwareapi driver reads them:

* ``block_device_mapping``: Cinder volumes, the one with ``boot_index`` 0
  being the root disk (boot from volume: no image, no local root disk);
  attached in that order, the root volume first, each on the controller its
  ``disk_bus`` asks for (the volume's own adapter type when it asks none);
* ``ephemerals``: one thin disk each, ``ephemeral_<n>.vmdk`` in the
  instance's folder; without any, the flavor's ``ephemeral_gb`` is one;
* ``swap``: one thin disk, ``swap.vmdk``, of ``swap_size`` MiB, or of the
  flavor's ``swap`` when the mapping has no usable swap.

Ephemeral and swap disks go on the root disk's adapter type unless their
``disk_bus`` says otherwise. A bus vSphere lacks (virtio, sata, usb, ...) is
refused with UnsupportedHardware before anything is created.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re

from nova import exception
from nova.virt import driver as virt_driver
from oslo_utils import units

from nova_vsphere_driver.vsphere.device_layout import IDE, SCSI_CONTROLLER_TYPES

#: Local disk file names in the instance's folder, as the in-tree driver names them.
EPHEMERAL_NAME = "ephemeral_{}.vmdk"
SWAP_NAME = "swap.vmdk"
#: Nova's generic bus name for SCSI: the adapter type of the disk it goes with.
SCSI = "scsi"
#: Ephemeral and swap disks, and the copies a resize keeps of an ephemeral disk
#: (which a revert puts back in its place: ops/migrate.py).
_LOCAL_DISK = re.compile(r"^(ephemeral_\d+|swap)(-pre-resize-[0-9a-f]+)?\.vmdk$")


def is_local_disk(path: str) -> bool:
    """Whether a disk file ("[ds] dir/name.vmdk") is an ephemeral or swap disk."""
    return bool(_LOCAL_DISK.match(posixpath.basename(path or "")))


def adapter_for_bus(disk_bus: str | None, default: str) -> str:
    """The adapter type a BDM's ``disk_bus`` asks for; ``default`` when it asks none.

    vSphere's adapter names (the in-tree driver's ``lsiLogic``, ``busLogic``,
    ``lsiLogicsas``, ``paraVirtual``, ``ide``) are taken as they are; Nova's
    ``scsi`` means ``default`` when that is a SCSI adapter, else LSI Logic.
    """
    if not disk_bus:
        return default
    if disk_bus == IDE or disk_bus in SCSI_CONTROLLER_TYPES:
        return disk_bus
    if disk_bus == SCSI:
        return default if default in SCSI_CONTROLLER_TYPES else "lsiLogic"
    raise exception.UnsupportedHardware(model=disk_bus, virt="vmware")


@dataclasses.dataclass(frozen=True)
class VolumeRequest:
    """One Cinder volume of the mapping."""

    connection_info: dict
    volume_id: str
    disk_bus: str | None
    boot_index: int | None
    mount_device: str | None

    @property
    def is_root(self) -> bool:
        return self.boot_index == 0


@dataclasses.dataclass(frozen=True)
class LocalDisk:
    """An ephemeral or swap disk to create in the instance's folder."""

    #: File name in the instance's folder (ephemeral_<n>.vmdk, swap.vmdk).
    name: str
    capacity_kb: int
    disk_bus: str | None = None

    @property
    def is_swap(self) -> bool:
        return self.name == SWAP_NAME


@dataclasses.dataclass(frozen=True)
class BlockDevices:
    """Everything besides the image that a new VM gets."""

    volumes: tuple[VolumeRequest, ...] = ()
    ephemerals: tuple[LocalDisk, ...] = ()
    swap: LocalDisk | None = None

    @property
    def boot_from_volume(self) -> bool:
        return any(v.is_root for v in self.volumes)

    @property
    def local_disks(self) -> tuple[LocalDisk, ...]:
        return self.ephemerals + ((self.swap,) if self.swap is not None else ())

    @property
    def local_bytes(self) -> int:
        """Bytes the ephemeral and swap disks may take on the instance's datastore."""
        return sum(d.capacity_kb for d in self.local_disks) * units.Ki


def _volume(bdm: dict) -> VolumeRequest:
    info = bdm.get("connection_info") or {}
    data = info.get("data") or {}
    volume_id = str(data.get("volume_id") or bdm.get("volume_id") or "")
    boot_index = bdm.get("boot_index")
    return VolumeRequest(connection_info=info, volume_id=volume_id,
                         disk_bus=bdm.get("disk_bus"),
                         boot_index=int(boot_index) if boot_index is not None else None,
                         mount_device=bdm.get("mount_device"))


def _boot_order(volume: VolumeRequest) -> tuple[int, int]:
    # The root volume first, then the other bootable ones by boot index;
    # sorted() keeps the mapping's order among equals.
    if volume.boot_index is None or volume.boot_index < 0:
        return (1, 0)
    return (0, volume.boot_index)


def requested(instance, block_device_info) -> BlockDevices:
    """The volumes, ephemeral and swap disks ``block_device_info`` and the flavor ask for.

    UnsupportedHardware for a ``disk_bus`` vSphere lacks; InvalidBDM for a
    volume without connection_info.
    """
    flavor = instance.flavor
    volumes = []
    for bdm in virt_driver.block_device_info_get_mapping(block_device_info):
        volume = _volume(bdm)
        if not volume.connection_info:
            raise exception.InvalidBDM(
                message=f"volume {volume.volume_id or volume.mount_device} has no "
                "connection_info: it was not attached in Cinder")
        adapter_for_bus(volume.disk_bus, "lsiLogic")  # refuse an unknown bus now
        volumes.append(volume)
    volumes.sort(key=_boot_order)
    ephemerals = []
    for index, eph in enumerate(virt_driver.block_device_info_get_ephemerals(block_device_info)):
        adapter_for_bus(eph.get("disk_bus"), "lsiLogic")
        ephemerals.append(LocalDisk(EPHEMERAL_NAME.format(index),
                                    int(eph.get("size") or 0) * units.Mi, eph.get("disk_bus")))
    if not ephemerals and int(flavor.ephemeral_gb or 0):
        ephemerals.append(LocalDisk(EPHEMERAL_NAME.format(0),
                                    int(flavor.ephemeral_gb) * units.Mi))
    swap = None
    bdm_swap = virt_driver.block_device_info_get_swap(block_device_info)
    if virt_driver.swap_is_usable(bdm_swap):
        adapter_for_bus(bdm_swap.get("disk_bus"), "lsiLogic")
        swap = LocalDisk(SWAP_NAME, int(bdm_swap["swap_size"]) * units.Ki,
                         bdm_swap.get("disk_bus"))
    elif int(flavor.swap or 0) > 0:
        swap = LocalDisk(SWAP_NAME, int(flavor.swap) * units.Ki)
    return BlockDevices(volumes=tuple(volumes),
                        ephemerals=tuple(e for e in ephemerals if e.capacity_kb > 0),
                        swap=swap)
