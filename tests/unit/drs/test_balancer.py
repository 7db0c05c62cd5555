import dataclasses
import random

import pytest

from nova_vsphere_driver.drs import (
    ClusterSnapshot,
    HostGroup,
    Limits,
    MoveKind,
    VMGroup,
    VMHostRule,
    VMVMRule,
    balance,
    imbalance,
)
from tests.unit.drs.factory import (
    GB,
    check_sequential,
    host,
    over_capacity_hosts,
    random_cluster,
    rule_violations,
    vm,
)


def skewed(n_hosts=4, per_host=12, hot=1):
    """``hot`` hosts carry busy VMs, the others idle ones."""
    hosts = tuple(host(f"h{i}", memory_gb=128) for i in range(n_hosts))
    vms = []
    for i in range(n_hosts):
        for j in range(per_host if i < hot else 2):
            vms.append(vm(f"v{i}-{j:02d}", f"h{i}", memory_gb=4, cpu=1500))
    return ClusterSnapshot(hosts, tuple(vms))


def test_balancing_lowers_imbalance_with_explained_moves():
    snap = skewed()
    plan = balance(snap, max_moves=None)
    assert plan.moves and plan.imbalance_after < plan.imbalance_before / 3
    after = snap.with_moves(plan.moves)
    assert imbalance(after) == pytest.approx(plan.imbalance_after)
    assert plan.imbalance_before == pytest.approx(imbalance(snap))
    prev = plan.imbalance_before
    for m in plan.moves:
        assert m.kind is MoveKind.BALANCE and m.source == "h0"
        assert m.imbalance_before == pytest.approx(prev) and m.imbalance_after < prev
        assert "imbalance" in m.reason and "benefit/cost" in m.reason
        assert m.memory_mb == 4 * GB
        prev = m.imbalance_after
    check_sequential(snap, plan.moves)


def test_max_moves_caps_the_pass_and_the_next_pass_continues():
    snap = skewed()
    full = balance(snap, max_moves=None)
    capped = balance(snap, max_moves=2)
    assert len(capped.moves) == 2 and capped.truncated and not full.truncated
    assert capped.moves == full.moves[:2]  # best moves first
    rest = balance(snap.with_moves(capped.moves), max_moves=None)
    assert len(capped.moves) + len(rest.moves) == len(full.moves)
    assert balance(snap, max_moves=0).moves == ()


def test_threshold_one_only_makes_mandatory_moves():
    snap = skewed()
    assert balance(snap, threshold=1).moves == ()
    with pytest.raises(ValueError, match="1..5"):
        balance(snap, threshold=6)


def test_higher_threshold_balances_further():
    snap = random_cluster(7, hosts=8, rules=False, maintenance=False)
    plans = [balance(snap, threshold=t, max_moves=None) for t in (2, 3, 4, 5)]
    after = [p.imbalance_after for p in plans]
    moves = [len(p.moves) for p in plans]
    assert after == sorted(after, reverse=True) and after[-1] < after[0]
    assert moves == sorted(moves) and moves[-1] > moves[0]
    for p in plans:  # each stops once within tolerance or out of worthwhile moves
        assert p.imbalance_after <= p.imbalance_before


def test_tolerance_stops_balancing():
    snap = skewed()
    plan = balance(snap, threshold=3, max_moves=None)
    assert imbalance(snap) > plan.target_imbalance
    # A cluster already within tolerance is left alone.
    quiet = ClusterSnapshot(snap.hosts, tuple(vm(f"v{i}", f"h{i % 4}", cpu=1000 + i)
                                              for i in range(8)))
    assert imbalance(quiet) < plan.target_imbalance
    assert balance(quiet, threshold=5).moves == ()


def test_cost_benefit_prefers_light_busy_vms_and_skips_heavy_idle_ones():
    hosts = (host("h1", memory_gb=256), host("h2", memory_gb=256))
    vms = [vm("big-idle", "h1", memory_gb=128, cpu=100, active_memory_mb=2 * GB)]
    vms += [vm(f"small-busy{i}", "h1", memory_gb=2, cpu=3000) for i in range(4)]
    vms += [vm("other", "h2", memory_gb=2, cpu=100)]
    plan = balance(ClusterSnapshot(hosts, tuple(vms)), threshold=5, max_moves=None)
    moved = {m.vm for m in plan.moves}
    assert "big-idle" not in moved
    assert moved and moved <= {f"small-busy{i}" for i in range(4)}


def test_move_needs_enough_benefit_for_its_memory():
    # A 2-host cluster, slightly off balance: moving the only VM that could
    # help (a big one) is not worth copying its memory at threshold 3.
    hosts = (host("h1", memory_gb=256), host("h2", memory_gb=256))
    vms = (vm("a", "h1", memory_gb=64, cpu=6000), vm("b", "h2", memory_gb=60, cpu=5000))
    snap = ClusterSnapshot(hosts, vms)
    assert imbalance(snap) > 0
    assert balance(snap, threshold=3).moves == ()


def test_no_move_breaks_rules_or_capacity():
    snap = skewed()
    hot = [v.id for v in snap.vms if v.host == "h0"]
    rules = (VMVMRule("keep", frozenset(hot[:3]), affinity=True, mandatory=False),
             VMVMRule("apart", frozenset({hot[3], "v1-00"}), affinity=False, mandatory=True))
    snap = dataclasses.replace(
        snap, vm_vm_rules=rules,
        vm_groups=(VMGroup("g", frozenset(hot[4:8])),),
        host_groups=(HostGroup("left", frozenset({"h0", "h1"})),),
        vm_host_rules=(VMHostRule("stay-left", "g", "left"),))
    plan = balance(snap, max_moves=None)
    moved = {m.vm: m.target for m in plan.moves}
    assert not set(hot[:3]) & set(moved)  # affinity keeps them together
    assert moved.get(hot[3]) != "h1"
    assert all(moved[v] in ("h0", "h1") for v in hot[4:8] if v in moved)
    after = snap.with_moves(plan.moves)
    assert all(n == 0 for n in rule_violations(after).values())
    assert not over_capacity_hosts(after)


def test_must_violations_are_fixed_first_with_their_reason():
    hosts = tuple(host(f"h{i}") for i in range(3))
    vms = (vm("a", "h0", cpu=5000), vm("b", "h0", cpu=5000), vm("c", "h0", cpu=5000),
           vm("d", "h1", cpu=100))
    snap = ClusterSnapshot(hosts, vms, vm_vm_rules=(
        VMVMRule("ab-apart", frozenset({"a", "b"}), affinity=False),
        VMVMRule("cd-together", frozenset({"c", "d"}), affinity=True)))
    plan = balance(snap, threshold=1)
    kinds = [m.kind for m in plan.moves]
    assert kinds == [MoveKind.MUST_RULE, MoveKind.MUST_RULE]
    assert "ab-apart" in plan.moves[0].reason and "cd-together" in plan.moves[1].reason
    after = snap.with_moves(plan.moves)
    assert rule_violations(after) == {"ab-apart": 0, "cd-together": 0}
    # With load balancing on, the rule fixes still come first.
    full = balance(snap, threshold=5, max_moves=None)
    assert [m.kind for m in full.moves[:2]] == kinds


def test_unfixable_must_violation_is_reported():
    hosts = (host("h0"), host("h1", state="maintenance"))
    snap = ClusterSnapshot(hosts, (vm("a", "h0"), vm("b", "h0")), vm_vm_rules=(
        VMVMRule("apart", frozenset({"a", "b"}), affinity=False),))
    plan = balance(snap)
    assert plan.moves == ()
    assert any("apart" in u and "still violated" in u for u in plan.unresolved)


def test_hosts_entering_maintenance_are_evacuated_by_balancing():
    hosts = (host("h0"), host("h1"), host("h2", state="entering_maintenance"))
    snap = ClusterSnapshot(hosts, (vm("a", "h2"), vm("b", "h2", power_state="poweredOff")))
    plan = balance(snap, threshold=1)
    assert {m.vm for m in plan.moves} == {"a", "b"}
    assert all(m.kind is MoveKind.MAINTENANCE and m.target != "h2" for m in plan.moves)


def test_overcommitted_host_is_relieved():
    hosts = (host("h0", memory_gb=32), host("h1", memory_gb=64))
    snap = ClusterSnapshot(hosts, tuple(vm(f"v{i}", "h0", memory_gb=8) for i in range(5)))
    plan = balance(snap, threshold=1, policy="packed")
    assert [m.kind for m in plan.moves] == [MoveKind.CAPACITY]
    assert not over_capacity_hosts(snap.with_moves(plan.moves))
    assert "over capacity" in plan.moves[0].reason


def test_packed_policy_never_spreads():
    snap = skewed()
    assert balance(snap, threshold=5, policy="packed", max_moves=None).moves == ()


def test_memory_budget():
    snap = skewed()
    plan = balance(snap, max_moves=None, max_memory_mb=9 * GB)
    assert plan.memory_mb <= 9 * GB and len(plan.moves) == 2 and plan.truncated


def test_determinism_independent_of_listing_order():
    snap = random_cluster(11, hosts=8)
    shuffled = random.Random(1).sample(snap.vms, len(snap.vms))
    other = dataclasses.replace(snap, vms=tuple(shuffled), hosts=snap.hosts[::-1])
    assert balance(snap, max_moves=None) == balance(other, max_moves=None)


@pytest.mark.parametrize("seed", range(60))
def test_random_clusters_are_stable_and_safe(seed):
    snap = random_cluster(seed)
    threshold = 2 + seed % 4
    plan = balance(snap, threshold=threshold, max_moves=None)
    after = snap.with_moves(plan.moves)
    again = balance(after, threshold=threshold, max_moves=None)
    assert again.moves == (), (seed, again.moves[:3])
    check_sequential(snap, plan.moves)
    assert not over_capacity_hosts(after)
    before_must = rule_violations(snap, mandatory=True)
    after_must = rule_violations(after, mandatory=True)
    before_should = rule_violations(snap, mandatory=False)
    after_should = rule_violations(after, mandatory=False)
    for name, n in after_must.items():
        assert n <= before_must[name]
    forced = [m for m in plan.moves if "no host keeps every should rule" in m.reason]
    assert all(m.kind in (MoveKind.MAINTENANCE, MoveKind.MUST_RULE) for m in forced)
    for name, n in after_should.items():
        # Only a VM that has to move may break a should rule, and says so.
        assert n <= before_should[name] or any(name in m.reason for m in forced)
    assert plan.imbalance_after <= plan.imbalance_before + 1e-9 or any(
        m.kind is not MoveKind.BALANCE for m in plan.moves)
    # Nothing is left on a host entering maintenance unless reported.
    leaving = {h.id for h in snap.hosts if h.state.value == "entering_maintenance"}
    stuck = [v for v in after.vms if v.host in leaving]
    assert len(stuck) == sum("cannot leave" in u for u in plan.unresolved)


def test_memory_overcommit_ratio_is_respected():
    hosts = (host("h0", memory_gb=32), host("h1", memory_gb=32))
    vms = tuple(vm(f"v{i}", "h0", memory_gb=6, cpu=4000) for i in range(6))
    snap = ClusterSnapshot(hosts, vms)
    limits = Limits(memory_ratio=1.5)
    plan = balance(snap, threshold=5, limits=limits, max_moves=None)
    assert plan.moves
    assert not over_capacity_hosts(snap.with_moves(plan.moves), limits)
