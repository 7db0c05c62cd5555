"""Folder: the inventory tree's containers; CreateVM_Task lives here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedEntity
from nova_vsphere_driver.simulator.vim_faults import check_entity_name

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator


class Folder(ManagedEntity):
    vim_type = vim.Folder
    moid_prefix = "group-v"

    def __init__(self, sim: Simulator, name: str, parent: ManagedEntity | None,
                 moid: str | None = None, child_types: tuple[str, ...] = ("Folder",)) -> None:
        super().__init__(sim, name, parent, moid)
        self.children: list[ManagedEntity] = []
        # Names are unique among a folder's children; the index keeps the
        # check O(1) for folders holding thousands of VMs.
        self._by_name: dict[str, ManagedEntity] = {}
        self.child_types = child_types

    def child_entities(self) -> list[ManagedEntity]:
        return list(self.children)

    def _get_childEntity(self):  # noqa: N802
        return [c.ref for c in self.children]

    def _get_childType(self):  # noqa: N802
        return list(self.child_types)

    def child_named(self, name: str) -> ManagedEntity | None:
        child = self._by_name.get(name)
        return child if child is not None and child.name == name else None

    def add_child(self, child: ManagedEntity) -> None:
        existing = self.child_named(child.name)
        if existing is not None:
            raise vim.fault.DuplicateName(name=child.name, object=existing.ref,
                                          msg=f"The name '{child.name}' already exists.")
        child.parent = self
        self.children.append(child)
        self._by_name[child.name] = child
        self.sim.registry.touch(self, child, membership=True)

    def remove_child(self, child: ManagedEntity) -> None:
        if child in self.children:
            self.children.remove(child)
            if self._by_name.get(child.name) is child:
                del self._by_name[child.name]
            self.sim.registry.touch(self, child, membership=True)

    def renamed(self, child: ManagedEntity, old_name: str) -> None:
        if self._by_name.get(old_name) is child:
            del self._by_name[old_name]
        self._by_name[child.name] = child

    def CreateFolder(self, ctx: CallContext, name: str):  # noqa: N802
        with self.sim.registry.lock:
            if "Folder" not in self.child_types:
                raise vmodl.fault.NotSupported(msg=f"Folder {self.name} cannot contain folders")
            check_entity_name(name)
            return self.sim.factory.folder(self, name, child_types=self.child_types).ref

    def destroy(self) -> None:
        if self.children:
            raise vim.fault.InvalidState(msg=f"Folder {self.name} is not empty")
        if self.parent is None:
            raise vim.fault.InvalidState(msg="The root folder cannot be destroyed")
        self.parent.remove_child(self)
        self.sim.registry.remove(self.moid)

    def CreateVM_Task(self, ctx: CallContext, config, pool, host=None):  # noqa: N802
        if "VirtualMachine" not in self.child_types:
            # vCenter: NotSupported when the folder's childType lacks VirtualMachine.
            raise vmodl.fault.NotSupported(
                msg=f"Folder {self.name} cannot contain virtual machines")
        registry = self.sim.registry
        with registry.lock:
            pool_obj = registry.lookup(pool)
            host_obj = registry.lookup(host) if host is not None else None

        def work():
            vm = self.sim.factory.vm(self, config, pool_obj, host_obj)
            self.sim.events.post(vim.event.VmCreatedEvent, about=vm)
            return vm.ref

        return self.sim.tasks.start(ctx, self, "CreateVM_Task", work)
