"""A VM's virtual disks as vCenter lists them (``config.hardware.device``).

Shared by snapshots (which disk is the root disk) and volumes (which disks
are Cinder's, where a new one can go). Device objects are oslo.vmware's
suds objects, whose class names are the vim type names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nova_vsphere_driver.ops.block_devices import is_local_disk
from nova_vsphere_driver.vsphere.suds_values import items

#: vim controller types -> the adapter type names of Nova's and Cinder's
#: VMware drivers (image property ``vmware_adaptertype``, Cinder's
#: ``vmware:adapter_type``).
ADAPTER_TYPES = {
    "VirtualLsiLogicController": "lsiLogic",
    "VirtualLsiLogicSASController": "lsiLogicsas",
    "ParaVirtualSCSIController": "paraVirtual",
    "VirtualBusLogicController": "busLogic",
    "VirtualIDEController": "ide",
}
CONTROLLER_TYPES = {adapter: name for name, adapter in ADAPTER_TYPES.items()}
DEFAULT_ADAPTER = "lsiLogic"
#: extraConfig key recording which disk (by UUID) is a Cinder volume, as the
#: in-tree driver writes it (volumes it attached stay manageable).
VOLUME_OPTION = "volume-{}"


def type_name(obj: Any) -> str:
    return type(obj).__name__


def device_list(value: Any) -> list:
    """The devices of a ``config.hardware.device`` value."""
    return list(items(value))


def option_values(value: Any) -> dict[str, str]:
    """``config.extraConfig`` as a dict."""
    return {str(o.key): str(o.value) for o in items(value) if getattr(o, "value", None)}


def volume_uuids(extra_config: dict[str, str]) -> dict[str, str]:
    """{volume id: disk UUID} of the Cinder volumes recorded in extraConfig."""
    prefix = VOLUME_OPTION.format("")
    return {k[len(prefix):]: v for k, v in extra_config.items() if k.startswith(prefix) and v}


@dataclasses.dataclass(frozen=True)
class Disk:
    device: Any
    controller: Any

    @property
    def path(self) -> str:
        return str(getattr(self.device.backing, "fileName", "") or "")

    @property
    def uuid(self) -> str | None:
        return getattr(self.device.backing, "uuid", None)

    @property
    def adapter_type(self) -> str:
        return ADAPTER_TYPES.get(type_name(self.controller), DEFAULT_ADAPTER)

    @property
    def capacity_bytes(self) -> int:
        value = getattr(self.device, "capacityInBytes", None)
        if value:
            return int(value)
        return int(getattr(self.device, "capacityInKB", 0) or 0) * 1024

    @property
    def key_suffix(self) -> str:
        """How vCenter names the disk in an export lease: ``/<controller><bus>:<unit>``."""
        return (f"/{type_name(self.controller)}{self.controller.busNumber}:"
                f"{self.device.unitNumber}")


def disks(devices: list) -> list[Disk]:
    """The virtual disks in boot order (controller, then unit), as vCenter boots them."""
    by_key = {d.key: d for d in devices}
    found = [Disk(d, by_key.get(d.controllerKey)) for d in devices
             if type_name(d) == "VirtualDisk"]
    return sorted(found, key=lambda d: (d.device.controllerKey, d.device.unitNumber or 0))


def root_disk(devices: list, extra_config: dict[str, str]) -> Disk | None:
    """The first disk in boot order that is neither a Cinder volume nor an ephemeral or
    swap disk (None: the VM boots from a volume, or from an ISO image without a disk)."""
    volumes = set(volume_uuids(extra_config).values())
    for disk in disks(devices):
        if disk.controller is not None and disk.uuid not in volumes \
                and not is_local_disk(disk.path):
            return disk
    return None
