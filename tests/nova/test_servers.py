"""Clusters as hypervisors, the server lifecycle and max_unit, through Nova's REST API."""

from __future__ import annotations

import pytest

GIB = 1024


def usable_hosts(stack, cluster: str) -> list:
    return [h for h in stack.sim_cluster(cluster).hosts if h.usable()]


def free_memory_mb(host) -> int:
    """What the host can still take: every registered VM keeps its memory."""
    return host.memory_mb - sum(vm.memory_mb for vm in host.vms)


# -- scenario 1: two clusters, two hypervisors, two resource providers -----------------


def test_each_cluster_is_one_hypervisor(stack):
    with stack.microversion("2.87"):  # the last version listing capacity fields
        hypervisors = stack.api.api_get("/os-hypervisors/detail").body["hypervisors"]
    by_node = {h["hypervisor_hostname"]: h for h in hypervisors}
    assert sorted(by_node) == sorted(stack.nodes.values())
    for cluster, node in stack.nodes.items():
        hv = by_node[node]
        hosts = usable_hosts(stack, cluster)
        assert hv["service"]["host"] == stack.compute_host
        assert (hv["state"], hv["status"]) == ("up", "enabled")
        assert hv["hypervisor_type"] == "VMware vCenter Server"
        assert hv["vcpus"] == sum(h.threads for h in hosts)
        assert hv["memory_mb"] == sum(h.memory_mb for h in hosts)
        assert node.startswith(stack.sim_cluster(cluster).moid + ".")


@pytest.mark.parametrize("cluster", ["cluster-a", "cluster-b"])
def test_placement_inventory_is_the_clusters_usable_hosts(stack, cluster):
    hosts = usable_hosts(stack, cluster)
    assert len(hosts) == 4
    inv = stack.inventories(cluster)
    assert inv["VCPU"]["total"] == sum(h.threads for h in hosts)
    assert inv["MEMORY_MB"]["total"] == sum(h.memory_mb for h in hosts)
    # max_unit: the best single host, never the cluster total.
    assert inv["VCPU"]["max_unit"] == max(h.threads for h in hosts)
    assert inv["MEMORY_MB"]["max_unit"] == max(free_memory_mb(h) for h in hosts)
    assert inv["MEMORY_MB"]["max_unit"] < inv["MEMORY_MB"]["total"]
    assert inv["MEMORY_MB"]["reserved"] == 0


def test_max_unit_follows_the_best_hosts_free_memory(stack):
    hosts = usable_hosts(stack, "cluster-a")
    biggest = max(hosts, key=lambda h: h.memory_mb)
    runner_up = sorted(h.memory_mb for h in hosts)[-2]
    # Only the biggest host can take it; nothing can make room for it elsewhere.
    memory = runner_up + 32 * GIB
    assert memory < biggest.memory_mb
    flavor = stack.create_flavor("big-a", 8, memory)
    server = stack.boot("big", flavor, cluster="cluster-a")
    assert stack.sim_vm(server["id"]).host is biggest
    stack.run_periodics()
    inv = stack.inventories("cluster-a")
    assert inv["MEMORY_MB"]["total"] == sum(h.memory_mb for h in hosts)
    assert inv["MEMORY_MB"]["max_unit"] == runner_up
    assert stack.usages("cluster-a")["MEMORY_MB"] == memory


# -- scenario 2: the server lifecycle ------------------------------------------------


def test_server_lifecycle(stack):
    flavor = stack.create_flavor("small", 2, 4 * GIB)
    server = stack.boot("life-1", flavor)
    sid = server["id"]
    assert server["OS-EXT-STS:power_state"] == 1  # RUNNING
    assert server["OS-EXT-SRV-ATTR:host"] == stack.compute_host
    cluster = stack.cluster_of(server)

    listed = {s["id"]: s["name"] for s in stack.api.get_servers(detail=False)}
    assert listed == {sid: "life-1"}
    shown = stack.api.get_server(sid)
    assert (shown["status"], shown["flavor"]["original_name"]) == ("ACTIVE", "small")

    vm = stack.sim_vm(sid)
    assert vm is not None and vm.name == sid
    assert vm.host.cluster.name == cluster
    assert vm.host in stack.sim_cluster(cluster).hosts
    assert (vm.num_cpus, vm.memory_mb, vm.power_state) == (2, 4 * GIB, "poweredOn")
    assert [n.name for n in vm.networks] == ["br-int"]  # the Neutron port's bridge
    assert stack.usages(cluster)["MEMORY_MB"] == 4 * GIB

    for reboot_type in ("SOFT", "HARD"):
        booted = vm.boot_time
        server = stack.action(sid, "reboot", {"type": reboot_type})
        assert server["OS-EXT-STS:power_state"] == 1
        assert vm.power_state == "poweredOn" and vm.boot_time > booted, reboot_type

    server = stack.action(sid, "os-stop", status="SHUTOFF")
    assert server["OS-EXT-STS:power_state"] == 4  # SHUTDOWN
    assert vm.power_state == "poweredOff"
    server = stack.action(sid, "os-start")
    assert server["OS-EXT-STS:power_state"] == 1
    assert vm.power_state == "poweredOn"
    assert stack.sim_vm(sid) is vm  # still the one VM, never re-created

    stack.delete(sid)
    assert stack.sim_vm(sid) is None
    assert stack.sim_files(sid) == []
    assert vm not in vm.host.vms
    assert stack.usages(cluster)["MEMORY_MB"] == 0


def test_power_state_follows_vcenter(stack):
    """A VM powered off behind Nova's back: the power sync stops the server."""
    flavor = stack.create_flavor("tiny", 1, 1 * GIB)
    sid = stack.boot("sync-1", flavor)["id"]
    task = stack.pyvmomi().content.searchIndex.FindByUuid(
        None, sid, True, True).PowerOffVM_Task()
    stack.wait_task(task)
    stack.sync_power_states()
    server = stack.wait_for_server(sid, "SHUTOFF")
    assert server["OS-EXT-STS:power_state"] == 4


# -- scenario 3: max_unit keeps flavors off clusters where no host fits them --------


def test_flavor_bigger_than_any_host_gets_no_valid_host(stack):
    all_hosts = usable_hosts(stack, "cluster-a") + usable_hosts(stack, "cluster-b")
    biggest = max(h.memory_mb for h in all_hosts)
    smallest_cluster = min(sum(h.memory_mb for h in usable_hosts(stack, c))
                           for c in ("cluster-a", "cluster-b"))
    memory = biggest + 64 * GIB
    assert memory < smallest_cluster  # fits each cluster's total free memory
    flavor = stack.create_flavor("too-big", 4, memory)
    server = stack.boot("too-big", flavor, status="ERROR")
    assert "No valid host" in server["fault"]["message"]
    assert stack.sim_vm(server["id"]) is None
    assert not any(vm.memory_mb == memory for vm in stack.sim_vms())


def test_flavor_that_fits_one_host_boots(stack):
    hosts = usable_hosts(stack, "cluster-a") + usable_hosts(stack, "cluster-b")
    biggest = max(hosts, key=lambda h: h.memory_mb).memory_mb
    memory = biggest - 16 * GIB
    flavor = stack.create_flavor("one-host", 4, memory)
    server = stack.boot("one-host", flavor)
    vm = stack.sim_vm(server["id"])
    assert vm.memory_mb == memory and vm.powered_on
    assert vm.host.memory_mb >= memory
    assert vm.host.used_memory_mb() <= vm.host.memory_mb
    assert vm.host.cluster.name == stack.cluster_of(server)
