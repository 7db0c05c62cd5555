"""ViewManager and ContainerView (live views over the inventory)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from pyVmomi import VmomiSupport, vim, vmodl

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedEntity, ManagedObject

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator


_CONTAINER_TYPES = (vim.Folder, vim.Datacenter, vim.ComputeResource, vim.ResourcePool,
                    vim.HostSystem)


class ContainerView(ManagedObject):
    vim_type = vim.view.ContainerView

    def __init__(self, sim: Simulator, container: ManagedEntity, types: list,
                 recursive: bool, owner: str | None) -> None:
        super().__init__(sim, f"session[{uuid.uuid4()}]{uuid.uuid4().hex[:12]}")
        self.container = container
        self.types = tuple(types or ())
        self.recursive = recursive
        self.owner_session = owner

    def members(self) -> list[ManagedEntity]:
        seen: dict[str, ManagedEntity] = {}
        stack = list(reversed(self.container.child_entities()))
        while stack:
            node = stack.pop()
            if node.moid in seen:
                continue
            seen[node.moid] = node
            if self.recursive:
                stack.extend(reversed(node.child_entities()))
        return [e for e in seen.values()
                if not self.types or any(issubclass(e.vim_type, t) for t in self.types)]

    def _get_view(self):
        return [e.ref for e in self.members()]

    def _get_container(self):
        return self.container.ref

    def _get_type(self):
        return VmomiSupport.GetVmodlType("vmodl.TypeName[]")(
            [t._wsdlName for t in self.types])

    def _get_recursive(self):
        return self.recursive

    def DestroyView(self, ctx: CallContext) -> None:  # noqa: N802
        self.sim.registry.remove(self.moid)


class ViewManager(ManagedObject):
    vim_type = vim.view.ViewManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "ViewManager")

    def _get_viewList(self):  # noqa: N802
        return [v.ref for v in self.sim.registry.all("ContainerView")]

    def CreateContainerView(self, ctx: CallContext, container, type=None,  # noqa: A002,N802
                            recursive: bool = False):
        with self.sim.registry.lock:
            target = self.sim.registry.lookup(container)
            # As documented: a Folder, Datacenter, ComputeResource, ResourcePool
            # or HostSystem.
            if not issubclass(target.vim_type, _CONTAINER_TYPES):
                raise vmodl.fault.InvalidArgument(
                    invalidProperty="container",
                    msg=f"A {target.vim_type.__name__} cannot be a view's container")
            owner = ctx.session.key if ctx.session else None
            return self.sim.factory.container_view(target, type or [], recursive, owner).ref
