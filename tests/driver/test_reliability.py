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

from nova_vsphere_driver import driver as vsphere_driver
from nova_vsphere_driver.simulator.objects.virtual_machine import VirtualMachine
from nova_vsphere_driver.vsphere import session as session_mod
from tests.driver.conftest import configure, make_instance, new_tree, node_of
from tests.unit.simulator.helpers import wait_until

GB = 1024



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
    node = node_of(drv, "cluster-a")
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
    node = node_of(drv, "cluster-a")
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
    node = node_of(drv, "cluster-a")
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
    node = node_of(drv, "cluster-a")
    instance = make_instance(node)
    sim.faults.fail_next(method, fault)
    with pytest.raises(expected):
        _spawn(drv, ctx, instance)
    assert _nova_vms(sim) == set()
    assert not [e for e in sim.files.listdir("shared-a", "")
                if e.path.startswith(instance.uuid)]
    assert instance.uuid not in drv.services.drs.claims(drv.services.nodes[node].moref)


def _after_task_starts(sim, method: str, action) -> threading.Thread:
    """Run ``action`` once the simulator has a ``method`` task (in a thread)."""
    def watch() -> None:
        wait_until(lambda: any(t.method == method for t in sim.tasks.recent), timeout=30)
        action()

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def test_a_failed_read_of_a_running_task_is_not_its_outcome(vsphere, ctx):
    """One refused poll while CreateVM_Task runs: the spawn waits on and succeeds."""
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_of(drv, "cluster-a"))
    sim.faults.add_latency("CreateVM_Task", 1.0)
    watcher = _after_task_starts(sim, "CreateVM_Task", lambda: sim.faults.fail_next(
        "RetrievePropertiesEx", "NoPermission"))
    try:
        _spawn(drv, ctx, instance)
    finally:
        watcher.join()
        sim.faults.clear()
    assert _nova_vms(sim) == {instance.uuid}
    assert drv.get_info(instance).state == power_state.RUNNING


def test_a_vm_made_after_the_wait_for_its_creation_failed_is_no_orphan(vsphere, ctx):
    """Every poll of a running CreateVM_Task refused until the wait gives up: the
    failed spawn waits for the task to end, then removes the VM it made."""
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_of(drv, "cluster-a"))
    sim.faults.add_latency("CreateVM_Task", 2.0)
    watcher = _after_task_starts(sim, "CreateVM_Task", lambda: sim.faults.fail_next(
        "RetrievePropertiesEx", "NoPermission", count=session_mod.TASK_POLL_ATTEMPTS))
    try:
        with pytest.raises(exception.NovaException):
            _spawn(drv, ctx, instance)
    finally:
        watcher.join()
        sim.faults.clear()
    # Whatever the spawn did, the task has ended before anything is judged.
    wait_until(lambda: all(t.done.is_set() for t in sim.tasks.recent), timeout=30)
    assert any(t.method == "CreateVM_Task" and t.state == "success" for t in sim.tasks.recent)
    assert _nova_vms(sim) == set()
    assert instance.uuid not in drv.services.drs.claims(drv.services.nodes[instance.node].moref)


def test_destroy_whose_outcome_cannot_be_read_succeeds_when_the_vm_is_gone(vsphere, ctx,
                                                                           monkeypatch):
    """Destroy_Task did its work but reading its outcome failed: Nova must
    not keep the instance in ERROR for a VM that is gone."""
    drv, server = vsphere
    sim = server.simulator
    node = node_of(drv, "cluster-a")
    instance = make_instance(node)
    _spawn(drv, ctx, instance)
    deleted = VirtualMachine.destroy

    def delete_then_refuse_reads(vm) -> None:
        deleted(vm)
        # Before the task reports success: every poll of it from now on fails.
        sim.faults.fail_next("RetrievePropertiesEx", "NoPermission", count=100)

    monkeypatch.setattr(VirtualMachine, "destroy", delete_then_refuse_reads)
    try:
        drv.destroy(ctx, instance, [])
    finally:
        sim.faults.clear()
    assert _nova_vms(sim) == set()
    assert instance.uuid not in drv.services.drs.claims(drv.services.nodes[node].moref)


def test_destroy_whose_outcome_cannot_be_read_fails_while_the_vm_is_there(vsphere, ctx):
    """The same refused reads while the task is still running: the VM is
    still there, so the destroy fails (Nova keeps the instance to delete again)."""
    drv, server = vsphere
    sim = server.simulator
    node = node_of(drv, "cluster-a")
    instance = make_instance(node)
    _spawn(drv, ctx, instance)
    sim.faults.add_latency("Destroy_Task", 30.0)
    watcher = _after_task_starts(sim, "Destroy_Task", lambda: sim.faults.fail_next(
        "RetrievePropertiesEx", "NoPermission", count=100))
    try:
        with pytest.raises(exception.NovaException):
            drv.destroy(ctx, instance, [])
        assert _nova_vms(sim) == {instance.uuid}
    finally:
        watcher.join()
        sim.faults.clear()
        for task in sim.tasks.recent:
            task.cancel_requested.set()


def test_failed_vmotion_in_a_balancing_pass_leaves_the_vm_in_place(vsphere, ctx):
    drv, server = vsphere
    sim = server.simulator
    node = node_of(drv, "cluster-a")
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
    node = node_of(drv, "cluster-a")
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
    node = node_of(drv, "cluster-a")
    instance = make_instance(node)
    drv.services.session.api_timeout = 0.5  # what [vsphere] api_timeout sets at init_host
    sim.faults.add_latency("PowerOnVM_Task", 5)
    started = time.monotonic()
    with pytest.raises(exception.NovaException, match="did not answer in time"):
        _spawn(drv, ctx, instance)
    assert time.monotonic() - started < 4
    sim.faults.clear()
    time.sleep(5)  # the slow task ends; the failed spawn removed the VM meanwhile
    assert instance.uuid not in _nova_vms(sim) or \
        drv.get_info(instance).state != power_state.RUNNING


class Recorded:
    """Wraps a callable; keeps (start, end, thread name) of every call."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.calls: list[tuple[float, float, str]] = []
        self.running: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        start, thread = time.monotonic(), threading.current_thread()
        with self._lock:
            self.running[thread.ident] = (start, thread.name)
        try:
            return self.fn(*args, **kwargs)
        finally:
            with self._lock:
                del self.running[thread.ident]
                self.calls.append((start, time.monotonic(), thread.name))

    def between(self, start: float, end: float) -> list[tuple[float, float, str]]:
        with self._lock:
            return [c for c in self.calls if start <= c[0] < end]

    def started(self) -> list[tuple[float, str]]:
        """(start, thread name) of the calls under way."""
        with self._lock:
            return list(self.running.values())


def _overlapping(calls) -> list:
    calls = sorted(calls)
    return [(a, b) for a, b in zip(calls, calls[1:], strict=False) if b[0] < a[1]]


@pytest.fixture
def timed_drs(tls_sim, conf_overrides, nova_db):
    """A driver whose DRS loop runs on its timers: a round every second, balancing due
    every second (the smallest values the options take)."""
    configure(conf_overrides, tls_sim, clusters=("cluster-a",))
    conf_overrides("vsphere_drs", poll_interval=1, balance_interval=1)
    drv = vsphere_driver.VSphereDriver(None)
    # The loop calls self.run_drs_pass: the instance attribute is what it runs.
    drv.run_drs_pass = rounds = Recorded(drv.run_drs_pass)
    drv.init_host("compute-1")  # the loop's first round comes a poll_interval later
    drv.services.drs.balance = passes = Recorded(drv.services.drs.balance)
    # What a pass does under its cluster's lock: issue its vMotions.
    drv.services.drs.run_moves = vmotions = Recorded(drv.services.drs.run_moves)
    yield drv, tls_sim.simulator, rounds, passes, vmotions
    drv.cleanup_host("compute-1")


def test_a_slow_vcenter_piles_up_no_drs_rounds_and_holds_up_no_resource_update(timed_drs,
                                                                               ctx):
    drv, sim, rounds, passes, vmotions = timed_drs
    node = node_of(drv, "cluster-a")
    # Every balancing pass has slow work to do under its lock: all VMs start on one
    # host and each vMotion runs for a while, then fails (the VMs stay skewed). A
    # resource update takes one read, or two when it finds a round's read in flight
    # and waits for it: a vMotion outlasts two reads by far, so a resource update that
    # did not queue behind the pass ends before the pass's vMotion on a loaded machine.
    vmotion_s = 3.0
    sim.faults.fail_next("RelocateVM_Task", "InvalidState", count=10_000)
    sim.faults.add_latency("RelocateVM_Task", vmotion_s)
    others = [h for h in sim.cluster("cluster-a").hosts if h.name != "esx-a1"]
    for host in others:
        sim.disconnect_host(host.name)
    for i in range(6):
        _spawn(drv, ctx, make_instance(node, memory_mb=16 * GB, name=f"skew{i}"))
    for host in others:
        sim.reconnect_host(host.name)
    latency = 0.8  # every property read: a DRS round now outlasts balance_interval
    sim.faults.add_latency("RetrievePropertiesEx", latency)
    slow_from = time.monotonic()
    reads, manual = [], []
    while time.monotonic() - slow_from < 7:
        # An operator's `nova-vsphere-drs apply` and, once its vMotions run, Nova's
        # periodic resource update, while the loop's rounds run in their thread.
        report: list = []
        operator = threading.Thread(
            target=lambda out=report: out.append(drv.balance_cluster(node)), name="operator")
        operator.start()
        wait_until(lambda: any(name == "operator" for _, name in vmotions.started()), 15,
                   what="the operator's pass issued no vMotion")
        started = time.monotonic()
        drv.get_available_resource(node)
        reads.append((started, time.monotonic()))
        operator.join(30)
        manual.extend(report)
    sim.faults.clear()
    fast_from = time.monotonic()
    settled = 2 * latency + vmotion_s  # what was in flight when the faults cleared
    time.sleep(settled + 3.2)
    slow_rounds = rounds.between(slow_from, fast_from)
    fast_rounds = rounds.between(fast_from + settled, fast_from + settled + 3.2)

    # The loop ran, one round at a time, each waiting poll_interval after the last
    # ended (a fixed delay, not a rate): a slow vCenter sees at most one DRS read in
    # flight from it and an idle second between them.
    assert len(slow_rounds) >= 2, rounds.calls
    assert {c[2] for c in rounds.calls} == {"vsphere-drs"}
    ordered = sorted(rounds.calls)
    gaps = [b[0] - a[1] for a, b in zip(ordered, ordered[1:], strict=False)]
    assert min(gaps) >= 0.95, gaps
    assert all(end - start >= latency for start, end, _ in slow_rounds)
    # Every pass tried vMotions (and took its time); no two passes, the loop's or
    # the operator's, ran theirs at once: they queue on the cluster's pass lock
    # instead of planning against each other.
    assert manual and all(report.moves and report.failed for report in manual)
    loop_passes = [c for c in passes.calls if c[2] == "vsphere-drs"]
    assert loop_passes and len(passes.calls) == len(manual) + len(loop_passes)
    # (those over before the faults were cleared: one may straddle it and be quick)
    slow_vmotions = [c for c in vmotions.between(slow_from, fast_from) if c[1] < fast_from]
    assert {c[2] for c in slow_vmotions} == {"vsphere-drs", "operator"}
    assert all(end - start >= vmotion_s for start, end, _ in slow_vmotions), slow_vmotions
    assert not _overlapping(vmotions.calls), vmotions.calls
    # A resource update never waited behind a DRS pass: each one, made while the
    # operator's vMotions ran, was over before they were.
    operator_vmotions = sorted(c for c in slow_vmotions if c[2] == "operator")
    for (start, end), (_, vmotions_end, _) in zip(reads, operator_vmotions, strict=True):
        assert end < vmotions_end, (start, end, vmotions_end)
    # Latency gone, no catch-up burst of the rounds it delayed: still one a second.
    assert 1 <= len(fast_rounds) <= 4, fast_rounds


def test_a_read_slower_than_api_timeout_fails_in_bounded_time(tls_sim, conf_overrides,
                                                               nova_db):
    # Full reads (the cluster cache's slow update: test_cluster_cache.py).
    configure(conf_overrides, tls_sim, clusters=("cluster-a",), api_timeout=1.0,
              cluster_cache=False)
    conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
    drv = vsphere_driver.VSphereDriver(None)
    drv.init_host("compute-1")
    try:
        node = node_of(drv, "cluster-a")
        sim = tls_sim.simulator
        latency = 4.0
        sim.faults.add_latency("RetrievePropertiesEx", latency)
        started = time.monotonic()
        with pytest.raises(exception.NovaException) as failure:
            drv.get_available_resource(node)
        elapsed = time.monotonic() - started
        sim.faults.clear()
        # api_retry_count = 2: three attempts of at most api_timeout each, with
        # pauses of 0.5 s and 1 s between them (4.5 s); three attempts that waited
        # for the answers would take 3 * latency and more. The bound in between
        # leaves a loaded machine its margin.
        assert 3 * 1.0 < elapsed < 3 * latency, elapsed
        assert "cluster-a" in str(failure.value) or "vCenter" in str(failure.value), \
            failure.value
        assert drv.get_available_resource(node)["memory_mb"] == \
            sum(h.memory_mb for h in sim.cluster("cluster-a").hosts)
    finally:
        drv.cleanup_host("compute-1")


def test_soak_of_concurrent_operations_under_random_faults(vsphere, ctx, caplog):
    """Several threads, mixed operations, random injected faults; then the
    simulator, the driver and the record of what Nova would believe agree."""
    caplog.set_level(logging.ERROR)
    drv, server = vsphere
    sim = server.simulator
    nodes = [node_of(drv, "cluster-a"), node_of(drv, "cluster-b")]
    rng = random.Random(20261124)
    alive: dict[str, object] = {}  # uuid -> instance Nova believes exists
    lock = threading.Lock()
    counts: collections.Counter[str] = collections.Counter()
    faults = [("CreateVM_Task", "InsufficientResourcesFault"),
              ("PowerOnVM_Task", "InsufficientHostMemoryCapacityFault"),
              ("PowerOffVM_Task", "InvalidState"), ("Destroy_Task", "TaskInProgress"),
              ("ResetVM_Task", "InvalidState"), ("RelocateVM_Task", "InvalidState"),
              # Refused property reads on a valid session: errors, never "empty".
              ("RetrievePropertiesEx", "SecurityError"),
              ("RetrievePropertiesEx", "NotAuthenticated"),
              ("RetrievePropertiesEx", "NoPermission")]
    ops_per_thread, threads_n = 50, 4
    unexpected: list = []
    # What a read that succeeded said, where it contradicts vCenter: capacity
    # that dropped, instances that vanished.
    wrong: list = []
    capacity = {node: sum(h.memory_mb for h in sim.cluster(drv.services.nodes[node].name).hosts)
                for node in nodes}
    ever_destroyed: set[str] = set()
    errored: set[str] = set()  # instances Nova keeps in ERROR: a delete failed

    def left_in_error(instance) -> None:
        """Nova keeps an instance whose delete failed (ERROR); its VM may be there or not."""
        counts["left in ERROR"] += 1
        with lock:
            alive[instance.uuid] = instance
            errored.add(instance.uuid)

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
                          "power_off", "power_on", "info", "resources", "drs", "list"])
        if pick is None and op in ("destroy", "reboot", "power_off", "power_on", "info"):
            op = "spawn"
        counts[op] += 1
        try:
            if op == "spawn":
                inst = make_instance(trng.choice(nodes), vcpus=trng.choice([1, 2, 4]),
                                     memory_mb=trng.choice([1024, 2048, 4096]), root_gb=1)
                try:
                    _spawn(drv, ctx, inst)
                except Exception:
                    # Nova's compute manager destroys whatever a failed spawn
                    # may have left; if that fails too, the instance stays (ERROR).
                    with lock:
                        ever_destroyed.add(inst.uuid)
                    try:
                        drv.destroy(ctx, inst, [])
                    except Exception:
                        left_in_error(inst)
                    raise
                with lock:
                    alive[inst.uuid] = inst
            elif op == "destroy":
                with lock:
                    if alive.pop(pick.uuid, None) is None:
                        return  # another thread took it
                    ever_destroyed.add(pick.uuid)
                try:
                    drv.destroy(ctx, pick, [])
                except Exception:
                    # Nova keeps the instance (ERROR) when destroy fails;
                    # the user deletes it again.
                    counts["destroy retried"] += 1
                    try:
                        drv.destroy(ctx, pick, [])
                    except Exception:
                        left_in_error(pick)  # still there, as Nova knows
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
                tree = new_tree(node)
                drv.update_provider_tree(tree, node)
                total = tree.data(node).inventory["MEMORY_MB"]["total"]
                if total != capacity[node]:
                    wrong.append(f"{node}: MEMORY_MB total {total}, not {capacity[node]}")
            elif op == "list":
                with lock:
                    before = set(alive)
                listed = set(drv.list_instance_uuids())
                with lock:
                    # In Nova's record throughout the call, and never being deleted.
                    stayed = (before & set(alive)) - ever_destroyed
                if stayed - listed:
                    wrong.append(f"instances missing from the list: {stayed - listed}")
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
    assert not wrong, wrong
    assert sum(counts[op] for op in ("spawn", "destroy", "reboot", "power_off", "power_on",
                                     "info", "resources", "drs", "list")) == \
        ops_per_thread * threads_n
    # The user deletes again what Nova left in ERROR (the VM of a delete that
    # failed may be there or not): with vCenter answering, that works.
    for uuid in sorted(errored & set(alive)):
        drv.destroy(ctx, alive.pop(uuid), [])
    # Every other instance Nova has is a VM, and no VM is left that Nova forgot.
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
