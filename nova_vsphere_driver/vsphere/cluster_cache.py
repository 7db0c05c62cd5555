"""Each managed cluster's state, kept current from vCenter's update stream.

A full read of a cluster costs what the cluster holds; this cache costs what
changed since it was last asked. It owns one PropertyCollector
(``CreatePropertyCollector``) with one filter per cluster over what a full
read reads (:meth:`ClusterStateReader.state_spec`: the cluster's
configuration, its hosts and VMs, the hosts' datastores, networks and
running tasks), and keeps each cluster's :class:`ClusterContents` from
``WaitForUpdatesEx``: version strings, ``maxObjectUpdates`` pages with
truncated sets, objects entering and leaving (VMs created, destroyed or
vMotioned in or out, hosts added or removed, tasks started and done) and
modified properties. The first update set of a filter holds every object it
selects: that is the full read, paged and decoded by pyVmomi.

It starts over with a new collector and one full read when vCenter answers
``InvalidCollectorVersion``, when the collector is gone (the session was
lost: vCenter destroys a session's collectors with it; vCenter restarted),
or -- for one cluster -- when its filter reports its start objects missing.
It never serves a state it could not bring up to date: a failed update
raises.

Threading model: no thread of its own. The thread that asks for a state
(a Nova periodic task, a claim, a spawn, a DRS pass) makes one
``WaitForUpdatesEx`` call with ``maxWaitSeconds = 0`` -- what changed since
the last version, without waiting for more -- and applies it, for every
cluster at once (one collector, one version). Such calls go one at a time;
a thread arriving while one is in flight waits for it and then makes its
own only if that one started before it arrived (it must see what happened
before it asked). Waiting costs one round trip, not a full read, once the
first read is done (in ``init_host``): no claim under Nova's resource lock
waits on a full read in steady state. The same code runs under Nova's
native threads and under eventlet (whose monkey patching makes the lock and
pyVmomi's sockets green); nothing here imports eventlet.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from oslo_log import log as logging
from oslo_vmware import exceptions as vexc

from nova_vsphere_driver.vsphere.cluster_state import (
    PC,
    ClusterContents,
    ClusterRef,
    ClusterState,
    ClusterStateReader,
    object_kind,
)

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class CacheStats:
    """What the cache did (for operators' logs, tests and benchmarks)."""

    #: Full reads: a new collector (start, InvalidCollectorVersion, lost
    #: session) or a cluster's new filter.
    full_reads: int = 0
    #: WaitForUpdatesEx calls.
    update_calls: int = 0
    #: Object updates applied (enter, modify, leave).
    object_updates: int = 0


class _Watched:
    """One cluster the cache keeps: its contents and its filter."""

    def __init__(self, ref: ClusterRef) -> None:
        self.ref = ref
        self.contents = ClusterContents(ref)
        self.filter: Any = None
        self.view: Any = None
        #: Its filter's first update set has arrived in full.
        self.complete = False


class ClusterCache:
    """The current state of each watched cluster, from one collector's update stream."""

    def __init__(self, reader: ClusterStateReader, page_size: int | None = None) -> None:
        self._reader = reader
        self._client = reader.client
        self.page_size = page_size or reader.page_size
        self.stats = CacheStats()
        self._clusters: dict[str, _Watched] = {}
        self._by_filter: dict[str, _Watched] = {}
        self._collector: Any = None
        self._version = ""
        # Guards everything above; held while updates are applied, never
        # during a vCenter call.
        self._lock = threading.Condition()
        self._fetching = False
        self._started = 0  # fetches started so far
        self._fresh_from = 0  # the start number of the newest fetch that succeeded

    def current(self, cluster: ClusterRef) -> ClusterState:
        """``cluster`` as vCenter has it now: what changed since the last call applied."""
        with self._lock:
            watched = self._clusters.get(cluster.moref)
            if watched is None:
                watched = self._clusters[cluster.moref] = _Watched(cluster)
            arrived = self._started
            while True:
                if self._fresh_from > arrived and watched.complete:
                    return watched.contents.state()
                if not self._fetching:
                    break
                self._lock.wait()
            self._fetching = True
            self._started += 1
            number = self._started
        succeeded = False
        try:
            self._fetch()
            succeeded = True
        finally:
            with self._lock:
                self._fetching = False
                if succeeded:
                    self._fresh_from = number
                self._lock.notify_all()
        with self._lock:
            return watched.contents.state()

    # -- fetching (one thread at a time: the one that set _fetching) ----------------------

    def _fetch(self) -> None:
        try:
            self._bring_up_to_date()
        except vexc.ManagedObjectNotFoundException as exc:
            # The collector (or a view or filter) is gone: the session was
            # lost, or vCenter restarted. Start over with one full read.
            LOG.info("vCenter no longer has the cluster cache's collector (%s); reading "
                     "the clusters again", exc)
            self._reset()
            self._bring_up_to_date()
        except vexc.VimFaultException as exc:
            if "InvalidCollectorVersion" not in (exc.fault_list or []):
                raise
            LOG.warning("vCenter refused the cluster cache's update version; reading the "
                        "clusters again")
            self._reset()
            self._bring_up_to_date()

    def _bring_up_to_date(self) -> None:
        if self._collector is None:
            manager = self._reader.service("PropertyCollector")
            self._collector = self._client.call(manager.CreatePropertyCollector,
                                                "CreatePropertyCollector")
            self._version = ""
        with self._lock:
            unfiltered = [w for w in self._clusters.values() if w.filter is None]
        for watched in unfiltered:
            self._add_filter(watched)
        options = PC.WaitOptions(maxWaitSeconds=0, maxObjectUpdates=self.page_size)
        collector = self._collector
        while True:
            update = self._client.call(
                lambda: collector.WaitForUpdatesEx(self._version, options), "WaitForUpdatesEx")
            self.stats.update_calls += 1
            if update is None:
                break
            broken = self._apply(update)
            self._version = update.version
            for watched in broken:
                self._refilter(watched)
            if not update.truncated and not broken:
                break
        with self._lock:
            for watched in self._clusters.values():
                watched.complete = watched.filter is not None

    def _add_filter(self, watched: _Watched) -> None:
        """A filter for ``watched``: its first update set is a full read of the cluster."""
        view = self._reader.new_view(watched.ref)
        spec = self._reader.state_spec(watched.ref, view)
        collector = self._collector
        # partialUpdates False: a changed property arrives whole.
        flt = self._client.call(lambda: collector.CreateFilter(spec, False), "CreateFilter")
        with self._lock:
            watched.view, watched.filter = view, flt
            watched.contents = ClusterContents(watched.ref)
            watched.complete = False
            self._by_filter[flt._moId] = watched
        self.stats.full_reads += 1

    def _refilter(self, watched: _Watched) -> None:
        """A filter whose start objects went missing: replace it (and its view)."""
        LOG.warning("The cluster cache's filter of cluster %s lost its objects; reading the "
                    "cluster again", watched.ref.name)
        old_filter, old_view = watched.filter, watched.view
        with self._lock:
            self._by_filter.pop(old_filter._moId, None)
            watched.filter = None
        try:
            self._client.call(old_filter.DestroyPropertyFilter, "DestroyPropertyFilter")
        except vexc.VimException as exc:
            LOG.debug("Destroying a broken filter failed: %s", exc)
        self._destroy(None, [old_view])
        self._add_filter(watched)

    def _apply(self, update) -> list[_Watched]:
        """Apply one update set; the watched clusters whose filters broke."""
        broken = []
        count = 0
        with self._lock:
            for filter_update in update.filterSet or ():
                watched = self._by_filter.get(filter_update.filter._moId)
                if watched is None:
                    continue
                contents = watched.contents
                for obj in filter_update.objectSet or ():
                    count += 1
                    moid = obj.obj._moId
                    if obj.kind == "leave":
                        contents.drop(moid)
                        continue
                    changes = [(c.name, None if c.op in ("remove", "indirectRemove") else c.val)
                               for c in obj.changeSet or ()]
                    if obj.kind == "enter":
                        contents.put(object_kind(obj.obj), moid, changes)
                    else:
                        contents.update(object_kind(obj.obj), moid, changes)
                if filter_update.missingSet:
                    broken.append(watched)
            self.stats.object_updates += count
        return broken

    def _reset(self) -> None:
        """A new collector: every cluster's filter made again, every cluster read again."""
        with self._lock:
            old, self._collector = self._collector, None
            views = [w.view for w in self._clusters.values() if w.view is not None]
            for watched in self._clusters.values():
                watched.filter = watched.view = None
                watched.complete = False
            self._by_filter.clear()
            self._version = ""
        self._destroy(old, views)

    def _destroy(self, collector: Any, views: list) -> None:
        """Best effort: after a lost session vCenter destroyed them already."""
        for obj, method in [(collector, "DestroyPropertyCollector"),
                            *[(v, "DestroyView") for v in views]]:
            if obj is None:
                continue
            try:
                self._client.call(getattr(obj, method), method)
            except vexc.VimException as exc:
                LOG.debug("%s of %s failed (gone already?): %s", method, obj._moId, exc)
