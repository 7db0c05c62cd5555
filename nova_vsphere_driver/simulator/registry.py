"""The simulator's object registry: every managed object by moref id and by kind.

As govmomi's simulator ``Map``: objects find each other here, by reference
(``get``, ``lookup``) or by their managed-object type (``all("HostSystem")``),
never by importing each other's Python classes.
"""

from __future__ import annotations

import collections
import functools
import itertools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeVar

from pyVmomi import VmomiSupport, vmodl

from nova_vsphere_driver.simulator.vim_faults import object_not_found

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.base import ManagedObject

T = TypeVar("T")


class Registry:
    """All managed objects of one simulated vCenter, guarded by one lock.

    One re-entrant lock serialises every read and mutation of inventory
    state: the simulator is a test tool and correctness (no torn reads of a
    host's accounting while a vMotion runs) matters more than parallelism.
    ``changed`` is a condition on that lock which long waits (WaitForUpdates,
    maintenance mode) block on; every mutation bumps ``generation``.

    The change log: a mutation names the objects whose properties it
    changed (``touch(vm)``; each object adds those whose properties derive
    from its state, ``ManagedObject.dependents``), and property collectors
    ask which objects changed since the generation they last reported
    (``changes_since``), as vCenter's update stream costs what changed, not
    what exists. A change that names nothing means "anything may have
    changed": collectors then compare every object they watch.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.generation = 0
        self._objects: dict[str, ManagedObject] = {}
        # kind (a vim25 type name) -> {moid: object}, for the object's type
        # and each managed type it extends, in creation order.
        self._by_kind: dict[str, dict[str, ManagedObject]] = collections.defaultdict(dict)
        # id prefix -> the next number to hand out ("vm" -> 13 makes vm-13 next).
        self._next_ids: dict[str, int] = {}
        #: moid -> generation of its newest change, oldest change first (an
        #: object changed again moves to the end): ``changes_since`` walks
        #: back from the end only as far as it needs.
        self._changes: dict[str, int] = {}
        #: Generation of the newest change that named no objects.
        self._unnamed_change = 0
        #: Newest generation dropped from ``_changes`` to bound its size.
        self._forgotten = 0

    def new_id(self, prefix: str) -> str:
        """A fresh moref id in vCenter's style: ``vm-12``, ``group-v3``, ``domain-c7``."""
        sep = "" if prefix[-2:-1] == "-" else "-"
        with self.lock:
            while True:
                number = self._next_ids.get(prefix, 1)
                self._next_ids[prefix] = number + 1
                moid = f"{prefix}{sep}{number}"
                if moid not in self._objects:
                    return moid

    def id_counters(self) -> dict[str, int]:
        """The next number of each moid prefix (vCenter never hands out a moid twice)."""
        with self.lock:
            return dict(self._next_ids)

    def set_id_counters(self, counters: dict[str, int]) -> None:
        """Continue numbering where a saved simulator stopped (simulator/persistence.py)."""
        with self.lock:
            self._next_ids = {str(k): int(v) for k, v in counters.items()}

    def add(self, obj: ManagedObject) -> ManagedObject:
        with self.lock:
            if obj.moid in self._objects:
                raise ValueError(f"duplicate moref {obj.moid}")
            self._objects[obj.moid] = obj
            for kind in _kinds(obj.vim_type):
                self._by_kind[kind][obj.moid] = obj
            self.touch(obj, membership=True)
            return obj

    def remove(self, moid: str) -> None:
        with self.lock:
            obj = self._objects.pop(moid, None)
            if obj is not None:
                for kind in _kinds(obj.vim_type):
                    self._by_kind[kind].pop(moid, None)
                self.touch(obj, membership=True)

    def get(self, moid: str, ref=None) -> ManagedObject:
        """The object ``moid``; ManagedObjectNotFound (naming ``ref``) if there is none."""
        try:
            return self._objects[moid]
        except KeyError:
            raise object_not_found(moid, ref) from None

    def lookup(self, ref) -> ManagedObject:
        """Resolve a pyVmomi managed object stub, checking its type too.

        The reference may name the object's type or a type it extends
        (``ManagedEntity``), never a more specific one: vCenter does not find
        a ``VmwareDistributedVirtualSwitch`` that is a ``DistributedVirtualSwitch``.
        """
        obj = self.get(ref._moId, ref)
        if not issubclass(obj.vim_type, type(ref)):
            raise vmodl.fault.ManagedObjectNotFound(
                msg=f"The object '{VmomiSupport.GetVmodlName(type(ref))}:{ref._moId}' has "
                "already been deleted or has not been completely created", obj=ref
            )
        return obj

    def all(self, kind: str | type) -> list[ManagedObject]:
        """Every object of managed type ``kind`` or a type extending it, oldest first.

        ``kind`` is a vim25 type name (``"VirtualMachine"``, ``"ManagedEntity"``)
        or a pyVmomi managed type (``vim.Network``: networks and distributed
        port groups, as the type model says).
        """
        name = kind if isinstance(kind, str) else kind._wsdlName
        with self.lock:
            found = self._by_kind.get(name)
            return list(found.values()) if found else []

    def find(self, cls: type[T]) -> Iterator[T]:
        """Objects that are instances of the simulator class ``cls`` (tests, operators)."""
        return iter([o for o in self.all(cls.vim_type) if isinstance(o, cls)])

    def __contains__(self, moid: str) -> bool:
        return moid in self._objects

    def __len__(self) -> int:
        return len(self._objects)

    def held(self) -> bool:
        """Does the calling thread hold the lock?"""
        return self.lock._is_owned()  # noqa: SLF001 (what threading.Condition uses)

    def touch(self, *objects: ManagedObject, membership: bool = False) -> None:
        """Record a change of ``objects``' properties (invalidates property caches,
        wakes waiters).

        Each object's ``dependents()`` -- objects whose properties derive from
        its state, such as a VM's host, whose quickStats sum its VMs -- are
        recorded with it. A change of relations names the objects on both
        sides (a vMotion: the VM, and the host it left). ``membership``: what
        some container holds changed (an object created, removed or moved),
        so every ContainerView's ``view`` may have changed too. Without
        objects, anything may have changed.
        """
        with self.lock:
            self.generation += 1
            generation = self.generation
            if not objects:
                self._unnamed_change = generation
            for obj in objects:
                self._record(obj.moid, generation)
                for dependent in obj.dependents():
                    if dependent is not None:
                        self._record(dependent.moid, generation)
            if membership:
                for view in self._by_kind.get("ContainerView", {}).values():
                    self._record(view.moid, generation)
            if len(self._changes) > 2 * len(self._objects) + 10000:
                self._forget_oldest_changes()
            self.changed.notify_all()

    def wake(self) -> None:
        """Wake every waiter without recording a change (a session ended)."""
        with self.lock:
            self.changed.notify_all()

    def _record(self, moid: str, generation: int) -> None:
        changes = self._changes
        changes.pop(moid, None)  # re-inserted last: the log stays oldest first
        changes[moid] = generation

    def _forget_oldest_changes(self) -> None:
        """Drop the older half of the log; readers behind it compare everything."""
        keep = len(self._changes) // 2
        dropped = len(self._changes) - keep
        for moid in list(itertools.islice(self._changes, dropped)):
            self._forgotten = max(self._forgotten, self._changes.pop(moid))

    def changes_since(self, generation: int) -> set[str] | None:
        """The moids of objects changed after ``generation`` (created and removed
        ones too); None when that is not known (a change named no objects, or
        the log no longer reaches back that far): compare everything then.
        """
        with self.lock:
            if generation < self._unnamed_change or generation < self._forgotten:
                return None
            changed = set()
            for moid in reversed(self._changes):
                if self._changes[moid] <= generation:
                    break
                changed.add(moid)
            return changed


@functools.cache
def _kinds(vim_type: type) -> tuple[str, ...]:
    """The vim25 names of ``vim_type`` and of every managed type it extends."""
    return tuple(t._wsdlName for t in vim_type.__mro__
                 if isinstance(t, type) and issubclass(t, VmomiSupport.ManagedObject)
                 and getattr(t, "_wsdlName", None))
