"""Faults survived: expired sessions, a vCenter restart, failed tasks, lost hosts,
a slow vCenter, and a soak of concurrent operations under random faults."""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
import traceback

import pytest
from nova import exception
from nova.compute import power_state

from tests.driver.conftest import make_instance, new_tree

GB = 1024


def _node(drv, cluster: str) -> str:
    return next(n for n, ref in drv._nodes.items() if ref.name == cluster)


def _spawn(drv, ctx, instance):
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])


def _nova_vms(sim) -> set[str]:
    """Instance UUIDs of the VMs in the simulator that this driver created."""
    out = set()
    for vm in sim.vms():
        config = vm.get_property("config")
        if config.managedBy and config.managedBy.extensionKey == "org.openstack.compute":
            out.add(config.instanceUuid)
    return out


@pytest.mark.parametrize("method", ["CreateVM_Task", "PowerOnVM_Task", "RetrievePropertiesEx"])
def test_session_expiry_mid_spawn_is_survived(vsphere, ctx, method):
    drv, server = vsphere
    sim = server.simulator
    node = _node(drv, "cluster-a")
    instance = make_instance(node)
    logins = sim.request_counts.get("Login", 0)
    sim.faults.expire_sessions_before(method)
    _spawn(drv, ctx, instance)
    assert sim.request_counts["Login"] == logins + 1  # logged in again, once
    assert _nova_vms(sim) == {instance.uuid}  # created exactly once
    assert drv.get_info(instance).state == power_state.RUNNING


def test_session_expiry_mid_destroy_and_resource_update(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    node = _node(drv, "cluster-a")
    instance = make_instance(node)
    _spawn(drv, ctx, instance)
    sim.faults.expire_sessions_before("Destroy_Task")
    drv.destroy(ctx, instance, [])
    assert _nova_vms(sim) == set()
    # The cached ContainerView died with the session: it is made again.
    sim.expire_sessions()
    tree = new_tree(node)
    drv.update_provider_tree(tree, node)
    assert tree.data(node).inventory["MEMORY_MB"]["total"] == \
        sum(h.memory_mb for h in sim.cluster("cluster-a").hosts)


def test_simulator_restart_mid_spawn_completes_or_cleans_up(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    node = _node(drv, "cluster-a")
    instance = make_instance(node)
    sim.faults.add_latency("CreateVM_Task", 0.5)
    outcome: dict[str, object] = {}

    def boot():
        try:
            _spawn(drv, ctx, instance)
            outcome["ok"] = True
        except Exception as exc:  # either outcome is acceptable; checked below
            outcome["error"] = exc

    thread = threading.Thread(target=boot)
    thread.start()
    time.sleep(0.2)
    server.restart()  # state kept, sessions and connections dropped
    thread.join(120)
    assert not thread.is_alive()
    sim.faults.clear()
    if outcome.get("ok"):
        assert _nova_vms(sim) == {instance.uuid}
        assert drv.get_info(instance).state == power_state.RUNNING
    else:
        assert _nova_vms(sim) == set(), outcome["error"]
    tree = new_tree(node)
    drv.update_provider_tree(tree, node)
    assert tree.data(node).inventory["VCPU"]["total"] == \
        sum(h.threads for h in sim.cluster("cluster-a").hosts)


@pytest.mark.parametrize("method,fault,expected", [
    ("CreateVM_Task", "InsufficientResourcesFault", exception.ComputeResourcesUnavailable),
    ("CreateVM_Task", "NoDiskSpace", exception.ComputeResourcesUnavailable),
    ("CreateVM_Task", "DuplicateName", exception.InstanceExists),
    ("CreateVM_Task", "InvalidArgument", exception.NovaException),
    ("PowerOnVM_Task", "InsufficientHostMemoryCapacityFault",
     exception.ComputeResourcesUnavailable),
    ("PowerOnVM_Task", "InvalidPowerState", exception.InstanceInvalidState),
    ("PowerOnVM_Task", "FileNotFound", exception.NovaException),
])
def test_task_faults_become_nova_exceptions_without_orphans(vsphere, ctx, method, fault,
                                                            expected):
    drv, server = vsphere
    sim = server.simulator
    node = _node(drv, "cluster-a")
    instance = make_instance(node)
    sim.faults.fail_next(method, fault)
    with pytest.raises(expected):
        _spawn(drv, ctx, instance)
    assert _nova_vms(sim) == set()
    assert not [e for e in sim.files.listdir("shared-a", "")
                if e.path.startswith(instance.uuid)]
    assert instance.uuid not in drv._drs.claims(drv._nodes[node].moref)


def test_failed_vmotion_in_a_balancing_pass_leaves_the_vm_in_place(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    node = _node(drv, "cluster-a")
    # Everything on one host: pin by making the others unusable, then free them.
    others = [h for h in sim.cluster("cluster-a").hosts if h.name != "esx-a1"]
    for host in others:
        sim.disconnect_host(host.name)
    instances = [make_instance(node, memory_mb=16 * GB, name=f"v{i}") for i in range(6)]
    for inst in instances:
        _spawn(drv, ctx, inst)
    for host in others:
        sim.reconnect_host(host.name)
    sim.faults.fail_next("RelocateVM_Task", "InvalidState", count=100)
    report = drv.balance_cluster(node)
    assert report.moves and report.failed
    a1 = sim.host("esx-a1").moid
    assert all(sim.vm(i.uuid).get_property("runtime.host")._moId == a1 for i in instances)
    sim.faults.clear()
    report = drv.balance_cluster(node)
    assert report.moves and not report.failed


def test_disconnected_host_leaves_inventory_and_is_never_a_target(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    node = _node(drv, "cluster-a")
    tree = new_tree(node)
    drv.update_provider_tree(tree, node)
    total = tree.data(node).inventory["MEMORY_MB"]["total"]
    lost = sim.host("esx-a3")
    sim.disconnect_host("esx-a3")
    drv.update_provider_tree(tree, node)
    assert tree.data(node).inventory["MEMORY_MB"]["total"] == total - lost.memory_mb
    instances = [make_instance(node, memory_mb=2 * GB, name=f"d{i}") for i in range(6)]
    for inst in instances:
        _spawn(drv, ctx, inst)
        assert sim.vm(inst.uuid).get_property("runtime.host")._moId != lost.moid
    assert not [m for r in drv.run_drs_pass(node, force_balance=True) for m in r.moves
                if m.target == lost.moid]
    sim.reconnect_host("esx-a3")
    drv.update_provider_tree(tree, node)
    assert tree.data(node).inventory["MEMORY_MB"]["total"] == total


def test_a_stuck_task_is_bounded_by_api_timeout(vsphere, ctx, conf_overrides):
    drv, server = vsphere
    sim = server.simulator
    node = _node(drv, "cluster-a")
    instance = make_instance(node)
    drv._session.api_timeout = 0.5  # what [vsphere] api_timeout sets at init_host
    sim.faults.add_latency("PowerOnVM_Task", 5)
    started = time.monotonic()
    with pytest.raises(exception.NovaException, match="did not answer in time"):
        _spawn(drv, ctx, instance)
    assert time.monotonic() - started < 4
    sim.faults.clear()
    time.sleep(5)  # the slow task ends; the failed spawn removed the VM meanwhile
    assert instance.uuid not in _nova_vms(sim) or \
        drv.get_info(instance).state != power_state.RUNNING


def test_soak_of_concurrent_operations_under_random_faults(vsphere, ctx, caplog):
    """Several threads, mixed operations, random injected faults; then the
    simulator, the driver and the record of what Nova would believe agree."""
    caplog.set_level(logging.ERROR)
    drv, server = vsphere
    sim = server.simulator
    nodes = [_node(drv, "cluster-a"), _node(drv, "cluster-b")]
    rng = random.Random(20261124)
    alive: dict[str, object] = {}  # uuid -> instance Nova believes exists
    lock = threading.Lock()
    counts: collections.Counter[str] = collections.Counter()
    faults = [("CreateVM_Task", "InsufficientResourcesFault"),
              ("PowerOnVM_Task", "InsufficientHostMemoryCapacityFault"),
              ("PowerOffVM_Task", "InvalidState"), ("Destroy_Task", "TaskInProgress"),
              ("ResetVM_Task", "InvalidState"), ("RelocateVM_Task", "InvalidState")]
    ops_per_thread, threads_n = 50, 4
    unexpected: list = []

    def one_op(trng: random.Random) -> None:
        if trng.random() < 0.25:
            method, fault = trng.choice(faults)
            sim.faults.fail_next(method, fault)
            counts["fault injected"] += 1
        if trng.random() < 0.05:
            sim.faults.expire_sessions_before(trng.choice(
                ["RetrievePropertiesEx", "CreateVM_Task", "PowerOnVM_Task"]))
            counts["session expiry injected"] += 1
        with lock:
            pick = trng.choice(list(alive.values())) if alive else None
        op = trng.choice(["spawn", "spawn", "spawn", "destroy", "destroy", "reboot",
                          "power_off", "power_on", "info", "resources", "drs"])
        if pick is None and op in ("destroy", "reboot", "power_off", "power_on", "info"):
            op = "spawn"
        counts[op] += 1
        try:
            if op == "spawn":
                inst = make_instance(trng.choice(nodes), vcpus=trng.choice([1, 2, 4]),
                                     memory_mb=trng.choice([1024, 2048, 4096]), root_gb=1)
                _spawn(drv, ctx, inst)
                with lock:
                    alive[inst.uuid] = inst
            elif op == "destroy":
                with lock:
                    if alive.pop(pick.uuid, None) is None:
                        return  # another thread took it
                try:
                    drv.destroy(ctx, pick, [])
                except Exception:
                    # Nova keeps the instance (ERROR) when destroy fails;
                    # the user deletes it again.
                    counts["destroy retried"] += 1
                    try:
                        drv.destroy(ctx, pick, [])
                    except Exception:
                        with lock:
                            alive[pick.uuid] = pick  # still there, as Nova knows
                        raise
            elif op == "reboot":
                drv.reboot(ctx, pick, [], trng.choice(["SOFT", "HARD"]))
            elif op == "power_off":
                drv.power_off(pick)
            elif op == "power_on":
                drv.power_on(ctx, pick, [])
            elif op == "info":
                drv.get_info(pick)
            elif op == "resources":
                node = trng.choice(nodes)
                drv.update_provider_tree(new_tree(node), node)
            else:
                drv.run_drs_pass(trng.choice(nodes), force_balance=True)
        except exception.InstanceNotFound:
            counts["raced with destroy"] += 1
        except (exception.NovaException, exception.ComputeResourcesUnavailable):
            counts[f"{op} failed cleanly"] += 1
        except Exception as exc:  # a driver bug: fail the test, with the traceback
            unexpected.append((op, exc, traceback.format_exc()))

    def worker(seed: int) -> None:
        trng = random.Random(seed)
        for _ in range(ops_per_thread):
            one_op(trng)

    workers = [threading.Thread(target=worker, args=(rng.randrange(1 << 30),))
               for _ in range(threads_n)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(300)
    assert not any(t.is_alive() for t in workers)
    sim.faults.clear()
    print("soak:", dict(sorted(counts.items())))
    assert not unexpected, unexpected[0][2]
    assert sum(counts[op] for op in ("spawn", "destroy", "reboot", "power_off", "power_on",
                                     "info", "resources", "drs")) == ops_per_thread * threads_n
    expected = set(alive)
    assert _nova_vms(sim) == expected
    assert set(drv.list_instance_uuids()) == expected
    for inst in alive.values():
        assert drv.instance_exists(inst)
    # No host ended up over its memory.
    for host in sim.hosts():
        used = sum(v.get_property("config.hardware.memoryMB") for v in sim.vms()
                   if v.get_property("runtime.host")._moId == host.moid
                   and v.get_property("runtime.powerState") == "poweredOn")
        assert used <= host.memory_mb
