"""The giant-hypervisor view: a cluster's host states -> placement inventory and traits.

One compute node (one resource provider) per cluster: totals over its usable
hosts, ``max_unit`` from what one host can take, CPU traits common to all.
What vSphere HA admission control holds back for failovers is not offered:
dedicated failover hosts are not usable hosts; the largest N hosts' capacity
or a percentage of the cluster's is reserved, and no VM larger than the
memory HA still admits fits (``max_unit``).
"""

from __future__ import annotations

import dataclasses
import math

import os_resource_classes as orc
import os_traits

from nova_vsphere_driver.datastore_selection import GB, matching_datastores
from nova_vsphere_driver.vsphere.cluster_state import (
    ClusterState,
    DatastoreState,
    EsxiHostState,
    VmState,
)

#: cpuid feature (as vCenter's featureCapability key suffix) -> os-traits name.
CPU_TRAITS = {
    "SSE41": os_traits.HW_CPU_X86_SSE41, "SSE42": os_traits.HW_CPU_X86_SSE42,
    "SSSE3": os_traits.HW_CPU_X86_SSSE3, "AES": os_traits.HW_CPU_X86_AESNI,
    "AVX": os_traits.HW_CPU_X86_AVX, "AVX2": os_traits.HW_CPU_X86_AVX2,
    "AVX512F": os_traits.HW_CPU_X86_AVX512F, "FMA": os_traits.HW_CPU_X86_FMA3,
    "BMI1": os_traits.HW_CPU_X86_BMI, "BMI2": os_traits.HW_CPU_X86_BMI2,
    "SHA": os_traits.HW_CPU_X86_SHA, "F16C": os_traits.HW_CPU_X86_F16C,
    "POPCNT": os_traits.HW_CPU_X86_ABM, "PCLMULQDQ": os_traits.HW_CPU_X86_CLMUL,
    "MPX": os_traits.HW_CPU_X86_MPX, "SVM": os_traits.HW_CPU_X86_SVM,
    "VMX": os_traits.HW_CPU_X86_VMX,
}


@dataclasses.dataclass(frozen=True)
class ProviderInventory:
    """A cluster as one hypervisor: totals over usable hosts, per-host max_unit.

    ``max_unit`` is the largest single request the best host can take now
    (its free capacity), never the biggest host's total: placement must not
    pick a cluster in which no single ESXi host fits the flavor.
    """

    vcpus: int
    vcpus_reserved: int
    vcpus_max_unit: int
    vcpus_used: int
    memory_mb: int
    memory_mb_reserved: int
    memory_mb_max_unit: int
    memory_mb_used: int
    disk_gb: int
    disk_gb_reserved: int
    disk_gb_max_unit: int
    disk_gb_used: int
    usable_hosts: int
    traits: frozenset[str]
    datastores: tuple[DatastoreState, ...]

    @property
    def schedulable(self) -> bool:
        return self.usable_hosts > 0 and self.vcpus > 0 and self.memory_mb > 0

    def to_placement(self, ratios: dict[str, float]) -> dict[str, dict]:
        """Inventory as ``update_provider_tree`` sets it.

        With no usable host (or no usable datastore, for DISK_GB) the node
        keeps its inventory records -- placement refuses to delete inventory
        that instances hold allocations against, and needs total >= 1 -- but
        reserves all of it, so nothing new lands there.
        """
        def record(total, reserved, max_unit, rc, usable=True):
            total = max(total, 1)
            if not (self.schedulable and usable):
                reserved, max_unit = total, 1
            return {"total": total, "reserved": min(reserved, total), "min_unit": 1,
                    "max_unit": max(1, min(max_unit, total)), "step_size": 1,
                    "allocation_ratio": ratios[rc]}

        return {
            orc.VCPU: record(self.vcpus, self.vcpus_reserved, self.vcpus_max_unit, orc.VCPU),
            orc.MEMORY_MB: record(self.memory_mb, self.memory_mb_reserved,
                                  self.memory_mb_max_unit, orc.MEMORY_MB),
            orc.DISK_GB: record(self.disk_gb, self.disk_gb_reserved, self.disk_gb_max_unit,
                                orc.DISK_GB, usable=self.disk_gb > 0),
        }


def ha_held_back(state: ClusterState, usable: list[EsxiHostState]) -> tuple[int, int]:
    """(vCPUs, memory MB) vSphere HA admission control holds back for failovers.

    Failover level N: the N largest usable hosts' threads and memory (each
    resource's largest); a percentage: that share of the usable hosts'.
    Dedicated failover hosts hold nothing back here: they are not usable.
    """
    ha = state.ha
    if ha is None or ha.policy == "dedicated" or not usable:
        return 0, 0
    threads = sorted((h.threads for h in usable), reverse=True)
    memory = sorted((h.memory_mb for h in usable), reverse=True)
    if ha.policy == "percentage":
        return (math.ceil(sum(threads) * ha.cpu_percent / 100),
                math.ceil(sum(memory) * ha.memory_percent / 100))
    return sum(threads[:ha.failover_level]), sum(memory[:ha.failover_level])


def _committed(vm: VmState) -> bool:
    # Running, or a stopped Nova instance: it keeps its allocation and may start.
    return vm.power_state == "poweredOn" or vm.managed_by_nova


def build_provider_inventory(state: ClusterState, *, host_max_vcpus: int, host_max_memory_mb: int,
                    reserved_host_cpus: int, reserved_host_memory_mb: int,
                    reserved_disk_gb: int, datastore_regex: str | None) -> ProviderInventory:
    """Totals over the usable hosts; ``host_max_*`` is what one host can take (DRS)."""
    usable = state.usable_hosts()
    on_usable = {h.moref for h in usable}
    vms = [vm for vm in state.vms if vm.host in on_usable]
    stores = matching_datastores(state, datastore_regex, usable)
    ha_vcpus, ha_memory_mb = ha_held_back(state, usable)
    memory_mb = sum(h.memory_mb for h in usable)
    memory_reserved = reserved_host_memory_mb * len(usable) + ha_memory_mb
    if state.ha is not None:
        # HA admits a power-on only while the running VMs' memory fits what it
        # does not hold back: no larger VM fits the cluster, whatever one host has.
        headroom = memory_mb - memory_reserved - sum(vm.memory_mb for vm in vms
                                                      if _committed(vm))
        host_max_memory_mb = min(host_max_memory_mb, max(headroom, 0))
    traits = {os_traits.HW_ARCH_X86_64} if usable else set()
    if usable:
        common = frozenset.intersection(*(h.cpu_features for h in usable))
        traits |= {CPU_TRAITS[f] for f in common if f in CPU_TRAITS}
    return ProviderInventory(
        vcpus=sum(h.threads for h in usable),
        vcpus_reserved=reserved_host_cpus * len(usable) + ha_vcpus,
        vcpus_max_unit=host_max_vcpus if usable else 0,
        vcpus_used=sum(vm.vcpus for vm in vms),
        memory_mb=memory_mb,
        memory_mb_reserved=memory_reserved,
        # Memory overcommit lets a host take more VMs, never one VM larger
        # than the host (as vcpus are bounded by its threads).
        memory_mb_max_unit=min(host_max_memory_mb,
                               max(h.memory_mb - reserved_host_memory_mb for h in usable))
        if usable else 0,
        memory_mb_used=sum(vm.memory_mb for vm in vms),
        disk_gb=sum(d.capacity_bytes for d in stores) // GB,
        disk_gb_reserved=reserved_disk_gb,
        disk_gb_max_unit=max((d.free_bytes for d in stores), default=0) // GB,
        disk_gb_used=sum(d.capacity_bytes - d.free_bytes for d in stores) // GB,
        usable_hosts=len(usable),
        traits=frozenset(traits),
        datastores=tuple(stores),
    )
