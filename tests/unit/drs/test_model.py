import math

import pytest

from nova_vsphere_driver.drs import (
    ClusterSnapshot,
    HostState,
    Move,
    PowerState,
    host_usage,
    imbalance,
    load_weights,
    normalized_loads,
)
from tests.unit.drs.factory import GB, host, vm


def test_host_defaults_and_capacity():
    h = host("h1", cores=10, memory_gb=64, reserved_memory_mb=4096, reserved_cpu_mhz=2000,
             threads=0)
    assert h.name == "h1" and h.threads == 10  # threads default to cores
    assert h.cpu_capacity_mhz == 10 * 2000 - 2000
    assert h.memory_capacity_mb == 60 * GB
    assert h.usable
    assert not host("h2", state="entering_maintenance").usable
    assert host("h3", state="maintenance").state is HostState.MAINTENANCE


def test_usage_counts_powered_on_vms_only():
    snap = ClusterSnapshot(
        (host("h1"), host("h2")),
        (vm("a", "h1", memory_gb=4, vcpus=2, cpu=500, active_memory_mb=1024),
         vm("b", "h1", memory_gb=8, vcpus=4, cpu=700),
         vm("c", "h1", memory_gb=16, vcpus=8, power_state=PowerState.OFF),
         vm("d", None, memory_gb=2)))
    u = host_usage(snap)["h1"]
    assert u.memory_committed_mb == 12 * GB
    assert u.vcpus_committed == 6
    assert u.cpu_demand_mhz == 1200
    assert u.memory_demand_mb == 1024 + 8 * GB  # active memory when known
    assert (u.vms, u.powered_on) == (3, 2)
    assert host_usage(snap)["h2"].vms == 0


def test_normalized_load_and_imbalance_match_the_documented_formula():
    snap = ClusterSnapshot(
        (host("h1", cores=10, memory_gb=100), host("h2", cores=20, memory_gb=50),
         host("h3", state="maintenance")),
        (vm("a", "h1", memory_gb=50, cpu=10000), vm("b", "h2", memory_gb=10, cpu=4000)))
    cpu_util = 14000 / (20000 + 40000)
    mem_util = 60 / 150
    w_cpu, w_mem = load_weights(snap)
    assert w_cpu == pytest.approx(cpu_util / (cpu_util + mem_util))
    assert w_cpu + w_mem == pytest.approx(1)
    loads = normalized_loads(snap)
    assert set(loads) == {"h1", "h2"}  # maintenance hosts do not count
    assert loads["h1"] == pytest.approx(w_cpu * 10000 / 20000 + w_mem * 50 / 100)
    assert loads["h2"] == pytest.approx(w_cpu * 4000 / 40000 + w_mem * 10 / 50)
    assert imbalance(snap) == pytest.approx(abs(loads["h1"] - loads["h2"]) / 2)


def test_weights_do_not_change_when_vms_move():
    snap = ClusterSnapshot((host("h1"), host("h2")),
                           (vm("a", "h1", cpu=3000), vm("b", "h1", memory_gb=20)))
    moved = snap.with_moves([Move("a", "h1", "h2", "", 0, 0, 0)])
    assert load_weights(moved) == load_weights(snap)
    assert moved.vm_by_id["a"].host == "h2" and snap.vm_by_id["a"].host == "h1"


def test_empty_cluster_has_zero_imbalance_and_even_weights():
    snap = ClusterSnapshot((host("h1"), host("h2")))
    assert imbalance(snap) == 0
    assert load_weights(snap) == (0.5, 0.5)
    assert math.isfinite(imbalance(ClusterSnapshot(())))


def test_snapshot_validation():
    with pytest.raises(ValueError, match="unknown host"):
        ClusterSnapshot((host("h1"),), (vm("a", "h9"),))
    with pytest.raises(ValueError, match="duplicate VM"):
        ClusterSnapshot((host("h1"),), (vm("a", "h1"), vm("a", "h1")))
    with pytest.raises(ValueError, match="duplicate host"):
        ClusterSnapshot((host("h1"), host("h1")))


def test_refs_resolve_by_id_and_instance_uuid():
    snap = ClusterSnapshot((host("h1"),), (vm("vm-1", "h1", instance_uuid="u-1"),))
    assert snap.locate("vm-1") == snap.locate("u-1") == "h1"
    assert snap.locate("nope") is None
