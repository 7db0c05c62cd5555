"""Virtual machine operations against vCenter: build specs, create, power, destroy."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.cluster_state import NOVA_EXTENSION_KEY, NetworkState
from nova_vsphere_driver.vsphere.device_layout import DeviceLayout
from nova_vsphere_driver.vsphere.session import StableMoRef, VSphereSession

LOG = logging.getLogger(__name__)

POWERED_ON = "poweredOn"
POWERED_OFF = "poweredOff"
SUSPENDED = "suspended"
ROOT_DISK_KEY = -101
#: Temporary keys of the other disks and of the CD-ROM drives (counting down).
FIRST_EXTRA_DISK_KEY = -400
FIRST_CDROM_KEY = -500
#: Key of the first of the two IDE controllers vCenter gives every new VM.
IDE_CONTROLLER_KEY = 200
DEFAULT_ADAPTER_TYPE = "lsiLogic"
#: Adapter type (the ``vmware_adaptertype`` image property's words) -> the
#: controller the root disk goes on; IDE disks use the VM's own controller.
CONTROLLER_TYPES = {
    "lsiLogic": "VirtualLsiLogicController",
    "lsiLogicsas": "VirtualLsiLogicSASController",
    "busLogic": "VirtualBusLogicController",
    "paraVirtual": "ParaVirtualSCSIController",
    "ide": None,
}


@dataclasses.dataclass(frozen=True)
class ResourceSettings:
    """CPU/memory limits, reservations and shares (from flavor extra specs)."""

    cpu_limit: int | None = None
    cpu_reservation: int | None = None
    cpu_shares_level: str | None = None
    cpu_shares: int | None = None
    memory_limit: int | None = None
    memory_reservation: int | None = None
    memory_shares_level: str | None = None
    memory_shares: int | None = None


#: The network adapter of NICs whose image names no model.
DEFAULT_NIC_ADAPTER = "VirtualVmxnet3"


@dataclasses.dataclass(frozen=True)
class Nic:
    """A network adapter: which device, on which network, for which Neutron port."""

    network: NetworkState
    mac_address: str | None
    iface_id: str
    #: The distributed switch's UUID (distributed port groups).
    switch_uuid: str | None = None
    #: The adapter's device type, e.g. VirtualVmxnet3 or VirtualE1000e.
    adapter: str = DEFAULT_NIC_ADAPTER
    #: A distributed port reserved for the Neutron port (its binding's dvs_port_key).
    port_key: str | None = None
    #: NSX attaches the adapter to its logical port by this id (the Neutron port id).
    external_id: str | None = None


@dataclasses.dataclass(frozen=True)
class RootDisk:
    """The root disk: a copy/child of a cached image, or a new empty disk."""

    capacity_kb: int
    #: "[ds] path.vmdk" of an existing disk to attach (a full copy made first).
    existing_path: str | None = None
    #: "[ds] path.vmdk" of a cached image to use as linked-clone parent; the
    #: delta disk must then have the parent's capacity (vCenter refuses any other).
    parent_path: str | None = None
    thin: bool = True
    #: The disk's controller, as CONTROLLER_TYPES names it (from the image).
    adapter_type: str = DEFAULT_ADAPTER_TYPE


@dataclasses.dataclass(frozen=True)
class ExtraDisk:
    """A disk besides the root disk: a new thin disk (ephemeral, swap) or an existing
    file (a Cinder volume's), on a controller of ``adapter_type``."""

    adapter_type: str
    #: "[ds] folder/file.vmdk"
    path: str
    capacity_kb: int
    #: True: vCenter creates the file; False: the file exists and is attached as is.
    create: bool
    thin: bool = True
    disk_mode: str = "persistent"
    eagerly_scrub: bool | None = None


@dataclasses.dataclass(frozen=True)
class VmSpec:
    name: str
    instance_uuid: str
    vcpus: int
    memory_mb: int
    guest_id: str
    datastore_name: str
    annotation: str
    resources: ResourceSettings
    root_disk: RootDisk | None
    nics: tuple[Nic, ...]
    serial_log: bool = True
    extra_config: tuple[tuple[str, str], ...] = ()
    #: Virtual hardware version ("vmx-19"); None: the host's default.
    hw_version: str | None = None
    #: Disks after the root disk, in the order they take controller slots.
    disks: tuple[ExtraDisk, ...] = ()
    #: ISO files ("[ds] path.iso") of CD-ROM drives, in IDE slot order: the
    #: first one is the drive the firmware boots from.
    cdroms: tuple[str, ...] = ()
    #: The storage policy (SPBM profile id) of the VM's home and disks; None: none.
    storage_profile: str | None = None


def _allocation(session: VSphereSession, limit, reservation, level, shares):
    if limit is None and reservation is None and level is None and shares is None:
        return None
    alloc = session.factory("ResourceAllocationInfo")
    if limit is not None:
        alloc.limit = limit
    if reservation is not None:
        alloc.reservation = reservation
    if level is not None or shares is not None:
        info = session.factory("SharesInfo")
        info.level = level or "custom"
        info.shares = shares if shares is not None else 0
        alloc.shares = info
    return alloc


def _option(session: VSphereSession, key: str, value: str):
    opt = session.factory("OptionValue")
    opt.key, opt.value = key, value
    return opt


def profile_spec(session: VSphereSession, profile_id: str):
    """The VirtualMachineProfileSpec that gives a VM or disk the storage policy."""
    spec = session.factory("VirtualMachineDefinedProfileSpec")
    spec.profileId = profile_id
    return spec


def _device_add(session: VSphereSession, device, file_operation: str | None = None,
                profile_id: str | None = None):
    """An ``add`` device change; ``profile_id``: the storage policy of a disk."""
    change = session.factory("VirtualDeviceConfigSpec")
    change.operation = "add"
    if file_operation:
        change.fileOperation = file_operation
    change.device = device
    if profile_id:
        change.profile = [profile_spec(session, profile_id)]
    return change


def new_thin_disk_change(session: VSphereSession, key: int, controller_key: int, unit: int,
                         capacity_kb: int, path: str):
    """A deviceChange creating a thin, persistent disk file at ``path`` (a datastore path,
    or ``[datastore]`` alone for a name vCenter chooses) in the given controller slot."""
    disk = session.factory("VirtualDisk")
    disk.key = key
    disk.controllerKey = controller_key
    disk.unitNumber = unit
    disk.capacityInKB = capacity_kb
    backing = session.factory("VirtualDiskFlatVer2BackingInfo")
    backing.fileName = path
    backing.diskMode = "persistent"
    backing.thinProvisioned = True
    disk.backing = backing
    return _device_add(session, disk, "create")


def nic_backing(session: VSphereSession, nic: Nic):
    """The adapter backing that puts a NIC on its network."""
    network = nic.network
    if network.kind == "portgroup":
        backing = session.factory("VirtualEthernetCardDistributedVirtualPortBackingInfo")
        port = session.factory("DistributedVirtualSwitchPortConnection")
        port.switchUuid = nic.switch_uuid
        port.portgroupKey = network.portgroup_key
        if nic.port_key:
            port.portKey = nic.port_key
        backing.port = port
    elif network.kind == "opaque":
        backing = session.factory("VirtualEthernetCardOpaqueNetworkBackingInfo")
        backing.opaqueNetworkId = network.opaque_id
        backing.opaqueNetworkType = network.opaque_type
    else:
        backing = session.factory("VirtualEthernetCardNetworkBackingInfo")
        backing.deviceName = network.name
    return backing


def _nic_device(session: VSphereSession, nic: Nic, key: int):
    card = session.factory(nic.adapter)
    card.key = key
    card.backing = nic_backing(session, nic)
    connect = session.factory("VirtualDeviceConnectInfo")
    connect.startConnected = True
    connect.allowGuestControl = True
    connect.connected = True
    card.connectable = connect
    if nic.mac_address:
        card.addressType = "manual"
        card.macAddress = nic.mac_address
    else:
        card.addressType = "generated"
    if nic.external_id:
        card.externalId = nic.external_id
    return card


def _scsi_controller(session: VSphereSession, new):
    controller = session.factory(new.vim_type)
    controller.key = new.key
    controller.busNumber = new.bus
    controller.sharedBus = "noSharing"
    return controller


def _disk_device(session: VSphereSession, key: int, slot, capacity_kb: int, backing):
    disk = session.factory("VirtualDisk")
    disk.key = key
    disk.controllerKey = slot.controller_key
    disk.unitNumber = slot.unit
    if capacity_kb:
        disk.capacityInKB = capacity_kb
    disk.backing = backing
    return disk


def _root_disk_add(session: VSphereSession, spec: VmSpec, layout: DeviceLayout):
    root = spec.root_disk
    slot = layout.disk_slot(root.adapter_type)
    backing = session.factory("VirtualDiskFlatVer2BackingInfo")
    backing.diskMode = "persistent"
    backing.thinProvisioned = root.thin
    if root.existing_path:
        backing.fileName = root.existing_path
        operation = None
    else:
        backing.fileName = f"[{spec.datastore_name}] {spec.instance_uuid}/" \
            f"{spec.instance_uuid}.vmdk"
        operation = "create"
        if root.parent_path:
            parent = session.factory("VirtualDiskFlatVer2BackingInfo")
            parent.fileName = root.parent_path
            parent.diskMode = "persistent"
            backing.parent = parent
    disk = _disk_device(session, ROOT_DISK_KEY, slot, root.capacity_kb, backing)
    return _device_add(session, disk, operation, spec.storage_profile)


def _extra_disk_add(session: VSphereSession, extra: ExtraDisk, key: int,
                    layout: DeviceLayout, profile_id: str | None = None):
    """The change adding ``extra``; a disk the driver creates gets the storage policy
    ``profile_id`` (an existing file, a Cinder volume's, keeps Cinder's)."""
    slot = layout.disk_slot(extra.adapter_type)
    backing = session.factory("VirtualDiskFlatVer2BackingInfo")
    backing.fileName = extra.path
    backing.diskMode = extra.disk_mode
    backing.thinProvisioned = extra.thin
    if extra.eagerly_scrub is not None:
        backing.eagerlyScrub = extra.eagerly_scrub
    disk = _disk_device(session, key, slot, extra.capacity_kb if extra.create else 0, backing)
    return _device_add(session, disk, "create" if extra.create else None,
                       profile_id if extra.create else None)


def _cdrom_device(session: VSphereSession, iso_path: str, key: int, layout: DeviceLayout):
    slot = layout.ide_slot()
    cdrom = session.factory("VirtualCdrom")
    cdrom.key = key
    cdrom.controllerKey = slot.controller_key
    cdrom.unitNumber = slot.unit
    backing = session.factory("VirtualCdromIsoBackingInfo")
    backing.fileName = iso_path
    cdrom.backing = backing
    connect = session.factory("VirtualDeviceConnectInfo")
    connect.startConnected = True
    connect.allowGuestControl = True
    connect.connected = True
    cdrom.connectable = connect
    return cdrom


def build_config_spec(session: VSphereSession, spec: VmSpec):
    """A VirtualMachineConfigSpec for CreateVM_Task."""
    config = session.factory("VirtualMachineConfigSpec")
    config.name = spec.name
    config.instanceUuid = spec.instance_uuid
    config.guestId = spec.guest_id
    config.numCPUs = spec.vcpus
    config.memoryMB = spec.memory_mb
    config.annotation = spec.annotation
    if spec.hw_version:
        config.version = spec.hw_version
    files = session.factory("VirtualMachineFileInfo")
    files.vmPathName = f"[{spec.datastore_name}] {spec.instance_uuid}/{spec.instance_uuid}.vmx"
    config.files = files
    if spec.storage_profile:
        config.vmProfile = [profile_spec(session, spec.storage_profile)]
    managed = session.factory("ManagedByInfo")
    managed.extensionKey, managed.type = NOVA_EXTENSION_KEY, "instance"
    config.managedBy = managed
    r = spec.resources
    cpu = _allocation(session, r.cpu_limit, r.cpu_reservation, r.cpu_shares_level, r.cpu_shares)
    if cpu is not None:
        config.cpuAllocation = cpu
    mem = _allocation(session, r.memory_limit, r.memory_reservation, r.memory_shares_level,
                      r.memory_shares)
    if mem is not None:
        config.memoryAllocation = mem
    extra = [_option(session, "nvp.vm-uuid", spec.instance_uuid)]
    changes = []
    layout = DeviceLayout()
    disk_changes = []
    if spec.root_disk is not None:
        disk_changes.append(_root_disk_add(session, spec, layout))
    for index, extra_disk in enumerate(spec.disks):
        disk_changes.append(_extra_disk_add(session, extra_disk, FIRST_EXTRA_DISK_KEY - index,
                                            layout, spec.storage_profile))
    for index, iso_path in enumerate(spec.cdroms):
        disk_changes.append(_device_add(session, _cdrom_device(
            session, iso_path, FIRST_CDROM_KEY - index, layout)))
    # Controllers first: the disks on them name their (temporary) keys.
    changes += [_device_add(session, _scsi_controller(session, c)) for c in layout.controllers]
    changes += disk_changes
    for index, nic in enumerate(spec.nics):
        changes.append(_device_add(session, _nic_device(session, nic, -200 - index)))
        extra.append(_option(session, f"nvp.iface-id.{index}", nic.iface_id))
    if spec.serial_log:
        port = session.factory("VirtualSerialPort")
        port.key = -300
        port.yieldOnPoll = True
        backing = session.factory("VirtualSerialPortFileBackingInfo")
        backing.fileName = f"[{spec.datastore_name}] {spec.instance_uuid}/console.log"
        port.backing = backing
        changes.append(_device_add(session, port))
    for key, value in spec.extra_config:
        extra.append(_option(session, key, value))
    config.extraConfig = extra
    config.deviceChange = changes
    return config


def method_not_found(exc: vexc.VimFaultException) -> bool:
    """True when the endpoint does not implement the method called (vmodl MethodNotFound)."""
    return "MethodNotFound" in (exc.fault_list or [])


class VmOperations:
    """VM operations on one vCenter session; every method is thread-safe."""

    def __init__(self, session: VSphereSession) -> None:
        self.session = session
        #: False once the endpoint said it has no FindAllByUuid (vcsim):
        #: FindByUuid from then on, without asking again each time.
        self._find_all_by_uuid = True

    def find_by_uuid(self, instance_uuid: str) -> StableMoRef | None:
        """The VM whose instanceUuid is ``instance_uuid``, or None (one round trip).

        The reference finds the VM again by this UUID when vCenter forgets
        it (the VM was registered again).
        """
        ref = self._find(instance_uuid)
        return None if ref is None else self.reference(ref, instance_uuid)

    def reference(self, ref, instance_uuid: str) -> StableMoRef:
        """``ref``, the VM of ``instance_uuid``, as a reference that survives re-registration."""
        return StableMoRef(StableMoRef.plain(ref), lambda: self._find(instance_uuid))

    def _find(self, instance_uuid: str):
        """FindAllByUuid where vCenter has it (5.0+: a duplicate is noticed).

        FindByUuid, its older equivalent, where the endpoint answers
        MethodNotFound (VMware's vcsim); asked once per session.
        """
        index = self.session.content.searchIndex
        if self._find_all_by_uuid:
            try:
                found = self.session.invoke("FindAllByUuid", index, uuid=instance_uuid,
                                            vmSearch=True, instanceUuid=True)
            except vexc.VimFaultException as exc:
                if not method_not_found(exc):
                    raise
                LOG.info("vCenter has no FindAllByUuid; finding VMs with FindByUuid")
                self._find_all_by_uuid = False
            else:
                refs = list(found or [])
                if len(refs) > 1:
                    LOG.warning("%d VMs carry instance UUID %s; using %s", len(refs),
                                instance_uuid, vim_util.get_moref_value(refs[0]))
                return refs[0] if refs else None
        return self.session.invoke("FindByUuid", index, uuid=instance_uuid, vmSearch=True,
                                   instanceUuid=True) or None

    def properties(self, vm_ref, names: list[str]) -> dict[str, Any]:
        content = self.session.call("get_object_properties_dict", vm_ref, names)
        return content or {}

    def create(self, folder_ref, pool_ref, host_ref, config,
               on_start: Callable[[Any], None] | None = None):
        """CreateVM_Task; returns the new VM's reference (stable when the spec has its UUID).

        ``on_start`` gets the task's reference (see ``run_task``).
        """
        ref = self.session.run_task("CreateVM_Task", folder_ref, config=config, pool=pool_ref,
                                    host=host_ref, on_start=on_start)
        uuid = getattr(config, "instanceUuid", None)
        return self.reference(ref, uuid) if uuid else ref

    def power_on(self, vm_ref, host_ref=None) -> None:
        kwargs = {"host": host_ref} if host_ref is not None else {}
        self.session.run_task("PowerOnVM_Task", vm_ref, **kwargs)

    def power_off(self, vm_ref) -> None:
        try:
            self.session.run_task("PowerOffVM_Task", vm_ref)
        except vexc.InvalidPowerStateException:
            LOG.debug("VM %s is already powered off", vim_util.get_moref_value(vm_ref))

    def reset(self, vm_ref) -> None:
        self.session.run_task("ResetVM_Task", vm_ref)

    def reboot_guest(self, vm_ref) -> None:
        self.session.invoke("RebootGuest", vm_ref)

    def shutdown_guest(self, vm_ref, timeout: float, poll: float) -> bool:
        """Ask the guest to shut down; True when it is off within ``timeout``."""
        try:
            self.session.invoke("ShutdownGuest", vm_ref)
        except (vexc.ToolsUnavailableException, vexc.InvalidPowerStateException) as exc:
            LOG.debug("Clean shutdown not possible: %s", exc)
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.session.call("get_object_property", vm_ref, "runtime.powerState")
            if state == POWERED_OFF:
                return True
            time.sleep(poll)
        return False

    def destroy(self, vm_ref) -> None:
        """Power off if needed and delete the VM with its files."""
        state = self.session.call("get_object_property", vm_ref, "runtime.powerState")
        if state != POWERED_OFF:
            self.power_off(vm_ref)
        self.session.run_task("Destroy_Task", vm_ref)

    def unregister(self, vm_ref) -> None:
        state = self.session.call("get_object_property", vm_ref, "runtime.powerState")
        if state != POWERED_OFF:
            self.power_off(vm_ref)
        self.session.invoke("UnregisterVM", vm_ref)

    def relocate(self, vm_ref, host_ref, pool_ref=None) -> None:
        spec = self.session.factory("VirtualMachineRelocateSpec")
        spec.host = host_ref
        if pool_ref is not None:
            spec.pool = pool_ref
        self.session.run_task("RelocateVM_Task", vm_ref, spec=spec)
