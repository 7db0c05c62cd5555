"""What resize and cold migration read from, and write to, one VM in vCenter.

A resize changes a VM in place: nova-compute may restart between
``finish_migration`` and the confirm or revert that follows (hours later,
on another nova-compute), so what a revert needs is kept on the VM itself,
in ``extraConfig`` keys under ``nova.resize.`` (a :class:`ResizeRecord`),
never in driver memory.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from nova import exception
from oslo_vmware import vim_util

from nova_vsphere_driver.ops import block_devices, vm_devices
from nova_vsphere_driver.ops import disks as disks_mod
from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.vm import ResourceSettings, new_thin_disk_change, profile_spec

RECORD_PREFIX = "nova.resize."
#: Record fields, each stored as extraConfig "nova.resize.<field>".
RECORD_FIELDS = ("migration", "cluster", "pool", "host", "datastore", "disk_kb",
                 "disk_backup", "ephemeral_kb", "ephemeral_backup", "swap_kb")
_INT_FIELDS = ("disk_kb", "ephemeral_kb", "swap_kb")
#: Temporary keys of an ephemeral or swap disk a resize adds.
NEW_EPHEMERAL_KEY = -102
NEW_SWAP_KEY = -103

VM_PROPS = ["config.hardware.numCPU", "config.hardware.memoryMB", "config.hardware.device",
            "config.extraConfig", "config.files.vmPathName", "config.version", "resourcePool",
            "runtime.host", "runtime.powerState", "datastore", "snapshot"]

_DS_PATH = re.compile(r"^\[(?P<ds>[^\]]+)\]\s?(?P<path>.*)$")


@dataclasses.dataclass(frozen=True)
class ResizeRecord:
    """Where the VM was (and how big its root disk) before a resize moved it.

    ``disk_backup`` is set once the root disk has grown: the datastore path
    of a copy of the disk as it was, which a revert puts back (a virtual
    disk cannot shrink) and a confirm deletes. ``ephemeral_kb`` and
    ``ephemeral_backup`` say the same of the ephemeral disk (``ephemeral_kb``
    0: the resize added it), ``swap_kb`` the swap disk's size before (0:
    none) when the resize changed it.
    """

    migration: str
    cluster: str
    pool: str
    host: str
    datastore: str | None = None
    disk_kb: int | None = None
    disk_backup: str | None = None
    ephemeral_kb: int | None = None
    ephemeral_backup: str | None = None
    swap_kb: int | None = None

    def options(self) -> dict[str, str]:
        """The extraConfig values of this record ("" clears a key in vCenter)."""
        values = {}
        for field in RECORD_FIELDS:
            value = getattr(self, field)
            values[RECORD_PREFIX + field] = "" if value is None else str(value)
        return values

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> ResizeRecord | None:
        """The record kept in ``options`` (a VM's extraConfig), or None."""
        raw = {f: options.get(RECORD_PREFIX + f) or None for f in RECORD_FIELDS}
        if not (raw["migration"] and raw["cluster"] and raw["pool"] and raw["host"]):
            return None
        numbers = {f: raw.pop(f) for f in _INT_FIELDS}
        numbers = {f: int(v) if v else None for f, v in numbers.items()}
        return cls(**numbers, **raw)


def cleared_options() -> dict[str, str]:
    """extraConfig values that remove every record key."""
    return {RECORD_PREFIX + f: "" for f in RECORD_FIELDS}


@dataclasses.dataclass(frozen=True)
class RootDisk:
    """The VM's root disk as configured (``device`` is the vCenter device object)."""

    device: Any
    path: str
    datastore_name: str
    capacity_kb: int
    thin: bool
    #: The parent disk's datastore path when the disk is a linked clone (a
    #: delta disk), which vCenter never grows: see :func:`unlink`.
    parent: str | None = None


@dataclasses.dataclass(frozen=True)
class VmFacts:
    """One read of what a resize needs to know about a VM."""

    ref: Any
    moref: str
    vcpus: int
    memory_mb: int
    version: str | None
    power_state: str
    host: str
    pool: str
    cluster: str
    #: The datastore of the VM's configuration (home) directory.
    datastore: str | None
    datastore_name: str | None
    root_disk: RootDisk | None
    has_snapshots: bool
    options: Mapping[str, str]
    #: The ephemeral disks (ephemeral_<n>.vmdk), in file-name order, and the swap disk.
    ephemerals: tuple[RootDisk, ...] = ()
    swap: RootDisk | None = None
    #: The Cinder volumes' disks (the VM's extraConfig records them).
    volumes: tuple[RootDisk, ...] = ()
    #: Name -> moref of the datastores the VM's files are on.
    datastore_refs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: "[ds] dir/name.vmx" and the VM's devices, as read.
    vmx_path: str = ""
    devices: tuple = ()

    @property
    def boot_from_volume(self) -> bool:
        return self.root_disk is None and bool(self.volumes)

    def volume_locators(self) -> list[tuple[Any, str]]:
        """(device key, datastore moref) of each volume disk: where a relocation keeps it."""
        return [(v.device.key, self.datastore_refs[v.datastore_name]) for v in self.volumes
                if v.datastore_name in self.datastore_refs]

    @property
    def record(self) -> ResizeRecord | None:
        return ResizeRecord.from_options(self.options)


def split_path(ds_path: str) -> tuple[str, str]:
    """``"[ds] dir/file.vmdk"`` -> ``("ds", "dir/file.vmdk")``."""
    match = _DS_PATH.match(ds_path or "")
    if match is None:
        raise ValueError(f"not a datastore path: {ds_path!r}")
    return match.group("ds"), match.group("path")


def _root_disk(devices: list, options: Mapping[str, str]) -> RootDisk | None:
    """The boot disk: the first on the lowest bus (spawn puts it on SCSI 0:0) that is
    neither a Cinder volume (``options``: the VM's extraConfig records them) nor an
    ephemeral or swap disk. None for a VM booted from a volume."""
    buses = {d.key: int(getattr(d, "busNumber", 0) or 0) for d in devices
             if hasattr(d, "busNumber")}
    volumes = set(disks_mod.volume_uuids(dict(options)).values())
    disks = [d for d in vm_devices.disks(devices) if vm_devices.disk_file(d)
             and not block_devices.is_local_disk(vm_devices.disk_file(d))
             and getattr(d.backing, "uuid", None) not in volumes]
    if not disks:
        return None
    disk = min(disks, key=lambda d: (buses.get(d.controllerKey, 99),
                                     int(getattr(d, "unitNumber", 0) or 0), d.key))
    return disk_facts(disk)


def disk_facts(disk) -> RootDisk:
    """A disk device as resize reads it."""
    path = disk.backing.fileName
    capacity_kb = int(getattr(disk, "capacityInKB", 0) or 0)
    in_bytes = int(getattr(disk, "capacityInBytes", 0) or 0)
    if in_bytes:
        capacity_kb = in_bytes // 1024
    parent = getattr(disk.backing, "parent", None)
    return RootDisk(device=disk, path=path, datastore_name=split_path(path)[0],
                    capacity_kb=capacity_kb,
                    thin=bool(getattr(disk.backing, "thinProvisioned", False)),
                    parent=getattr(parent, "fileName", None) or None)


def _other_disks(devices: list, options: Mapping[str, str]):
    """(ephemerals, swap, volumes) of the VM's disks."""
    volume_uuids = set(disks_mod.volume_uuids(dict(options)).values())
    ephemerals, swap, volumes = [], None, []
    for device in vm_devices.disks(devices):
        path = vm_devices.disk_file(device)
        if not path:
            continue
        if getattr(device.backing, "uuid", None) in volume_uuids:
            volumes.append(disk_facts(device))
        elif block_devices.is_local_disk(path):
            if path.endswith("/" + block_devices.SWAP_NAME):
                swap = disk_facts(device)
            else:
                ephemerals.append(disk_facts(device))
    ephemerals.sort(key=lambda d: d.path)
    return tuple(ephemerals), swap, tuple(volumes)


def read_facts(session: VSphereSession, vm_ref) -> VmFacts:
    """The VM's size, place and resize record (three round trips)."""
    props = session.call("get_object_properties_dict", vm_ref, VM_PROPS) or {}
    pool = props["resourcePool"]
    cluster = session.call("get_object_property", pool, "owner")
    vmx = props.get("config.files.vmPathName") or ""
    ds_name = split_path(vmx)[0] if vmx else None
    ds_refs = vm_devices.items(props.get("datastore"))
    ds_moref = None
    by_name: dict[str, str] = {}
    if ds_name is not None and ds_refs:
        result = session.call("get_properties_for_a_collection_of_objects", "Datastore",
                              ds_refs, ["summary.name"])
        for obj in getattr(result, "objects", None) or []:
            names = {p.name: p.val for p in getattr(obj, "propSet", None) or []}
            by_name[str(names.get("summary.name"))] = vim_util.get_moref_value(obj.obj)
        ds_moref = by_name.get(ds_name)
    options = {o.key: str(o.value) for o in vm_devices.items(props.get("config.extraConfig"))
               if getattr(o, "value", None) is not None}
    snapshot = props.get("snapshot")
    devices = vm_devices.items(props.get("config.hardware.device"))
    ephemerals, swap, volumes = _other_disks(devices, options)
    return VmFacts(
        ref=vm_ref, moref=vim_util.get_moref_value(vm_ref),
        vcpus=int(props.get("config.hardware.numCPU", 0) or 0),
        memory_mb=int(props.get("config.hardware.memoryMB", 0) or 0),
        version=props.get("config.version"),
        power_state=str(props.get("runtime.powerState", "")),
        host=vim_util.get_moref_value(props["runtime.host"]),
        pool=vim_util.get_moref_value(pool), cluster=vim_util.get_moref_value(cluster),
        datastore=ds_moref, datastore_name=ds_name,
        root_disk=_root_disk(devices, options),
        has_snapshots=bool(getattr(snapshot, "rootSnapshotList", None)), options=options,
        ephemerals=ephemerals, swap=swap, volumes=volumes, datastore_refs=by_name,
        vmx_path=vmx, devices=tuple(devices))


def read_root_disk(session: VSphereSession, vm_ref) -> RootDisk | None:
    """The VM's root disk as vCenter has it now (one round trip)."""
    props = session.call("get_object_properties_dict", vm_ref,
                         ["config.hardware.device", "config.extraConfig"]) or {}
    return _root_disk(vm_devices.items(props.get("config.hardware.device")),
                      vm_devices.options(props.get("config.extraConfig")))


def unlink(session: VSphereSession, vm_ref, disk: RootDisk) -> RootDisk:
    """Make the linked-clone root disk ``disk`` a standalone disk; the disk as it is then.

    vCenter refuses to grow a disk that has a parent ("disks with parents
    cannot be expanded"). PromoteDisks_Task with unlink consolidates the
    parent's data into the VM's own disk, in the VM's folder (the guest
    sees the same contents; the disk takes its full size on the datastore);
    the parent -- the image cache's disk, shared with other instances --
    stays as it is. All or nothing: a failed promotion leaves the disk
    linked. The disk is read again: its device (and, on vCenter, possibly
    its file name) changed.
    """
    session.run_task("PromoteDisks_Task", vm_ref, unlink=True, disks=[disk.device])
    now = read_root_disk(session, vm_ref)
    if now is None or now.parent is not None:
        found = "no root disk" if now is None else f"{now.path}, still a delta of {now.parent}"
        raise exception.NovaException(
            message=f"vCenter promoted the root disk {disk.path}, yet the VM has {found}")
    return now


# -- specs --------------------------------------------------------------------------------


def _option(session: VSphereSession, key: str, value: str):
    opt = session.factory("OptionValue")
    opt.key, opt.value = key, value
    return opt


def _allocation(session: VSphereSession, limit: int | None, reservation: int | None,
                level: str | None, shares: int | None):
    """A complete allocation: what the flavor leaves unset goes back to vCenter's default.

    (Spawn may leave fields out; a resize must not, or a limit of the old
    flavor would outlive it.)
    """
    alloc = session.factory("ResourceAllocationInfo")
    alloc.limit = -1 if limit is None else limit
    alloc.reservation = reservation or 0
    info = session.factory("SharesInfo")
    info.level = level or ("custom" if shares is not None else "normal")
    info.shares = shares if shares is not None else 0
    alloc.shares = info
    return alloc


def options_spec(session: VSphereSession, options: Mapping[str, str]):
    """A ConfigSpec that only sets (or, with "", removes) extraConfig keys."""
    spec = session.factory("VirtualMachineConfigSpec")
    spec.extraConfig = [_option(session, k, v) for k, v in sorted(options.items())]
    return spec


def size_spec(session: VSphereSession, vcpus: int, memory_mb: int,
              resources: ResourceSettings, annotation: str | None,
              options: Mapping[str, str], grow_disk: tuple[Any, int] | None = None,
              device_changes: list | None = None):
    """A ConfigSpec for a new size: vCPUs, memory, allocations, root disk growth, and
    ``device_changes`` (ephemeral and swap disks of the new flavor)."""
    spec = session.factory("VirtualMachineConfigSpec")
    spec.numCPUs = vcpus
    spec.memoryMB = memory_mb
    r = resources
    spec.cpuAllocation = _allocation(session, r.cpu_limit, r.cpu_reservation,
                                     r.cpu_shares_level, r.cpu_shares)
    spec.memoryAllocation = _allocation(session, r.memory_limit, r.memory_reservation,
                                        r.memory_shares_level, r.memory_shares)
    if annotation is not None:
        spec.annotation = annotation
    if options:
        spec.extraConfig = [_option(session, k, v) for k, v in sorted(options.items())]
    if grow_disk is not None:
        device, capacity_kb = grow_disk
        device.capacityInKB = capacity_kb
        device.capacityInBytes = capacity_kb * 1024
        change = session.factory("VirtualDeviceConfigSpec")
        change.operation = "edit"
        change.device = device
        spec.deviceChange = [change]
    if device_changes:
        spec.deviceChange = list(spec.deviceChange or []) + list(device_changes)
    return spec


def grow_change(session: VSphereSession, disk: RootDisk, capacity_kb: int):
    """A deviceChange growing ``disk`` to ``capacity_kb``."""
    device = disk.device
    device.capacityInKB = capacity_kb
    device.capacityInBytes = capacity_kb * 1024
    change = session.factory("VirtualDeviceConfigSpec")
    change.operation = "edit"
    change.device = device
    return change


def remove_change(session: VSphereSession, disk: RootDisk):
    """A deviceChange removing ``disk`` and deleting its file."""
    change = session.factory("VirtualDeviceConfigSpec")
    change.operation = "remove"
    change.fileOperation = "destroy"
    change.device = disk.device
    return change


def new_disk_change(session: VSphereSession, devices: list, near: RootDisk | None,
                    path: str, capacity_kb: int, key: int, profile_id: str | None = None):
    """A deviceChange adding a new thin disk at ``path``, on ``near``'s controller when it
    has room, else on the first SCSI controller with a free unit; ``profile_id``: the
    storage policy it gets."""
    keys = [near.device.controllerKey] if near is not None else []
    keys += [c.key for c in vm_devices.scsi_controllers(devices)]
    for controller_key in keys:
        unit = vm_devices.free_unit(devices, controller_key)
        if unit is not None:
            break
    else:
        raise exception.TooManyDiskDevices(maximum=len(keys) * (vm_devices.SCSI_UNITS - 1))
    change = new_thin_disk_change(session, key, controller_key, unit, capacity_kb, path)
    if profile_id:
        change.profile = [profile_spec(session, profile_id)]
    return change


def swap_disk_spec(session: VSphereSession, disk: RootDisk, replacement_path: str,
                   capacity_kb: int | None):
    """Replace the root disk by the disk file at ``replacement_path``, atomically.

    The current disk's file is destroyed with it; the new device takes the
    same controller slot, so the guest boots from it as before.
    """
    old = disk.device
    remove = session.factory("VirtualDeviceConfigSpec")
    remove.operation = "remove"
    remove.fileOperation = "destroy"
    remove.device = old
    new = session.factory("VirtualDisk")
    new.key = -101
    new.controllerKey = old.controllerKey
    new.unitNumber = old.unitNumber
    if capacity_kb:
        new.capacityInKB = capacity_kb
    backing = session.factory("VirtualDiskFlatVer2BackingInfo")
    backing.fileName = replacement_path
    backing.diskMode = getattr(old.backing, "diskMode", None) or "persistent"
    backing.thinProvisioned = disk.thin
    new.backing = backing
    add = session.factory("VirtualDeviceConfigSpec")
    add.operation = "add"
    add.device = new
    spec = session.factory("VirtualMachineConfigSpec")
    spec.deviceChange = [remove, add]
    return spec


def relocate_spec(session: VSphereSession, host: str, pool: str | None = None,
                  datastore: str | None = None, keep: list[tuple[Any, str]] = ()):
    """A RelocateSpec to ``host`` (and another cluster's root pool, another datastore).

    ``keep``: (device key, datastore moref) of disks that stay where they are when
    the VM's files move -- Cinder's volumes, which are the backing VMs' files too.
    """
    spec = session.factory("VirtualMachineRelocateSpec")
    spec.host = vim_util.get_moref(host, "HostSystem")
    if pool is not None:
        spec.pool = vim_util.get_moref(pool, "ResourcePool")
    if datastore is not None:
        spec.datastore = vim_util.get_moref(datastore, "Datastore")
        locators = []
        for key, ds_moref in keep:
            locator = session.factory("VirtualMachineRelocateSpecDiskLocator")
            locator.diskId = key
            locator.datastore = vim_util.get_moref(ds_moref, "Datastore")
            locators.append(locator)
        if locators:
            spec.disk = locators
    return spec
