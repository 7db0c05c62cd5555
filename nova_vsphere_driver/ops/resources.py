"""What each cluster offers Nova: the resource tracker's view and placement's inventory.

Nova's resource tracker calls ``get_available_resource`` and then
``update_provider_tree`` for each node, back to back: one read of the cluster
serves both. Between periodic updates (instance claims under Nova's resource
lock) a read at most ``[vsphere] cluster_read_max_age`` old is reused.
"""

from __future__ import annotations

import threading
import time

import nova.conf
from nova.virt import driver as nova_driver
from oslo_log import log as logging

from nova_vsphere_driver import HYPERVISOR_TYPE
from nova_vsphere_driver.provider_inventory import (
    CPU_TRAITS,
    ProviderInventory,
    build_provider_inventory,
)
from nova_vsphere_driver.services import Services, allocation_ratios, node_uuid
from nova_vsphere_driver.vsphere.cluster_state import ClusterState

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: How old a cluster read by get_available_resource may be for
#: update_provider_tree to use it instead of reading again.
RESOURCE_STATE_REUSE_SECONDS = 2.0


class ResourceReports:
    """get_available_resource and update_provider_tree for one driver's nodes."""

    def __init__(self, services: Services) -> None:
        self._services = services
        #: nodename -> (when, state) read by get_available_resource, for the
        #: update_provider_tree call that follows it.
        self._fresh: dict[str, tuple[float, ClusterState]] = {}
        self._lock = threading.Lock()

    def _reusable_state(self, nodename: str) -> ClusterState:
        """A cluster read update_provider_tree may use (see cluster_read_max_age)."""
        with self._lock:
            paired = self._fresh.pop(nodename, None)
        if paired is not None and time.monotonic() - paired[0] <= RESOURCE_STATE_REUSE_SECONDS:
            return paired[1]
        states = self._services.states
        recent = states.newest(nodename, CONF.vsphere.cluster_read_max_age)
        return recent if recent is not None else states.read(nodename)

    def _inventory(self, state: ClusterState, ratios: dict) -> ProviderInventory:
        opts = CONF.vsphere
        drs = self._services.drs
        # What one host can take now -- or, with make_room, after DRS has
        # moved a few VMs aside -- never the cluster's total.
        best = drs.max_unit(state, drs.limits(ratios),
                            make_room=CONF.vsphere_drs.mode == "builtin")
        return build_provider_inventory(
            state, host_max_vcpus=best.vcpus, host_max_memory_mb=best.memory_mb,
            reserved_host_cpus=opts.reserved_host_cpus,
            reserved_host_memory_mb=opts.reserved_host_memory_mb,
            reserved_disk_gb=nova_driver.ComputeDriver._get_reserved_host_disk_gb_from_config(),
            datastore_regex=opts.datastore_regex)

    def update_provider_tree(self, provider_tree, nodename: str) -> None:
        state = self._reusable_state(nodename)
        ratios = allocation_ratios(provider_tree.data(nodename).inventory)
        inv = self._inventory(state, ratios)
        if not inv.schedulable:
            LOG.warning("Cluster %s (%s) has no usable host: all its capacity is reserved "
                        "until a host is connected and out of maintenance", state.ref.name,
                        nodename)
        provider_tree.update_inventory(nodename, inv.to_placement(ratios))
        managed = set(CPU_TRAITS.values()) | {"HW_ARCH_X86_64"}
        traits = {t for t in provider_tree.data(nodename).traits if t not in managed}
        provider_tree.update_traits(nodename, traits | set(inv.traits))

    def available_resource(self, nodename: str) -> dict:
        state = self._services.states.read(nodename)
        with self._lock:
            self._fresh[nodename] = (time.monotonic(), state)
        inv = self._inventory(state, allocation_ratios({}))
        about = self._services.session.content.about
        version = [int(p) for p in (about.version or "0").split(".")[:3]]
        while len(version) < 3:
            version.append(0)
        return {
            "vcpus": inv.vcpus,
            "memory_mb": inv.memory_mb,
            "local_gb": inv.disk_gb,
            "vcpus_used": inv.vcpus_used,
            "memory_mb_used": inv.memory_mb_used,
            "local_gb_used": inv.disk_gb_used,
            "hypervisor_type": HYPERVISOR_TYPE,
            "hypervisor_version": version[0] * 1000000 + version[1] * 1000 + version[2],
            "hypervisor_hostname": nodename,
            # Per-node UUID (as get_nodenames_by_uuid): without it Nova gives
            # every node this host's one local UUID and the nodes clobber
            # each other's compute node record and resource provider.
            "uuid": node_uuid(nodename),
            "cpu_info": None,
            "numa_topology": None,
            "supported_instances": [("x86_64", "vmware", "hvm"), ("i686", "vmware", "hvm")],
        }
