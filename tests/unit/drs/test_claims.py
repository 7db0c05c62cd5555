import sys
import threading
from collections import Counter

import pytest

from nova_vsphere_driver.drs import (
    Claims,
    ClusterSnapshot,
    Move,
    PlacementRequest,
    RequestRule,
    balance,
    place,
)
from tests.unit.drs.factory import GB, host, vm


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def req(iid, mem_gb=8, **kw):
    return PlacementRequest(iid, vcpus=2, memory_mb=mem_gb * GB, **kw)


def test_claims_count_against_their_host_until_the_vm_shows_up():
    snap = ClusterSnapshot((host("h1", memory_gb=16), host("h2", memory_gb=16)))
    claims = Claims()
    first = place(snap, req("i1", 12), claims=claims)
    second = place(snap, req("i2", 12), claims=claims)
    assert {first.host_id, second.host_id} == {"h1", "h2"}
    third = place(snap, req("i3", 12), claims=claims)
    assert not third.ok and "short of memory" in third.reason
    assert claims.totals(first.host_id)[0] == 12 * GB
    # A later snapshot shows i1: its claim goes, the VM itself now counts.
    later = snap.with_vms([vm("vm-1", first.host_id, memory_gb=12, instance_uuid="i1")])
    assert not place(later, req("i3", 12), claims=claims).ok
    assert "i1" not in claims and "i2" in claims
    # Deleting i1 frees its host.
    gone = ClusterSnapshot(snap.hosts)
    assert place(gone, req("i3", 12), claims=claims).host_id == first.host_id


def test_release_and_expiry():
    clock = FakeClock()
    snap = ClusterSnapshot((host("h1", memory_gb=16),))
    claims = Claims(ttl=60, clock=clock)
    assert place(snap, req("i1", 12), claims=claims).ok
    assert not place(snap, req("i2", 12), claims=claims).ok
    assert claims.release("i1") is not None and claims.release("i1") is None
    assert place(snap, req("i2", 12), claims=claims).ok
    clock.now += 30
    assert not place(snap, req("i3", 12), claims=claims).ok
    clock.now += 31  # i2's claim is now older than the TTL
    assert place(snap, req("i3", 12), claims=claims).ok
    assert len(claims) == 1


def test_a_retry_replaces_its_own_claim():
    snap = ClusterSnapshot((host("h1", memory_gb=16),))
    claims = Claims()
    assert place(snap, req("i1", 12), claims=claims).ok
    assert place(snap, req("i1", 12), claims=claims).ok  # not blocked by itself
    assert claims.totals("h1")[0] == 12 * GB


def test_claimed_instances_count_for_rules():
    snap = ClusterSnapshot((host("h1"), host("h2")))
    claims = Claims()
    a = place(snap, req("i1", 1), claims=claims)
    rule = RequestRule(frozenset({"i1"}), affinity=False)
    b = place(snap, req("i2", 1, rules=(rule,)), claims=claims)
    assert a.host_id != b.host_id


def test_migration_claims_hold_the_target_until_the_vm_arrives():
    snap = ClusterSnapshot((host("h1", memory_gb=16), host("h2", memory_gb=16)),
                           (vm("v", "h1", memory_gb=10),))
    claims = Claims()
    claims.claim_moves(snap, [Move("v", "h1", "h2", "", 0, 0, 10 * GB)])
    # v still counts on h1 (snapshot) and on h2 (claim): neither takes 8 GB.
    assert not place(snap, req("i1", 8), claims=claims).ok
    # The balancer does not move a VM that is already migrating.
    assert all(m.vm != "v" for m in balance(snap, claims=claims).moves)
    arrived = snap.with_moves([Move("v", "h1", "h2", "", 0, 0, 10 * GB)])
    assert place(arrived, req("i1", 8), claims=claims).host_id == "h1"
    assert "v" not in claims


@pytest.fixture
def eager_thread_switching():
    """Switch threads every microsecond so that an unlocked check-then-claim races."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def test_concurrent_placements_never_oversubscribe(eager_thread_switching):
    hosts = tuple(host(f"h{i}", memory_gb=32 + 16 * (i % 3)) for i in range(5))
    snap = ClusterSnapshot(hosts, (vm("old", "h0", memory_gb=20),))
    claims = Claims()
    results = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(t):
        barrier.wait()
        for i in range(15):
            r = place(snap, req(f"t{t}-{i}", mem_gb=[2, 4, 6][(t + i) % 3]), claims=claims)
            with lock:
                results.append((f"t{t}-{i}", r))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    used = Counter({"h0": 20 * GB})
    placed = 0
    for iid, r in results:
        if r.ok:
            placed += 1
            used[r.host_id] += claims.get(iid).memory_mb
    for h in hosts:
        assert used[h.id] <= h.memory_mb, h.id
        assert claims.totals(h.id)[0] == used[h.id] - (20 * GB if h.id == "h0" else 0)
    total = sum(h.memory_mb for h in hosts) - 20 * GB
    # Every request either fits or the cluster is genuinely near full.
    assert placed == len(results) or sum(used.values()) - 20 * GB > total - 6 * GB * len(hosts)
    assert placed >= 30


def test_ttl_must_be_positive():
    with pytest.raises(ValueError):
        Claims(ttl=0)
