"""Datacenter: owns the vm, host, datastore and network folders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.base import ManagedEntity

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
