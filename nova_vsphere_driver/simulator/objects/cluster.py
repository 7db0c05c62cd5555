"""ClusterComputeResource and its ResourcePool, DRS configuration and rules."""

from __future__ import annotations

import itertools
import uuid
from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator import ha_admission
from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedEntity, ManagedObject
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.host import HostSystem
    from nova_vsphere_driver.simulator.objects.virtual_machine import VirtualMachine
    from nova_vsphere_driver.simulator.service import Simulator

FULLY_AUTOMATED = vim.cluster.DrsConfigInfo.DrsBehavior.fullyAutomated


def _default_drs_config(enabled: bool = False,
                        behavior: str = FULLY_AUTOMATED) -> vim.cluster.DrsConfigInfo:
    return vim.cluster.DrsConfigInfo(enabled=enabled, defaultVmBehavior=behavior,
                                     vmotionRate=3, enableVmBehaviorOverrides=True)


class ResourcePool(ManagedEntity):
    vim_type = vim.ResourcePool
    moid_prefix = "resgroup"

    def __init__(self, sim: Simulator, name: str, parent: ManagedEntity,
                 owner: ClusterComputeResource) -> None:
        super().__init__(sim, name, parent)
        self.owner = owner
        self.vms: list[VirtualMachine] = []
        self.pools: list[ResourcePool] = []

    def child_entities(self) -> list[ManagedEntity]:
        return [*self.pools, *(vm for vm in self.vms if not vm.is_template)]

    def _get_owner(self):
        return self.owner.ref

    def _get_vm(self):
        # A template belongs to no pool on vCenter (it keeps its host).
        return [vm.ref for vm in self.vms if not vm.is_template]

    def _get_resourcePool(self):  # noqa: N802
        return [p.ref for p in self.pools]

    def _allocation(self) -> vim.ResourceAllocationInfo:
        return vim.ResourceAllocationInfo(
            reservation=0, expandableReservation=True, limit=-1,
            shares=vim.SharesInfo(level="normal", shares=4000))

    def _get_config(self):
        return vim.ResourceConfigSpec(entity=self.ref, cpuAllocation=self._allocation(),
                                      memoryAllocation=self._allocation())

    def _get_runtime(self):
        hosts = self.owner.usable_hosts()
        mem_used = sum(vm.memory_mb for vm in self.vms if vm.powered_on) * 1024 * 1024
        mem_total = sum(h.memory_mb for h in hosts) * 1024 * 1024
        cpu_used = sum(vm.cpu_usage_mhz() for vm in self.vms if vm.powered_on)
        cpu_total = sum(h.cpu_capacity_mhz() for h in hosts)
        usage = vim.ResourcePool.ResourceUsage
        return vim.ResourcePool.RuntimeInfo(
            memory=usage(reservationUsed=0, reservationUsedForVm=0, unreservedForPool=mem_total,
                         unreservedForVm=mem_total, overallUsage=mem_used,
                         maxUsage=mem_total),
            cpu=usage(reservationUsed=0, reservationUsedForVm=0, unreservedForPool=cpu_total,
                      unreservedForVm=cpu_total, overallUsage=cpu_used, maxUsage=cpu_total),
            overallStatus=vim.ManagedEntity.Status.green,
        )

    # -- import (objects/vapp_import.py) ----------------------------------------------

    def ImportVApp(self, ctx: CallContext, spec, folder=None, host=None):  # noqa: N802
        """A new VM from ``spec`` and an HttpNfcLease to upload its disks through."""
        return self.sim.factory.import_vapp(self, spec, folder, host).ref


class ClusterComputeResource(ManagedEntity):
    vim_type = vim.ClusterComputeResource
    moid_prefix = "domain-c"
    #: Its EnvironmentBrowser, made with it (None in a state saved before clusters had one).
    environment_browser: ManagedObject | None = None

    def __init__(self, sim: Simulator, name: str, parent: ManagedEntity, *,
                 drs_enabled: bool = False, drs_behavior: str = "fullyAutomated") -> None:
        super().__init__(sim, name, parent)
        self.hosts: list[HostSystem] = []
        #: The root pool, made with the cluster (factory.ObjectFactory.cluster).
        self.resource_pool: ResourcePool
        self.drs_config = _default_drs_config(drs_enabled, drs_behavior)
        #: vSphere HA (simulator/ha_admission.py admits power-ons by it).
        self.das_config = ha_admission.disabled()
        self.rules: list[vim.cluster.RuleInfo] = []
        self.num_vmotions = 0
        self.groups: list[vim.cluster.GroupInfo] = []
        self._rule_keys = itertools.count(1)

    # -- state -----------------------------------------------------------------

    @property
    def drs_enabled(self) -> bool:
        return bool(self.drs_config.enabled)

    @property
    def drs_automated(self) -> bool:
        return self.drs_config.defaultVmBehavior == FULLY_AUTOMATED

    def usable_hosts(self) -> list[HostSystem]:
        return [h for h in self.hosts if h.usable()]

    def vms(self) -> list[VirtualMachine]:
        return [vm for host in self.hosts for vm in host.vms]

    def child_entities(self) -> list[ManagedEntity]:
        return [*self.hosts, self.resource_pool]

    # -- simulated vCenter DRS (only when drsConfig.enabled) ----------------------

    def vcenter_drs_pick_host(self, vm: VirtualMachine, exclude: HostSystem | None = None,
                              datastores: list | None = None) -> HostSystem | None:
        """vCenter DRS stand-in: the usable host with the most free memory.

        Only hosts that see the VM's datastores (``datastores`` when its files
        are moving there), admit it (when it runs) and keep the cluster's
        enabled mandatory rules are candidates.
        """
        best, best_free = None, None
        needed = set(vm.datastores if datastores is None else datastores)
        for host in self.usable_hosts():
            if host is exclude or not needed <= set(host.datastores):
                continue
            if not self.rules_allow(vm, host):
                continue
            if getattr(vm, "powered_on", True):
                try:
                    host.check_admission(vm)
                except vim.fault.VimFault:
                    continue
            free = host.memory_mb - host.used_memory_mb()
            if best_free is None or free > best_free:
                best, best_free = host, free
        return best

    def rules_allow(self, vm: VirtualMachine, host: HostSystem) -> bool:
        """Would ``vm`` on ``host`` keep the enabled mandatory rules?

        VM-Host rules count when mandatory; VM-VM anti-affinity rules always
        (vCenter DRS never violates them on its own).
        """
        groups = {g.name: g for g in self.groups}
        vm_id, host_id = getattr(vm, "moid", None), host.moid
        for rule in self.rules:
            if rule.enabled is False:
                continue
            if isinstance(rule, vim.cluster.VmHostRuleInfo) and rule.mandatory:
                vm_group = groups.get(rule.vmGroupName)
                if vm_group is None or vm_id not in {r._moId for r in vm_group.vm or []}:
                    continue
                affine = groups.get(rule.affineHostGroupName or "")
                anti = groups.get(rule.antiAffineHostGroupName or "")
                if affine is not None and host_id not in {r._moId for r in affine.host or []}:
                    return False
                if anti is not None and host_id in {r._moId for r in anti.host or []}:
                    return False
            elif isinstance(rule, vim.cluster.AntiAffinityRuleSpec):
                members = {r._moId for r in rule.vm or []}
                if vm_id in members and any(
                        other.moid in members and other is not vm and other.powered_on
                        for other in host.vms):
                    return False
        return True

    def vcenter_drs_evacuate(self, host: HostSystem, vms: list[VirtualMachine]) -> int:
        """Move ``vms`` off ``host`` (entering maintenance), as vCenter's DRS does."""
        moved = 0
        events = self.sim.events
        for vm in vms:
            target = self.vcenter_drs_pick_host(vm, exclude=host)
            if target is not None:
                vm.move_to_host(target)
                moved += 1
                # DRS's own move: no user, and its reason in the message.
                events.post(vim.event.DrsVmMigratedEvent, about=vm, user="",
                            reason=f"host {host.name} is entering maintenance mode",
                            **events.migration_source(host))
        return moved

    # -- properties ----------------------------------------------------------------

    def _get_host(self):
        return [h.ref for h in self.hosts]

    def _get_resourcePool(self):  # noqa: N802
        return self.resource_pool.ref

    def _get_datastore(self):
        seen = {}
        for host in self.hosts:
            for ds in host.datastores:
                seen.setdefault(ds.moid, ds)
        return [ds.ref for ds in seen.values()]

    def _get_network(self):
        seen = {}
        for host in self.hosts:
            for net in host.networks:
                seen.setdefault(net.moid, net)
        return [n.ref for n in seen.values()]

    def _get_environmentBrowser(self):  # noqa: N802
        browser = self.environment_browser
        return browser.ref if browser is not None else None

    def _get_summary(self):
        hosts = self.hosts
        usable = self.usable_hosts()
        return vim.ClusterComputeResource.Summary(
            totalCpu=sum(h.cpu_capacity_mhz() for h in hosts),
            totalMemory=sum(h.memory_mb for h in hosts) * 1024 * 1024,
            numCpuCores=sum(h.cores for h in hosts),
            numCpuThreads=sum(h.threads for h in hosts),
            # As documented: the capacity of the hosts that can run VMs (not
            # in maintenance, connected), what the root pool may hand out. It
            # does not shrink as VMs power on; usageSummary shows the usage.
            effectiveCpu=sum(h.cpu_capacity_mhz() for h in usable),
            effectiveMemory=sum(h.memory_mb for h in usable),
            numHosts=len(hosts),
            numEffectiveHosts=len(usable),
            overallStatus=vim.ManagedEntity.Status.green,
            currentFailoverLevel=0, numVmotions=self.num_vmotions,
            usageSummary=self._usage_summary(),
        )

    def _usage_summary(self) -> vim.cluster.UsageSummary:
        usable = self.usable_hosts()
        vms = self.vms()
        running = [vm for vm in vms if vm.powered_on and vm.host in usable]
        mem_demand = sum(int(vm.memory_mb * vm.memory_active_fraction) for vm in running)
        return vim.cluster.UsageSummary(
            totalCpuCapacityMhz=sum(h.cpu_capacity_mhz() for h in usable),
            totalMemCapacityMB=sum(h.memory_mb for h in usable),
            cpuReservationMhz=sum(vm.cpu_reservation_mhz() for vm in running),
            memReservationMB=sum(int(vm.config.memoryAllocation.reservation or 0)
                                 if vm.config.memoryAllocation else 0 for vm in running),
            cpuDemandMhz=sum(vm.cpu_usage_mhz() for vm in running),
            memDemandMB=mem_demand,
            cpuEntitledMhz=sum(h.used_cpu_mhz() for h in usable),
            memEntitledMB=sum(h.used_memory_mb() for h in usable),
            statsGenNumber=self.sim.registry.generation,
            poweredOffVmCount=sum(not vm.powered_on for vm in vms),
            totalVmCount=len(vms),
        )

    def _config_ex(self):
        return vim.cluster.ConfigInfoEx(
            drsConfig=self.drs_config,
            dasConfig=self.das_config,
            dpmConfigInfo=vim.cluster.DpmConfigInfo(enabled=False),
            rule=list(self.rules),
            group=list(self.groups),
        )

    def _get_configurationEx(self):  # noqa: N802
        return self._config_ex()

    def _get_configuration(self):
        return vim.cluster.ConfigInfo(
            drsConfig=self.drs_config,
            dasConfig=self.das_config,
            rule=list(self.rules),
        )

    # -- reconfiguration ------------------------------------------------------------

    def ReconfigureComputeResource_Task(self, ctx: CallContext, spec, modify: bool):  # noqa: N802
        def work():
            self.apply_spec(spec, modify)
            self.sim.events.post(vim.event.ClusterReconfiguredEvent, about=self)

        return self.sim.tasks.start(ctx, self, "ReconfigureComputeResource_Task", work)

    def ReconfigureCluster_Task(self, ctx: CallContext, spec, modify: bool):  # noqa: N802
        return self.ReconfigureComputeResource_Task(ctx, spec, modify)

    def apply_spec(self, spec, modify: bool) -> None:
        """Validate the whole spec first, then apply it: all or nothing.

        ``modify=False`` makes the configuration match the spec exactly:
        unset parts become defaults (no rules, no groups, DRS off).
        Bad or conflicting entries are InvalidArgument, as vCenter answers
        (the method documents no other faults).
        """
        groups = {g.name: g for g in self.groups} if modify else {}
        rules = {r.key: r for r in self.rules} if modify else {}
        drs = self.drs_config if modify else _default_drs_config()
        new = getattr(spec, "drsConfig", None)
        if new is not None:
            drs = vim.cluster.DrsConfigInfo(
                enabled=new.enabled if new.enabled is not None else drs.enabled,
                defaultVmBehavior=new.defaultVmBehavior or drs.defaultVmBehavior,
                vmotionRate=new.vmotionRate or drs.vmotionRate,
                enableVmBehaviorOverrides=new.enableVmBehaviorOverrides
                if new.enableVmBehaviorOverrides is not None else drs.enableVmBehaviorOverrides)
            if drs.vmotionRate is not None and not 1 <= drs.vmotionRate <= 5:
                raise invalid_argument("drsConfig.vmotionRate", "vmotionRate is 1 to 5")
        cluster_vms = {vm.moid for vm in self.vms()}
        cluster_hosts = {h.moid for h in self.hosts}
        das = self.das_config if modify else ha_admission.disabled()
        if getattr(spec, "dasConfig", None) is not None:
            das = ha_admission.merged(das, spec.dasConfig, cluster_hosts)
        for gspec in getattr(spec, "groupSpec", None) or []:
            op = gspec.operation
            if op == "remove":
                name = gspec.removeKey
                if name not in groups:
                    raise invalid_argument("groupSpec.removeKey", f"no group named {name!r}")
                del groups[name]
                continue
            info = gspec.info
            if info is None or not info.name:
                raise invalid_argument("groupSpec.info.name")
            if op == "add" and info.name in groups:
                raise invalid_argument("groupSpec.info.name",
                                       f"a group named {info.name!r} already exists")
            if op == "edit" and info.name not in groups:
                raise invalid_argument("groupSpec.info.name", f"no group named {info.name!r}")
            if op not in ("add", "edit"):
                raise invalid_argument("groupSpec.operation", f"unknown operation {op!r}")
            if isinstance(info, vim.cluster.VmGroup):
                members, allowed = info.vm, cluster_vms
            elif isinstance(info, vim.cluster.HostGroup):
                members, allowed = info.host, cluster_hosts
            else:
                raise invalid_argument("groupSpec.info", "a VM group or a host group is needed")
            for ref in members or []:
                if ref._moId not in allowed:
                    raise invalid_argument("groupSpec.info", f"{ref._moId} is not in cluster "
                                           f"{self.name}")
            groups[info.name] = info
        for rspec in getattr(spec, "rulesSpec", None) or []:
            op = rspec.operation
            if op == "remove":
                if rspec.removeKey not in rules:
                    raise invalid_argument("rulesSpec.removeKey",
                                           f"no rule with key {rspec.removeKey}")
                del rules[rspec.removeKey]
                continue
            info = rspec.info
            if info is None:
                raise invalid_argument("rulesSpec.info")
            if op == "edit":
                if info.key not in rules:
                    raise invalid_argument("rulesSpec.info.key", f"no rule with key {info.key}")
                info.ruleUuid = info.ruleUuid or rules[info.key].ruleUuid
            elif op == "add":
                info.key = next(self._rule_keys)
                while info.key in rules:
                    info.key = next(self._rule_keys)
                info.ruleUuid = str(uuid.uuid4())
            else:
                raise invalid_argument("rulesSpec.operation", f"unknown operation {op!r}")
            for other in rules.values():
                if other.name == info.name and other.key != info.key:
                    raise invalid_argument("rulesSpec.info.name",
                                           f"a rule named {info.name!r} already exists")
            self._validate_rule(info, cluster_vms)
            if info.enabled is None:
                info.enabled = True
            info.status = vim.ManagedEntity.Status.green
            rules[info.key] = info
        # Every VM-Host rule left must still name groups of the right kinds.
        for rule in rules.values():
            if isinstance(rule, vim.cluster.VmHostRuleInfo):
                self._check_rule_groups(rule, groups)
        self.drs_config = drs
        self.das_config = das
        self.groups = list(groups.values())
        self.rules = sorted(rules.values(), key=lambda r: r.key)
        self.sim.registry.touch(self)

    @staticmethod
    def _validate_rule(info, cluster_vms: set[str]) -> None:
        if isinstance(info, (vim.cluster.AffinityRuleSpec, vim.cluster.AntiAffinityRuleSpec)):
            members = info.vm or []
            if len(members) < 2:
                raise invalid_argument("rulesSpec.info.vm",
                                       "A VM-VM rule needs at least two virtual machines")
            for ref in members:
                if ref._moId not in cluster_vms:
                    raise invalid_argument("rulesSpec.info.vm",
                                           f"{ref._moId} is not in this cluster")
        elif isinstance(info, vim.cluster.VmHostRuleInfo):
            if bool(info.affineHostGroupName) == bool(info.antiAffineHostGroupName):
                raise invalid_argument("rulesSpec.info.affineHostGroupName",
                                       "a VM-Host rule names exactly one host group")
        elif not isinstance(info, vim.cluster.RuleInfo):
            raise invalid_argument("rulesSpec.info")

    @staticmethod
    def _check_rule_groups(rule, groups: dict) -> None:
        if not isinstance(groups.get(rule.vmGroupName), vim.cluster.VmGroup):
            raise invalid_argument("rulesSpec.info.vmGroupName",
                                   f"rule {rule.name!r}: no VM group {rule.vmGroupName!r}")
        host_group = rule.affineHostGroupName or rule.antiAffineHostGroupName
        if not isinstance(groups.get(host_group), vim.cluster.HostGroup):
            raise invalid_argument("rulesSpec.info.affineHostGroupName",
                                   f"rule {rule.name!r}: no host group {host_group!r}")

    def forget_vm(self, vm: VirtualMachine) -> None:
        """A VM left the cluster: drop it from groups and VM-VM rules, as vCenter does."""
        ref_id = vm.moid
        for group in self.groups:
            if isinstance(group, vim.cluster.VmGroup) and group.vm:
                group.vm = [r for r in group.vm if r._moId != ref_id]
        kept = []
        for rule in self.rules:
            if isinstance(rule, (vim.cluster.AffinityRuleSpec, vim.cluster.AntiAffinityRuleSpec)):
                members = [r for r in rule.vm or [] if r._moId != ref_id]
                if not members:
                    continue  # (pyVmomi refuses an empty vm list: the field is required)
                rule.vm = members
            kept.append(rule)
        self.rules = kept
        self.sim.registry.touch(self)

    def forget_host(self, host: HostSystem) -> None:
        """A host left the cluster: drop it from host groups, as vCenter does."""
        for group in self.groups:
            if isinstance(group, vim.cluster.HostGroup) and group.host:
                group.host = [r for r in group.host if r._moId != host.moid]
        self.sim.registry.touch(self, self.resource_pool, membership=True)
