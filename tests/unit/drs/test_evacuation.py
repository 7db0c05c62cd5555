import pytest

from nova_vsphere_driver.drs import (
    ClusterSnapshot,
    EvacuationError,
    MoveKind,
    VMVMRule,
    evacuate,
    schedule_waves,
)
from tests.unit.drs.factory import (
    check_sequential,
    check_waves,
    host,
    over_capacity_hosts,
    random_cluster,
    rule_violations,
    vm,
)


def test_evacuation_empties_the_host_including_powered_off_vms():
    hosts = tuple(host(f"h{i}", memory_gb=64) for i in range(3))
    vms = (vm("a", "h0", memory_gb=16), vm("b", "h0", memory_gb=8),
           vm("off", "h0", memory_gb=32, power_state="poweredOff"), vm("c", "h1"))
    snap = ClusterSnapshot(hosts, vms)
    plan = evacuate(snap, "h0")
    assert plan.ok and plan.unplaceable == {}
    assert {m.vm for m in plan.moves} == {"a", "b", "off"}
    assert all(m.kind is MoveKind.MAINTENANCE and m.target != "h0" for m in plan.moves)
    after = snap.with_moves(plan.moves)
    assert not [v for v in after.vms if v.host == "h0"]
    assert not over_capacity_hosts(after)
    check_sequential(snap, plan.moves)
    plan.raise_if_incomplete()  # no error


def test_evacuation_respects_rules():
    hosts = tuple(host(f"h{i}") for i in range(3))
    vms = (vm("a", "h0"), vm("b", "h1"), vm("c", "h2", memory_gb=1))
    snap = ClusterSnapshot(hosts, vms, vm_vm_rules=(
        VMVMRule("ab", frozenset({"a", "b"}), affinity=False),))
    plan = evacuate(snap, "h0")
    assert [(m.vm, m.target) for m in plan.moves] == [("a", "h2")]


def test_failure_lists_the_vms_that_cannot_go_anywhere():
    hosts = (host("h0", memory_gb=64), host("h1", memory_gb=32), host("h2", memory_gb=16))
    vms = (vm("huge", "h0", memory_gb=40), vm("small", "h0", memory_gb=2),
           vm("x", "h1", memory_gb=4), vm("y", "h0", memory_gb=2))
    snap = ClusterSnapshot(hosts, vms, vm_vm_rules=(
        VMVMRule("xy", frozenset({"x", "y"}), affinity=False),))
    plan = evacuate(snap, "h0")
    assert not plan.ok
    assert set(plan.unplaceable) == {"huge"}
    assert "short of memory" in plan.unplaceable["huge"]
    assert {m.vm for m in plan.moves} == {"small", "y"}
    assert next(m.target for m in plan.moves if m.vm == "y") == "h2"
    with pytest.raises(EvacuationError, match="huge"):
        plan.raise_if_incomplete()


def test_rule_conflict_is_listed_as_the_reason():
    hosts = (host("h0"), host("h1"))
    snap = ClusterSnapshot(hosts, (vm("a", "h0"), vm("b", "h1")), vm_vm_rules=(
        VMVMRule("apart", frozenset({"a", "b"}), affinity=False),))
    plan = evacuate(snap, "h0")
    assert "would break anti-affinity rule 'apart' (must)" in plan.unplaceable["a"]


def test_disconnected_host_cannot_be_evacuated():
    snap = ClusterSnapshot((host("h0", state="disconnected"), host("h1")), (vm("a", "h0"),))
    plan = evacuate(snap, ["h0"])
    assert "disconnected" in plan.unplaceable["a"] and not plan.moves


def test_evacuating_several_hosts_never_targets_any_of_them():
    snap = random_cluster(5, hosts=8, maintenance=False)
    leaving = ["h00", "h03", "h05"]
    plan = evacuate(snap, leaving)
    assert all(m.target not in leaving for m in plan.moves)
    after = snap.with_moves(plan.moves)
    stuck = {v.id for v in after.vms if v.host in leaving}
    assert stuck == set(plan.unplaceable)
    assert not over_capacity_hosts(after)
    before = rule_violations(snap, mandatory=True)
    assert all(n <= before[k] for k, n in rule_violations(after, mandatory=True).items())
    check_waves(snap, schedule_waves(snap, plan.moves, max_concurrent_per_host=2), 2)


def test_evacuation_makes_room_when_fragmented():
    hosts = (host("h0", memory_gb=64), host("h1", memory_gb=32), host("h2", memory_gb=32))
    vms = (vm("big", "h0", memory_gb=24), vm("p", "h1", memory_gb=16),
           vm("q", "h2", memory_gb=12))
    snap = ClusterSnapshot(hosts, vms)
    assert not evacuate(snap, "h0", room_moves=0).ok
    plan = evacuate(snap, "h0")
    assert plan.ok
    assert [m.kind for m in plan.moves] == [MoveKind.ROOM, MoveKind.MAINTENANCE]
    assert plan.moves[0].vm in ("p", "q") and plan.moves[1].vm == "big"
    check_sequential(snap, plan.moves)


def test_unknown_host():
    with pytest.raises(ValueError, match="unknown host"):
        evacuate(ClusterSnapshot((host("h0"),)), "nope")


def test_should_rules_give_way_when_a_vm_has_to_leave():
    hosts = (host("h0"), host("h1"), host("h2", memory_gb=1))
    snap = ClusterSnapshot(hosts, (vm("a", "h0"), vm("b", "h1")), vm_vm_rules=(
        VMVMRule("soft", frozenset({"a", "b"}), affinity=False, mandatory=False),))
    plan = evacuate(snap, "h0")
    assert plan.ok and plan.moves[0].target == "h1"
    assert "no host keeps every should rule" in plan.moves[0].reason
    assert "soft" in plan.moves[0].reason
