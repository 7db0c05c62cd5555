"""HostSystem and ClusterComputeResource: accounting, maintenance mode, DRS configuration."""

from __future__ import annotations

import pytest
from pyVmomi import vim, vmodl

from tests.unit.simulator.helpers import bind, create_vm, fault_of, run, wait_until

MB = 1024 * 1024
Cluster = vim.cluster


def _reconfigure(cluster, modify=True, **spec):
    return cluster.ReconfigureComputeResource_Task(Cluster.ConfigSpecEx(**spec), modify)


# -- host summary and accounting ---------------------------------------------------


def test_host_summary_reports_hardware_and_runtime(si, sim):
    host = bind(si, sim.host("esx-a3"))
    summary = host.summary
    hw = summary.hardware
    assert (hw.memorySize, hw.cpuMhz, hw.numCpuCores, hw.numCpuThreads) == (
        393216 * MB, 2200, 24, 48)
    assert summary.runtime.connectionState == "connected"
    assert summary.runtime.inMaintenanceMode is False
    assert host.hardware.memorySize == 393216 * MB
    assert host.hardware.cpuInfo.hz == 2200 * 1000 * 1000
    assert summary.quickStats.overallMemoryUsage == 0


def test_quick_stats_follow_every_powered_on_vm(si, sim):
    a1 = bind(si, sim.host("esx-a1"))
    vms = [create_vm(si, sim, f"load-{i}", "esx-a1", cpus=2, memory_mb=4096) for i in range(3)]
    for vm in vms[:2]:
        run(vm.PowerOnVM_Task())
    stats = a1.summary.quickStats
    assert stats.overallMemoryUsage == 2 * 4096
    assert stats.overallCpuUsage == 2 * (2 * 2600 // 2)
    assert stats.overallMemoryUsage == sim.host("esx-a1").used_memory_mb()
    # CPU usage is capped at the host's capacity (16 cores x 2600 MHz).
    for vm in sim.host("esx-a1").vms:
        vm.cpu_demand_fraction = 100.0
    sim.registry.touch()
    assert a1.summary.quickStats.overallCpuUsage == 16 * 2600


def test_cluster_summary_counts_capacity_and_effective_hosts(si, sim):
    cluster = bind(si, sim.cluster("cluster-a"))
    summary = cluster.summary
    total_cpu = 16 * 2600 * 2 + 24 * 2200 + 8 * 3000
    total_mem = 262144 * 2 + 393216 + 131072
    assert summary.totalCpu == total_cpu
    assert summary.totalMemory == total_mem * MB
    assert (summary.numHosts, summary.numEffectiveHosts) == (4, 4)
    assert summary.numCpuCores == 64 and summary.numCpuThreads == 128
    assert summary.effectiveCpu == total_cpu
    assert summary.effectiveMemory == total_mem  # in MB, as documented

    # Maintenance and disconnection take hosts out of the effective capacity.
    sim.host("esx-a3").in_maintenance = True
    sim.disconnect_host("esx-a4")
    summary = cluster.summary
    assert (summary.numHosts, summary.numEffectiveHosts) == (4, 2)
    assert summary.effectiveCpu == 16 * 2600 * 2
    assert summary.effectiveMemory == 262144 * 2
    assert summary.totalMemory == total_mem * MB


def test_cluster_usage_summary_reflects_running_vms(si, sim):
    cluster = bind(si, sim.cluster("cluster-a"))
    usage = cluster.summary.usageSummary
    assert usage.memEntitledMB == 0 and usage.cpuDemandMhz == 0 and usage.totalVmCount == 0
    create_vm(si, sim, "u1", "esx-a1", cpus=2, memory_mb=8192, power_on=True)
    create_vm(si, sim, "u2", "esx-a3", cpus=4, memory_mb=4096, power_on=True)
    create_vm(si, sim, "u3", "esx-a2", memory_mb=2048)
    usage = cluster.summary.usageSummary
    assert usage.memEntitledMB == 8192 + 4096
    assert usage.cpuDemandMhz == 2600 + 2 * 2200
    assert (usage.totalVmCount, usage.poweredOffVmCount) == (3, 1)
    assert usage.totalMemCapacityMB == 262144 * 2 + 393216 + 131072
    rp = bind(si, sim.cluster("cluster-a").resource_pool)
    assert rp.runtime.memory.overallUsage == (8192 + 4096) * MB


# -- maintenance mode ---------------------------------------------------------------------


def test_enter_and_exit_maintenance_of_an_empty_host(si, sim):
    host = bind(si, sim.host("esx-b4"))
    assert run(host.EnterMaintenanceMode_Task(0)) is None
    assert host.runtime.inMaintenanceMode is True
    assert host.summary.runtime.inMaintenanceMode is True
    assert sim.host("esx-b4").in_maintenance
    fault = fault_of(host.EnterMaintenanceMode_Task(0))
    assert isinstance(fault, vim.fault.InvalidState)
    run(host.ExitMaintenanceMode_Task(0))
    assert host.runtime.inMaintenanceMode is False
    fault = fault_of(host.ExitMaintenanceMode_Task(0))
    assert isinstance(fault, vim.fault.InvalidState)


def test_maintenance_waits_until_the_running_vms_are_moved(si, sim):
    vm = create_vm(si, sim, "resident", "esx-a1", memory_mb=4096, power_on=True)
    other = create_vm(si, sim, "latecomer", "esx-a1", memory_mb=1024)
    host = bind(si, sim.host("esx-a1"))
    task = host.EnterMaintenanceMode_Task(0)
    wait_until(lambda: sim.host("esx-a1").entering_maintenance)
    assert task.info.state == "running"
    assert host.runtime.inMaintenanceMode is False
    # While it is entering maintenance the host takes no new load.
    assert isinstance(fault_of(other.PowerOnVM_Task()), vim.fault.InvalidHostState)
    # Once the client moves the VM away the host enters maintenance.
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=bind(si, sim.host("esx-a2")))))
    run(task)
    assert task.info.state == "success"
    assert host.runtime.inMaintenanceMode is True
    assert vm.runtime.host.name == "esx-a2"
    # A powered-off VM may stay on a host in maintenance.
    assert other.runtime.host == host


def test_maintenance_times_out_while_vms_still_run(si, sim):
    create_vm(si, sim, "sticky", "esx-a2", power_on=True)
    host = bind(si, sim.host("esx-a2"))
    fault = fault_of(host.EnterMaintenanceMode_Task(1), timeout=10)
    assert isinstance(fault, vim.fault.Timedout)
    assert host.runtime.inMaintenanceMode is False
    assert not sim.host("esx-a2").entering_maintenance
    # With no timeout the simulator bounds the wait by its own setting.
    sim.maintenance_timeout = 0.2
    assert isinstance(fault_of(host.EnterMaintenanceMode_Task(0)), vim.fault.Timedout)


def test_maintenance_can_be_cancelled(si, sim):
    create_vm(si, sim, "keeper", "esx-a3", power_on=True)
    host = bind(si, sim.host("esx-a3"))
    task = host.EnterMaintenanceMode_Task(0)
    wait_until(lambda: sim.host("esx-a3").entering_maintenance)
    assert task.info.cancelable is True
    task.CancelTask()
    fault = fault_of(task)
    assert isinstance(fault, vmodl.fault.RequestCanceled)
    assert task.info.cancelled is True
    assert not sim.host("esx-a3").in_maintenance
    assert not sim.host("esx-a3").entering_maintenance
    with pytest.raises(vim.fault.InvalidState):
        task.CancelTask()


def test_evacuating_powered_off_vms_without_drs_waits_for_them(si, sim):
    parked = create_vm(si, sim, "parked", "esx-a4", datastore="shared-all")
    host = bind(si, sim.host("esx-a4"))
    task = host.EnterMaintenanceMode_Task(0, evacuatePoweredOffVms=True)
    wait_until(lambda: sim.host("esx-a4").entering_maintenance)
    assert task.info.state == "running"
    run(parked.MigrateVM_Task(host=bind(si, sim.host("esx-a1")), priority="defaultPriority"))
    run(task)
    assert host.runtime.inMaintenanceMode is True


def test_fully_automated_drs_evacuates_the_host_itself(si, sim):
    cluster = bind(si, sim.cluster("cluster-b"))
    run(_reconfigure(cluster, drsConfig=Cluster.DrsConfigInfo(
        enabled=True, defaultVmBehavior="fullyAutomated")))
    vms = [create_vm(si, sim, f"evac-{i}", "esx-b3", memory_mb=16384, power_on=True)
           for i in range(3)]
    parked = create_vm(si, sim, "evac-off", "esx-b3")
    host = bind(si, sim.host("esx-b3"))
    run(host.EnterMaintenanceMode_Task(0, evacuatePoweredOffVms=True))
    assert host.runtime.inMaintenanceMode is True
    assert host.vm == []
    assert host.summary.quickStats.overallMemoryUsage == 0
    for vm in [*vms, parked]:
        assert vm.runtime.host.name in ("esx-b1", "esx-b2", "esx-b4")
    assert vms[0].runtime.powerState == "poweredOn"
    moved = sum(bind(si, sim.host(h)).summary.quickStats.overallMemoryUsage
                for h in ("esx-b1", "esx-b2", "esx-b4"))
    assert moved == 3 * 16384
    assert cluster.summary.numVmotions == 3


def test_drs_evacuation_keeps_mandatory_rules(si, sim):
    cluster = bind(si, sim.cluster("cluster-b"))
    vm = create_vm(si, sim, "ruled", "esx-b1", memory_mb=2048, power_on=True)
    allowed = [bind(si, sim.host("esx-b1")), bind(si, sim.host("esx-b4"))]
    run(_reconfigure(
        cluster, drsConfig=Cluster.DrsConfigInfo(enabled=True, defaultVmBehavior="fullyAutomated"),
        groupSpec=[
            Cluster.GroupSpec(operation="add", info=Cluster.VmGroup(name="vms", vm=[vm])),
            Cluster.GroupSpec(operation="add",
                              info=Cluster.HostGroup(name="allowed", host=allowed))],
        rulesSpec=[Cluster.RuleSpec(operation="add", info=Cluster.VmHostRuleInfo(
            name="must-run-on", enabled=True, mandatory=True, vmGroupName="vms",
            affineHostGroupName="allowed"))]))
    run(bind(si, sim.host("esx-b1")).EnterMaintenanceMode_Task(0))
    # esx-b2 has the most free memory, but the rule allows only esx-b4.
    assert vm.runtime.host.name == "esx-b4"


def test_partially_automated_drs_leaves_the_moves_to_the_client(si, sim):
    cluster = bind(si, sim.cluster("cluster-b"))
    run(_reconfigure(cluster, drsConfig=Cluster.DrsConfigInfo(
        enabled=True, defaultVmBehavior="partiallyAutomated")))
    vm = create_vm(si, sim, "manual", "esx-b2", power_on=True)
    sim.maintenance_timeout = 0.3
    fault = fault_of(bind(si, sim.host("esx-b2")).EnterMaintenanceMode_Task(0))
    assert isinstance(fault, vim.fault.Timedout)
    assert vm.runtime.host.name == "esx-b2"


def test_maintenance_of_a_disconnected_host(si, sim):
    sim.disconnect_host("esx-b1")
    host = bind(si, sim.host("esx-b1"))
    assert host.runtime.connectionState == "disconnected"
    assert host.summary.quickStats.overallMemoryUsage == 0
    with pytest.raises(vim.fault.InvalidState):
        host.EnterMaintenanceMode_Task(0)


# -- ReconfigureComputeResource_Task ------------------------------------------------------


def test_drs_configuration_modify_and_replace(si, sim):
    cluster = bind(si, sim.cluster("cluster-a"))
    assert cluster.configurationEx.drsConfig.enabled is False
    run(_reconfigure(cluster, drsConfig=Cluster.DrsConfigInfo(
        enabled=True, defaultVmBehavior="partiallyAutomated", vmotionRate=2)))
    drs = cluster.configurationEx.drsConfig
    assert (drs.enabled, drs.defaultVmBehavior, drs.vmotionRate) == (
        True, "partiallyAutomated", 2)
    # modify=True changes only what the spec sets.
    run(_reconfigure(cluster, drsConfig=Cluster.DrsConfigInfo(defaultVmBehavior="manual")))
    drs = cluster.configurationEx.drsConfig
    assert (drs.enabled, drs.defaultVmBehavior, drs.vmotionRate) == (True, "manual", 2)
    assert cluster.configuration.drsConfig.defaultVmBehavior == "manual"
    assert sim.cluster("cluster-a").drs_enabled
    fault = fault_of(_reconfigure(cluster, drsConfig=Cluster.DrsConfigInfo(vmotionRate=9)))
    assert isinstance(fault, vmodl.fault.InvalidArgument)
    # modify=False makes the configuration exactly the spec: DRS back to defaults.
    run(_reconfigure(cluster, modify=False))
    assert cluster.configurationEx.drsConfig.enabled is False


def test_groups_and_vm_host_rules_add_edit_remove(si, sim):
    cluster = bind(si, sim.cluster("cluster-a"))
    vm1 = create_vm(si, sim, "g1", "esx-a1")
    vm2 = create_vm(si, sim, "g2", "esx-a2")
    a1, a2 = bind(si, sim.host("esx-a1")), bind(si, sim.host("esx-a2"))
    run(_reconfigure(
        cluster,
        groupSpec=[Cluster.GroupSpec(operation="add", info=Cluster.VmGroup(name="web", vm=[vm1])),
                   Cluster.GroupSpec(operation="add", info=Cluster.HostGroup(name="rack-1",
                                                                             host=[a1]))],
        rulesSpec=[Cluster.RuleSpec(operation="add", info=Cluster.VmHostRuleInfo(
            name="web-on-rack-1", enabled=True, mandatory=False, vmGroupName="web",
            affineHostGroupName="rack-1"))]))
    config = cluster.configurationEx
    groups = {g.name: g for g in config.group}
    assert groups["web"].vm == [vm1] and groups["rack-1"].host == [a1]
    (rule,) = config.rule
    assert isinstance(rule, Cluster.VmHostRuleInfo)
    assert rule.key > 0 and rule.ruleUuid and rule.affineHostGroupName == "rack-1"

    # edit replaces a group's members and a rule's settings
    run(_reconfigure(
        cluster,
        groupSpec=[Cluster.GroupSpec(operation="edit",
                                     info=Cluster.VmGroup(name="web", vm=[vm1, vm2])),
                   Cluster.GroupSpec(operation="edit",
                                     info=Cluster.HostGroup(name="rack-1", host=[a1, a2]))],
        rulesSpec=[Cluster.RuleSpec(operation="edit", info=Cluster.VmHostRuleInfo(
            key=rule.key, name="web-on-rack-1", enabled=False, mandatory=True,
            vmGroupName="web", affineHostGroupName="rack-1"))]))
    config = cluster.configurationEx
    assert {g.name: len(g.vm if isinstance(g, Cluster.VmGroup) else g.host)
            for g in config.group} == {"web": 2, "rack-1": 2}
    (edited,) = config.rule
    assert (edited.key, edited.enabled, edited.mandatory) == (rule.key, False, True)

    # A group still used by a rule cannot go; rule and group may go together.
    fault = fault_of(_reconfigure(cluster, groupSpec=[
        Cluster.GroupSpec(operation="remove", removeKey="web")]))
    assert isinstance(fault, vmodl.fault.InvalidArgument)
    assert len(cluster.configurationEx.group) == 2
    run(_reconfigure(
        cluster,
        groupSpec=[Cluster.GroupSpec(operation="remove", removeKey="web"),
                   Cluster.GroupSpec(operation="remove", removeKey="rack-1")],
        rulesSpec=[Cluster.RuleSpec(operation="remove", removeKey=rule.key)]))
    assert cluster.configurationEx.group == [] and cluster.configurationEx.rule == []
    assert sim.cluster("cluster-a").rules == []


def test_vm_vm_rules(si, sim):
    cluster = bind(si, sim.cluster("cluster-a"))
    vms = [create_vm(si, sim, f"r{i}", f"esx-a{i + 1}") for i in range(3)]
    run(_reconfigure(cluster, rulesSpec=[
        Cluster.RuleSpec(operation="add", info=Cluster.AntiAffinityRuleSpec(
            name="spread", enabled=True, vm=vms[:2])),
        Cluster.RuleSpec(operation="add", info=Cluster.AffinityRuleSpec(
            name="together", vm=vms[1:]))]))
    rules = {r.name: r for r in cluster.configurationEx.rule}
    assert isinstance(rules["spread"], Cluster.AntiAffinityRuleSpec)
    assert rules["spread"].vm == vms[:2]
    assert rules["together"].enabled is True  # unset means enabled
    assert rules["spread"].key != rules["together"].key
    # A destroyed VM leaves the rules it was in.
    run(vms[0].Destroy_Task())
    rules = {r.name: r for r in cluster.configurationEx.rule}
    assert vms[0] not in (rules.get("spread").vm if "spread" in rules else [])


@pytest.mark.parametrize("case", ["duplicate-group", "duplicate-rule", "unknown-group",
                                  "foreign-vm", "one-vm-rule", "missing-rule",
                                  "host-group-of-vms"])
def test_invalid_cluster_specs_change_nothing(si, sim, case):
    cluster = bind(si, sim.cluster("cluster-a"))
    vm1, vm2 = create_vm(si, sim, "v1"), create_vm(si, sim, "v2")
    foreign = create_vm(si, sim, "foreign", "esx-b1")
    run(_reconfigure(
        cluster,
        groupSpec=[Cluster.GroupSpec(operation="add", info=Cluster.VmGroup(name="g", vm=[vm1]))],
        rulesSpec=[Cluster.RuleSpec(operation="add", info=Cluster.AntiAffinityRuleSpec(
            name="apart", vm=[vm1, vm2]))]))
    before = (len(cluster.configurationEx.group), len(cluster.configurationEx.rule))
    specs = {
        "duplicate-group": dict(groupSpec=[Cluster.GroupSpec(
            operation="add", info=Cluster.VmGroup(name="g", vm=[vm2]))]),
        "duplicate-rule": dict(rulesSpec=[Cluster.RuleSpec(
            operation="add", info=Cluster.AffinityRuleSpec(name="apart", vm=[vm1, vm2]))]),
        "unknown-group": dict(rulesSpec=[Cluster.RuleSpec(
            operation="add", info=Cluster.VmHostRuleInfo(
                name="x", vmGroupName="g", affineHostGroupName="nope"))]),
        "foreign-vm": dict(groupSpec=[Cluster.GroupSpec(
            operation="add", info=Cluster.VmGroup(name="g2", vm=[foreign]))]),
        "one-vm-rule": dict(rulesSpec=[Cluster.RuleSpec(
            operation="add", info=Cluster.AffinityRuleSpec(name="solo", vm=[vm1]))]),
        "missing-rule": dict(rulesSpec=[Cluster.RuleSpec(operation="remove", removeKey=999)]),
        "host-group-of-vms": dict(rulesSpec=[Cluster.RuleSpec(
            operation="add", info=Cluster.VmHostRuleInfo(
                name="y", vmGroupName="g", affineHostGroupName="g"))]),
    }
    # A valid group added in the same spec must not survive the failure either.
    spec = specs[case]
    spec.setdefault("groupSpec", []).append(Cluster.GroupSpec(
        operation="add", info=Cluster.HostGroup(name="extra", host=[])))
    fault = fault_of(_reconfigure(cluster, **spec))
    assert isinstance(fault, vmodl.fault.InvalidArgument), fault
    assert (len(cluster.configurationEx.group), len(cluster.configurationEx.rule)) == before



def test_destroying_the_members_of_a_rule_shrinks_then_drops_it(si, sim):
    """vCenter removes a destroyed VM from VM-VM rules; a rule left with no VM goes."""
    vms = [create_vm(si, sim, f"rule-{i}", host=f"esx-a{i + 1}") for i in range(2)]
    cluster = bind(si, sim.cluster("cluster-a"))
    rule = vim.cluster.AntiAffinityRuleSpec(name="spread", enabled=True, mandatory=True,
                                            vm=vms)
    run(cluster.ReconfigureComputeResource_Task(vim.cluster.ConfigSpecEx(
        rulesSpec=[vim.cluster.RuleSpec(operation="add", info=rule)]), True))
    run(vms[0].Destroy_Task())
    (left,) = [r for r in sim.cluster("cluster-a").rules if r.name == "spread"]
    assert [v._moId for v in left.vm] == [vms[1]._moId]
    run(vms[1].Destroy_Task())  # used to crash the task: an empty, required vm list
    assert "spread" not in {r.name for r in sim.cluster("cluster-a").rules}
