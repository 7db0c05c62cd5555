"""History collectors: paged, scrollable views of the event and task histories.

As vSphere documents ``HistoryCollector``: a collector selects the items of
a history that its filter matches, oldest to newest. ``latestPage`` holds
the newest ``pageSize`` of them (10 unless ``SetCollectorPageSize`` says
otherwise). The "scrollable view" is a position between two items:
``ReadNext*`` returns up to ``maxCount`` items after it (oldest first) and
moves past them, ``ReadPrevious*`` returns the items before it (newest
first) and moves before them. A new collector, ``ResetCollector`` and
``SetCollectorPageSize`` stand just before the latest page;
``RewindCollector`` goes to the oldest item. Items that arrive later join
the history; the position stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

DEFAULT_PAGE_SIZE = 10
#: vCenter's limit on a page and on one read.
MAX_PAGE_SIZE = 1000
#: Collectors of one kind a session may keep (EventManager/TaskManager.maxCollector).
MAX_COLLECTORS = 32


def check_count(max_count: int, name: str = "maxCount") -> int:
    if max_count is None or not 0 < max_count <= MAX_PAGE_SIZE:
        raise invalid_argument(name, f"{name} must be between 1 and {MAX_PAGE_SIZE}")
    return int(max_count)


def subtree(root: Any, recursion: str) -> set[str]:
    """The moids an entity filter covers: ``self``, ``children``, ``all`` or ``allChildren``.

    Below a host are its VMs; the walk uses an explicit stack (inventory
    trees may be deep).
    """
    found = {root.moid} if recursion in ("self", "children", "all") else set()
    if recursion == "self":
        return found
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        children = list(node.child_entities())
        if node.kind == "HostSystem":
            children += node.vms
        for child in children:
            if child.moid in found:
                continue
            found.add(child.moid)
            if recursion != "children":
                stack.append((child, depth + 1))
    return found


class HistoryCollector(ManagedObject):
    """The paging and scrolling shared by event and task history collectors.

    Subclasses give ``history()``: (key, item) of every matching item,
    oldest first, keys increasing.
    """

    vim_type = vim.HistoryCollector
    moid_prefix = "session[collector]"
    # The history grows without inventory changes: never cached.
    uncached = ("latestPage",)

    def __init__(self, sim: Simulator, filter_spec: Any, owner: str | None) -> None:
        super().__init__(sim, f"session[{owner or 'none'}]{sim.registry.new_id('collector')}")
        self.filter = filter_spec
        #: The session that created the collector: it is freed with it.
        self.owner_session = owner
        self.page_size = DEFAULT_PAGE_SIZE
        #: The scrollable view's position: items with keys >= cursor are "next".
        self.cursor = 0
        self.reset()

    def history(self) -> list[tuple[int, Any]]:
        raise NotImplementedError

    def latest(self) -> list[Any]:
        if not self.page_size:
            return []
        return [item for _, item in self.history()[-self.page_size:]]

    def reset(self) -> None:
        items = self.history()
        page = items[-self.page_size:] if self.page_size else []
        self.cursor = page[0][0] if page else (items[-1][0] + 1 if items else 0)

    def read_next(self, max_count: int) -> list[Any]:
        count = check_count(max_count)
        with self.sim.registry.lock:
            taken = [(k, item) for k, item in self.history() if k >= self.cursor][:count]
            if taken:
                self.cursor = taken[-1][0] + 1
            return [item for _, item in taken]

    def read_previous(self, max_count: int) -> list[Any]:
        count = check_count(max_count)
        with self.sim.registry.lock:
            before = [(k, item) for k, item in self.history() if k < self.cursor]
            taken = before[-count:]
            if taken:
                self.cursor = taken[0][0]
            return [item for _, item in reversed(taken)]

    def _get_filter(self):
        return self.filter

    def SetCollectorPageSize(self, ctx: CallContext, maxCount: int) -> None:  # noqa: N802,N803
        if maxCount is None or not 0 <= maxCount <= MAX_PAGE_SIZE:
            raise invalid_argument("maxCount", f"maxCount must be between 0 and {MAX_PAGE_SIZE}")
        with self.sim.registry.lock:
            self.page_size = int(maxCount)
            # The view stands before the new latest page again (govmomi reads
            # latestPage, then ReadPrevious from there, after setting the size).
            self.reset()
            self.sim.registry.touch(self)

    def RewindCollector(self, ctx: CallContext) -> None:  # noqa: N802
        with self.sim.registry.lock:
            self.cursor = 0

    def ResetCollector(self, ctx: CallContext) -> None:  # noqa: N802
        with self.sim.registry.lock:
            self.reset()

    def DestroyCollector(self, ctx: CallContext) -> None:  # noqa: N802
        self.sim.registry.remove(self.moid)


def owned_collectors(sim: Simulator, kind: str, owner: str | None) -> Iterable[Any]:
    return (c for c in sim.registry.all(kind) if c.owner_session == owner)


def check_collector_limit(sim: Simulator, kind: str, owner: str | None) -> None:
    """InvalidState, as vCenter answers, once a session has maxCollector collectors."""
    if sum(1 for _ in owned_collectors(sim, kind, owner)) >= MAX_COLLECTORS:
        raise vim.fault.InvalidState(
            msg=f"The session has {MAX_COLLECTORS} {kind}s already (maxCollector); destroy "
            "one first")
