"""The driver's DRS against the simulator: host choice, server-group rules,
maintenance evacuation, balancing, making room, and deferring to vCenter."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest
from nova import exception, objects
from pyVim.task import WaitForTask
from pyVmomi import vim

from nova_vsphere_driver import driver as vsphere_driver
from tests.driver.conftest import configure, make_instance, new_tree, node_of
from tests.fixtures import connect, running_simulator

GB = 1024



def _spawn(drv, ctx, instance):
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])


def _host_of(sim, instance) -> str:
    return sim.vm(instance.uuid).get_property("runtime.host")._moId


def _group(ctx, policy: str, members: list) -> objects.InstanceGroup:
    group = objects.InstanceGroup(ctx, uuid=str(uuid.uuid4()), name=f"sg-{policy}",
                                  policy=policy, project_id="p1", user_id="u1",
                                  members=[m.uuid for m in members])
    group.create()
    return group


def _rules(sim, cluster: str) -> dict:
    return {r.name: r for r in sim.cluster(cluster).rules}


def test_anti_affinity_group_spreads_members_and_keeps_a_rule(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    node = node_of(drv, "cluster-a")
    members = [make_instance(node, memory_mb=2048, name=f"db-{i}") for i in range(3)]
    group = _group(ctx, "anti-affinity", members)
    rule_name = f"nova-sg-{group.uuid}"
    _spawn(drv, ctx, members[0])
    assert rule_name not in _rules(sim, "cluster-a")  # one VM: nothing to enforce yet
    for inst in members[1:]:
        _spawn(drv, ctx, inst)
    hosts = [_host_of(sim, m) for m in members]
    assert len(set(hosts)) == 3
    rule = _rules(sim, "cluster-a")[rule_name]
    assert isinstance(rule, vim.cluster.AntiAffinityRuleSpec)
    assert rule.mandatory is True and rule.enabled is True
    assert {v._moId for v in rule.vm} == {sim.vm(m.uuid).moid for m in members}
    drv.destroy(ctx, members[0], [])
    rule = _rules(sim, "cluster-a")[rule_name]
    assert {v._moId for v in rule.vm} == {sim.vm(m.uuid).moid for m in members[1:]}
    drv.destroy(ctx, members[1], [])
    assert rule_name not in _rules(sim, "cluster-a")  # gone with its last pair
    drv.destroy(ctx, members[2], [])
    assert rule_name not in _rules(sim, "cluster-a")


def test_anti_affinity_refuses_a_member_when_every_host_has_one(vsphere, ctx):
    drv, _ = vsphere
    node = node_of(drv, "cluster-a")  # four hosts
    members = [make_instance(node, memory_mb=1024, name=f"m-{i}") for i in range(5)]
    _group(ctx, "anti-affinity", members)
    for inst in members[:4]:
        _spawn(drv, ctx, inst)
    # Refused at our DRS claim, before any VM exists, as a group policy violation:
    # Nova reschedules it by policy and counts no failed build against the service.
    with pytest.raises(exception.GroupAffinityViolation) as err:
        _spawn(drv, ctx, members[4])
    assert "anti-affinity" in str(err.value)
    assert "already run on all 4 usable host(s)" in str(err.value)
    assert not drv.instance_exists(members[4])
    assert members[4].uuid not in drv.services.drs.claims(drv.services.nodes[node].moref)


def test_soft_anti_affinity_allows_sharing_when_hosts_run_out(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    node = node_of(drv, "cluster-a")
    members = [make_instance(node, memory_mb=1024, name=f"s-{i}") for i in range(5)]
    group = _group(ctx, "soft-anti-affinity", members)
    for inst in members:
        _spawn(drv, ctx, inst)
    hosts = [_host_of(sim, m) for m in members]
    assert len(set(hosts)) == 4
    rule = _rules(sim, "cluster-a")[f"nova-sg-{group.uuid}"]
    assert rule.mandatory is False


def test_affinity_group_keeps_members_together(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    node = node_of(drv, "cluster-b")
    members = [make_instance(node, memory_mb=4096, name=f"app-{i}") for i in range(3)]
    group = _group(ctx, "affinity", members)
    for inst in members:
        _spawn(drv, ctx, inst)
    assert len({_host_of(sim, m) for m in members}) == 1
    rule = _rules(sim, "cluster-b")[f"nova-sg-{group.uuid}"]
    assert isinstance(rule, vim.cluster.AffinityRuleSpec)


def test_failed_rule_update_removes_the_vm(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    node = node_of(drv, "cluster-a")
    members = [make_instance(node, memory_mb=1024, name=f"f-{i}") for i in range(2)]
    group = _group(ctx, "anti-affinity", members)
    _spawn(drv, ctx, members[0])
    sim.faults.fail_next("ReconfigureComputeResource_Task", "InvalidArgument")
    with pytest.raises(exception.NovaException):
        _spawn(drv, ctx, members[1])
    assert not drv.instance_exists(members[1])
    assert f"nova-sg-{group.uuid}" not in _rules(sim, "cluster-a")
    assert members[1].uuid not in drv.services.drs.claims(drv.services.nodes[node].moref)


def _enter_maintenance(si, sim, host_name: str):
    host = si.content.searchIndex.FindByInventoryPath(
        f"dc1/host/{sim.host(host_name).parent.name}/{host_name}")
    return host.EnterMaintenanceMode_Task(timeout=0)


def test_host_entering_maintenance_is_evacuated(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    node = node_of(drv, "cluster-a")
    instances = [make_instance(node, memory_mb=8 * GB, name=f"w-{i}") for i in range(8)]
    for inst in instances:
        _spawn(drv, ctx, inst)
    busy = max(sim.cluster("cluster-a").hosts,
               key=lambda h: sum(1 for i in instances if _host_of(sim, i) == h.moid))
    leaving = [i for i in instances if _host_of(sim, i) == busy.moid]
    assert leaving
    tree = new_tree(node)
    drv.update_provider_tree(tree, node)
    vcpus_before = tree.data(node).inventory["VCPU"]["total"]
    si = connect(server)
    task = _enter_maintenance(si, sim, busy.name)
    time.sleep(0.2)
    assert task.info.state in ("running", "queued")  # waits for its VMs to leave
    reports = drv.run_drs_pass(node)
    evacuation = next(r for r in reports if r.kind == "evacuation")
    assert {m.vm for m in evacuation.moves} == {sim.vm(i.uuid).moid for i in leaving}
    assert not evacuation.failed and not evacuation.unresolved
    WaitForTask(task)
    assert busy.get_property("runtime.inMaintenanceMode") is True
    for inst in instances:
        assert _host_of(sim, inst) != busy.moid
        assert sim.vm(inst.uuid).get_property("runtime.powerState") == "poweredOn"
    drv.update_provider_tree(tree, node)
    assert tree.data(node).inventory["VCPU"]["total"] == vcpus_before - busy.threads


def _skewed_inventory() -> dict:
    vms = [{"name": f"legacy-{i}", "cluster": "c1", "host": "h1", "cpus": 2,
            "memory_mb": 16 * GB, "disk_gb": 1, "datastore": "ds1", "power": "on"}
           for i in range(10)]
    return {"datacenters": [{
        "name": "dc1",
        "datastores": [{"name": "ds1", "capacity_gb": 4096}],
        "networks": ["VM Network"],
        "clusters": [{"name": "c1", "hosts": [
            {"name": f"h{i}", "cores": 16, "mhz": 2400, "memory_mb": 256 * GB}
            for i in range(1, 5)]}],
        "vms": vms,
    }]}


@pytest.fixture
def skewed(conf_overrides, nova_db):
    with running_simulator(_skewed_inventory(), tls=True) as server:
        configure(conf_overrides, server, clusters=("c1",))
        conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
        drv = vsphere_driver.VSphereDriver(None)
        drv.init_host("compute-1")
        yield drv, server
        drv.cleanup_host("compute-1")


def test_balancing_plans_in_dry_run_and_moves_when_applied(skewed):
    drv, server = skewed
    sim = server.simulator
    node = drv.get_available_nodes()[0]
    where = {v.name: v.get_property("runtime.host")._moId for v in sim.vms()}
    plan = drv.balance_cluster(node, dry_run=True)
    assert plan.moves and not plan.applied
    assert plan.imbalance_after < plan.imbalance_before
    assert all(m.reason for m in plan.moves)
    assert where == {v.name: v.get_property("runtime.host")._moId for v in sim.vms()}
    done = drv.balance_cluster(node)
    assert done.applied and not done.failed
    for move in done.moves:
        assert sim.registry.get(move.vm).get_property("runtime.host")._moId == move.target
    on_h1 = [v for v in sim.vms() if v.get_property("runtime.host")._moId
             == sim.host("h1").moid]
    assert len(on_h1) < 10
    # Balanced now: another pass plans nothing (no oscillation).
    for _ in range(5):
        if not drv.balance_cluster(node).moves:
            break
    assert drv.balance_cluster(node, dry_run=True).moves == ()


def test_a_restarted_driver_runs_its_balancing_moves(skewed):
    """cleanup_host stops the DRS thread's passes; a later init_host starts afresh."""
    drv, server = skewed
    sim = server.simulator
    node = drv.get_available_nodes()[0]
    drv.cleanup_host("compute-1")
    drv.init_host("compute-1")
    (done,) = [r for r in drv.run_drs_pass(node, force_balance=True) if r.kind == "balance"]
    assert done.moves and done.applied and not done.failed and not done.stopped
    assert len(done.outcomes) == len(done.moves)
    for move in done.moves:
        assert sim.registry.get(move.vm).get_property("runtime.host")._moId == move.target


@pytest.fixture
def skewed_k2(conf_overrides, nova_db):
    """The skewed cluster with at most two concurrent vMotions per host, each a while."""
    with running_simulator(_skewed_inventory(), tls=True) as server:
        configure(conf_overrides, server, clusters=("c1",))
        conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0,
                       max_vmotions_per_host=2, max_moves_per_pass=6)
        server.simulator.faults.add_latency("RelocateVM_Task", 0.3)
        drv = vsphere_driver.VSphereDriver(None)
        drv.init_host("compute-1")
        yield drv, server
        drv.cleanup_host("compute-1")


def _relocations(sim) -> list:
    """(vm moref, start, end) of every finished RelocateVM_Task, oldest first."""
    return [(t.entity.moid, t.start_time, t.complete_time) for t in sim.tasks.recent
            if t.method == "RelocateVM_Task" and t.complete_time is not None]


def test_balancing_runs_the_plans_waves_under_the_per_host_limit(skewed_k2):
    drv, server = skewed_k2
    sim = server.simulator
    node = drv.get_available_nodes()[0]
    heard = []
    report = drv.services.drs.balance(drv.services.states.read(node), drv.services.limits(),
                                      apply=True, progress=heard.append)
    assert report.applied and not report.failed and not report.not_run
    assert report.max_vmotions_per_host == 2
    # All moves leave h1: two per wave, waves one after the other.
    assert [len(w) for w in report.waves] == [2] * (len(report.moves) // 2) + \
        [1] * (len(report.moves) % 2)
    assert report.expected_seconds > 0 and "expected" in report.summary()
    wave_of = {m.vm: i for i, wave in enumerate(report.waves) for m in wave}
    tasks = _relocations(sim)
    assert sorted(vm for vm, _, _ in tasks) == sorted(wave_of)
    for vm, start, _ in tasks:
        # A wave starts once every move of the previous wave has ended.
        earlier = [end for other, _, end in tasks if wave_of[other] < wave_of[vm]]
        assert all(end <= start for end in earlier)
    # Progress: each wave started and ended, each move reported once, counts add up.
    events = [p.event for p in heard]
    assert events.count("wave started") == events.count("wave done") == len(report.waves)
    assert events.count("move done") == len(report.moves)
    last = heard[-1]
    assert (last.done, last.failed, last.remaining) == (len(report.moves), 0, 0)
    assert last.memory_mb_moved == report.memory_mb and last.eta_seconds is None
    assert [p.wave for p in heard if p.event == "wave started"] == \
        list(range(1, len(report.waves) + 1))
    assert all(p.eta_seconds is not None for p in heard if p.event == "wave started")


def test_a_stopped_pass_ends_after_the_running_wave(skewed_k2):
    drv, server = skewed_k2
    sim = server.simulator
    node = drv.get_available_nodes()[0]
    before = {v.moid: v.get_property("runtime.host")._moId for v in sim.vms()}
    stop = threading.Event()

    def listen(progress):
        if progress.event == "move done":
            stop.set()  # as Ctrl-C does in nova-vsphere-drs apply

    report = drv.services.drs.balance(drv.services.states.read(node), drv.services.limits(),
                                      apply=True, progress=listen, stop=stop)
    assert report.stopped and len(report.waves) > 1
    assert [o.move for o in report.outcomes] == list(report.waves[0])
    assert report.not_run == tuple(m for wave in report.waves[1:] for m in wave)
    for move in report.done:
        assert sim.registry.get(move.vm).get_property("runtime.host")._moId == move.target
    for move in report.not_run:
        assert sim.registry.get(move.vm).get_property("runtime.host")._moId == before[move.vm]
    assert all(v.get_property("runtime.powerState") == "poweredOn" for v in sim.vms())
    # Nothing stays claimed: a later pass may move the rest.
    assert not drv.services.drs.claims(drv.services.nodes[node].moref)


def _fragmented_inventory() -> dict:
    # Two 64 GiB hosts each running 40 GiB of VMs: 48 GiB free in total,
    # 24 GiB on either host.
    vms = [{"name": f"small-{h}-{i}", "cluster": "c1", "host": h, "cpus": 1,
            "memory_mb": 8 * GB, "disk_gb": 1, "datastore": "ds1", "power": "on"}
           for h in ("h1", "h2") for i in range(5)]
    return {"datacenters": [{
        "name": "dc1", "datastores": [{"name": "ds1", "capacity_gb": 2048}],
        "networks": ["VM Network"],
        "clusters": [{"name": "c1", "hosts": [
            {"name": "h1", "cores": 8, "mhz": 2400, "memory_mb": 64 * GB},
            {"name": "h2", "cores": 8, "mhz": 2400, "memory_mb": 64 * GB},
            {"name": "h3", "cores": 8, "mhz": 2400, "memory_mb": 16 * GB}]}],
        "vms": vms,
    }]}


@pytest.mark.parametrize("make_room", [True, False])
def test_making_room_for_a_vm_that_fits_the_cluster_but_no_host(conf_overrides, nova_db, ctx,
                                                                make_room):
    with running_simulator(_fragmented_inventory(), tls=True) as server:
        configure(conf_overrides, server, clusters=("c1",))
        conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0,
                       make_room=make_room)
        drv = vsphere_driver.VSphereDriver(None)
        drv.init_host("compute-1")
        try:
            node = drv.get_available_nodes()[0]
            tree = new_tree(node)
            drv.update_provider_tree(tree, node)
            max_unit = tree.data(node).inventory["MEMORY_MB"]["max_unit"]
            big = make_instance(node, vcpus=4, memory_mb=40 * GB, root_gb=1, name="big")
            if not make_room:
                assert max_unit == 24 * GB
                with pytest.raises(exception.ComputeResourcesUnavailable):
                    _spawn(drv, ctx, big)
                return
            assert max_unit >= 40 * GB
            _spawn(drv, ctx, big)
            sim = server.simulator
            host = sim.registry.get(_host_of(sim, big))
            used = sum(v.get_property("config.hardware.memoryMB") for v in sim.vms()
                       if v.get_property("runtime.host")._moId == host.moid)
            assert used <= host.memory_mb
        finally:
            drv.cleanup_host("compute-1")


def test_vcenter_mode_defers_host_choice_to_vcenter_drs(conf_overrides, nova_db, ctx):
    inventory = _skewed_inventory()
    inventory["datacenters"][0]["clusters"][0]["drs"] = {"enabled": True,
                                                         "behavior": "fullyAutomated"}
    with running_simulator(inventory, tls=True) as server:
        configure(conf_overrides, server, clusters=("c1",))
        conf_overrides("vsphere_drs", mode="vcenter", poll_interval=3600)
        drv = vsphere_driver.VSphereDriver(None)
        drv.init_host("compute-1")
        try:
            assert drv.drs_thread is None  # no balancing of our own
            node = drv.get_available_nodes()[0]
            inst = make_instance(node, memory_mb=4 * GB, root_gb=1)
            _spawn(drv, ctx, inst)
            sim = server.simulator
            assert sim.vm(inst.uuid).get_property("runtime.powerState") == "poweredOn"
            assert _host_of(sim, inst) in {h.moid for h in sim.cluster("c1").hosts}
            # Our DRS took no part.
            assert not drv.services.drs.claims(drv.services.nodes[node].moref)
        finally:
            drv.cleanup_host("compute-1")


@pytest.mark.parametrize("behavior,warned", [("fullyAutomated", True), ("manual", False)])
def test_builtin_balancing_warns_of_a_fully_automated_vcenter_drs(conf_overrides, nova_db,
                                                                  caplog, behavior, warned):
    """Two balancers undo each other's vMotions: the operator is told at start-up."""
    inventory = _skewed_inventory()
    inventory["datacenters"][0]["clusters"][0]["drs"] = {"enabled": True, "behavior": behavior}
    with running_simulator(inventory, tls=True) as server:
        configure(conf_overrides, server, clusters=("c1",))
        conf_overrides("vsphere_drs", mode="builtin", poll_interval=3600)
        drv = vsphere_driver.VSphereDriver(None)
        with caplog.at_level(logging.WARNING, logger="nova_vsphere_driver.driver"):
            drv.init_host("compute-1")
        try:
            found = [r.getMessage() for r in caplog.records
                     if "fullyAutomated too" in r.getMessage()]
            assert bool(found) is warned
            if warned:
                assert "c1" in found[0] and "balance_interval = 0" in found[0]
            node = drv.get_available_nodes()[0]
            state = drv.services.states.read(node)
            assert state.vcenter_drs and state.vcenter_drs_behavior == behavior
        finally:
            drv.cleanup_host("compute-1")


def _add_host_group(server, cluster: str, name: str, hosts: list[str]) -> None:
    si = connect(server)
    sim = server.simulator
    ref = si.content.searchIndex.FindByInventoryPath(f"dc1/host/{cluster}")
    members = [vim.HostSystem(sim.host(h).moid, si._stub) for h in hosts]
    spec = vim.cluster.ConfigSpecEx(groupSpec=[vim.cluster.GroupSpec(
        operation="add", info=vim.cluster.HostGroup(name=name, host=members))])
    WaitForTask(ref.ReconfigureComputeResource_Task(spec, True))


def test_flavor_host_group_pins_the_vm_with_a_vm_host_rule(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    _add_host_group(server, "cluster-a", "gpu-hosts", ["esx-a3"])
    node = node_of(drv, "cluster-a")
    pinned = [make_instance(node, memory_mb=2048, name=f"gpu-{i}",
                            extra_specs={"vsphere:host_group": "gpu-hosts"}) for i in range(2)]
    for inst in pinned:
        _spawn(drv, ctx, inst)
        assert _host_of(sim, inst) == sim.host("esx-a3").moid
    cluster = sim.cluster("cluster-a")
    groups = {g.name: g for g in cluster.groups}
    assert {v._moId for v in groups["nova-hg-gpu-hosts"].vm} == \
        {sim.vm(i.uuid).moid for i in pinned}
    rule = _rules(sim, "cluster-a")["nova-hg-gpu-hosts"]
    assert rule.mandatory is True and rule.affineHostGroupName == "gpu-hosts"
    for inst in pinned:
        drv.destroy(ctx, inst, [])
    assert "nova-hg-gpu-hosts" not in _rules(sim, "cluster-a")
    assert "nova-hg-gpu-hosts" not in {g.name for g in sim.cluster("cluster-a").groups}
    assert "gpu-hosts" in {g.name for g in sim.cluster("cluster-a").groups}  # not ours


def test_unknown_host_group_is_refused_without_a_vm(vsphere, ctx):
    drv, server = vsphere
    node = node_of(drv, "cluster-a")
    inst = make_instance(node, extra_specs={"vsphere:host_group": "no-such-group"})
    with pytest.raises(exception.ComputeResourcesUnavailable) as err:
        _spawn(drv, ctx, inst)
    assert "no-such-group" in str(err.value)
    assert not drv.instance_exists(inst)
