"""Instance snapshots (Nova's createImage): the root disk, exported by vCenter, into Glance.

vCenter exports disks through an HttpNfcLease as stream-optimized VMDKs.
``ExportVm`` refuses a running VM, so a running (or suspended) instance is
first given a VM snapshot (quiesced through VMware Tools when they run),
whose disks ``ExportSnapshot`` exports while the guest keeps running; the
snapshot is removed afterwards, whatever happened. A stopped instance is
exported directly. Nova's protocol: ``IMAGE_PENDING_UPLOAD`` before the
disk is frozen, ``IMAGE_UPLOADING`` once it is; on failure Nova deletes the
half-made image itself (``delete_image_on_error``), the driver leaves the VM
as it found it.
"""

from __future__ import annotations

from typing import Any

from nova import exception
from nova.compute import task_states
from oslo_log import log as logging
from oslo_utils import strutils
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.ops import disks
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.nfc import DiskExport
from nova_vsphere_driver.vsphere.vm import POWERED_OFF

LOG = logging.getLogger(__name__)

#: Our VM snapshots are named so; one left behind is removed next time.
SNAPSHOT_PREFIX = "nova-snapshot-"
#: Faults of a quiesced snapshot that a crash-consistent one avoids.
QUIESCE_FAULTS = ("ToolsUnavailable", "ApplicationQuiesceFault")
PROPERTIES = ["runtime.powerState", "config.hardware.device", "config.extraConfig",
              "config.guestId", "guest.toolsRunningStatus", "snapshot"]


def _requires_quiesce(instance) -> bool:
    """The image property os_require_quiesce (kept in system_metadata by Nova)."""
    if not instance.obj_attr_is_set("system_metadata"):
        return False
    value = (instance.system_metadata or {}).get("image_os_require_quiesce")
    return strutils.bool_from_string(value, default=False)


def _our_snapshots(snapshot_info: Any) -> list[Any]:
    """Snapshots in the VM's tree that an earlier snapshot() left behind."""
    found, stack = [], list(getattr(snapshot_info, "rootSnapshotList", None) or [])
    while stack:
        node = stack.pop()
        if str(getattr(node, "name", "")).startswith(SNAPSHOT_PREFIX):
            found.append(node.snapshot)
        stack.extend(getattr(node, "childSnapshotList", None) or [])
    return found



def _image_metadata(root: disks.Disk, guest_id: str | None) -> dict:
    properties = {
        "vmware_disktype": "streamOptimized",
        "vmware_adaptertype": root.adapter_type,
        "vmware_image_version": "1",
    }
    if guest_id:
        properties["vmware_ostype"] = guest_id
    return {"disk_format": "vmdk", "container_format": "bare", "properties": properties}


class InstanceSnapshots:
    """Instance snapshots into Glance (built once; holds no state)."""

    def __init__(self, services: Services) -> None:
        self._session = services.session
        self._vmops = services.vmops
        self._vm_refs = services.vm_refs
        self._images = services.images
        self._image_api = services.image_api

    def _remove_snapshot(self, snapshot_ref, instance) -> bool:
        try:
            self._session.run_task("RemoveSnapshot_Task", snapshot_ref, removeChildren=False,
                                  consolidate=True)
            return True
        except Exception as exc:  # best effort: the caller decides what it means
            LOG.error("Could not remove VM snapshot %s: %s", vim_util.get_moref_value(snapshot_ref),
                      exc, instance=instance)
            return False

    def _create_snapshot(self, instance, vm_ref, image_id: str, tools_running: bool):
        required = _requires_quiesce(instance)
        if required and not tools_running:
            raise exception.InstanceQuiesceNotSupported(instance_id=instance.uuid)
        name = f"{SNAPSHOT_PREFIX}{image_id}"
        description = f"Nova snapshot to image {image_id}; removed when the upload ends"
        try:
            return self._session.run_task("CreateSnapshot_Task", vm_ref, name=name,
                                         description=description, memory=False,
                                         quiesce=tools_running)
        except vexc.VMwareDriverException as exc:
            if not tools_running or required or not errors.is_fault(errors.fault_names(exc),
                                                                    QUIESCE_FAULTS):
                raise
            LOG.warning("Quiescing the guest failed (%s); taking a crash-consistent snapshot",
                        exc, instance=instance)
        return self._session.run_task("CreateSnapshot_Task", vm_ref, name=name,
                                     description=description, memory=False, quiesce=False)

    def _upload(self, context, image_id: str, lease, root: disks.Disk, metadata: dict) -> None:
        export = DiskExport(self._session, lease, root.key_suffix,
                            capacity_bytes=root.capacity_bytes, verify=self._images.verify,
                            timeout=self._session.api_timeout)
        try:
            export.open()
            self._image_api.update(context, image_id, metadata, data=export)
            export.finish()
        except BaseException:
            export.abort()
            raise
        LOG.info("Uploaded %d bytes (SHA-1 %s) of disk %s to image %s", export.bytes_read,
                 export.sha1, root.path, image_id)

    def snapshot(self, context, instance, image_id: str, update_task_state) -> None:
        """ComputeDriver.snapshot: the instance's root disk into Glance image ``image_id``."""
        # A deleted image fails here, before the VM is touched.
        self._image_api.get(context, image_id)
        props = self._vm_refs.with_vm(instance,
                                      lambda ref: self._vmops.properties(ref, PROPERTIES))
        # As with_vm found it (looked up again if the cached one was stale).
        vm_ref = self._vm_refs.find(instance)
        devices = disks.device_list(props.get("config.hardware.device"))
        root = disks.root_disk(devices, disks.option_values(props.get("config.extraConfig")))
        if root is None:
            raise exception.NovaException(
                message=f"Instance {instance.uuid} has no root disk to snapshot (only volumes, "
                "which Cinder snapshots)")
        for stale in _our_snapshots(props.get("snapshot")):
            LOG.info("Removing VM snapshot %s left by an earlier instance snapshot",
                     vim_util.get_moref_value(stale), instance=instance)
            self._remove_snapshot(stale, instance)
        metadata = _image_metadata(root, props.get("config.guestId"))
        powered_off = str(props.get("runtime.powerState")) == POWERED_OFF
        tools_running = str(props.get("guest.toolsRunningStatus")) == "guestToolsRunning"

        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        snapshot_ref = None
        try:
            with errors.translated(instance):
                if not powered_off:
                    snapshot_ref = self._create_snapshot(instance, vm_ref, image_id, tools_running)
            update_task_state(task_state=task_states.IMAGE_UPLOADING,
                              expected_state=task_states.IMAGE_PENDING_UPLOAD)
            with errors.translated(instance):
                if snapshot_ref is not None:
                    lease = self._session.invoke("ExportSnapshot", snapshot_ref)
                else:
                    lease = self._session.invoke("ExportVm", vm_ref)
                self._upload(context, image_id, lease, root, metadata)
        finally:
            if snapshot_ref is not None and not self._remove_snapshot(snapshot_ref, instance):
                LOG.error("VM snapshot %s%s is left on the instance; the next snapshot of the "
                          "instance removes it", SNAPSHOT_PREFIX, image_id, instance=instance)
