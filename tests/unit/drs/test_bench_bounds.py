"""The DRS benchmark's lower bounds, checked against brute force on tiny clusters.

``tools/bench/drs.py`` proves some of issue 17's targets impossible with
lower bounds (the least memory, or number of vMotions, any plan needs to
bring the imbalance below a value).  A bound that is not sound would call
a reachable target impossible; one that is sound but loose proves nothing.
Here every placement of a few VMs on a few hosts is enumerated and the
exact least memory is compared with the bound.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import os
import random
import sys

import pytest

from nova_vsphere_driver.drs import ClusterSnapshot, imbalance
from tests.unit.drs.factory import GB, host, vm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "drs_bench", os.path.join(ROOT, "tools", "bench", "drs.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def tiny_cluster(seed: int) -> ClusterSnapshot:
    """3 hosts of different sizes, 6 VMs of different sizes and demands, skewed."""
    r = random.Random(seed)
    hosts = (host("h0", cores=16, memory_gb=256), host("h1", cores=24, memory_gb=384),
             host("h2", cores=32, memory_gb=512))
    vms = tuple(vm(f"v{i}", r.choice(["h0", "h0", "h1", "h2"]),
                   memory_gb=r.choice([2, 4, 8, 16, 32]), vcpus=r.choice([1, 2, 4]),
                   cpu=r.uniform(200, 6000), active_memory_mb=r.randint(1, 16) * GB)
                for i in range(6))
    return ClusterSnapshot(hosts, vms)


def every_plan(snap: ClusterSnapshot) -> list[tuple[float, int, int]]:
    """(imbalance, memory MB moved, VMs moved) of every placement of the VMs."""
    ids = [h.id for h in snap.hosts]
    out = []
    for where in itertools.product(ids, repeat=len(snap.vms)):
        moved = [v for v, h in zip(snap.vms, where, strict=True) if v.host != h]
        after = dataclasses.replace(snap, vms=tuple(
            dataclasses.replace(v, host=h) for v, h in zip(snap.vms, where, strict=True)))
        out.append((imbalance(after), sum(v.memory_mb for v in moved), len(moved)))
    return out


def least_memory(plans, target: float, max_moves: int | None) -> float:
    return min((mem for imb, mem, k in plans
                if imb < target and (max_moves is None or k <= max_moves)), default=math.inf)


@pytest.mark.parametrize("seed", range(6))
def test_memory_bound_is_at_most_the_least_memory_of_every_plan(bench, seed):
    snap = tiny_cluster(seed)
    plans = every_plan(snap)
    reachable = sorted({round(imb, 9) for imb, _, _ in plans})
    before = imbalance(snap)
    # Targets between the reachable imbalances, from the best one to the start.
    targets = [(a + b) / 2 for a, b in itertools.pairwise(reachable) if b <= before]
    assert len(targets) > 10
    targets = targets[::len(targets) // 10]
    for target in targets:
        for max_moves in (None, 1, 2, 3):
            exact = least_memory(plans, target, max_moves)
            bound = bench.memory_bound(snap, target, max_moves)
            assert bound <= exact * (1 + 1e-9), (target, max_moves, bound, exact)
            # Positive whenever some memory must move; finite whenever a plan exists
            # (infinite only when the moves' largest gains cannot get there).
            assert (bound > 0) == (exact > 0), (target, max_moves, bound, exact)
            if bound == math.inf:
                assert exact == math.inf


def test_memory_bound_is_tight_on_two_equal_hosts(bench):
    """Two equal hosts, four equal VMs on one: moving one VM (8 GiB) takes the
    imbalance from 2a to a, moving two to 0.  Just above a or 0, the fractional
    relaxation needs whole VMs too: the bound is the exact answer there."""
    snap = ClusterSnapshot((host("h0", memory_gb=256), host("h1", memory_gb=256)), tuple(
        vm(f"v{i}", "h0", memory_gb=8, cpu=1000) for i in range(4)))
    a = imbalance(snap) / 2
    plans = every_plan(snap)
    for target, exact_gb in ((a * 1.001, 8), (a * 0.001, 16)):
        assert least_memory(plans, target, None) == exact_gb * GB
        bound = bench.memory_bound(snap, target)
        assert exact_gb * GB * 0.999 < bound <= exact_gb * GB
    # Between those points it is not (0.999 a: a VM and a sliver, 8.2 GiB, against 16).
    assert 8 * GB < bench.memory_bound(snap, a * 0.999) < 9 * GB
    # Within one move, 0.999 a is out of reach: the bound says so.
    assert bench.memory_bound(snap, a * 0.999, max_moves=1) == math.inf
    assert bench.memory_bound(snap, imbalance(snap) * 1.01) == 0.0


def test_move_bound_is_at_most_the_best_imbalance_of_k_moves(bench):
    for seed in range(3):
        snap = tiny_cluster(seed)
        plans = every_plan(snap)
        for k in range(4):
            best = min(imb for imb, _, moved in plans if moved <= k)
            assert bench.move_bound(snap, k) <= best + 1e-9
