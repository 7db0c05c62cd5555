"""Cinder volumes of Cinder's VMware VMDK backend: connector, attach, detach, extend.

The contract is the in-tree driver's (nova/virt/vmwareapi/volumeops.py):
Cinder keeps each volume as the disk of a powered-off "backing" VM, and
``connection_info`` is ``{"driver_volume_type": "vmdk", "data": {"volume":
<backing VM moref>, "volume_id": ..., "name": ..., "profile_id": ...}}``.
Attaching adds that VMDK file to the instance's VM (the file stays the
backing VM's too); ``extraConfig["volume-<volume id>"]`` records the disk's
UUID so that detach finds the disk even after a Storage vMotion renamed its
file. Each change is one ReconfigVM_Task, which vCenter applies whole or not
at all: a failure leaves the VM as it was.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import nova.conf
from nova import exception
from nova.virt import driver as virt_driver
from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.ops import disks
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.session import TaskTimeout
from nova_vsphere_driver.vsphere.vm import POWERED_OFF, ExtraDisk

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: SCSI: 4 controllers (buses 0-3) of 16 units, unit 7 being the controller's own.
SCSI_BUSES = 4
SCSI_UNITS = [u for u in range(16) if u != 7]
IDE_UNITS = [0, 1]
#: Temporary keys of new devices in a ConfigSpec (vCenter assigns the real ones).
NEW_CONTROLLER_KEY = -101
NEW_DISK_KEY = -102
VM_PROPERTIES = ["runtime.powerState", "config.hardware.device", "config.extraConfig"]


@dataclasses.dataclass(frozen=True)
class VolumeDisk:
    """A Cinder volume: its backing VM and the disk it holds."""

    volume_id: str
    backing_ref: Any
    disk: disks.Disk

    @property
    def datastore_name(self) -> str:
        return self.disk.path[1:].split("]", 1)[0] if self.disk.path.startswith("[") else ""

    @property
    def capacity_kb(self) -> int:
        return self.disk.capacity_bytes // 1024

    def extra_disk(self, adapter_type: str) -> ExtraDisk:
        """The volume's file as a disk of a new VM (attached as it is, nothing created)."""
        source = self.disk.device.backing
        thin = getattr(source, "thinProvisioned", None)
        return ExtraDisk(adapter_type=adapter_type, path=self.disk.path,
                         capacity_kb=self.capacity_kb, create=False,
                         thin=bool(thin) if thin is not None else True,
                         disk_mode=getattr(source, "diskMode", None) or "persistent",
                         eagerly_scrub=getattr(source, "eagerlyScrub", None))

    def record(self) -> tuple[str, str]:
        """The VM's extraConfig entry that says which of its disks is this volume."""
        return disks.VOLUME_OPTION.format(self.volume_id), self.disk.uuid or ""


def _vmdk_data(connection_info: dict) -> dict:
    kind = (connection_info or {}).get("driver_volume_type")
    if kind != "vmdk":
        # iSCSI, FCD and others would need host-side setup this driver does not do.
        raise exception.VolumeDriverNotFound(driver_type=kind)
    data = connection_info.get("data") or {}
    if not data.get("volume_id"):
        raise exception.InvalidInput(reason="vmdk connection_info without data.volume_id")
    return data



def _attached(devices: list, extra: dict[str, str], volume_id: str,
              path: str | None) -> disks.Disk | None:
    """The instance's disk that is the volume: by recorded UUID, else by file name."""
    uuid = disks.volume_uuids(extra).get(volume_id)
    found = disks.disks(devices)
    for disk in found:
        if uuid and disk.uuid == uuid:
            return disk
    for disk in found:
        if path and disk.path == path:
            return disk
    return None



def _check_hotplug(adapter_type: str, power_state: Any, volume_id: str, failure) -> None:
    if adapter_type == "ide" and str(power_state) != POWERED_OFF:
        raise failure(volume_id=volume_id, reason="IDE disks cannot be hot-plugged: stop "
                      "the instance first, or use a SCSI adapter type for the volume")


class Volumes:
    """Cinder VMDK volumes of one driver's instances (built once; holds no state)."""

    def __init__(self, services: Services) -> None:
        self._session = services.session
        self._vmops = services.vmops
        self._vm_refs = services.vm_refs
        self._nodes = services.nodes

    def _backing_devices(self, ref) -> list | None:
        try:
            value = self._session.call("get_object_property", ref, "config.hardware.device")
        except vexc.ManagedObjectNotFoundException:
            return None
        return disks.device_list(value)

    def volume_disk(self, connection_info: dict) -> VolumeDisk:
        """The backing VM and disk of a vmdk volume (VolumeDriverNotFound for other types,
        VolumeNotFound when Cinder's backing VM is gone)."""
        return self._volume(_vmdk_data(connection_info))

    def relocate_backing(self, volume: VolumeDisk, datastore_moref: str, pool: str,
                         host: str | None) -> VolumeDisk:
        """Move the volume's backing VM (and so its disk) to a datastore the instance's
        host reaches, as the in-tree driver does for a root volume; the volume as it is
        then. vCenter relocates all or nothing: a failure leaves the volume where it was."""
        spec = self._session.factory("VirtualMachineRelocateSpec")
        spec.datastore = vim_util.get_moref(datastore_moref, "Datastore")
        spec.pool = vim_util.get_moref(pool, "ResourcePool")
        if host is not None:
            spec.host = vim_util.get_moref(host, "HostSystem")
        LOG.info("Moving volume %s from %s to datastore %s, where the instance's host "
                 "reaches it", volume.volume_id, volume.disk.path, datastore_moref)
        with errors.translated():
            self._session.run_task("RelocateVM_Task", volume.backing_ref, spec=spec)
        return self._volume({"volume_id": volume.volume_id,
                             "volume": vim_util.get_moref_value(volume.backing_ref)})

    def _volume(self, data: dict) -> VolumeDisk:
        """The backing VM and disk of the volume; VolumeNotFound when Cinder's VM is gone."""
        volume_id = str(data["volume_id"])
        devices, ref = None, None
        if data.get("volume"):
            ref = vim_util.get_moref(str(data["volume"]), "VirtualMachine")
            with errors.translated():
                devices = self._backing_devices(ref)
        if devices is None:
            # A backing VM registered again has a new moref; Cinder gives it the
            # volume's ID as instance UUID (what the in-tree driver looks up too).
            with errors.translated():
                ref = self._vmops.find_by_uuid(volume_id)
                devices = self._backing_devices(ref) if ref is not None else None
        if devices is None:
            raise exception.VolumeNotFound(volume_id=volume_id)
        found = disks.disks(devices)
        if not found or found[0].controller is None:
            raise exception.VolumeNotFound(volume_id=volume_id)
        return VolumeDisk(volume_id, ref, found[0])

    def _vm_state(self, instance) -> tuple[Any, dict]:
        props = self._vm_refs.with_vm(
            instance, lambda ref: self._vmops.properties(ref, VM_PROPERTIES))
        return self._vm_refs.find(instance), props

    def _option(self, key: str, value: str):
        opt = self._session.factory("OptionValue")
        opt.key, opt.value = key, value
        return opt

    def _device_change(self, operation: str, device):
        change = self._session.factory("VirtualDeviceConfigSpec")
        change.operation = operation
        change.device = device
        return change

    def _reconfigure(self, instance, vm_ref, spec, failure) -> None:
        """ReconfigVM_Task; a fault that is not about the instance becomes ``failure(reason)``."""
        try:
            self._session.run_task("ReconfigVM_Task", vm_ref, spec=spec)
        except (vexc.VMwareDriverException, TaskTimeout) as exc:
            translated = errors.to_nova(exc, instance)
            if type(translated) is exception.NovaException:
                raise failure(str(exc)) from exc
            raise translated from exc

    def _new_controller(self, adapter_type: str, devices: list):
        used = {d.busNumber for d in devices if disks.type_name(d) in disks.ADAPTER_TYPES
                and disks.ADAPTER_TYPES[disks.type_name(d)] != "ide"}
        free = [b for b in range(SCSI_BUSES) if b not in used]
        if not free:
            raise exception.TooManyDiskDevices(maximum=SCSI_BUSES * len(SCSI_UNITS))
        controller = self._session.factory(disks.CONTROLLER_TYPES[adapter_type])
        controller.key = NEW_CONTROLLER_KEY
        controller.busNumber = free[0]
        controller.sharedBus = "noSharing"
        return controller

    def _slot(self, devices: list, adapter_type: str) -> tuple[int, int, Any]:
        """(controller key, unit, new controller or None) for one more disk."""
        taken: dict[int, set[int]] = {}
        for device in devices:
            if getattr(device, "controllerKey", None) is not None and \
                    getattr(device, "unitNumber", None) is not None:
                taken.setdefault(device.controllerKey, set()).add(device.unitNumber)
        controllers = sorted((d for d in devices
                              if disks.ADAPTER_TYPES.get(disks.type_name(d)) == adapter_type),
                             key=lambda c: c.busNumber)
        units = IDE_UNITS if adapter_type == "ide" else SCSI_UNITS
        for controller in controllers:
            for unit in units:
                if unit not in taken.get(controller.key, set()):
                    return controller.key, unit, None
        if adapter_type == "ide":
            raise exception.TooManyDiskDevices(maximum=len(controllers) * len(IDE_UNITS))
        return NEW_CONTROLLER_KEY, 0, self._new_controller(adapter_type, devices)

    def _disk_device(self, volume: VolumeDisk, controller_key: int, unit: int,
                     path: str | None = None):
        """A VirtualDisk on the volume's existing file (no fileOperation: nothing is created)."""
        source = volume.disk.device.backing
        backing = self._session.factory("VirtualDiskFlatVer2BackingInfo")
        backing.fileName = path or volume.disk.path
        backing.diskMode = getattr(source, "diskMode", None) or "persistent"
        if getattr(source, "thinProvisioned", None) is not None:
            backing.thinProvisioned = source.thinProvisioned
        if getattr(source, "eagerlyScrub", None) is not None:
            backing.eagerlyScrub = source.eagerlyScrub
        disk = self._session.factory("VirtualDisk")
        disk.key = NEW_DISK_KEY
        disk.controllerKey = controller_key
        disk.unitNumber = unit
        disk.backing = backing
        connect = self._session.factory("VirtualDeviceConnectInfo")
        connect.startConnected = True
        connect.connected = True
        connect.allowGuestControl = False
        disk.connectable = connect
        return disk

    # -- ComputeDriver methods ----------------------------------------------------------

    def get_volume_connector(self, instance) -> dict:
        """What Cinder's VMDK driver places and checks volumes by.

        ``instance`` (the VM's moref) lets Cinder put the backing where the
        instance's host reaches it; it is absent before spawn (boot from
        volume), as in-tree. ``connection_capabilities`` makes Cinder refuse a
        volume of another vCenter instead of failing later.
        """
        connector = {
            "ip": CONF.vsphere.host_ip,
            "host": CONF.vsphere.host_ip,
            "connection_capabilities": [f"vmware_service_instance_uuid:{self._nodes.vcenter_uuid}"],
        }
        vm_ref = self._vm_refs.find(instance, required=False)
        if vm_ref is not None:
            connector["instance"] = vim_util.get_moref_value(vm_ref)
        return connector

    def attach_volume(self, context, connection_info: dict, instance, mountpoint: str,
                      disk_bus=None, device_type=None, encryption=None) -> None:
        data = _vmdk_data(connection_info)
        volume_id = str(data["volume_id"])
        if encryption:
            raise exception.VolumeEncryptionNotSupported(volume_type="vmdk", volume_id=volume_id)
        vm_ref, props = self._vm_state(instance)
        volume = self._volume(data)
        devices = disks.device_list(props.get("config.hardware.device"))
        extra = disks.option_values(props.get("config.extraConfig"))
        option = disks.VOLUME_OPTION.format(volume_id)
        spec = self._session.factory("VirtualMachineConfigSpec")
        spec.extraConfig = [self._option(option, volume.disk.uuid or "")]
        if _attached(devices, extra, volume_id, volume.disk.path) is not None:
            if extra.get(option) == volume.disk.uuid:
                LOG.info("Volume %s is already attached", volume_id, instance=instance)
                return
            spec.deviceChange = []  # attached, but not recorded: record it
        else:
            adapter = volume.disk.adapter_type
            _check_hotplug(adapter, props.get("runtime.powerState"), volume_id,
                           exception.VolumeAttachFailed)
            controller_key, unit, controller = self._slot(devices, adapter)
            changes = [] if controller is None else [self._device_change("add", controller)]
            changes.append(self._device_change("add",
                                          self._disk_device(volume, controller_key, unit)))
            spec.deviceChange = changes

        def failure(reason: str) -> Exception:
            return exception.VolumeAttachFailed(volume_id=volume_id, reason=reason)

        self._reconfigure(instance, vm_ref, spec, failure)
        LOG.info("Attached volume %s (%s)", volume_id, volume.disk.path, instance=instance)

    def _rehome(self, volume: VolumeDisk, current_path: str) -> None:
        """Point the volume's backing VM at the file the instance uses now.

        A Storage vMotion of the instance moves the volume's file with it; the
        backing VM would keep naming the old path and Cinder would lose the
        data. The old device goes (its file, if any, is not deleted) and the
        moved file takes its slot.
        """
        old = volume.disk.device
        LOG.info("Volume %s moved from %s to %s with its instance; updating its backing VM",
                 volume.volume_id, volume.disk.path, current_path)
        device = self._disk_device(volume, old.controllerKey, old.unitNumber, current_path)
        spec = self._session.factory("VirtualMachineConfigSpec")
        spec.deviceChange = [self._device_change("remove", old), self._device_change("add", device)]
        try:
            self._session.run_task("ReconfigVM_Task", volume.backing_ref, spec=spec)
        except (vexc.VMwareDriverException, TaskTimeout) as exc:
            raise exception.VolumeDetachFailed(
                volume_id=volume.volume_id,
                reason=f"the volume's file moved to {current_path} and its backing VM "
                f"{vim_util.get_moref_value(volume.backing_ref)} cannot follow: {exc}") from exc

    def detach_volume(self, context, connection_info: dict, instance, mountpoint: str,
                      encryption=None) -> None:
        """Remove the volume's disk from the VM; its file stays (it is Cinder's)."""
        data = _vmdk_data(connection_info)
        volume_id = str(data["volume_id"])
        vm_ref, props = self._vm_state(instance)
        try:
            volume = self._volume(data)
        except exception.VolumeNotFound:
            LOG.warning("The backing VM of volume %s is gone; detaching its disk anyway",
                        volume_id, instance=instance)
            volume = None
        devices = disks.device_list(props.get("config.hardware.device"))
        extra = disks.option_values(props.get("config.extraConfig"))
        disk = _attached(devices, extra, volume_id, volume.disk.path if volume else None)
        if disk is None:
            raise exception.DiskNotFound(location=f"volume {volume_id} on instance {instance.uuid}")
        _check_hotplug(disk.adapter_type, props.get("runtime.powerState"), volume_id,
                       exception.VolumeDetachFailed)
        if volume is not None and disk.path != volume.disk.path:
            self._rehome(volume, disk.path)
        spec = self._session.factory("VirtualMachineConfigSpec")
        # No fileOperation: the disk leaves the VM, the file stays on the datastore.
        spec.deviceChange = [self._device_change("remove", disk.device)]
        # An empty value removes the key.
        spec.extraConfig = [self._option(disks.VOLUME_OPTION.format(volume_id), "")]

        def failure(reason: str) -> Exception:
            return exception.VolumeDetachFailed(volume_id=volume_id, reason=reason)

        self._reconfigure(instance, vm_ref, spec, failure)
        LOG.info("Detached volume %s (%s)", volume_id, disk.path, instance=instance)

    def extend_volume(self, context, connection_info: dict, instance, requested_size: int) -> None:
        """Grow the attached disk to ``requested_size`` bytes; the guest sees it at once."""
        data = _vmdk_data(connection_info)
        volume_id = str(data["volume_id"])
        vm_ref, props = self._vm_state(instance)
        try:
            path = self._volume(data).disk.path
        except exception.VolumeNotFound:
            path = None  # the recorded disk UUID still finds it
        devices = disks.device_list(props.get("config.hardware.device"))
        extra = disks.option_values(props.get("config.extraConfig"))
        disk = _attached(devices, extra, volume_id, path)
        if disk is None:
            raise exception.DiskNotFound(location=f"volume {volume_id} on instance {instance.uuid}")
        new_kb = math.ceil(int(requested_size) / 1024)
        if new_kb * 1024 <= disk.capacity_bytes:
            LOG.info("Volume %s is already %d bytes", volume_id, disk.capacity_bytes,
                     instance=instance)
            return
        device = disk.device
        device.capacityInKB = new_kb
        device.capacityInBytes = new_kb * 1024
        spec = self._session.factory("VirtualMachineConfigSpec")
        spec.deviceChange = [self._device_change("edit", device)]

        def failure(reason: str) -> Exception:
            return exception.NovaException(
                message=f"Volume {volume_id} could not be extended: {reason}")

        self._reconfigure(instance, vm_ref, spec, failure)
        LOG.info("Extended volume %s to %d bytes", volume_id, new_kb * 1024, instance=instance)

    def detach_all(self, context, instance, block_device_info) -> None:
        """Take every Cinder volume off the VM before it is destroyed.

        vCenter's Destroy_Task deletes every disk attached to the VM: a volume
        still attached would lose its data. The volumes are those of
        ``block_device_info`` and those the VM's extraConfig records
        (``volume-<id>``), so that a mapping Nova no longer has (a failed
        spawn, a BDM already deleted) loses nothing either. Disks already gone
        are skipped.
        """
        mapping = virt_driver.block_device_info_get_mapping(block_device_info)
        infos = {}
        for bdm in mapping:
            info = bdm.get("connection_info") or {}
            if info.get("driver_volume_type") == "vmdk" and (info.get("data") or {}).get(
                    "volume_id"):
                infos[str(info["data"]["volume_id"])] = (info, bdm.get("mount_device"))
        if self._vm_refs.find(instance, required=False) is None:
            return
        _, props = self._vm_state(instance)
        recorded = disks.volume_uuids(disks.option_values(props.get("config.extraConfig")))
        for volume_id in recorded:
            # Found by the volume's ID: Cinder's backing VM has it as instance UUID.
            infos.setdefault(volume_id, ({"driver_volume_type": "vmdk",
                                          "data": {"volume_id": volume_id}}, None))
        if not infos:
            return
        # IDE disks cannot be hot-removed; the VM is about to go anyway.
        self._vm_refs.with_vm(instance, self._vmops.power_off)
        for volume_id, (info, mountpoint) in infos.items():
            try:
                self.detach_volume(context, info, instance, mountpoint)
            except exception.DiskNotFound:
                LOG.info("Volume %s is no longer on the VM", volume_id, instance=instance)
