"""Resize and cold migration through Nova's REST API: the real compute manager drives
migrate_disk_and_power_off, finish_migration, confirm/revert (and destroy on revert)."""

from __future__ import annotations

GIB = 1024
KB_PER_GB = 1024 * 1024

#: One nova-compute runs both clusters: a resize to the other cluster is a
#: resize "to the same host" for Nova's scheduler.
STACK_OPTIONS = {"conf": {"allow_resize_to_same_host": True}}


def _disks_kb(vm) -> list[int]:
    return [d.capacityInKB for d in vm.disks()]


def _record(vm) -> dict:
    return {o.key: o.value for o in vm.config.extraConfig or []
            if o.key.startswith("nova.resize.")}


def test_resize_then_confirm(stack):
    small = stack.create_flavor("rs-small", 2, 4 * GIB, root_gb=1)
    big = stack.create_flavor("rs-big", 4, 8 * GIB, root_gb=2)
    sid = stack.boot("resize-1", small)["id"]
    vm = stack.sim_vm(sid)
    server = stack.action(sid, "resize", {"flavorRef": big}, status="VERIFY_RESIZE")
    assert server["flavor"]["original_name"] == "rs-big"
    assert (vm.num_cpus, vm.memory_mb, vm.power_state) == (4, 8 * GIB, "poweredOn")
    assert _disks_kb(vm) == [2 * KB_PER_GB]
    assert _record(vm)  # kept for a revert until the resize is confirmed
    assert stack.cluster_of(server) == vm.cluster.name
    server = stack.action(sid, "confirmResize")
    assert server["OS-EXT-STS:power_state"] == 1
    assert stack.sim_vm(sid) is vm  # one VM all along
    assert (vm.num_cpus, vm.memory_mb, _disks_kb(vm)) == (4, 8 * GIB, [2 * KB_PER_GB])
    assert _record(vm) == {}
    assert len([f for f in stack.sim_files(sid) if f.endswith(".vmdk")]) == 1


def test_resize_then_revert(stack):
    small = stack.create_flavor("rv-small", 2, 4 * GIB, root_gb=1)
    big = stack.create_flavor("rv-big", 4, 8 * GIB, root_gb=3)
    server = stack.boot("revert-1", small)
    sid = server["id"]
    vm = stack.sim_vm(sid)
    before = (vm.host.name, vm.cluster.name, vm.config.files.vmPathName)
    stack.action(sid, "resize", {"flavorRef": big}, status="VERIFY_RESIZE")
    assert (vm.num_cpus, _disks_kb(vm)) == (4, [3 * KB_PER_GB])
    server = stack.action(sid, "revertResize")
    assert server["flavor"]["original_name"] == "rv-small"
    assert server["OS-EXT-STS:power_state"] == 1
    assert stack.sim_vm(sid) is vm  # revert_resize's destroy left it alone
    assert (vm.num_cpus, vm.memory_mb, vm.power_state) == (2, 4 * GIB, "poweredOn")
    assert _disks_kb(vm) == [1 * KB_PER_GB]
    assert (vm.host.name, vm.cluster.name, vm.config.files.vmPathName) == before
    assert _record(vm) == {}
    assert stack.cluster_of(server) == before[1]


def test_cold_migration_of_a_stopped_server(stack):
    flavor = stack.create_flavor("cm", 2, 4 * GIB, root_gb=1)
    sid = stack.boot("migrate-1", flavor)["id"]
    stack.action(sid, "os-stop", status="SHUTOFF")
    vm = stack.sim_vm(sid)
    server = stack.action(sid, "migrate", None, status="VERIFY_RESIZE")
    assert vm.power_state == "poweredOff"  # a stopped server stays stopped
    assert stack.cluster_of(server) == vm.cluster.name
    server = stack.action(sid, "confirmResize", status="SHUTOFF")
    assert _record(vm) == {} and vm.power_state == "poweredOff"
