"""Datacenter: owns the vm, host, datastore and network folders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedEntity

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.folder import Folder
    from nova_vsphere_driver.simulator.service import Simulator


class Datacenter(ManagedEntity):
    vim_type = vim.Datacenter
    moid_prefix = "datacenter"

    # The four folders are made with the datacenter (factory.ObjectFactory.datacenter).
    vm_folder: Folder
    host_folder: Folder
    datastore_folder: Folder
    network_folder: Folder

    def __init__(self, sim: Simulator, name: str, parent: Folder) -> None:
        super().__init__(sim, name, parent)

    def folders(self) -> list[Folder]:
        return [self.vm_folder, self.host_folder, self.datastore_folder, self.network_folder]

    def child_entities(self) -> list[ManagedEntity]:
        return self.folders()

    def _get_vmFolder(self):  # noqa: N802
        return self.vm_folder.ref

    def _get_hostFolder(self):  # noqa: N802
        return self.host_folder.ref

    def _get_datastoreFolder(self):  # noqa: N802
        return self.datastore_folder.ref

    def _get_networkFolder(self):  # noqa: N802
        return self.network_folder.ref

    def _get_datastore(self):
        return [d.ref for d in self.sim.registry.all("Datastore") if d.datacenter() is self]

    def _get_network(self):
        return [n.ref for n in self.sim.registry.all("Network") if n.datacenter() is self]

    def _get_configuration(self):
        return vim.Datacenter.ConfigInfo()

    def PowerOnMultiVM_Task(self, ctx: CallContext, vm: list, option=None):  # noqa: N802
        """Power on several VMs: one PowerOnVM_Task each, listed in the result.

        A VM of another datacenter, a template or one already powered on is
        not attempted; the result says why (ClusterPowerOnVmResult). The
        VMs start on their current hosts (``option`` such as
        OverrideAutomationLevel asks DRS for placement, which the simulator's
        vCenter DRS does not do at power-on).
        """
        registry = self.sim.registry

        def work():
            attempted, not_attempted = [], []
            for ref in vm:
                target = registry.get(ref._moId, ref) if ref._moId in registry else None
                fault = None
                if target is None or target.kind != "VirtualMachine":
                    fault = vmodl.fault.ManagedObjectNotFound(
                        obj=ref, msg=f"The object '{ref._moId}' has already been deleted or "
                        "has not been completely created")
                elif target.datacenter() is not self:
                    fault = vmodl.fault.InvalidArgument(
                        invalidProperty="vm",
                        msg=f"{target.name} is not in datacenter {self.name}")
                elif target.is_template:
                    fault = vmodl.fault.NotSupported(
                        msg=f"The operation is not supported on the object: {target.name} is "
                        "a template")
                elif target.powered_on:
                    fault = vim.fault.InvalidPowerState(
                        requestedState="poweredOff", existingState=target.power_state,
                        msg=f"{target.name} is already powered on")
                if fault is not None:
                    not_attempted.append(vim.cluster.NotAttemptedVmInfo(vm=ref, fault=fault))
                    continue
                task = target.PowerOnVM_Task(ctx)
                attempted.append(vim.cluster.AttemptedVmInfo(vm=target.ref, task=task))
            return vim.cluster.PowerOnVmResult(attempted=attempted, notAttempted=not_attempted,
                                               recommendations=[])

        return self.sim.tasks.start(ctx, self, "PowerOnMultiVM_Task", work)
