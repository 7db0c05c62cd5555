"""vSphere HA admission control: a cluster's ``dasConfig``, and power-ons as HA admits them.

With HA and its admission control enabled, vCenter refuses to power on (or
move in) a VM when the cluster could then no longer restart its VMs after
the failures it is configured to tolerate
(``InsufficientFailoverResourcesFault``). The three policies vCenter offers:

* failover level N (``ClusterFailoverLevelAdmissionControlPolicy``, or the
  resource policy with ``autoComputePercentages``): the capacity of the N
  largest usable hosts is held back;
* a percentage of the cluster's CPU and memory
  (``ClusterFailoverResourcesAdmissionControlPolicy``);
* dedicated failover hosts (``ClusterFailoverHostAdmissionControlPolicy``):
  no VM powers on or moves onto them.

Memory counts the running VMs' configured memory and CPU their
reservations, as the simulator's host admission does. A leaf module: it
reads the cluster and host objects it is given and imports none of them.
"""

from __future__ import annotations

import math
from typing import Any

from pyVmomi import vim

from nova_vsphere_driver.simulator.vim_faults import invalid_argument

POLICIES = ("failover_hosts", "percentage", "dedicated")


def disabled() -> vim.cluster.DasConfigInfo:
    return vim.cluster.DasConfigInfo(enabled=False, admissionControlEnabled=False)


def from_inventory(data: dict | None, hosts: dict[str, Any],
                   where: str) -> vim.cluster.DasConfigInfo:
    """``ha:`` of an inventory cluster -> its DasConfigInfo (ValueError naming ``where``).

    ``{enabled: true, admission: {policy: failover_hosts, failover_level: 1}}``,
    ``{... policy: percentage, cpu_percent: 25, memory_percent: 25}`` or
    ``{... policy: dedicated, hosts: [esx-a4]}``; without ``admission`` HA
    runs without admission control.
    """
    if not data or not data.get("enabled", True):
        return disabled()
    admission = data.get("admission")
    config = vim.cluster.DasConfigInfo(enabled=True, hostMonitoring="enabled",
                                       admissionControlEnabled=bool(admission))
    if not admission:
        return config
    policy = admission.get("policy")
    if policy == "failover_hosts":
        level = int(admission.get("failover_level", 1))
        config.admissionControlPolicy = vim.cluster.FailoverLevelAdmissionControlPolicy(
            failoverLevel=level)
        config.failoverLevel = level
    elif policy == "percentage":
        config.admissionControlPolicy = vim.cluster.FailoverResourcesAdmissionControlPolicy(
            cpuFailoverResourcesPercent=int(admission.get("cpu_percent", 25)),
            memoryFailoverResourcesPercent=int(admission.get("memory_percent", 25)),
            autoComputePercentages=False)
    elif policy == "dedicated":
        names = admission.get("hosts") or []
        unknown = [n for n in names if n not in hosts]
        if not names or unknown:
            raise ValueError(f"{where}: dedicated failover hosts must name hosts of the "
                             f"cluster (unknown: {unknown or 'none given'})")
        config.admissionControlPolicy = vim.cluster.FailoverHostAdmissionControlPolicy(
            failoverHosts=[hosts[n].ref for n in names], failoverLevel=len(names))
    else:
        raise ValueError(f"{where}: ha.admission.policy must be one of {', '.join(POLICIES)}")
    return config


def merged(current: vim.cluster.DasConfigInfo, spec: vim.cluster.DasConfigInfo,
           host_ids: set[str]) -> vim.cluster.DasConfigInfo:
    """``spec`` (a ReconfigureComputeResource_Task dasConfig) applied over ``current``."""
    config = vim.cluster.DasConfigInfo(
        enabled=spec.enabled if spec.enabled is not None else current.enabled,
        hostMonitoring=spec.hostMonitoring or current.hostMonitoring,
        admissionControlEnabled=spec.admissionControlEnabled
        if spec.admissionControlEnabled is not None else current.admissionControlEnabled,
        admissionControlPolicy=spec.admissionControlPolicy or current.admissionControlPolicy,
        failoverLevel=spec.failoverLevel or current.failoverLevel)
    policy = config.admissionControlPolicy
    if isinstance(policy, vim.cluster.FailoverHostAdmissionControlPolicy):
        if any(r._moId not in host_ids for r in policy.failoverHosts or []):
            raise invalid_argument("dasConfig.admissionControlPolicy.failoverHosts",
                                   "a failover host must be a host of the cluster")
    if isinstance(policy, vim.cluster.FailoverResourcesAdmissionControlPolicy):
        for name in ("cpuFailoverResourcesPercent", "memoryFailoverResourcesPercent"):
            if not 0 <= int(getattr(policy, name) or 0) <= 100:
                raise invalid_argument(f"dasConfig.admissionControlPolicy.{name}")
    return config


def failover_host_ids(config: vim.cluster.DasConfigInfo) -> set[str]:
    policy = config.admissionControlPolicy if _enforced(config) else None
    if isinstance(policy, vim.cluster.FailoverHostAdmissionControlPolicy):
        return {r._moId for r in policy.failoverHosts or []}
    return set()


def _enforced(config: vim.cluster.DasConfigInfo) -> bool:
    return bool(config.enabled and config.admissionControlEnabled
                and config.admissionControlPolicy is not None)


def check(cluster: Any, vm: Any, host: Any, memory_mb: int) -> None:
    """Raise InsufficientFailoverResourcesFault when HA would not admit ``vm`` (needing
    ``memory_mb``) running on ``host`` of ``cluster``."""
    config = cluster.das_config
    if not _enforced(config):
        return
    policy = config.admissionControlPolicy
    if isinstance(policy, vim.cluster.FailoverHostAdmissionControlPolicy):
        if host.moid in failover_host_ids(config):
            raise _fault(f"{host.name} is a dedicated failover host of cluster {cluster.name}: "
                         "vSphere HA keeps it free for failovers")
        return
    usable = [h for h in cluster.hosts if h.usable()]
    memory = sorted((h.memory_mb for h in usable), reverse=True)
    cpu = sorted((h.cpu_capacity_mhz() for h in usable), reverse=True)
    if isinstance(policy, vim.cluster.FailoverResourcesAdmissionControlPolicy) and \
            not policy.autoComputePercentages:
        memory_held = math.ceil(sum(memory) * (policy.memoryFailoverResourcesPercent or 0) / 100)
        cpu_held = math.ceil(sum(cpu) * (policy.cpuFailoverResourcesPercent or 0) / 100)
    else:
        level = int(getattr(policy, "failoverLevel", None) or config.failoverLevel or 1)
        memory_held, cpu_held = sum(memory[:level]), sum(cpu[:level])
    running = [v for h in usable for v in h.vms if v.powered_on and v is not vm]
    memory_used = sum(v.memory_mb for v in running) + memory_mb
    cpu_used = sum(v.cpu_reservation_mhz() for v in running) + vm.cpu_reservation_mhz()
    if memory_used > sum(memory) - memory_held or cpu_used > sum(cpu) - cpu_held:
        raise _fault(f"vSphere HA admission control of cluster {cluster.name}: "
                     f"{memory_used} MB of {sum(memory) - memory_held} MB and {cpu_used} MHz of "
                     f"{sum(cpu) - cpu_held} MHz would be in use with {memory_held} MB and "
                     f"{cpu_held} MHz held for failover")


def _fault(message: str) -> vim.fault.InsufficientFailoverResourcesFault:
    return vim.fault.InsufficientFailoverResourcesFault(msg=f"Insufficient resources to "
                                                        f"satisfy configured failover level "
                                                        f"for vSphere HA: {message}")
