import pytest

from nova_vsphere_driver.drs import (
    Claims,
    ClusterSnapshot,
    InfeasiblePlanError,
    Move,
    VMVMRule,
    balance,
    evacuate,
    schedule_waves,
)
from tests.unit.drs.factory import GB, check_waves, host, random_cluster, vm


def mv(v, s, t, mem_gb=4):
    return Move(v, s, t, "test", 0.0, 0.0, mem_gb * GB)


def test_a_vm_counts_on_both_hosts_while_it_moves():
    # h1 (16 GB) has room for v0 (8 GB) only once v1 (12 GB) has left it.
    hosts = (host("h0", memory_gb=32), host("h1", memory_gb=16), host("h2", memory_gb=32))
    snap = ClusterSnapshot(hosts, (vm("v1", "h1", memory_gb=12), vm("v0", "h0", memory_gb=8)))
    moves = [mv("v1", "h1", "h2", 12), mv("v0", "h0", "h1", 8)]
    waves = schedule_waves(snap, moves, max_concurrent_per_host=4)
    assert waves == [(moves[0],), (moves[1],)]
    check_waves(snap, waves, 4)


def test_concurrency_limit_per_host():
    hosts = tuple(host(f"h{i}", memory_gb=256) for i in range(4))
    vms = tuple(vm(f"v{i}", "h0") for i in range(6))
    snap = ClusterSnapshot(hosts, vms)
    moves = [mv(f"v{i}", "h0", f"h{1 + i % 3}") for i in range(6)]
    waves = schedule_waves(snap, moves, max_concurrent_per_host=2)
    assert [len(w) for w in waves] == [2, 2, 2]
    check_waves(snap, waves, 2)
    assert [len(w) for w in schedule_waves(snap, moves, max_concurrent_per_host=6)] == [6]


def test_independent_moves_run_together_and_per_host_order_is_kept():
    hosts = tuple(host(f"h{i}", memory_gb=64) for i in range(6))
    vms = (vm("a", "h0"), vm("b", "h0"), vm("c", "h0"), vm("d", "h2"))
    snap = ClusterSnapshot(hosts, vms)
    moves = [mv("a", "h0", "h1"), mv("b", "h0", "h1"), mv("c", "h0", "h1"), mv("d", "h2", "h3")]
    waves = schedule_waves(snap, moves, max_concurrent_per_host=2)
    assert waves[0] == (moves[0], moves[1], moves[3])
    assert waves[1] == (moves[2],)


def test_anti_affine_vms_never_share_a_host_in_flight():
    hosts = tuple(host(f"h{i}") for i in range(3))
    snap = ClusterSnapshot(hosts, (vm("a", "h0"), vm("b", "h1")), vm_vm_rules=(
        VMVMRule("ab", frozenset({"a", "b"}), affinity=False),))
    moves = [mv("b", "h1", "h2"), mv("a", "h0", "h1")]
    assert schedule_waves(snap, moves, max_concurrent_per_host=4) == [(moves[0],), (moves[1],)]


def test_infeasible_plans_are_rejected():
    hosts = (host("h0", memory_gb=16), host("h1", memory_gb=16))
    snap = ClusterSnapshot(hosts, (vm("a", "h0", memory_gb=12), vm("b", "h1", memory_gb=8)))
    with pytest.raises(InfeasiblePlanError, match="lacks memory"):
        schedule_waves(snap, [mv("a", "h0", "h1", 12)])
    with pytest.raises(InfeasiblePlanError, match="not h1"):
        schedule_waves(snap, [mv("a", "h1", "h0")])
    with pytest.raises(ValueError):
        schedule_waves(snap, [], max_concurrent_per_host=0)


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_waves_of_real_plans_keep_every_host_within_capacity(seed, k):
    snap = random_cluster(200 + seed, fill=0.85)
    plan = balance(snap, threshold=5, max_moves=None)
    waves = schedule_waves(snap, plan.moves, max_concurrent_per_host=k)
    assert sorted(map(id, (m for w in waves for m in w))) == sorted(map(id, plan.moves))
    check_waves(snap, waves, k)
    evac = evacuate(snap, snap.hosts[0].id)
    check_waves(snap, schedule_waves(snap, evac.moves, max_concurrent_per_host=k), k)


def test_default_limit_is_vspheres_eight_vmotions_per_host():
    hosts = tuple(host(f"h{i}", memory_gb=256) for i in range(11))
    snap = ClusterSnapshot(hosts, tuple(vm(f"v{i}", "h0") for i in range(10)))
    moves = [mv(f"v{i}", "h0", f"h{1 + i}") for i in range(10)]
    waves = schedule_waves(snap, moves)
    assert [len(w) for w in waves] == [8, 2]
    check_waves(snap, waves, 8)


def test_targets_busy_in_two_waves_keep_the_limit_on_both_ends():
    # Every host is source of some moves and target of others.
    hosts = tuple(host(f"h{i}", memory_gb=256) for i in range(3))
    vms = tuple(vm(f"v{h}{i}", f"h{h}") for h in range(3) for i in range(4))
    snap = ClusterSnapshot(hosts, vms)
    moves = [mv(f"v{h}{i}", f"h{h}", f"h{(h + 1) % 3}") for h in range(3) for i in range(4)]
    for k in (1, 3, 8):
        waves = schedule_waves(snap, moves, max_concurrent_per_host=k)
        check_waves(snap, waves, k)
        assert sum(map(len, waves)) == len(moves)
        assert max(len(w) for w in waves) <= 3 * k // 2


def test_claims_hold_capacity_while_waves_run():
    # h1 has 16 GB; a spawn claimed 8 GB of it: the 12 GB VM cannot move in.
    hosts = (host("h0", memory_gb=32), host("h1", memory_gb=16))
    snap = ClusterSnapshot(hosts, (vm("a", "h0", memory_gb=12),))
    claims = Claims()
    claims.claim("new-vm", "h1", 2, 8 * GB)
    move = mv("a", "h0", "h1", 12)
    assert schedule_waves(snap, [move]) == [(move,)]
    with pytest.raises(InfeasiblePlanError, match="lacks memory"):
        schedule_waves(snap, [move], claims=claims.active())
    # Once the snapshot shows the new VM, its claim is spent, not counted twice.
    shown = snap.with_vms([vm("vm-9", "h1", memory_gb=2, instance_uuid="new-vm")])
    assert schedule_waves(shown, [move], claims=claims.active()) == [(move,)]
