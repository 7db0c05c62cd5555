"""A cluster's state as read from vCenter -> the DRS module's ClusterSnapshot.

"Snapshot" is the drs module's word for its immutable input; it has nothing
to do with VM snapshots in vCenter or instance snapshots in Glance.
"""

from __future__ import annotations

from nova_vsphere_driver import drs
from nova_vsphere_driver.vsphere.cluster_state import ClusterState, EsxiHostState, VmState


def _host_state(host: EsxiHostState) -> drs.HostState:
    if not host.connected:
        return drs.HostState.DISCONNECTED
    if host.in_maintenance:
        return drs.HostState.MAINTENANCE
    if host.entering_maintenance:
        return drs.HostState.ENTERING_MAINTENANCE
    return drs.HostState.CONNECTED


def _power_state(vm: VmState) -> drs.PowerState:
    if vm.power_state == drs.PowerState.ON.value:
        return drs.PowerState.ON
    if vm.managed_by_nova:
        # A stopped Nova instance keeps its placement allocation and may be
        # started at any time: its memory stays committed on its host. As a
        # powered-on VM with no demand it counts for capacity, not for load.
        return drs.PowerState.ON
    if vm.power_state == drs.PowerState.SUSPENDED.value:
        return drs.PowerState.SUSPENDED
    return drs.PowerState.OFF


def _vm(vm: VmState) -> drs.VM:
    running = vm.power_state == drs.PowerState.ON.value
    return drs.VM(
        id=vm.moref, name=vm.name, host=vm.host, vcpus=max(vm.vcpus, 1),
        memory_mb=vm.memory_mb,
        cpu_demand_mhz=float(vm.cpu_usage_mhz) if running else 0.0,
        # vCenter reports 0 active memory until guest statistics arrive:
        # then the configured memory is the honest estimate.
        active_memory_mb=(vm.memory_active_mb or None) if running else 0,
        power_state=_power_state(vm), instance_uuid=vm.instance_uuid,
        datastores=frozenset(vm.datastores))


def to_cluster_snapshot(state: ClusterState, *, reserved_host_cpus: int = 0,
                reserved_host_memory_mb: int = 0,
                previous: tuple[ClusterState, drs.ClusterSnapshot] | None = None,
                ) -> drs.ClusterSnapshot:
    """The DRS view of ``state``; per-host reservations come from configuration.

    Dedicated vSphere HA failover hosts are left out: vSphere HA keeps them
    free, so they are never placement or balancing targets.

    ``previous``: an earlier state of the cluster and its snapshot. The
    cluster cache keeps a VM's VmState object until the VM changes, so the
    DRS VM converted from the very same object is reused: a cluster where
    100 of 10,000 VMs changed converts 100.
    """
    hosts = tuple(
        drs.Host(id=h.moref, name=h.name, cpu_mhz_per_core=h.mhz, cores=h.cores,
                 threads=h.threads, memory_mb=h.memory_mb,
                 reserved_cpu_mhz=reserved_host_cpus * h.mhz,
                 reserved_memory_mb=reserved_host_memory_mb, state=_host_state(h),
                 datastores=frozenset(h.datastores))
        for h in state.hosts if not h.failover)
    known = {h.id for h in hosts}
    if previous is None:
        vms = tuple(_vm(vm) for vm in state.vms if vm.host in known)
    else:
        before = {vm.moref: vm for vm in previous[0].vms}
        converted = previous[1].vm_by_id
        vms = tuple(converted[vm.moref] if before.get(vm.moref) is vm and vm.moref in converted
                    else _vm(vm) for vm in state.vms if vm.host in known)
    vm_groups = tuple(drs.VMGroup(g.name, g.members) for g in state.groups if g.kind == "vm")
    host_groups = tuple(drs.HostGroup(g.name, g.members) for g in state.groups
                        if g.kind == "host")
    group_names = {g.name for g in vm_groups}, {g.name for g in host_groups}
    vm_vm_rules, vm_host_rules = [], []
    for rule in state.rules:
        if not rule.enabled:
            continue
        if rule.kind in ("affinity", "anti-affinity"):
            vm_vm_rules.append(drs.VMVMRule(rule.name, rule.vms, rule.kind == "affinity",
                                            rule.mandatory))
            continue
        if rule.vm_group not in group_names[0]:
            continue
        for host_group, affine in ((rule.affine_host_group, True),
                                   (rule.anti_affine_host_group, False)):
            if host_group and host_group in group_names[1]:
                vm_host_rules.append(drs.VMHostRule(rule.name, rule.vm_group, host_group,
                                                    affine, rule.mandatory))
    return drs.ClusterSnapshot(hosts=hosts, vms=vms, vm_groups=vm_groups,
                               host_groups=host_groups, vm_vm_rules=tuple(vm_vm_rules),
                               vm_host_rules=tuple(vm_host_rules), name=state.ref.name)
