"""EnvironmentBrowser: what VMs a cluster's hosts can run.

QueryConfigOptionDescriptor lists every virtual hardware version, whether
new VMs may have it and, for a cluster, on which of its hosts -- what a
client reads before asking for a version (``VirtualMachineConfigSpec.version``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator import esxi_versions
from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator


class EnvironmentBrowser(ManagedObject):
    vim_type = vim.EnvironmentBrowser
    moid_prefix = "envbrowser"

    def __init__(self, sim: Simulator, cluster: ManagedObject) -> None:
        super().__init__(sim)
        #: The ClusterComputeResource whose hosts it describes.
        self.cluster = cluster

    def QueryConfigOptionDescriptor(self, ctx: CallContext):  # noqa: N802
        with self.sim.registry.lock:
            hosts = list(self.cluster.hosts)
            by_version: dict[str, list] = {}
            for host in hosts:
                for key in esxi_versions.hardware_versions(host.esxi_version):
                    by_version.setdefault(key, []).append(host)
            defaults = {esxi_versions.default_hardware_version(h.esxi_version) for h in hosts}
            return [vim.vm.ConfigOptionDescriptor(
                key=key, description=f"ESX {key} virtual machine",
                host=[h.ref for h in members],
                createSupported=True, runSupported=True, upgradeSupported=True,
                defaultConfigOption=key in defaults)
                for key, members in sorted(by_version.items(),
                                           key=lambda kv: int(kv[0].split("-")[1]))]
