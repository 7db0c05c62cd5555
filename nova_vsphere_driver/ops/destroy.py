"""Destroy: the instance's VM and its disks go (its Cinder volumes are detached first),
its claim and its DRS rule entries with it. A VM that is already gone is not an error.

vCenter's Destroy_Task deletes the VM's own files; an ISO file a CD-ROM drive
holds is none of them, so the folder of a VM with a config drive in it is
deleted afterwards (as the in-tree driver deletes the instance's folder).
"""

from __future__ import annotations

import posixpath

from nova import exception
from oslo_log import log as logging
from oslo_vmware import vim_util

from nova_vsphere_driver.ops import vm_devices
from nova_vsphere_driver.ops.instance_rules import InstanceRules
from nova_vsphere_driver.ops.migrate import kept_for_revert
from nova_vsphere_driver.ops.volumes import Volumes
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors

LOG = logging.getLogger(__name__)


def _ds_folder(path: str) -> str:
    return posixpath.dirname(path)


class DestroyOps:
    """ComputeDriver.destroy for one driver (built once; holds no state)."""

    def __init__(self, services: Services, rules: InstanceRules, volumes: Volumes) -> None:
        self._services = services
        self._rules = rules
        self._volumes = volumes

    def _folder_with_drives(self, vm_ref) -> str | None:
        """The VM's folder ("[ds] dir") when a CD-ROM drive's ISO file is in it."""
        props = self._services.vmops.properties(vm_ref, ["config.files.vmPathName",
                                                         "config.hardware.device"])
        folder = _ds_folder(str(props.get("config.files.vmPathName") or ""))
        if not folder or folder.endswith("]"):
            return None
        for device in vm_devices.items(props.get("config.hardware.device")):
            backing = getattr(device, "backing", None)
            if vm_devices.type_name(device) == "VirtualCdrom" and \
                    str(getattr(backing, "fileName", "") or "").startswith(folder + "/"):
                return folder
        return None

    def _delete_folder(self, instance, ref, folder: str) -> None:
        try:
            self._services.session.delete_datastore_file(
                folder, vim_util.get_moref(ref.datacenter, "Datacenter"))
        except Exception as exc:  # the VM is gone: a leftover file must not fail the delete
            LOG.warning("Could not delete the instance's folder %s: %s", folder, exc,
                        instance=instance)

    def _vm_gone(self, instance) -> bool:
        """Does vCenter say that the instance has no VM (False when it cannot say)?"""
        try:
            return self._services.vmops.find_by_uuid(instance.uuid) is None
        except Exception as exc:
            LOG.warning("Could not check whether the VM is gone: %s", exc, instance=instance)
            return False

    def destroy(self, context, instance, block_device_info=None,
                destroy_disks: bool = True) -> None:
        """Remove the VM (or only unregister it, keeping its disks)."""
        if kept_for_revert(instance):
            # Nova's revert_resize destroys the destination's copy first;
            # ours is the one VM, which finish_revert_migration moves back.
            return
        services = self._services
        ref = services.nodes.get(instance.node)
        vm_ref = services.vm_refs.refind(instance, required=False)
        if vm_ref is None:
            LOG.info("Instance has no VM in vCenter; nothing to destroy", instance=instance)
            if ref is not None:
                services.drs.release(ref.moref, instance.uuid)
            return
        try:
            # Destroy_Task deletes every disk attached to the VM: Cinder
            # volumes come off first.
            self._volumes.detach_all(context, instance, block_device_info)
            with errors.translated(instance):
                if destroy_disks:
                    folder = self._folder_with_drives(vm_ref)
                    services.vmops.destroy(vm_ref)
                    if folder is not None and ref is not None:
                        self._delete_folder(instance, ref, folder)
                else:
                    services.vmops.unregister(vm_ref)
        except exception.InstanceNotFound:
            LOG.info("VM vanished while being destroyed", instance=instance)
        except Exception as exc:
            # A read of the task's outcome may fail after vCenter did the
            # work: Nova must not keep an instance in ERROR for a VM that is
            # gone (nor forget one that is still there).
            if not self._vm_gone(instance):
                raise
            LOG.info("Destroying reported an error (%s), but the VM is gone", exc,
                     instance=instance)
        finally:
            services.vm_refs.forget(instance.uuid)
            if ref is not None:
                services.drs.release(ref.moref, instance.uuid)
        if ref is not None:
            self._rules.prune(ref, vim_util.get_moref_value(vm_ref))
