import pytest

from nova_vsphere_driver.drs import (
    Claims,
    ClusterSnapshot,
    HostGroup,
    HostPin,
    Limits,
    PlacementRequest,
    RequestRule,
    VMGroup,
    VMHostRule,
    VMVMRule,
    imbalance,
    place,
)
from tests.unit.drs.factory import GB, host, vm


def req(mem_gb=4, vcpus=2, iid="new", **kw):
    return PlacementRequest(iid, vcpus=vcpus, memory_mb=int(mem_gb * GB), **kw)


def test_balanced_picks_the_host_that_minimises_imbalance():
    snap = ClusterSnapshot((host("h1"), host("h2"), host("h3")),
                           (vm("a", "h1", memory_gb=30, cpu=8000),
                            vm("b", "h2", memory_gb=10, cpu=2000),
                            vm("c", "h3", memory_gb=20, cpu=5000)))
    result = place(snap, req(8, cpu_demand_mhz=2000))
    assert result.ok and result.host_id == "h2"
    assert result.imbalance_after < result.imbalance_before
    assert "h2" in result.reason and "imbalance" in result.reason
    # The reported imbalance is the real one of the resulting cluster (weights
    # are the snapshot's, so compare with the claimed VM added by hand).
    after = snap.with_vms([vm("new", "h2", memory_gb=8, cpu=2000)])
    assert result.imbalance_after == pytest.approx(imbalance(after), rel=0.25)


def test_packed_picks_the_tightest_fit():
    snap = ClusterSnapshot((host("h1"), host("h2"), host("h3")),
                           (vm("a", "h1", memory_gb=30), vm("b", "h2", memory_gb=50)))
    assert place(snap, req(8), policy="packed").host_id == "h2"
    assert place(snap, req(20), policy="packed").host_id == "h1"  # h2 lacks room
    assert place(snap, req(8), policy="balanced").host_id == "h3"


def test_memory_capacity_respects_reservation_and_ratio():
    snap = ClusterSnapshot((host("h1", memory_gb=64, reserved_memory_mb=4 * GB),),
                           (vm("a", "h1", memory_gb=56),))
    assert place(snap, req(4)).ok
    result = place(snap, req(5))
    assert not result.ok
    assert "short of memory (most free 4096 MB)" in result.reason
    assert result.rejections == {"h1": "memory: 4096 MB free < 5120 MB"}
    assert place(snap, req(10), limits=Limits(memory_ratio=1.2)).ok


def test_vcpus_limited_by_threads_and_cpu_ratio():
    snap = ClusterSnapshot((host("h1", cores=4, threads=8),), (vm("a", "h1", vcpus=30),))
    result = place(snap, req(1, vcpus=9))
    assert not result.ok and "9 vCPUs > 8 hardware threads" in result.reason
    assert place(snap, req(1, vcpus=2), limits=Limits(cpu_ratio=4)).ok  # 32 allowed
    over = place(snap, req(1, vcpus=3), limits=Limits(cpu_ratio=4))
    assert not over.ok and "vCPUs" in over.reason


def test_powered_off_vms_do_not_take_capacity():
    snap = ClusterSnapshot((host("h1", memory_gb=16),),
                           (vm("a", "h1", memory_gb=16, power_state="poweredOff"),))
    assert place(snap, req(16)).ok


def test_all_hosts_down_gives_a_clear_reason():
    snap = ClusterSnapshot((host("h1", state="maintenance"), host("h2", state="disconnected"),
                            host("h3", state="entering_maintenance")))
    result = place(snap, req())
    assert not result.ok
    assert "all 3 hosts are disconnected or in maintenance" in result.reason
    assert result.rejections == {"h1": "in maintenance mode", "h2": "disconnected",
                                 "h3": "entering maintenance mode"}


def test_maintenance_hosts_are_skipped_with_reasons():
    snap = ClusterSnapshot((host("h1", state="maintenance"), host("h2", memory_gb=8)))
    result = place(snap, req(16))
    assert not result.ok
    assert "in maintenance mode: h1" in result.reason
    assert "short of memory" in result.reason and "h2" in result.reason
    assert place(snap, req(4)).host_id == "h2"


def test_must_anti_affinity_excludes_hosts_of_members():
    snap = ClusterSnapshot((host("h1"), host("h2"), host("h3")),
                           (vm("x", "h1", instance_uuid="ux"), vm("y", "h2"),
                            vm("big", "h3", memory_gb=60)))
    rule = RequestRule(frozenset({"ux", "y"}), affinity=False, mandatory=True, name="sg1")
    result = place(snap, req(2, rules=(rule,)))
    assert result.host_id == "h3"
    failed = place(snap, req(8, rules=(rule,)))
    assert not failed.ok
    assert "anti-affinity rule 'sg1' (must)" in failed.reason
    assert "ux already here" in failed.rejections["h1"]


def test_should_anti_affinity_is_broken_only_when_nothing_else_fits():
    snap = ClusterSnapshot((host("h1"), host("h2")),
                           (vm("x", "h1"), vm("big", "h2", memory_gb=62)))
    rule = RequestRule(frozenset({"x"}), affinity=False, mandatory=False, name="soft")
    ok = place(snap, req(1, rules=(rule,)))
    assert ok.host_id == "h2" and not ok.broken_should_rules
    forced = place(snap, req(8, rules=(rule,)))
    assert forced.host_id == "h1"
    assert forced.broken_should_rules and "soft" in forced.reason


def test_affinity_goes_to_the_members_host():
    snap = ClusterSnapshot((host("h1"), host("h2")),
                           (vm("x", "h1", memory_gb=40), vm("y", "h1")))
    rule = RequestRule(frozenset({"x", "y"}), affinity=True, name="together")
    assert place(snap, req(4, rules=(rule,))).host_id == "h1"  # although h2 is emptier
    assert not place(snap, req(30, rules=(rule,))).ok


def test_snapshot_rules_naming_the_instance_apply():
    snap = ClusterSnapshot((host("h1"), host("h2")), (vm("x", "h2"),),
                           vm_vm_rules=(VMVMRule("r", frozenset({"x", "new"}), False),))
    assert place(snap, req()).host_id == "h1"


def test_host_group_pin_and_vm_host_rules():
    snap = ClusterSnapshot(
        (host("h1"), host("h2"), host("h3")), (vm("a", "h1", memory_gb=40),),
        vm_groups=(VMGroup("g", frozenset({"new"})),),
        host_groups=(HostGroup("gpu", frozenset({"h1"})), HostGroup("bad", frozenset({"h2"}))),
        vm_host_rules=(VMHostRule("not-bad", "g", "bad", affine=False),))
    assert place(snap, req(host_group="gpu")).host_id == "h1"
    assert place(snap, req()).host_id == "h3"  # h2 excluded by the anti-affine rule
    # An unknown host group is a placement failure that says so, not a crash.
    missing = place(snap, req(host_group="nope"))
    assert not missing.ok and "'nope'" in missing.reason


def test_datastores_must_be_mounted():
    snap = ClusterSnapshot((host("h1", datastores={"ds1"}), host("h2", datastores={"ds1", "ds2"}),
                            host("h3")))
    assert place(snap, req(datastores={"ds2"})).host_id in ("h2", "h3")
    r = place(snap, req(datastores={"ds2"}))
    assert "datastores not mounted: ds2" in r.rejections["h1"]
    only = ClusterSnapshot(snap.hosts[:2])
    assert place(only, req(any_datastore={"ds2", "ds9"})).host_id == "h2"


def test_fragmentation_is_reported():
    snap = ClusterSnapshot((host("h1", memory_gb=32), host("h2", memory_gb=32)),
                           (vm("a", "h1", memory_gb=20), vm("b", "h2", memory_gb=20)))
    result = place(snap, req(16))
    assert not result.ok and result.fragmented
    assert "24576 MB free in total" in result.reason
    assert "allow_migrations" in result.reason


def test_cpu_demand_estimate_uses_cluster_average():
    snap = ClusterSnapshot((host("h1"), host("h2")),
                           (vm("a", "h1", vcpus=2, cpu=3000, memory_gb=1),
                            vm("b", "h2", vcpus=2, cpu=100, memory_gb=1)))
    from nova_vsphere_driver.drs.placement import estimate_cpu_demand

    assert estimate_cpu_demand(snap, 4) == round(3100 / 4 * 4)
    # CPU-heavy host h1 is avoided although memory is equal.
    assert place(snap, req(1)).host_id == "h2"


def test_placement_is_deterministic_whatever_the_listing_order():
    hosts = tuple(host(f"h{i}") for i in range(6))
    vms = tuple(vm(f"v{i}", f"h{i % 6}", memory_gb=1 + i % 5) for i in range(30))
    a = place(ClusterSnapshot(hosts, vms), req(3))
    b = place(ClusterSnapshot(hosts[::-1], vms[::-1]), req(3))
    assert a == b


def test_unknown_host_group_is_a_clear_failure_not_an_error():
    from nova_vsphere_driver.drs import ClusterSnapshot, Host, PlacementRequest, place

    snap = ClusterSnapshot(hosts=(Host("h1", cores=8, memory_mb=65536),), name="c1")
    result = place(snap, PlacementRequest("vm-new", vcpus=1, memory_mb=1024,
                                          host_group="gpu"))
    assert not result.ok
    assert "'gpu'" in result.reason and "c1" in result.reason


def test_anti_affinity_group_larger_than_the_usable_hosts_is_refused_clearly():
    hosts = (host("h1"), host("h2"), host("h3"), host("h4", state="maintenance"))
    snap = ClusterSnapshot(hosts, (vm("a", "h1", instance_uuid="ua"), vm("b", "h2"),
                                   vm("c", "h3")), name="c1")
    group = RequestRule(frozenset({"ua", "b", "c"}), affinity=False, name="sg-web")
    result = place(snap, req(1, iid="d", rules=(group,)), allow_migrations=True)
    assert not result.ok and result.unsatisfiable_rule == "anti-affinity rule 'sg-web' (must)"
    assert "3 other member(s) here already run on all 3 usable host(s)" in result.reason
    assert "larger than the usable host count" in result.reason and "c1" in result.reason
    assert not result.moves and not result.rejections
    # Members elsewhere (another cluster, not built yet) do not count.
    elsewhere = RequestRule(frozenset({"ua", "b", "zz"}), affinity=False, name="sg-web")
    assert place(snap, req(1, iid="d", rules=(elsewhere,))).host_id == "h3"
    # A should rule is broken rather than refused, as before.
    soft = RequestRule(frozenset({"ua", "b", "c"}), affinity=False, mandatory=False)
    assert place(snap, req(1, iid="d", rules=(soft,))).ok


def test_group_size_counts_claimed_members_and_the_hosts_pins_allow():
    hosts = tuple(host(f"h{i}") for i in range(4))
    snap = ClusterSnapshot(hosts, host_groups=(HostGroup("two", frozenset({"h0", "h1"})),))
    claims = Claims()
    pin = "two"
    members = ["m0", "m1", "m2"]
    for i, iid in enumerate(members[:2]):  # spawning, not in any snapshot yet
        others = frozenset(m for m in members if m != iid)
        rule = RequestRule(others, affinity=False, name="sg")
        assert place(snap, req(1, iid=iid, rules=(rule,), host_group=pin),
                     claims=claims).host_id == f"h{i}"
    rule = RequestRule(frozenset(members[:2]), affinity=False, name="sg")
    third = place(snap, req(1, iid="m2", rules=(rule,), host_group=pin), claims=claims)
    assert not third.ok and third.unsatisfiable_rule is not None
    assert "all 2 usable host(s) it may use" in third.reason and "m2" not in claims
    # Without the pin the cluster has room for a third member.
    assert place(snap, req(1, iid="m2", rules=(rule,)), claims=claims).ok


def test_host_pins_off_a_group_and_unknown_pins():
    snap = ClusterSnapshot((host("h1"), host("h2")), (vm("a", "h2", memory_gb=40),),
                           host_groups=(HostGroup("mgmt", frozenset({"h1"})),))
    assert place(snap, req(2)).host_id == "h1"
    off = place(snap, req(2, host_pins=(HostPin("mgmt", affine=False),)))
    assert off.host_id == "h2"
    assert "must run off it" in place(snap, req(30, host_pins=(
        HostPin("mgmt", affine=False),))).rejections["h1"]
    missing = place(snap, req(2, host_pins=(HostPin("nope"),)))
    assert not missing.ok and "'nope'" in missing.reason
