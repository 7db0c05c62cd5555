"""A host entering maintenance in vCenter is evacuated by the driver's DRS (scenario 5)."""

from __future__ import annotations

GIB = 1024
#: The driver's DRS loop looks for hosts entering maintenance every second.
STACK_OPTIONS = {"drs": {"poll_interval": 1, "balance_interval": 0}}


def test_host_entering_maintenance_is_evacuated(stack):
    cluster = stack.sim_cluster("cluster-a")
    node = stack.nodes["cluster-a"]
    flavor = stack.create_flavor("m", 2, 16 * GIB)
    servers = stack.boot_many("m", flavor, 6, cluster="cluster-a")
    assert [s["status"] for s in servers] == ["ACTIVE"] * 6
    host = stack.sim_vm(servers[0]["id"]).host
    leaving = {vm.config.instanceUuid for vm in host.vms}
    assert leaving
    others = [h for h in cluster.hosts if h is not host]
    before = stack.inventories("cluster-a")
    assert before["MEMORY_MB"]["total"] == sum(h.memory_mb for h in cluster.hosts)

    # The operator puts the host into maintenance in vCenter; nothing moves the
    # VMs but nova-compute's DRS loop (vCenter's own DRS is off here): the task
    # completes only once the host is empty.
    assert not cluster.drs_enabled
    task = stack.run_host_task(host.name, "EnterMaintenanceMode_Task", timeout=0)
    try:
        stack.wait_task(task, timeout=30)
        assert host.in_maintenance and host.vms == []
        for server in servers:
            shown = stack.wait_for_server(server["id"], "ACTIVE")
            assert shown["OS-EXT-STS:power_state"] == 1
            assert shown["OS-EXT-SRV-ATTR:hypervisor_hostname"] == node
            vm = stack.sim_vm(server["id"])
            assert vm.powered_on and vm.host in others, (server["name"], vm.host.name)
        for other in others:
            assert other.used_memory_mb() <= other.memory_mb

        stack.run_periodics()
        shrunk = stack.inventories("cluster-a")
        assert shrunk["MEMORY_MB"]["total"] == sum(h.memory_mb for h in others)
        assert shrunk["VCPU"]["total"] == sum(h.threads for h in others)
        assert stack.usages("cluster-a")["MEMORY_MB"] == 6 * 16 * GIB
    finally:
        if host.in_maintenance:
            stack.wait_task(stack.run_host_task(host.name, "ExitMaintenanceMode_Task",
                                                timeout=0))
    stack.run_periodics()
    restored = stack.inventories("cluster-a")
    assert restored["MEMORY_MB"]["total"] == before["MEMORY_MB"]["total"]


def test_maintenance_of_an_empty_host_only_shrinks_the_inventory(stack):
    cluster = stack.sim_cluster("cluster-b")
    host = min(cluster.hosts, key=lambda h: h.memory_mb)
    assert host.vms == []
    stack.wait_task(stack.run_host_task(host.name, "EnterMaintenanceMode_Task", timeout=0))
    try:
        stack.run_periodics()
        inv = stack.inventories("cluster-b")
        usable = [h for h in cluster.hosts if h is not host]
        assert inv["MEMORY_MB"]["total"] == sum(h.memory_mb for h in usable)
        assert inv["MEMORY_MB"]["max_unit"] == max(h.memory_mb for h in usable)
    finally:
        stack.wait_task(stack.run_host_task(host.name, "ExitMaintenanceMode_Task", timeout=0))
    stack.run_periodics()
    assert stack.inventories("cluster-b")["MEMORY_MB"]["total"] == sum(
        h.memory_mb for h in cluster.hosts)
