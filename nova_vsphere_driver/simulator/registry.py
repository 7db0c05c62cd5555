"""The simulator's object registry: every managed object by moref id."""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeVar

from pyVmomi import VmomiSupport, vmodl

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
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.generation = 0
        self._objects: dict[str, ManagedObject] = {}
        self._counters: dict[str, itertools.count] = collections.defaultdict(
            lambda: itertools.count(1)
        )

    def new_id(self, prefix: str) -> str:
        """A fresh moref id in vCenter's style: ``vm-12``, ``group-v3``, ``domain-c7``."""
        sep = "" if prefix[-2:-1] == "-" else "-"
        with self.lock:
            while True:
                moid = f"{prefix}{sep}{next(self._counters[prefix])}"
                if moid not in self._objects:
                    return moid

    def add(self, obj: ManagedObject) -> ManagedObject:
        with self.lock:
            if obj.moid in self._objects:
                raise ValueError(f"duplicate moref {obj.moid}")
            self._objects[obj.moid] = obj
            self.touch()
            return obj

    def remove(self, moid: str) -> None:
        with self.lock:
            self._objects.pop(moid, None)
            self.touch()

    def get(self, moid: str, ref=None) -> ManagedObject:
        """The object ``moid``; ManagedObjectNotFound (naming ``ref``) if there is none."""
        try:
            return self._objects[moid]
        except KeyError:
            # The fault's obj is required on the wire: without the caller's
            # typed reference, name a generic managed object.
            raise vmodl.fault.ManagedObjectNotFound(
                obj=ref if ref is not None else VmomiSupport.ManagedObject(moid),
                msg=f"The object '{moid}' has already been deleted or has not been "
                "completely created"
            ) from None

    def lookup(self, ref) -> ManagedObject:
        """Resolve a pyVmomi managed object stub, checking its type too."""
        obj = self.get(ref._moId, ref)
        if not isinstance(ref, obj.vim_type) and not issubclass(obj.vim_type, type(ref)):
            raise vmodl.fault.ManagedObjectNotFound(
                msg=f"The object '{ref._moId}' is not a {type(ref).__name__}", obj=ref
            )
        return obj

    def find(self, cls: type[T]) -> Iterator[T]:
        with self.lock:
            return iter([o for o in self._objects.values() if isinstance(o, cls)])

    def __contains__(self, moid: str) -> bool:
        return moid in self._objects

    def __len__(self) -> int:
        return len(self._objects)

    def touch(self) -> None:
        """Record a change (invalidates property caches, wakes waiters)."""
        with self.lock:
            self.generation += 1
            self.changed.notify_all()
