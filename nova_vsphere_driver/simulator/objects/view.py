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


class ListView(ManagedObject):
    """A view of the objects a client lists (ViewManager.CreateListView).

    Objects that are deleted leave the view, as on vCenter; a reference to
    an object that does not exist is "unresolved" (returned, not added).
    """

    vim_type = vim.view.ListView

    def __init__(self, sim: Simulator, owner: str | None) -> None:
        super().__init__(sim, f"session[{uuid.uuid4()}]{uuid.uuid4().hex[:12]}")
        self.owner_session = owner
        self.members: dict[str, object] = {}

    def _get_view(self):
        registry = self.sim.registry
        return [ref for moid, ref in self.members.items() if moid in registry]

    def add(self, refs) -> list:
        """Add ``refs``; those that name no object are returned (unresolved)."""
        registry = self.sim.registry
        unresolved = []
        for ref in refs or ():
            if ref._moId in registry:
                self.members.setdefault(ref._moId, registry.get(ref._moId).ref)
            else:
                unresolved.append(ref)
        registry.touch(self)
        return unresolved

    def ModifyListView(self, ctx: CallContext, add=None, remove=None):  # noqa: N802
        with self.sim.registry.lock:
            for ref in remove or ():
                self.members.pop(ref._moId, None)
            return self.add(add)

    def ResetListView(self, ctx: CallContext, obj=None):  # noqa: N802
        with self.sim.registry.lock:
            self.members.clear()
            return self.add(obj)

    def ResetListViewFromView(self, ctx: CallContext, view) -> None:  # noqa: N802
        with self.sim.registry.lock:
            source = self.sim.registry.lookup(view)
            self.members.clear()
            self.add(source.get_property("view") or [])

    def DestroyView(self, ctx: CallContext) -> None:  # noqa: N802
        self.sim.registry.remove(self.moid)


class ViewManager(ManagedObject):
    vim_type = vim.view.ViewManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "ViewManager")

    def _get_viewList(self):  # noqa: N802
        return [v.ref for v in self.sim.registry.all("View")]

    def CreateListView(self, ctx: CallContext, obj=None):  # noqa: N802
        """A view of ``obj`` (references to objects that do not exist are left out)."""
        with self.sim.registry.lock:
            view = self.sim.factory.list_view(ctx.session.key if ctx.session else None)
            view.add(obj)
            return view.ref

    def CreateListViewFromView(self, ctx: CallContext, view):  # noqa: N802
        """A list view of the objects another view shows now."""
        with self.sim.registry.lock:
            source = self.sim.registry.lookup(view)
            target = self.sim.factory.list_view(ctx.session.key if ctx.session else None)
            target.add(source.get_property("view") or [])
            return target.ref

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
