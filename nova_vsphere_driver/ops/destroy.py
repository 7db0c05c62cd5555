"""Destroy: the instance's VM and its disks go (its Cinder volumes are detached first),
its claim and its DRS rule entries with it. A VM that is already gone is not an error."""

from __future__ import annotations

from nova import exception
from oslo_log import log as logging
from oslo_vmware import vim_util

from nova_vsphere_driver.ops.instance_rules import InstanceRules
from nova_vsphere_driver.ops.migrate import kept_for_revert
from nova_vsphere_driver.ops.volumes import Volumes
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors

LOG = logging.getLogger(__name__)


class DestroyOps:
    """ComputeDriver.destroy for one driver (built once; holds no state)."""

    def __init__(self, services: Services, rules: InstanceRules, volumes: Volumes) -> None:
        self._services = services
        self._rules = rules
        self._volumes = volumes

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
                    services.vmops.destroy(vm_ref)
                else:
                    services.vmops.unregister(vm_ref)
        except exception.InstanceNotFound:
            LOG.info("VM vanished while being destroyed", instance=instance)
        finally:
            services.vm_refs.forget(instance.uuid)
            if ref is not None:
                services.drs.release(ref.moref, instance.uuid)
        if ref is not None:
            self._rules.prune(ref, vim_util.get_moref_value(vm_ref))
