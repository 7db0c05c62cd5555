"""Server groups become DRS VM-VM rules inside the cluster (scenario 4).

The driver enforces a group's policy on ESXi hosts, with a rule vCenter
keeps too.  Nova itself counts members per nova-compute *service host*
(ServerGroupAntiAffinityFilter), and one nova-compute runs whole clusters:
the stack loads nova_vsphere_driver.scheduler_filters, whose filter of the
same name leaves vSphere cluster nodes to the driver, as operators are told
to.  Groups with ``max_server_per_host`` (microversion 2.64) work too.
"""

from __future__ import annotations

import pytest
from nova import objects
from pyVmomi import vim


def group_rules(stack, cluster: str, group_id: str) -> list:
    return [r for r in stack.sim_cluster(cluster).rules if group_id in (r.name or "")]


def rule_vms(rule) -> set[str]:
    return {vm._moId for vm in rule.vm or []}


def anti_affinity_group(stack, name: str, per_nova_compute: int | None = None) -> dict:
    body = {"name": name, "policy": "anti-affinity"}
    if per_nova_compute:
        body["rules"] = {"max_server_per_host": per_nova_compute}
    return stack.api.post_server_groups(body)


@pytest.mark.parametrize("per_nova_compute", [None, 4], ids=["plain", "max_server_per_host"])
def test_anti_affinity_members_on_different_hosts_with_a_drs_rule(stack, per_nova_compute):
    group = anti_affinity_group(stack, "web", per_nova_compute)
    flavor = stack.create_flavor(f"web-{per_nova_compute}", 2, 8192)
    servers = [stack.boot(f"web-{i}", flavor, group=group["id"], cluster="cluster-a")
               for i in range(3)]
    vms = [stack.sim_vm(s["id"]) for s in servers]
    assert all(vm is not None and vm.powered_on for vm in vms)
    assert {vm.host.cluster.name for vm in vms} == {"cluster-a"}
    assert len({vm.host.name for vm in vms}) == 3, [vm.host.name for vm in vms]

    rules = group_rules(stack, "cluster-a", group["id"])
    assert len(rules) == 1, [r.name for r in stack.sim_cluster("cluster-a").rules]
    rule = rules[0]
    assert isinstance(rule, vim.cluster.AntiAffinityRuleSpec)
    assert rule.enabled and rule.mandatory
    assert rule_vms(rule) == {vm.moid for vm in vms}
    members = set(stack.api.get_server_group(group["id"])["members"])
    assert members == {s["id"] for s in servers}

    # Deleting members shrinks the rule; the last one takes it away.
    stack.delete(servers[0]["id"])
    (rule,) = group_rules(stack, "cluster-a", group["id"])
    assert rule_vms(rule) == {vms[1].moid, vms[2].moid}
    for server in servers[1:]:
        stack.delete(server["id"])
    assert group_rules(stack, "cluster-a", group["id"]) == []
    assert stack.sim_vms() == []


def test_anti_affinity_refuses_a_member_no_host_can_take(stack):
    """Five members, four hosts: the fifth fails cleanly (no VM, no rule entry)."""
    hosts = stack.sim_cluster("cluster-a").hosts
    group = anti_affinity_group(stack, "five", per_nova_compute=len(hosts) + 1)
    flavor = stack.create_flavor("five", 1, 2048)
    servers = [stack.boot(f"five-{i}", flavor, group=group["id"], cluster="cluster-a")
               for i in range(len(hosts))]
    assert len({stack.sim_vm(s["id"]).host.name for s in servers}) == len(hosts)
    extra = stack.boot("five-extra", flavor, group=group["id"], cluster="cluster-a",
                       status="ERROR")
    assert stack.sim_vm(extra["id"]) is None
    # Refused by the driver's DRS claim as a group policy violation: Nova
    # rescheduled it by policy, without recording a failed build -- which its
    # BuildFailureWeigher would hold against every cluster of this nova-compute.
    stack.run_periodics()
    node = objects.ComputeNode.get_by_nodename(stack.ctxt, stack.nodes["cluster-a"])
    assert int(node.stats.get("failed_builds", 0)) == 0, node.stats
    (rule,) = group_rules(stack, "cluster-a", group["id"])
    assert rule_vms(rule) == {stack.sim_vm(s["id"]).moid for s in servers}


def test_soft_anti_affinity_is_a_should_rule(stack):
    group = stack.api.post_server_groups({"name": "soft", "policy": "soft-anti-affinity"})
    flavor = stack.create_flavor("soft", 1, 2048)
    servers = [stack.boot(f"soft-{i}", flavor, group=group["id"], cluster="cluster-b")
               for i in range(2)]
    hosts = {stack.sim_vm(s["id"]).host.name for s in servers}
    assert len(hosts) == 2
    (rule,) = group_rules(stack, "cluster-b", group["id"])
    assert isinstance(rule, vim.cluster.AntiAffinityRuleSpec)
    assert not rule.mandatory
