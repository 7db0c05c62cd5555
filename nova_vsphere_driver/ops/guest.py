"""Network adapter hot-plug, rescue, suspend/resume, and what vSphere cannot do.

Every change to a VM is one ReconfigVM_Task, which vCenter applies
atomically: a failed attach or detach leaves the VM's devices and
extraConfig as they were. Multi-step operations (rescue, unrescue) undo
their earlier steps when a later one fails.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from collections.abc import Iterator
from typing import Any

import nova.conf
from nova import exception
from oslo_concurrency import lockutils
from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver import policy
from nova_vsphere_driver.ops import block_devices, vm_devices
from nova_vsphere_driver.ops import root_disk as root_disk_ops
from nova_vsphere_driver.ops.instance_storage_policy import InstanceStoragePolicy
from nova_vsphere_driver.ops.nics import NicResolver, nic_adapter
from nova_vsphere_driver.ops.root_disk import RootDisks
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.cluster_state import ClusterRef
from nova_vsphere_driver.vsphere.images import CachedImage, ImageDisk, vdm_adapter_type
from nova_vsphere_driver.vsphere.vm import (
    POWERED_OFF,
    POWERED_ON,
    SUSPENDED,
    _device_add,
    _nic_device,
    _option,
)

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: The rescue disk is ``<instance uuid>-rescue.vmdk`` in the VM's folder.
RESCUE_SUFFIX = "-rescue.vmdk"
_DS_PATH = re.compile(r"^\[(?P<ds>[^\]]+)\]\s?(?P<path>.*)$")


def _split_ds_path(path: str) -> tuple[str, str]:
    match = _DS_PATH.match(path or "")
    if match is None:
        raise exception.NovaException(message=f"not a datastore path: {path!r}")
    return match.group("ds"), match.group("path")


@contextlib.contextmanager
def _hotplug_lock(instance_uuid: str) -> Iterator[None]:
    """One NIC change per instance at a time: slots are picked from a fresh read."""
    with lockutils.lock(f"vsphere-hotplug-{instance_uuid}"):
        yield


class GuestOps:
    """Guest-level operations of one driver (built once; holds no state)."""

    def __init__(self, services: Services, nics: NicResolver, root_disks: RootDisks,
                 storage: InstanceStoragePolicy) -> None:
        self._session = services.session
        self._vmops = services.vmops
        self._vm_refs = services.vm_refs
        self._states = services.states
        self._nodes = services.nodes
        self._nics = nics
        self._root_disks = root_disks
        self._storage = storage

    # -- helpers ------------------------------------------------------------------------

    def _props(self, instance, vm_ref, names: list[str]) -> dict[str, Any]:
        with errors.translated(instance):
            return self._vmops.properties(vm_ref, names)

    def _reconfigure(self, instance, vm_ref, spec) -> None:
        with errors.translated(instance):
            self._session.run_task("ReconfigVM_Task", vm_ref, spec=spec)

    def _read(self, instance, names: list[str]) -> tuple[Any, dict[str, Any]]:
        """The VM's reference and properties (a stale cached reference is looked up again)."""
        return self._vm_refs.with_vm(
            instance, lambda vm_ref: (vm_ref, self._vmops.properties(vm_ref, names)))

    # -- network adapters -------------------------------------------------------------

    def attach_interface(self, context, instance, image_meta, vif) -> None:
        """Hot-add an adapter (the image's hw_vif_model) on the network the VIF's binding
        names and record its port id."""
        adapter = nic_adapter(image_meta)
        with _hotplug_lock(instance.uuid):
            # (_with_vm: a stale cached VM reference is looked up again.)
            self._vm_refs.with_vm(instance,
                                  lambda vm_ref: self._attach(instance, vif, vm_ref, adapter))

    def _attach(self, instance, vif, vm_ref, adapter: str) -> None:
        props = self._props(instance, vm_ref, ["runtime.host", "config.extraConfig",
                                               "config.hardware.device"])
        devices = vm_devices.items(props.get("config.hardware.device"))
        slots = vm_devices.iface_slots(props.get("config.extraConfig"))
        existing = vm_devices.find_nic(devices, vif.get("address"))
        if existing is not None and vif.get("id") in slots.values():
            LOG.info("Port %s is already attached", vif.get("id"), instance=instance)
            return
        spec = self._session.factory("VirtualMachineConfigSpec")
        network = "(existing adapter)"
        if existing is None:
            # The port group as the VM's host sees it: a host without the
            # network cannot back the adapter.
            state = self._states.read(instance.node)
            host_ref = props.get("runtime.host")
            host = state.host(vim_util.get_moref_value(host_ref)) if host_ref else None
            nic = self._nics.nics(state, host, [vif], adapter)[0]
            network = nic.network.name
            spec.deviceChange = [_device_add(self._session,
                                             _nic_device(self._session, nic, -1))]
        # else: an earlier attach added the adapter but not its slot.
        slot = vm_devices.first_free_slot(slots)
        spec.extraConfig = [_option(self._session, f"{vm_devices.IFACE_ID_PREFIX}{slot}",
                                    vif.get("id") or "")]
        try:
            self._reconfigure(instance, vm_ref, spec)
        except exception.InstanceNotFound:
            raise
        except exception.NovaException as exc:
            LOG.error("Attaching port %s failed: %s", vif.get("id"), exc, instance=instance)
            raise exception.InterfaceAttachFailed(instance_uuid=instance.uuid) from exc
        LOG.info("Attached port %s (%s) as NIC slot %d on %s", vif.get("id"),
                 vif.get("address"), slot, network, instance=instance)

    def detach_interface(self, context, instance, vif) -> None:
        """Hot-remove the VIF's adapter and free its port-id slot."""
        with _hotplug_lock(instance.uuid):
            self._vm_refs.with_vm(instance, lambda vm_ref: self._detach(instance, vif, vm_ref))

    def _detach(self, instance, vif, vm_ref) -> None:
        port_id = vif.get("id")
        props = self._props(instance, vm_ref, ["config.extraConfig",
                                               "config.hardware.device"])
        devices = vm_devices.items(props.get("config.hardware.device"))
        slots = vm_devices.iface_slots(props.get("config.extraConfig"))
        slot = next((i for i, pid in sorted(slots.items()) if pid == port_id), None)
        device = vm_devices.find_nic(devices, vif.get("address"))
        if slot is None and device is None:
            raise exception.NotFound(
                f"Instance {instance.uuid} has no network adapter for port {port_id} "
                f"(MAC {vif.get('address')})")
        spec = self._session.factory("VirtualMachineConfigSpec")
        if device is not None:
            change = self._session.factory("VirtualDeviceConfigSpec")
            change.operation = "remove"
            change.device = device
            spec.deviceChange = [change]
        if slot is not None:
            spec.extraConfig = [_option(self._session,
                                        f"{vm_devices.IFACE_ID_PREFIX}{slot}",
                                        vm_devices.FREE_SLOT)]
        try:
            self._reconfigure(instance, vm_ref, spec)
        except exception.InstanceNotFound:
            raise
        except exception.NovaException as exc:
            LOG.error("Detaching port %s failed: %s", port_id, exc, instance=instance)
            raise exception.InterfaceDetachFailed(instance_uuid=instance.uuid) from exc
        LOG.info("Detached port %s (NIC slot %s)", port_id, slot, instance=instance)

    # -- suspend / resume -------------------------------------------------------------

    def suspend(self, context, instance) -> None:
        def do(vm_ref):
            state = str(self._vmops.properties(vm_ref, ["runtime.powerState"]).get(
                "runtime.powerState"))
            if state == SUSPENDED:
                LOG.info("Instance is already suspended", instance=instance)
                return
            if state != POWERED_ON:
                raise exception.InstanceSuspendFailure(
                    reason=f"instance {instance.uuid} is {state}; only a running instance "
                    "can be suspended")
            self._session.run_task("SuspendVM_Task", vm_ref)

        self._vm_refs.with_vm(instance, do)

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None) -> None:
        def do(vm_ref):
            state = str(self._vmops.properties(vm_ref, ["runtime.powerState"]).get(
                "runtime.powerState"))
            if state == POWERED_ON:
                LOG.info("Instance is already running", instance=instance)
                return
            if state != SUSPENDED:
                raise exception.InstanceResumeFailure(
                    reason=f"instance {instance.uuid} is {state}, not suspended")
            # Powering on a suspended VM restores its memory: a resume, not a boot.
            self._vmops.power_on(vm_ref)

        self._vm_refs.with_vm(instance, do)

    # -- rescue -----------------------------------------------------------------------

    def _rescue_disk(self, devices: list, instance):
        suffix = f"/{instance.uuid}{RESCUE_SUFFIX}"
        return next((d for d in vm_devices.disks(devices)
                     if vm_devices.disk_file(d).endswith(suffix)), None)

    def _root_disk(self, devices: list, instance, vm_folder: str):
        """The instance's root disk: its first disk in the VM's folder (else its first disk)."""
        disks = [d for d in vm_devices.disks(devices)
                 if not vm_devices.disk_file(d).endswith(RESCUE_SUFFIX)
                 and not block_devices.is_local_disk(vm_devices.disk_file(d))]
        disks.sort(key=lambda d: (getattr(d, "controllerKey", 0) or 0,
                                  getattr(d, "unitNumber", 0) or 0))
        local = [d for d in disks if f"] {vm_folder}/" in vm_devices.disk_file(d)]
        return (local or disks or [None])[0]

    def _boot_order_spec(self, *disks):
        spec = self._session.factory("VirtualMachineConfigSpec")
        boot = self._session.factory("VirtualMachineBootOptions")
        order = []
        for disk in disks:
            if disk is None:
                continue
            entry = self._session.factory("VirtualMachineBootOptionsBootableDiskDevice")
            entry.deviceKey = disk.key
            order.append(entry)
        boot.bootOrder = order
        spec.bootOptions = boot
        return spec

    def _rescue_disk_change(self, devices: list, root, path: str, capacity_kb: int,
                            parent: str | None, profile_id: str | None = None) -> list:
        """deviceChange adding the rescue disk next to the root disk (with the instance's
        storage policy, ``profile_id``)."""
        changes = []
        controller_key = getattr(root, "controllerKey", None) if root is not None else None
        unit = vm_devices.free_unit(devices, controller_key) if controller_key is not None \
            else None
        if unit is None:
            controllers = vm_devices.scsi_controllers(devices)
            for ctrl in controllers:
                unit = vm_devices.free_unit(devices, ctrl.key)
                if unit is not None:
                    controller_key = ctrl.key
                    break
        if unit is None:
            # No SCSI controller with room: add one on the next free bus.
            buses = {getattr(c, "busNumber", 0) for c in vm_devices.scsi_controllers(devices)}
            controller = self._session.factory("VirtualLsiLogicController")
            controller.key = -100
            controller.busNumber = next(b for b in range(4) if b not in buses)
            controller.sharedBus = "noSharing"
            changes.append(_device_add(self._session, controller))
            controller_key, unit = controller.key, 0
        disk = self._session.factory("VirtualDisk")
        disk.key = -101
        disk.controllerKey = controller_key
        disk.unitNumber = unit
        disk.capacityInKB = capacity_kb
        backing = self._session.factory("VirtualDiskFlatVer2BackingInfo")
        backing.fileName = path
        backing.diskMode = "persistent"
        backing.thinProvisioned = True
        operation = None
        if parent is not None:
            # A delta disk over the cached image, as spawn's linked clones.
            parent_backing = self._session.factory("VirtualDiskFlatVer2BackingInfo")
            parent_backing.fileName = parent
            parent_backing.diskMode = "persistent"
            backing.parent = parent_backing
            operation = "create"
        disk.backing = backing
        changes.append(_device_add(self._session, disk, operation, profile_id))
        return changes

    def _delete_disk_quietly(self, dc_ref, path: str) -> None:
        try:
            self._session.run_task("DeleteVirtualDisk_Task",
                                   self._session.content.virtualDiskManager,
                                   name=path, datacenter=dc_ref)
        except vexc.FileNotFoundException:
            pass
        except Exception as exc:  # best effort: the original failure matters more
            LOG.warning("Could not delete %s: %s", path, exc)

    def _cache_rescue_image(self, context, instance, image_meta, ref: ClusterRef,
                            ds_name: str) -> tuple[CachedImage, ImageDisk]:
        """The rescue image as a disk in ``ds_name``'s image cache, whatever its VMDK type.

        The same typed fetch as spawn's root disk (ops/root_disk.py): a
        stream-optimized image is imported, a sparse one converted.
        """
        image_id = getattr(image_meta, "id", None) if image_meta is not None else None
        if not image_id:
            raise exception.InstanceNotRescuable(instance_id=instance.uuid,
                                                 reason="no rescue image was given")
        image = root_disk_ops.image_disk(image_meta)
        datastore = root_disk_ops.datastore_named(self._states.read(instance.node), ds_name)
        cached = self._root_disks.cached_image(context, instance, image, ref,
                                            ds_name, datastore.moref)
        return cached, image

    def rescue(self, context, instance, network_info, image_meta, rescue_password,
               block_device_info, share_info=None) -> None:
        """Boot the VM from a copy of the rescue image, its own disks attached behind it.

        vCenter has no rescue mode. The rescue disk goes on the root disk's
        controller and first in the boot order, so the original disks keep
        their addresses (as Nova's stable device rescue asks). The rescue
        password cannot be injected: vSphere has no way into a guest without
        its credentials.
        """
        ref = self._nodes.cluster(instance.node)
        vm_ref, props = self._read(instance, ["config.hardware.device",
                                              "config.files.vmPathName", "runtime.powerState"])
        devices = vm_devices.items(props.get("config.hardware.device"))
        if self._rescue_disk(devices, instance) is not None:
            raise exception.InstanceNotRescuable(instance_id=instance.uuid,
                                                 reason="a rescue disk is already attached")
        ds_name, vmx = _split_ds_path(props.get("config.files.vmPathName", ""))
        folder = posixpath.dirname(vmx)
        root = self._root_disk(devices, instance, folder)
        # The rescue disk gets the instance's storage policy, as every disk it has.
        storage_policy = self._storage.policy(instance.flavor,
                                              policy.flavor_settings(instance.flavor))
        path = f"[{ds_name}] {folder}/{instance.uuid}{RESCUE_SUFFIX}"
        dc_ref = vim_util.get_moref(ref.datacenter, "Datacenter")
        if rescue_password:
            LOG.debug("vSphere cannot set the rescue password in the guest; ignored",
                      instance=instance)
        cached, image = self._cache_rescue_image(context, instance, image_meta, ref, ds_name)
        if str(props.get("runtime.powerState")) != POWERED_OFF:
            with errors.translated(instance):
                self._vmops.power_off(vm_ref)
        # A rescue disk of an earlier, failed attempt is not attached: replace it.
        self._delete_disk_quietly(dc_ref, path)
        attached = False
        try:
            # A delta disk has its parent's capacity (vCenter refuses any other).
            parent: str | None = cached.path
            if not CONF.vsphere.use_linked_clone:
                copy_spec = self._session.factory("VirtualDiskSpec")
                copy_spec.diskType = "thin"
                copy_spec.adapterType = vdm_adapter_type(image.adapter_type)
                with errors.translated(instance):
                    self._session.run_task(
                        "CopyVirtualDisk_Task", self._session.content.virtualDiskManager,
                        sourceName=cached.path, sourceDatacenter=dc_ref, destName=path,
                        destDatacenter=dc_ref, destSpec=copy_spec)
                parent = None
            spec = self._session.factory("VirtualMachineConfigSpec")
            spec.deviceChange = self._rescue_disk_change(
                devices, root, path, cached.capacity_kb, parent,
                storage_policy.profile_id if storage_policy else None)
            self._reconfigure(instance, vm_ref, spec)
            attached = True
            # vCenter gives the new disk its key: read it to put the disk first.
            devices = vm_devices.items(self._props(instance, vm_ref, [
                "config.hardware.device"]).get("config.hardware.device"))
            rescue_disk = self._rescue_disk(devices, instance)
            if rescue_disk is None:
                raise exception.InstanceNotRescuable(
                    instance_id=instance.uuid, reason=f"{path} is not attached after the "
                    "reconfiguration")
            self._reconfigure(instance, vm_ref, self._boot_order_spec(rescue_disk, root))
            with errors.translated(instance):
                self._vmops.power_on(vm_ref)
        except Exception:
            LOG.warning("Rescue failed; removing the rescue disk %s", path, instance=instance)
            self._undo_rescue(instance, vm_ref, dc_ref, path, attached)
            raise
        LOG.info("Instance rescued from image %s", image_meta.id, instance=instance)

    def _undo_rescue(self, instance, vm_ref, dc_ref, path: str, attached: bool) -> None:
        """Back to the VM before rescue: powered off, no rescue disk, root disk first."""
        try:
            with errors.translated(instance):
                self._vmops.power_off(vm_ref)
            if attached:
                self._detach_rescue_disk(instance, vm_ref)
            else:
                self._delete_disk_quietly(dc_ref, path)
        except Exception as exc:  # the original failure is what the caller must see
            LOG.error("Could not undo the failed rescue: %s", exc, instance=instance)

    def _detach_rescue_disk(self, instance, vm_ref) -> bool:
        """Remove and delete the rescue disk, root disk first again; False if there is none."""
        props = self._props(instance, vm_ref, ["config.hardware.device",
                                               "config.files.vmPathName"])
        devices = vm_devices.items(props.get("config.hardware.device"))
        rescue_disk = self._rescue_disk(devices, instance)
        if rescue_disk is None:
            return False
        _ds, vmx = _split_ds_path(props.get("config.files.vmPathName", ""))
        root = self._root_disk(devices, instance, posixpath.dirname(vmx))
        spec = self._boot_order_spec(root) if root is not None else \
            self._session.factory("VirtualMachineConfigSpec")
        change = self._session.factory("VirtualDeviceConfigSpec")
        change.operation = "remove"
        change.fileOperation = "destroy"
        change.device = rescue_disk
        spec.deviceChange = [change]
        self._reconfigure(instance, vm_ref, spec)
        return True

    def unrescue(self, context, instance) -> None:
        """Power off, remove and delete the rescue disk, boot the root disk again."""
        vm_ref, props = self._read(instance, ["runtime.powerState"])
        state = str(props.get("runtime.powerState"))
        with errors.translated(instance):
            self._vmops.power_off(vm_ref)
        try:
            if not self._detach_rescue_disk(instance, vm_ref):
                LOG.warning("Instance has no rescue disk; starting it as it is",
                            instance=instance)
        except Exception:
            # Still rescued: leave it running as it was.
            if state == POWERED_ON:
                with contextlib.suppress(Exception), errors.translated(instance):
                    self._vmops.power_on(vm_ref)
            raise
        with errors.translated(instance):
            self._vmops.power_on(vm_ref)
        LOG.info("Instance unrescued", instance=instance)


#: Why pause/unpause and set_admin_password raise NotImplementedError.
PAUSE_UNSUPPORTED = (
    "vSphere cannot pause a VM (stop its vCPUs while keeping its memory on the host); "
    "use suspend, which saves the VM's memory to its datastore and releases the host's "
    "CPU and memory.")
SET_PASSWORD_UNSUPPORTED = (
    "The vSphere driver cannot set the admin password: vSphere reaches into a guest only "
    "through VMware Tools guest operations, which need the guest's current credentials, "
    "and Nova does not have them.")
