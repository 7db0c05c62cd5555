"""Datacenter: owns the vm, host, datastore and network folders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.base import ManagedEntity
from nova_vsphere_driver.simulator.objects.folder import Folder

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator


class Datacenter(ManagedEntity):
    vim_type = vim.Datacenter
    moid_prefix = "datacenter"

    def __init__(self, sim: Simulator, name: str, parent: Folder) -> None:
        super().__init__(sim, name, parent)
        reg = sim.registry
        self.vm_folder = Folder(sim, "vm", self, moid=reg.new_id("group-v"),
                                child_types=("Folder", "VirtualMachine", "VirtualApp"))
        self.host_folder = Folder(sim, "host", self, moid=reg.new_id("group-h"),
                                  child_types=("Folder", "ComputeResource"))
        self.datastore_folder = Folder(sim, "datastore", self, moid=reg.new_id("group-s"),
                                       child_types=("Folder", "Datastore", "StoragePod"))
        self.network_folder = Folder(sim, "network", self, moid=reg.new_id("group-n"),
                                     child_types=("Folder", "Network",
                                                  "DistributedVirtualSwitch"))
        for folder in self.folders():
            reg.add(folder)

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
        from nova_vsphere_driver.simulator.objects.datastore import Datastore

        return [d.ref for d in self.sim.registry.find(Datastore) if d.datacenter() is self]

    def _get_network(self):
        from nova_vsphere_driver.simulator.objects.network import Network

        return [n.ref for n in self.sim.registry.find(Network) if n.datacenter() is self]

    def _get_configuration(self):
        return vim.Datacenter.ConfigInfo()
