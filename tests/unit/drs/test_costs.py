"""The cost model of load moves and the expected duration of a pass."""

import math

import pytest

from nova_vsphere_driver.drs import (
    THRESHOLDS,
    ClusterSnapshot,
    Move,
    MoveCost,
    MoveKind,
    VMotionTiming,
    balance,
    imbalance,
    schedule_waves,
)
from tests.unit.drs.factory import GB, check_sequential, check_waves, host, random_cluster, vm


def mv(v, s, t, mem_gb):
    return Move(v, s, t, "test", 0.0, 0.0, mem_gb * GB)


def hot_spot():
    """h0 carries one big busy VM and a dozen small busy ones; three hosts idle."""
    hosts = tuple(host(f"h{i}", cores=32, memory_gb=256) for i in range(4))
    vms = [vm("big", "h0", memory_gb=64, vcpus=16, cpu=24000)]
    vms += [vm(f"s{i:02d}", "h0", memory_gb=4, vcpus=2, cpu=3000) for i in range(12)]
    vms += [vm(f"o{i}", f"h{1 + i % 3}", memory_gb=8, vcpus=2, cpu=1000) for i in range(6)]
    return ClusterSnapshot(hosts, tuple(vms))


def test_move_weight_is_a_fixed_cost_plus_memory_copied():
    assert MoveCost(per_move_mb=1000).weight(4096) == 5096
    assert MoveCost().weight(0) == 256 * GB
    with pytest.raises(ValueError):
        MoveCost(per_move_mb=-1)


def test_a_per_move_cost_trades_vmotions_for_memory():
    snap = hot_spot()
    few = balance(snap, max_moves=None)  # the default weighs each vMotion like 256 GiB
    thrifty = balance(snap, max_moves=None, cost=MoveCost(per_move_mb=0))
    # Counting moves: the big busy VM leaves first, and fewer vMotions do the job.
    assert few.moves[0].vm == "big" and "big" not in {m.vm for m in thrifty.moves}
    assert len(few.moves) < len(thrifty.moves)
    # Counting memory only: small VMs, less memory copied.
    assert thrifty.memory_mb < few.memory_mb
    for plan in (few, thrifty):
        assert plan.imbalance_after < plan.imbalance_before / 3
        check_sequential(snap, plan.moves)


def test_a_move_needs_a_net_gap_of_min_gap():
    # Equal hosts with loads 0.22 and 0.04: a VM carrying all of h1's 0.22
    # would more than close the 0.18 gap (net gap 0.18 - 0.22 < 0.05): it stays.
    hosts = (host("h1", memory_gb=100, cores=10), host("h2", memory_gb=100, cores=10))
    one = ClusterSnapshot(hosts, (vm("a", "h1", memory_gb=10, cpu=6000),
                                  vm("b", "h2", memory_gb=10, cpu=0)))
    plan = balance(one, threshold=3, max_moves=None)
    assert plan.moves == () and imbalance(one) > plan.target_imbalance
    # Split in halves of 0.11: net gap 0.18 - 0.11 = 0.07 >= 0.05 for the first,
    # and then h1 is the idler host.
    two = ClusterSnapshot(hosts, (vm("a1", "h1", memory_gb=5, cpu=3000),
                                  vm("a2", "h1", memory_gb=5, cpu=3000),
                                  vm("b", "h2", memory_gb=10, cpu=0)))
    plan = balance(two, threshold=3, max_moves=None)
    assert [m.vm for m in plan.moves] == ["a1"]
    assert "net gap 0.070 >= 0.05" in plan.moves[0].reason


def test_tolerance_follows_the_cluster_size():
    assert THRESHOLDS[3].tolerance(8) == pytest.approx(0.05 / math.sqrt(8))
    assert THRESHOLDS[3].tolerance(64) == pytest.approx(0.05 / 8)
    assert THRESHOLDS[2].tolerance(16) > THRESHOLDS[3].tolerance(16) > THRESHOLDS[4].tolerance(16)
    assert THRESHOLDS[5].tolerance(16) == 0 and THRESHOLDS[1].tolerance(16) == math.inf
    for n in (4, 8, 16):
        snap = random_cluster(n, hosts=n, rules=False, maintenance=False)
        assert balance(snap).target_imbalance == pytest.approx(0.05 / math.sqrt(n))


def test_swap_when_the_idle_host_has_no_room():
    # h1 is idle but its memory is full; no single move fits it.
    hosts = (host("h0", memory_gb=64), host("h1", memory_gb=64))
    vms = [vm(f"busy{i}", "h0", memory_gb=8, cpu=6000) for i in range(3)]
    vms += [vm(f"idle{i}", "h1", memory_gb=8, cpu=50, active_memory_mb=512) for i in range(8)]
    snap = ClusterSnapshot(hosts, tuple(vms))
    plan = balance(snap, max_moves=None)
    assert [(m.vm, m.source, m.target) for m in plan.moves] == [
        ("idle0", "h1", "h0"), ("busy0", "h0", "h1")]
    assert all(m.kind is MoveKind.BALANCE and "swapping busy0" in m.reason
               for m in plan.moves)
    assert plan.imbalance_after < plan.imbalance_before / 2
    check_sequential(snap, plan.moves)
    assert balance(snap.with_moves(plan.moves), max_moves=None).moves == ()
    # A swap is two vMotions: a budget of one cannot hold it.
    capped = balance(snap, max_moves=1)
    assert capped.moves == () and capped.truncated


def test_vmotion_timing_model():
    timing = VMotionTiming()
    assert timing.max_concurrent_per_host == 8
    assert timing.link_mib_s == pytest.approx(10e9 / 8 / 2**20 * 0.9)
    assert timing.copy_seconds(1024) == pytest.approx(1024 * 1.2 / timing.link_mib_s)
    assert timing.wave_seconds(()) == 0.0
    # Moves of a wave sharing a host share its link; others run alongside.
    apart = (mv("a", "h0", "h1", 16), mv("b", "h2", "h3", 16))
    shared = (mv("a", "h0", "h1", 16), mv("b", "h0", "h2", 16))
    assert timing.wave_seconds(apart) == pytest.approx(8 + timing.copy_seconds(16 * GB))
    assert timing.wave_seconds(shared) == pytest.approx(8 + timing.copy_seconds(32 * GB))
    assert timing.pass_seconds([apart, shared]) == pytest.approx(
        timing.wave_seconds(apart) + timing.wave_seconds(shared))
    slow = VMotionTiming(link_gbit_s=1.0, max_concurrent_per_host=4)
    assert slow.wave_seconds(apart) > timing.wave_seconds(apart)
    for bad in ({"max_concurrent_per_host": 0}, {"link_gbit_s": 0}, {"link_efficiency": 1.5},
                {"precopy_factor": 0.5}, {"setup_s": -1}):
        with pytest.raises(ValueError):
            VMotionTiming(**bad)


def test_plans_carry_their_waves_and_expected_duration():
    snap = hot_spot()
    plan = balance(snap, max_moves=None)
    assert plan.max_concurrent_per_host == 8
    assert list(plan.waves) == schedule_waves(snap, plan.moves, max_concurrent_per_host=8)
    assert [m for w in plan.waves for m in w] == sorted(
        plan.moves, key=lambda m: [m in w for w in plan.waves].index(True))
    check_waves(snap, plan.waves, 8)
    assert plan.expected_seconds == pytest.approx(VMotionTiming().pass_seconds(plan.waves))
    # Two vMotions per host at a time: more waves, a longer pass.
    narrow = balance(snap, max_moves=None, timing=VMotionTiming(max_concurrent_per_host=2))
    assert narrow.moves == plan.moves
    assert len(narrow.waves) > len(plan.waves) and narrow.expected_seconds > plan.expected_seconds
    check_waves(snap, narrow.waves, 2)
    assert balance(ClusterSnapshot(snap.hosts)).expected_seconds == 0.0
