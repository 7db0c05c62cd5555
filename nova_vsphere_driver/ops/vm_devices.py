"""Reading a VM's devices and extraConfig as oslo.vmware (suds) returns them."""

from __future__ import annotations

from typing import Any

from nova_vsphere_driver.vsphere.suds_values import items

#: extraConfig key prefix mapping a NIC slot to its Neutron port
#: (``nvp.iface-id.<N>`` = port id), as spawn writes it and NSX reads it.
IFACE_ID_PREFIX = "nvp.iface-id."
#: Value of a slot whose NIC was detached: the key stays (ESXi-side network
#: wiring keys on it) and the slot is reused by the next attach.
FREE_SLOT = "free"
#: Controller types a virtual disk may sit on.
SCSI_CONTROLLERS = frozenset({"VirtualLsiLogicController", "VirtualLsiLogicSASController",
                              "ParaVirtualSCSIController", "VirtualBusLogicController"})
#: SCSI unit 7 is the controller itself.
SCSI_CONTROLLER_UNIT = 7
SCSI_UNITS = 16


def type_name(device: Any) -> str:
    return type(device).__name__


def nics(devices: list) -> list:
    return [d for d in devices if getattr(d, "macAddress", None) is not None]


def disks(devices: list) -> list:
    return [d for d in devices if type_name(d) == "VirtualDisk"]


def disk_file(device: Any) -> str:
    return getattr(getattr(device, "backing", None), "fileName", None) or ""


def find_nic(devices: list, mac: str | None):
    """The network adapter with MAC address ``mac`` (case-insensitive), or None."""
    if not mac:
        return None
    mac = mac.lower()
    return next((d for d in nics(devices) if str(d.macAddress).lower() == mac), None)


def options(extra_config: Any) -> dict[str, str]:
    """extraConfig as {key: value}."""
    return {str(o.key): str(o.value) for o in items(extra_config)
            if getattr(o, "key", None) is not None}


def iface_slots(extra_config: Any) -> dict[int, str]:
    """NIC slot -> Neutron port id, for slots in use (``free`` ones left out)."""
    slots = {}
    for key, value in options(extra_config).items():
        if not key.startswith(IFACE_ID_PREFIX):
            continue
        try:
            index = int(key[len(IFACE_ID_PREFIX):])
        except ValueError:
            continue
        if value != FREE_SLOT:
            slots[index] = value
    return slots


def first_free_slot(slots: dict[int, str]) -> int:
    index = 0
    while index in slots:
        index += 1
    return index


def free_unit(devices: list, controller_key: int) -> int | None:
    """The lowest free unit number on a SCSI controller, or None when it is full."""
    used = {getattr(d, "unitNumber", None) for d in devices
            if getattr(d, "controllerKey", None) == controller_key}
    for unit in range(SCSI_UNITS):
        if unit != SCSI_CONTROLLER_UNIT and unit not in used:
            return unit
    return None


def scsi_controllers(devices: list) -> list:
    return [d for d in devices if type_name(d) in SCSI_CONTROLLERS]
