"""The shared clients every operation works with, built once in ``init_host``.

:class:`Services` holds them: the vCenter session, the reader of cluster
states, VM operations, the image cache, DRS rules, the DRS runtime, Nova's
image API, the compute nodes and the cache of VM references. Operations
(``ops/``) receive it, or the parts of it they need, when the driver builds
them; none of them knows the driver.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from nova import exception
from nova.virt import driver as nova_driver

from nova_vsphere_driver import drs
from nova_vsphere_driver.drs_runtime.controller import ClusterDrs
from nova_vsphere_driver.vsphere import errors, hardware_versions
from nova_vsphere_driver.vsphere.cluster_cache import ClusterCache
from nova_vsphere_driver.vsphere.cluster_state import (
    ClusterRef,
    ClusterState,
    ClusterStateReader,
)
from nova_vsphere_driver.vsphere.images import ImageCache
from nova_vsphere_driver.vsphere.rules import ClusterRules
from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.spbm import SpbmClient
from nova_vsphere_driver.vsphere.vm import VmOperations

#: Namespace for the compute node UUIDs derived from node names.
NODE_UUID_NAMESPACE = uuid.UUID("4e9a4f5c-3f0b-4f57-9b2a-5d1b5a8d7f21")

T = TypeVar("T")


class Nodes(Mapping[str, ClusterRef]):
    """This nova-compute's compute nodes: node name -> cluster (a read-only mapping)."""

    def __init__(self, clusters: list[ClusterRef], vcenter_uuid: str) -> None:
        self.vcenter_uuid = vcenter_uuid
        self._by_name = {self.nodename(ref): ref for ref in clusters}

    def nodename(self, ref: ClusterRef) -> str:
        # The moref and vCenter UUID, not the name: unique across vCenters
        # and unchanged when an operator renames the cluster.
        return f"{ref.moref}.{self.vcenter_uuid}"

    def __getitem__(self, nodename: str) -> ClusterRef:
        return self._by_name[nodename]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def cluster(self, nodename: str) -> ClusterRef:
        """The cluster of ``nodename``; NovaException when this service does not manage it."""
        try:
            return self._by_name[nodename]
        except KeyError:
            raise exception.NovaException(
                message=f"node {nodename} is not managed by this nova-compute") from None

    def managed(self, cluster_moref: str) -> ClusterRef | None:
        """The managed cluster with moref ``cluster_moref``, or None."""
        return next((c for c in self._by_name.values() if c.moref == cluster_moref), None)

    def by_uuid(self) -> dict[str, str]:
        """Compute node UUID -> node name (the UUIDs are derived from the names)."""
        return {node_uuid(n): n for n in self._by_name}


def node_uuid(nodename: str) -> str:
    """The compute node UUID of ``nodename``: stable, and one per node."""
    return str(uuid.uuid5(NODE_UUID_NAMESPACE, nodename))


class VmRefs:
    """Instance UUID -> its VM's reference, cached; a stale reference is looked up again."""

    def __init__(self, vmops: VmOperations) -> None:
        self._vmops = vmops
        self._refs: dict[str, Any] = {}

    def find(self, instance, required: bool = True):
        """The VM of ``instance`` (InstanceNotFound, or None unless ``required``)."""
        cached = self._refs.get(instance.uuid)
        if cached is not None:
            return cached
        with errors.translated(instance):
            ref = self._vmops.find_by_uuid(instance.uuid)
        if ref is None:
            if required:
                raise exception.InstanceNotFound(instance_id=instance.uuid)
            return None
        self._refs[instance.uuid] = ref
        return ref

    def refind(self, instance, required: bool = True):
        """As :meth:`find`, asking vCenter rather than the cache."""
        self.forget(instance.uuid)
        return self.find(instance, required)

    def with_vm(self, instance, fn: Callable[[Any], T], required: bool = True) -> T | None:
        """Run ``fn(vm_ref)``; if the cached reference went stale, look up once more."""
        ref = self.find(instance, required)
        if ref is None:
            return None
        try:
            with errors.translated(instance):
                return fn(ref)
        except exception.InstanceNotFound:
            ref = self.refind(instance, required)
            if ref is None:
                return None
            with errors.translated(instance):
                return fn(ref)

    def remember(self, instance_uuid: str, ref) -> None:
        self._refs[instance_uuid] = ref

    def forget(self, instance_uuid: str) -> None:
        self._refs.pop(instance_uuid, None)


class ClusterStates:
    """Reads of cluster states: the one place operations get a ``ClusterState`` from.

    Managed clusters come from the cluster cache when there is one
    (``[vsphere] cluster_cache``: what changed since the last read), any
    other cluster from a full read. Remembers the newest read of each
    managed cluster, which a caller that may use a slightly older state
    (resource reporting between Nova's periodic updates) asks for instead of
    reading again.
    """

    def __init__(self, reader: ClusterStateReader, nodes: Nodes,
                 cache: ClusterCache | None = None) -> None:
        self._reader = reader
        self._nodes = nodes
        self.cache = cache
        #: nodename -> (when the read started, state) of the newest read.
        self._newest: dict[str, tuple[float, ClusterState]] = {}
        self._lock = threading.Lock()

    @property
    def page_size(self) -> int:
        """Objects per page of property collector reads ([vsphere] maximum_objects)."""
        return self._reader.page_size

    def read(self, nodename: str) -> ClusterState:
        """The managed cluster of ``nodename`` as vCenter has it now (faults translated)."""
        started = time.monotonic()
        with errors.translated():
            state = self._current(self._nodes.cluster(nodename))
        with self._lock:
            newest = self._newest.get(nodename)
            if newest is None or newest[0] < started:
                self._newest[nodename] = (started, state)
        return state

    def read_cluster(self, ref: ClusterRef) -> ClusterState:
        """Any cluster of this vCenter (vCenter's faults as they come)."""
        if self._nodes.managed(ref.moref) is not None:
            return self._current(ref)
        return self._reader.cluster_state(ref)

    def _current(self, ref: ClusterRef) -> ClusterState:
        if self.cache is not None:
            return self.cache.current(ref)
        return self._reader.cluster_state(ref)

    def newest(self, nodename: str, max_age: float) -> ClusterState | None:
        """The newest read of ``nodename`` if it started at most ``max_age`` seconds ago."""
        with self._lock:
            newest = self._newest.get(nodename)
        if newest is not None and time.monotonic() - newest[0] <= max_age:
            return newest[1]
        return None

    def find_clusters(self) -> list[ClusterRef]:
        """Every cluster of the vCenter."""
        return self._reader.find_clusters()

    def hardware_versions(self, ref: ClusterRef) -> dict[str, frozenset[str]] | None:
        """Virtual hardware version -> the cluster's hosts that can create VMs of it
        (None: vCenter does not say; faults translated)."""
        with errors.translated():
            return hardware_versions.creatable_versions(self._reader.session, ref)


def allocation_ratios(inventory: dict) -> dict[str, float]:
    """Nova's allocation ratios for VCPU, MEMORY_MB and DISK_GB (its precedence rules)."""
    # The static helper every ComputeDriver inherits; called here so that
    # operations get the same ratios without holding the driver.
    return nova_driver.ComputeDriver._get_allocation_ratios(inventory)


@dataclasses.dataclass(frozen=True)
class Services:
    """The shared clients of one driver (built once in init_host)."""

    session: VSphereSession
    states: ClusterStates
    vmops: VmOperations
    images: ImageCache
    rules: ClusterRules
    drs: ClusterDrs
    #: Nova's image API (Glance).
    image_api: Any
    nodes: Nodes
    vm_refs: VmRefs
    #: The storage policy service; None unless [vsphere] pbm_enabled.
    spbm: SpbmClient | None = None

    def limits(self) -> drs.Limits:
        """Per-host capacity limits at placement's allocation ratios (for our DRS)."""
        return self.drs.limits(allocation_ratios({}))
