"""Many servers at once: no ESXi host oversubscribed, no orphan VM (scenario 6)."""

from __future__ import annotations

from collections import Counter

GIB = 1024
COUNT = 20


def test_concurrent_boots_never_oversubscribe_a_host(stack):
    # 96 GiB servers: cluster-a's hosts take 9 of them (2+2+4+1), though
    # placement sees room for 10 in its total; cluster-b's take 14.  Twenty
    # requests in one API call race for hosts in both clusters.
    flavor = stack.create_flavor("m96", 4, 96 * GIB)
    servers = stack.boot_many("burst", flavor, COUNT, timeout=180)
    assert len(servers) == COUNT
    statuses = Counter(s["status"] for s in servers)
    assert set(statuses) <= {"ACTIVE", "ERROR"}, statuses

    for host in stack.sim_cluster("cluster-a").hosts + stack.sim_cluster("cluster-b").hosts:
        assert host.used_memory_mb() <= host.memory_mb, (host.name, host.used_memory_mb())

    vms = {vm.config.instanceUuid: vm for vm in stack.sim_vms()}
    assert len(vms) == len(stack.sim_vms())  # one VM per instance UUID
    active = {s["id"] for s in servers if s["status"] == "ACTIVE"}
    assert set(vms) == active  # no orphan VM; every ACTIVE server has its VM
    for server in servers:
        if server["status"] == "ACTIVE":
            vm = vms[server["id"]]
            assert vm.powered_on and vm.memory_mb == 96 * GIB
            assert vm.host.cluster.name == stack.cluster_of(server)
        else:
            assert server["fault"]["message"], server
    # 23 fit on hosts; every one of the 20 should have found one.
    assert statuses["ACTIVE"] == COUNT, statuses

    stack.delete_all()
    assert stack.sim_vms() == []
    for server in servers:
        assert stack.sim_files(server["id"]) == []
