"""vMotion of a VM to another host of its cluster (storage stays)."""

from __future__ import annotations

from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.session import VSphereSession


def vmotion(session: VSphereSession, vm_moref: str, host_moref: str,
            pool_moref: str | None = None) -> None:
    """Move a VM (running or not) to another host of its cluster; storage stays."""
    spec = session.factory("VirtualMachineRelocateSpec")
    spec.host = vim_util.get_moref(host_moref, "HostSystem")
    if pool_moref is not None:
        spec.pool = vim_util.get_moref(pool_moref, "ResourcePool")
    session.run_task("RelocateVM_Task", vim_util.get_moref(vm_moref, "VirtualMachine"),
                     spec=spec)
