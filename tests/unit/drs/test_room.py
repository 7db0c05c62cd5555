import dataclasses
import math
import random

import pytest

from nova_vsphere_driver.drs import (
    Claims,
    ClusterSnapshot,
    HostGroup,
    HostPin,
    HostState,
    Limits,
    MoveKind,
    PlacementRequest,
    RequestRule,
    VMVMRule,
    make_room,
    max_unit,
    place,
)
from nova_vsphere_driver.drs.policies import resolve_policy
from nova_vsphere_driver.drs.room import free_host
from nova_vsphere_driver.drs.rules import unknown_pin
from nova_vsphere_driver.drs.state import State
from tests.unit.drs.factory import (
    GB,
    check_sequential,
    host,
    over_capacity_hosts,
    random_cluster,
    vm,
)


def fragmented():
    hosts = tuple(host(f"h{i}", memory_gb=64) for i in range(3))
    vms = (vm("a1", "h0", memory_gb=40), vm("a2", "h0", memory_gb=8),
           vm("b1", "h1", memory_gb=32), vm("b2", "h1", memory_gb=16),
           vm("c1", "h2", memory_gb=36), vm("c2", "h2", memory_gb=4))
    return ClusterSnapshot(hosts, vms)


def req(mem_gb, iid="new", **kw):
    return PlacementRequest(iid, vcpus=2, memory_mb=mem_gb * GB, **kw)


def test_make_room_frees_one_host_with_the_least_memory_moved():
    snap = fragmented()  # free: h0 16, h1 16, h2 24 GB
    assert not place(snap, req(30)).ok
    result = make_room(snap, req(30))
    assert result.ok and result.moves
    assert all(m.kind is MoveKind.ROOM and m.source == result.host_id for m in result.moves)
    # Cheapest: move c2 (4 GB) off h2 -> 28 GB... not enough; a2 (8 GB) off h0
    # gives 24 GB... not enough; b2 (16 GB) off h1 gives 32 GB: the only one-move plan.
    assert [(m.vm, m.source) for m in result.moves] == [("b2", "h1")]
    after = snap.with_moves(result.moves)
    assert place(after, req(30)).host_id == result.host_id
    check_sequential(snap, result.moves)
    assert "fits after 1 migration" in result.reason


def test_place_with_migrations_and_claims():
    snap = fragmented()
    claims = Claims()
    result = place(snap, req(30), claims=claims, allow_migrations=True)
    assert result.ok and result.moves
    # The new VM and the moving VM's target are both claimed.
    assert claims.get("new").host_id == result.host_id
    moved = result.moves[0]
    assert claims.get(moved.vm).host_id == moved.target and claims.get(moved.vm).moving
    # Nothing else can squeeze into the freed room while migrations run.
    assert not place(snap, req(20, "other"), claims=claims).ok


def test_make_room_fails_clearly_when_the_cluster_lacks_capacity_or_moves():
    snap = fragmented()
    too_big = place(snap, req(60), allow_migrations=True)
    assert not too_big.ok and not too_big.fragmented  # 56 GB free in total
    # 40 GB: enough free in total, but no VM mix can be moved to free one host.
    stuck = place(snap, req(40), allow_migrations=True)
    assert not stuck.ok and stuck.fragmented
    assert "no host can be freed" in stuck.reason
    # Three 8 GB VMs must leave h0 for a 56 GB VM.
    hosts = tuple(host(f"h{i}", memory_gb=64) for i in range(3))
    vms = tuple(vm(f"s{i}", "h0", memory_gb=8) for i in range(4))
    vms += (vm("x", "h1", memory_gb=48), vm("y", "h2", memory_gb=48))
    three = ClusterSnapshot(hosts, vms)
    tight = make_room(three, req(56), max_moves=2)
    assert not tight.ok and "at most 2 migrations" in tight.reason
    ok = make_room(three, req(56), max_moves=3)
    assert ok.ok and ok.host_id == "h0" and len(ok.moves) == 3
    check_sequential(three, ok.moves)


def test_rule_members_of_the_new_vm_stay_put():
    snap = fragmented()
    # It must join b1 on h1 (16 GB free), and b1 itself may not be moved away:
    # b2 makes room.
    rule = RequestRule(frozenset({"b1"}), affinity=True)
    result = make_room(snap, req(20, rules=(rule,)))
    assert result.ok and result.host_id == "h1"
    assert [m.vm for m in result.moves] == ["b2"]
    # Joining b2 instead: b1 (32 GB) cannot move anywhere, b2 may not.
    rule = RequestRule(frozenset({"b2"}), affinity=True)
    assert not make_room(snap, req(20, rules=(rule,))).ok


def test_max_unit_reports_what_one_host_can_take():
    snap = fragmented()
    unit = max_unit(snap, max_moves=0)
    assert unit.memory_mb == unit.memory_mb_without_moves == 24 * GB
    assert unit.vcpus == 32  # threads of one host
    unit = max_unit(snap, max_moves=2)
    assert unit.memory_mb_without_moves == 24 * GB
    assert unit.memory_mb > 24 * GB
    # And make_room can really make that much room.
    assert make_room(snap, req(unit.memory_mb // GB), max_moves=2).ok
    assert not make_room(snap, PlacementRequest("x", 2, unit.memory_mb + 1),
                         max_moves=2).ok


@pytest.mark.parametrize("seed", range(12))
def test_max_unit_is_achievable_on_random_clusters(seed):
    snap = random_cluster(100 + seed, rules=False, maintenance=False, fill=0.8)
    unit = max_unit(snap, max_moves=3)
    result = make_room(snap, PlacementRequest("x", 1, unit.memory_mb), max_moves=3)
    assert result.ok, result.reason
    if unit.memory_mb > unit.memory_mb_without_moves:
        after = snap.with_moves(result.moves)
        assert not over_capacity_hosts(after)
        assert place(after, PlacementRequest("x", 1, unit.memory_mb)).host_id == result.host_id


def pinned_cluster():
    """h0 is almost empty, h1 and h2 are busy; only h1 and h2 are 'licensed'."""
    hosts = tuple(host(f"h{i}", memory_gb=64) for i in range(3))
    vms = (vm("a", "h0", memory_gb=4), vm("b1", "h1", memory_gb=32), vm("b2", "h1", memory_gb=16),
           vm("c1", "h2", memory_gb=40), vm("c2", "h2", memory_gb=12))
    return ClusterSnapshot(hosts, vms, host_groups=(
        HostGroup("licensed", frozenset({"h1", "h2"})), HostGroup("spare", frozenset({"h0"}))))


def test_max_unit_counts_only_hosts_the_pins_allow():
    snap = pinned_cluster()
    free = max_unit(snap, max_moves=0)
    assert (free.memory_mb, free.memory_host) == (60 * GB, "h0")
    pin = HostPin("licensed")
    pinned = max_unit(snap, max_moves=0, pins=(pin,))
    assert (pinned.memory_mb, pinned.memory_host) == (16 * GB, "h1")
    assert "2 of 3 usable hosts allowed by host group pin 'licensed'" in pinned.reason
    # "Must run off the spare host" is the same constraint said the other way.
    off = max_unit(snap, max_moves=0, pins=(HostPin("spare", affine=False),))
    assert (off.memory_mb, off.memory_host) == (16 * GB, "h1")
    # A 20 GB flavor fits only h0: with the pin it is not advertised...
    assert pinned.memory_mb < 20 * GB <= free.memory_mb
    assert not place(snap, req(20, host_pins=(pin,))).ok
    # ... unless room is made on a licensed host, moving VMs to any host.
    room = max_unit(snap, max_moves=2, pins=(pin,))
    assert room.memory_host in ("h1", "h2") and room.memory_mb > 20 * GB
    made = make_room(snap, req(room.memory_mb // GB, host_pins=(pin,)), max_moves=2)
    assert made.ok and made.host_id == room.memory_host
    assert not make_room(snap, PlacementRequest("x", 2, room.memory_mb + 1, host_pins=(pin,)),
                         max_moves=2).ok


def test_max_unit_with_pins_nothing_allows():
    snap = pinned_cluster()
    unknown = max_unit(snap, pins=(HostPin("gpu"),))
    assert unknown.memory_mb == unknown.vcpus == 0 and unknown.memory_host is None
    assert "'gpu'" in unknown.reason and "no such group" in unknown.reason
    both = max_unit(snap, pins=(HostPin("licensed"), HostPin("spare")))
    assert both.memory_mb == 0 and "none of the 3 usable hosts" in both.reason
    assert not place(snap, req(1, host_pins=(HostPin("gpu"),))).ok


@pytest.mark.parametrize("seed", range(6))
def test_max_unit_with_pins_is_achievable_on_random_clusters(seed):
    base = random_cluster(300 + seed, rules=False, maintenance=False, fill=0.8)
    half = frozenset(h.id for h in base.hosts[::2])
    snap = dataclasses.replace(base, host_groups=(HostGroup("half", half),))
    pins = (HostPin("half"),)
    unit = max_unit(snap, max_moves=3, pins=pins)
    assert unit.memory_host in half
    result = make_room(snap, PlacementRequest("x", 1, unit.memory_mb, host_pins=pins),
                       max_moves=3)
    assert result.ok and result.host_id in half, result.reason
    assert unit.memory_mb <= max_unit(snap, max_moves=3).memory_mb


def every_host_max_unit(snapshot, max_moves, pins=()):
    """max_unit searched from scratch on every allowed host, in host order (the
    reference the bounded search must equal)."""
    policy = resolve_policy(None)
    state = State(snapshot, Limits())
    allowed = [] if unknown_pin(snapshot, pins) is not None else [
        h for h in state.usable_idx if all(p.allows(snapshot, state.ids[h]) for p in pins)]
    best_mem = best_vcpus = base_mem = base_vcpus = 0
    mem_host = vcpus_host = None
    for h in allowed:
        free_mem, free_vcpus = state.memory_free(h), state.vcpus_free(h)
        base_mem = max(base_mem, free_mem)
        base_vcpus = max(base_vcpus, min(state.threads[h], math.floor(free_vcpus)))
        plan = free_host(state, policy, h, 0, 0, max_moves, exhaust=True) if max_moves else []
        mem = free_mem + sum(state.vm_mem[v] for v, _ in plan)
        vcpus = min(state.threads[h],
                    math.floor(free_vcpus + sum(state.vm_vcpu_c[v] for v, _ in plan)))
        if mem > best_mem:
            best_mem, mem_host = mem, state.ids[h]
        if vcpus > best_vcpus:
            best_vcpus, vcpus_host = vcpus, state.ids[h]
    return best_mem, best_vcpus, mem_host, vcpus_host, base_mem, base_vcpus


def changed(snapshot, r, step):
    """``snapshot`` after one random change: a VM created, destroyed, moved, resized or
    powered, a host entering or leaving maintenance, or a rule added."""
    hosts, vms = list(snapshot.hosts), list(snapshot.vms)
    in_rules = {m for rule in snapshot.vm_vm_rules for m in rule.vms}
    in_rules |= {m for group in snapshot.vm_groups for m in group.vms}
    kind = r.choice(["create", "create", "destroy", "move", "resize", "power",
                     "maintenance", "rule"])
    if kind == "create" or not vms:
        vms.append(vm(f"new{step}", r.choice(hosts).id, memory_gb=r.choice([1, 2, 8, 16, 32]),
                      vcpus=r.choice([1, 2, 4, 8]), instance_uuid=f"uuid-new{step}"))
    elif kind == "destroy":
        free = [v for v in vms if v.id not in in_rules and v.instance_uuid not in in_rules]
        if free:
            vms.remove(r.choice(free))
    elif kind in ("move", "resize", "power"):
        i = r.randrange(len(vms))
        if kind == "move":
            vms[i] = dataclasses.replace(vms[i], host=r.choice(hosts).id)
        elif kind == "resize":
            vms[i] = dataclasses.replace(vms[i], memory_mb=r.choice([1, 4, 12, 24]) * GB,
                                         vcpus=r.choice([1, 2, 6]))
        else:
            vms[i] = dataclasses.replace(vms[i], power_state="poweredOff" if vms[i].powered_on
                                         else "poweredOn")
    elif kind == "maintenance":
        i = r.randrange(len(hosts))
        hosts[i] = dataclasses.replace(hosts[i], state=r.choice(
            [HostState.MAINTENANCE, HostState.ENTERING_MAINTENANCE, HostState.CONNECTED,
             HostState.CONNECTED]))
        if hosts[i].state is HostState.MAINTENANCE:  # vCenter has emptied it
            others = [h.id for h in hosts if h.id != hosts[i].id]
            vms = [dataclasses.replace(v, host=r.choice(others)) if v.host == hosts[i].id
                   else v for v in vms]
    else:
        members = frozenset(v.id for v in r.sample(vms, min(len(vms), r.randint(2, 3))))
        return dataclasses.replace(snapshot, vms=tuple(vms), vm_vm_rules=(
            *snapshot.vm_vm_rules, VMVMRule(f"rule{step}", members,
                                            affinity=r.random() < 0.3,
                                            mandatory=r.random() < 0.6)))
    return dataclasses.replace(snapshot, hosts=tuple(hosts), vms=tuple(vms))


@pytest.mark.parametrize("seed", range(6))
def test_max_unit_equals_every_host_searched_over_random_changes(seed):
    """The bounded search gives exactly the answer (sizes, hosts, ties) of searching
    every host, whatever changed in the cluster."""
    r = random.Random(seed)
    snap = random_cluster(300 + seed, hosts=r.randint(4, 12), fill=0.85)
    pins = (HostPin("hg0"),) if snap.host_groups else ()
    for step in range(30):
        for moves, with_pins in ((0, ()), (1, ()), (3, ()), (3, pins)):
            unit = max_unit(snap, max_moves=moves, pins=with_pins)
            assert (unit.memory_mb, unit.vcpus, unit.memory_host, unit.vcpus_host,
                    unit.memory_mb_without_moves, unit.vcpus_without_moves) == \
                every_host_max_unit(snap, moves, with_pins), (step, moves, with_pins)
        snap = changed(snap, r, step)


def test_max_unit_ties_go_to_the_first_host():
    """A host that promises more but frees only as much as an earlier one does not
    take the tie from it: the first host in the snapshot's order names the size."""
    hosts = (host("h0", memory_gb=64), host("h1", memory_gb=128), host("h2", memory_gb=64))
    # h0 frees 64 GB by moving its 8 GB VM; h1 could reach 92 GB if its 64 GB VM
    # could go anywhere, but only its 36 GB VM can: 64 GB too, as h2.
    vms = (vm("a", "h0", memory_gb=8), vm("b1", "h1", memory_gb=64),
           vm("b2", "h1", memory_gb=36), vm("c", "h2", memory_gb=4))
    snap = ClusterSnapshot(hosts, vms)
    unit = max_unit(snap, max_moves=1)
    assert (unit.memory_mb, unit.memory_host) == (64 * GB, "h0")
    assert every_host_max_unit(snap, 1)[::2] == (64 * GB, "h0", 60 * GB)
