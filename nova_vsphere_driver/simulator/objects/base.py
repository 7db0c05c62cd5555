"""Base classes for simulated managed objects."""

from __future__ import annotations

import datetime
import time
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from pyVmomi import VmomiSupport, vim

from nova_vsphere_driver.simulator import wire_cache
from nova_vsphere_driver.simulator.objects import property_path
from nova_vsphere_driver.simulator.vim_data import complete
from nova_vsphere_driver.simulator.vim_faults import check_entity_name

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Session, Simulator


def monotonic_at(when: datetime.datetime | None) -> float | None:
    """The ``time.monotonic()`` reading of the past moment ``when`` in this process.

    Monotonic readings do not survive a restart; a loaded object derives
    them again from the wall-clock times it saved.
    """
    if when is None:
        return None
    ago = (datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()
    return time.monotonic() - max(ago, 0.0)


class CallContext:
    """What a managed method knows about the call it serves."""

    def __init__(self, sim: Simulator, session: Session | None) -> None:
        self.sim = sim
        self.session = session
        #: Set by Login: the HTTP layer hands its cookie to the client.
        self.new_session = None
        #: Who sent the call (address, user agent): service.Client.
        self.client = None


class ManagedObject:
    """A simulated managed object.

    Properties are served by ``_get_<name>`` methods returning pyVmomi
    values; managed methods are Python methods named by their vim25 wsdl
    name, called with a ``CallContext`` and the decoded parameters.
    """

    vim_type: ClassVar[type] = VmomiSupport.ManagedObject
    moid_prefix: ClassVar[str] = "obj"
    _property_names: ClassVar[tuple[str, ...] | None] = None
    #: Properties whose value depends on the caller, never cached.
    uncached: ClassVar[tuple[str, ...]] = ()
    #: The key of the session that created this object, for objects that
    #: live only as long as their session (views, collectors): the session's
    #: end calls ``release()``.
    owner_session: str | None = None

    def __init__(self, sim: Simulator, moid: str | None = None) -> None:
        self.sim = sim
        self.moid = moid or sim.registry.new_id(self.moid_prefix)
        self._cache: dict[str, tuple[Hashable, Any]] = {}

    def release(self) -> None:
        """Free this object (its owning session ended; call with the registry lock)."""
        self.sim.registry.remove(self.moid)

    # -- surviving a restart (simulator/persistence.py) -----------------------------
    #: Instance attributes that are not saved: rebuilt by ``restored()``.
    transient: ClassVar[frozenset[str]] = frozenset({"sim", "_cache", "_wire_fragments"})

    def persists(self) -> bool:
        """Is this object saved with the simulator's state?

        Objects of a session (views, collectors) end with it, as at a
        vCenter restart.
        """
        return self.owner_session is None

    def restored(self) -> None:
        """Rebuild the transient attributes of an object loaded from a saved state."""
        self._cache = {}
        wire_cache.forget(self)

    def dependents(self) -> Iterable[ManagedObject]:
        """Objects whose properties derive from this one's state (a VM's host sums
        its VMs): ``Registry.touch`` records them as changed with it."""
        return ()

    @property
    def kind(self) -> str:
        """The vim25 name of this object's managed type (``Registry.all`` finds it by it)."""
        return self.vim_type._wsdlName

    @property
    def ref(self):
        """The pyVmomi reference (``ManagedObjectReference``) to this object."""
        return self.vim_type(self.moid)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.moid}>"

    @classmethod
    def property_names(cls) -> tuple[str, ...]:
        """The properties this class gives values (what a read of all properties returns)."""
        if cls.__dict__.get("_property_names") is None:
            declared = {p.name for p in cls.vim_type._GetPropertyList()} \
                if hasattr(cls.vim_type, "_GetPropertyList") else set()
            cls._property_names = tuple(
                sorted(n[5:] for n in dir(cls) if n.startswith("_get_") and n[5:] in declared)
            )
        return cls._property_names

    def cache_version(self) -> Hashable:
        """What this object's cached property values (and their wire form) are valid for.

        The inventory's generation: any change anywhere may change them (a
        host's quickStats follow its VMs). Objects whose properties depend
        on their own state only may count their own changes instead.
        """
        return self.sim.registry.generation

    def get_top(self, name: str) -> Any:
        """Value of a top-level property, cached until it can have changed.

        ``name`` is a property of the type model (property_path checks it):
        one the simulator gives no value is unset, as on vCenter.
        """
        if name in self.uncached:
            return self._compute(name)
        version = self.cache_version()
        hit = self._cache.get(name)
        if hit is not None and hit[0] == version:
            return hit[1]
        value = self._compute(name)
        self._cache[name] = (version, value)
        return value

    def _compute(self, name: str) -> Any:
        getter = getattr(self, "_get_" + name, None)
        return complete(getter()) if getter is not None else None

    def get_property(self, path: str) -> Any:
        """Value at a property path such as ``summary.quickStats`` (None: unset).

        InvalidProperty unless the vim25 type model declares the path on
        this object's type (objects/property_path.py).
        """
        return property_path.resolve(self, path)


class ManagedEntity(ManagedObject):
    """Inventory objects: named, with a parent, in the folder hierarchy."""

    vim_type = vim.ManagedEntity
    # The caller's roles on the entity: per session.
    uncached = ("effectiveRole",)

    def __init__(self, sim: Simulator, name: str, parent: ManagedEntity | None = None,
                 moid: str | None = None) -> None:
        super().__init__(sim, moid)
        self.name = name
        self.parent = parent
        self.recent_tasks: list = []
        #: Custom field key -> value (CustomFieldsManager.SetField).
        self.custom_values: dict[int, str] = {}

    def restored(self) -> None:
        super().restored()
        # (A state saved before entities had custom fields has none.)
        self.__dict__.setdefault("custom_values", {})

    def _get_name(self) -> str:
        return self.name

    def _get_parent(self):
        return self.parent.ref if self.parent is not None else None

    def _get_overallStatus(self):  # noqa: N802
        return vim.ManagedEntity.Status.green

    def _get_configStatus(self):  # noqa: N802
        return vim.ManagedEntity.Status.green

    def _get_recentTask(self):  # noqa: N802
        return [t.ref for t in self.recent_tasks]

    def _get_customValue(self):  # noqa: N802
        return self.sim.custom_fields.values(self)

    def _get_value(self):
        return self.sim.custom_fields.values(self)

    def _get_availableField(self):  # noqa: N802
        return self.sim.custom_fields.available(self)

    def _get_alarmActionsEnabled(self):  # noqa: N802
        return self.moid not in self.sim.alarms.actions_disabled

    def _get_tag(self):
        return []

    def _get_triggeredAlarmState(self):  # noqa: N802
        return []

    def _get_declaredAlarmState(self):  # noqa: N802
        return []

    def _get_disabledMethod(self):  # noqa: N802
        return []

    def _get_effectiveRole(self):  # noqa: N802
        session = self.sim.current_session()
        if session is None:
            return []
        authorization = self.sim.authorization
        principal = self.sim.user_directory.session_principal(session.user)
        return sorted(authorization.roles_of(principal, self))

    def _get_permission(self):
        return self.sim.authorization.entity_permissions(self)

    def child_entities(self) -> list[ManagedEntity]:
        """Entities directly below this one, as a ContainerView sees them."""
        return []

    def ancestors(self) -> list[ManagedEntity]:
        chain, node = [], self.parent
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain

    def datacenter(self):
        for node in [self, *self.ancestors()]:
            if node.vim_type is vim.Datacenter:
                return node
        return None

    def inventory_path(self) -> str:
        names = [n.name for n in reversed([self, *self.ancestors()])]
        # The root folder has no name in an inventory path.
        return "/".join(names[1:])

    def Rename_Task(self, ctx: CallContext, newName: str):  # noqa: N802,N803
        def work():
            check_entity_name(newName)
            lookup = getattr(self.parent, "child_named", None)
            other = lookup(newName) if lookup is not None else None
            if other is not None and other is not self:
                raise vim.fault.DuplicateName(name=newName, object=other.ref,
                                              msg=f"The name '{newName}' already exists.")
            old_name, self.name = self.name, newName
            if hasattr(self.parent, "renamed"):
                self.parent.renamed(self, old_name)
            self.renamed_to(newName, old_name)
            self.sim.registry.touch(self)

        return self.sim.tasks.start(ctx, self, "Rename_Task", work)

    def renamed_to(self, name: str, old_name: str) -> None:
        """Hook: the entity was renamed (a VM's config.name follows its name)."""

    def Destroy_Task(self, ctx: CallContext):  # noqa: N802
        def work():
            self.destroy()

        return self.sim.tasks.start(ctx, self, "Destroy_Task", work)

    def destroy(self) -> None:
        raise vim.fault.InvalidState(msg=f"{type(self).__name__} cannot be destroyed here")
