"""Live migration between clusters through Nova's REST API (os-migrateLive).

Nova live-migrates between nova-compute services, never between two nodes of one
service (ops/live_migrate.py explains why): this module's stack runs two nova-compute
services in one process, compute-1 managing cluster-a and compute-2 cluster-b, against
one simulated vCenter. Nova's conductor, both compute managers and the driver's
pre-checks run for real; the vMotion is asserted in the simulator.
"""

from __future__ import annotations

import threading
import time
import uuid

from pyVmomi import vim

from tests.unit.simulator.helpers import bind, run, wait_until

GIB = 1024
RUNNING = 1

STACK_OPTIONS = {"computes": {"compute-1": ["cluster-a"], "compute-2": ["cluster-b"]}}


class PowerWatch:
    """Samples a simulated VM's power state until stopped: was it ever not powered on?"""

    def __init__(self, vm) -> None:
        self.vm = vm
        self.seen: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.seen.add(self.vm.power_state)
            self.samples += 1

    def __enter__(self) -> PowerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _migrations(stack, sid: str) -> list[dict]:
    return [m for m in stack.api.api_get(f"/os-migrations?instance_uuid={sid}")
            .body["migrations"] if m["migration_type"] == "live-migration"]


def _wait_migration(stack, sid: str, status: str, timeout: float = 30.0) -> dict:
    """The server's live migration, once it has ``status``.

    The source compute marks it completed (or error) after the instance's
    task has been cleared: waiting for the server alone is not enough.
    """
    deadline = time.monotonic() + timeout
    while True:
        migrations = _migrations(stack, sid)
        if len(migrations) == 1 and migrations[0]["status"] == status:
            return migrations[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"live migration of {sid}: not {status} after {timeout:.0f} s: "
                                 f"{[(m['id'], m['status']) for m in migrations]}")
        time.sleep(0.05)


def _live_migrate(stack, sid: str, host: str) -> str:
    """POST os-migrateLive (202, the migration runs in the background); its request ID."""
    # block_migration "auto" needs microversion 2.25; since 2.68 there is no
    # "force": the scheduler checks the requested host (the stack talks "latest").
    response = stack.api.api_post(f"/servers/{sid}/action", {
        "os-migrateLive": {"host": host, "block_migration": "auto"}})
    assert response.status == 202, response
    return response.headers["x-openstack-request-id"]


def _claimed(stack, sid: str) -> dict[str, bool]:
    """Whether each cluster's driver still holds DRS capacity for the instance."""
    return {cluster: sid in stack.drivers[stack.compute_of[cluster]].services.drs.claims(
        stack.sim_cluster(cluster).moid) for cluster in stack.clusters}


def _console_boots(stack, vm) -> int:
    [port] = [d for d in vm.config.hardware.device
              if isinstance(d, vim.vm.device.VirtualSerialPort)]
    ds, rel = port.backing.fileName[1:].split("] ", 1)
    return (stack.sim.files.get(ds, rel).data or b"").decode().count("Power on:")


def test_each_cluster_is_its_own_nova_compute(stack):
    with stack.microversion("2.53"):
        hypervisors = stack.api.api_get("/os-hypervisors/detail").body["hypervisors"]
    assert {h["hypervisor_hostname"]: h["service"]["host"] for h in hypervisors} == {
        stack.nodes["cluster-a"]: "compute-1", stack.nodes["cluster-b"]: "compute-2"}
    assert [list(d.services.nodes) for d in stack.drivers.values()] == [
        [stack.nodes["cluster-a"]], [stack.nodes["cluster-b"]]]


def test_live_migration_moves_the_running_vm_to_the_other_cluster(stack):
    memory = 4 * GIB
    flavor = stack.create_flavor("lm", 2, memory, root_gb=1)
    server = stack.boot("live-1", flavor, cluster="cluster-a")
    sid = server["id"]
    assert server["OS-EXT-SRV-ATTR:host"] == "compute-1"
    vm = stack.sim_vm(sid)
    source_host = vm.host
    booted, boots = vm.boot_time, _console_boots(stack, vm)
    target = stack.sim_cluster("cluster-b")
    vmotions = target.num_vmotions
    assert stack.usages("cluster-a")["MEMORY_MB"] == memory

    with PowerWatch(vm) as watch:
        request = _live_migrate(stack, sid, "compute-2")
        # A refused or failed migration leaves the server ACTIVE on compute-1:
        # the request's failed steps then say why.
        server = stack.wait_for_server(sid, request_id=request)
        failure = stack.action_failure(sid, request)

    assert server["OS-EXT-SRV-ATTR:host"] == "compute-2", failure
    assert server["OS-EXT-SRV-ATTR:hypervisor_hostname"] == stack.nodes["cluster-b"]
    assert server["OS-EXT-STS:power_state"] == RUNNING
    migration = _wait_migration(stack, sid, "completed")
    assert (migration["source_compute"], migration["dest_compute"]) == \
        ("compute-1", "compute-2")
    assert migration["dest_node"] == stack.nodes["cluster-b"]
    # One VM all along, vMotioned while running: never powered off, never booted again.
    assert stack.sim_vm(sid) is vm
    assert watch.samples > 0 and watch.seen == {"poweredOn"}, watch.seen
    assert (vm.power_state, vm.boot_time) == ("poweredOn", booted)
    assert _console_boots(stack, vm) == boots
    assert target.num_vmotions == vmotions + 1
    # On a host of cluster-b our DRS chose, with its files where that host reaches them.
    assert vm.host in target.hosts and vm.host is not source_host
    assert vm.cluster is target
    assert all(ds in vm.host.datastores for ds in vm.datastores)
    assert [n.name for n in vm.networks] == ["br-int"]
    # Placement follows: the allocation moved to cluster-b's provider. (The
    # source drops the migration's allocation on cluster-a just after it marks
    # the migration completed.)
    assert stack.usages("cluster-b")["MEMORY_MB"] == memory
    wait_until(lambda: stack.usages("cluster-a")["MEMORY_MB"] == 0, timeout=30,
               interval=0.05, what="cluster-a still holds the migration's allocation")
    assert _claimed(stack, sid) == {"cluster-a": False, "cluster-b": False}
    # And compute-2 now runs it: a reboot goes through its driver, and the
    # console log (moved with the VM's files) has the boot before and the reset.
    stack.action(sid, "reboot", {"type": "HARD"})
    assert vm.boot_time > booted and vm.host in target.hosts
    output = stack.api.post_server_action(sid, {"os-getConsoleOutput": {}})["output"]
    assert f"Power on: {vm.name} on {source_host.name}" in output
    assert f"Reset: {vm.name} on {vm.host.name}" in output


def _fill(stack, cluster: str, leave_free_mb: int) -> list:
    """Operator VMs (not Nova's) that leave each host of ``cluster`` ``leave_free_mb``."""
    si = stack.pyvmomi()
    fillers = []
    for host in stack.sim_cluster(cluster).hosts:
        free = host.memory_mb - sum(vm.memory_mb for vm in host.vms)
        spec = vim.vm.ConfigSpec(
            name=f"filler-{host.name}-{uuid.uuid4().hex[:6]}", numCPUs=1,
            memoryMB=free - leave_free_mb, guestId="otherGuest",
            files=vim.vm.FileInfo(vmPathName="[shared-all]"))
        ref = run(bind(si, host.datacenter().vm_folder).CreateVM_Task(
            spec, bind(si, host.cluster.resource_pool), bind(si, host)))
        run(ref.PowerOnVM_Task())
        fillers.append(ref)
    return fillers


def test_live_migration_refused_by_the_prechecks_leaves_the_server_where_it_was(stack):
    memory = 64 * GIB
    flavor = stack.create_flavor("lm-big", 4, memory, root_gb=1)
    sid = stack.boot("live-2", flavor, cluster="cluster-a")["id"]
    vm = stack.sim_vm(sid)
    before = (vm.host, vm.boot_time, vm.power_state)
    # vCenter's cluster-b fills up behind Nova's back: placement (not refreshed
    # since) still offers it, the driver's check on compute-2 reads vCenter now.
    fillers = _fill(stack, "cluster-b", leave_free_mb=memory // 2)
    try:
        _live_migrate(stack, sid, "compute-2")
        _wait_migration(stack, sid, "error")
        server = stack.wait_for_server(sid)
    finally:
        for ref in fillers:
            run(ref.PowerOffVM_Task())
            run(ref.Destroy_Task())

    assert server["status"] == "ACTIVE" and server["OS-EXT-STS:power_state"] == RUNNING
    assert server["OS-EXT-SRV-ATTR:host"] == "compute-1"
    assert server["OS-EXT-SRV-ATTR:hypervisor_hostname"] == stack.nodes["cluster-a"]
    assert (vm.host, vm.boot_time, vm.power_state) == before
    assert stack.sim_vm(sid) is vm and vm.cluster.name == "cluster-a"
    # The destination's check held nothing back for it.
    assert _claimed(stack, sid)["cluster-b"] is False
    assert stack.usages("cluster-a")["MEMORY_MB"] == memory
    assert stack.usages("cluster-b").get("MEMORY_MB", 0) == 0
    # Why: compute-2's driver refused in its destination check (the event's
    # "details", microversion 2.84, carry the pre-check's reason).
    [action] = [a for a in stack.api.get_instance_actions(sid)
                if a["action"] == "live-migration"]
    events = {e["event"]: e for e in
              stack.api.get_instance_action_details(sid, action["request_id"])["events"]}
    check = events["compute_check_can_live_migrate_destination"]
    assert (check["result"], check["host"]) == ("Error", "compute-2"), check
    assert "no ESXi host of cluster cluster-b can take the instance" in check["details"], check
