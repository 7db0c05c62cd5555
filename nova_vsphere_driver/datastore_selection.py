"""Which datastores of a cluster an instance's files may go to, and which one they do.

Pure functions over a ``ClusterState``: the datastores matching ``[vsphere]
datastore_regex`` that usable hosts mount, those with room for a disk, and
the one a new VM's files go to (most free space, mounted by its host).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nova import exception

from nova_vsphere_driver.vsphere.cluster_state import (
    ClusterState,
    DatastoreState,
    EsxiHostState,
)

GB = 1024 ** 3


def matching_datastores(state: ClusterState, regex: str | None,
                        hosts: list[EsxiHostState] | None = None) -> list[DatastoreState]:
    """Accessible datastores mounted by the given (default: usable) hosts and matching regex."""
    hosts = state.usable_hosts() if hosts is None else hosts
    mounted = {ds for h in hosts for ds in h.datastores}
    pattern = re.compile(regex) if regex else None
    return [d for d in state.datastores
            if d.moref in mounted and d.accessible
            and (pattern is None or pattern.search(d.name))]


def datastores_with_room(state: ClusterState, regex: str | None,
                         need_bytes: int) -> list[DatastoreState]:
    """Usable datastores matching ``regex`` with ``need_bytes`` free.

    Raises ComputeResourcesUnavailable (Nova may reschedule) when none has.
    """
    stores = [d for d in matching_datastores(state, regex) if d.free_bytes >= need_bytes]
    if not stores:
        raise exception.ComputeResourcesUnavailable(
            reason=f"cluster {state.ref.name}: no datastore matching [vsphere] "
            f"datastore_regex has {need_bytes / GB:.1f} GiB free")
    return stores


def pick_datastore(stores: Sequence[DatastoreState],
                   host: EsxiHostState | None) -> DatastoreState:
    """The datastore of ``stores`` with most free space (mounted by ``host`` if given)."""
    if host is not None:
        mounted = [d for d in stores if d.moref in host.datastores]
        stores = mounted or stores
    return max(stores, key=lambda d: (d.free_bytes, d.name))
