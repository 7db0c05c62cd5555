"""ExtensionManager: extensions registered by solutions (Nova's in-tree driver registers one).

``RegisterExtension`` adds an extension (its key must be new),
``FindExtension`` finds one by key (unset when there is none),
``UpdateExtension`` replaces one, ``UnregisterExtension`` removes one
(NotFound when absent), ``QueryManagedBy`` lists the VMs whose
``config.managedBy`` names the extension.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator


class ExtensionManager(ManagedObject):
    vim_type = vim.ExtensionManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "ExtensionManager")
        self.extensions: dict[str, vim.Extension] = {}

    def _get_extensionList(self):  # noqa: N802
        return list(self.extensions.values())

    def _not_found(self, key: str) -> vim.fault.NotFound:
        return vim.fault.NotFound(msg=f"The extension {key} is not registered")

    def RegisterExtension(self, ctx: CallContext, extension) -> None:  # noqa: N802
        with self.sim.registry.lock:
            if not extension.key:
                raise invalid_argument("extension.key", "An extension needs a key")
            if extension.key in self.extensions:
                raise invalid_argument("extension.key",
                                       f"The extension {extension.key} is already registered")
            self.extensions[extension.key] = copy.deepcopy(extension)
            self.sim.registry.touch()

    def UpdateExtension(self, ctx: CallContext, extension) -> None:  # noqa: N802
        with self.sim.registry.lock:
            if extension.key not in self.extensions:
                raise self._not_found(extension.key)
            self.extensions[extension.key] = copy.deepcopy(extension)
            self.sim.registry.touch()

    def UnregisterExtension(self, ctx: CallContext, extensionKey: str) -> None:  # noqa: N802,N803
        with self.sim.registry.lock:
            if self.extensions.pop(extensionKey, None) is None:
                raise self._not_found(extensionKey)
            self.sim.registry.touch()

    def FindExtension(self, ctx: CallContext, extensionKey: str):  # noqa: N802,N803
        return self.extensions.get(extensionKey)

    def SetExtensionCertificate(self, ctx: CallContext, extensionKey: str,  # noqa: N802,N803
                                certificatePem: str | None = None) -> None:  # noqa: N803
        with self.sim.registry.lock:
            extension = self.extensions.get(extensionKey)
            if extension is None:
                raise self._not_found(extensionKey)
            if not certificatePem:
                raise vim.fault.NoClientCertificate(
                    msg="No certificate given and the session has no client certificate")
            extension.subjectName = "CN=" + extensionKey
            self.sim.registry.touch()

    def QueryManagedBy(self, ctx: CallContext, extensionKey: str):  # noqa: N802,N803
        return [vm.ref for vm in self.sim.vms()
                if vm.config.managedBy is not None
                and vm.config.managedBy.extensionKey == extensionKey]
