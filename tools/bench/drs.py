#!/usr/bin/env python3
"""DRS benchmark: initial placement, balancing, evacuation and making room.

Seeded synthetic heterogeneous clusters (host sizes vary by +-25 %, 32-64
cores at 2.2-3.0 GHz; VMs from a flavor mix, CPU demand log-normal and scaled
to ~45 % cluster CPU, active memory 30-90 % of configured), sized so that the
VMs commit 60-85 % of the cluster's memory.

1. Initial placement of every VM, one by one in random order, against a
   snapshot refreshed every 50 placements (claims cover the rest), compared
   with random, round-robin, first-fit and "most free RAM" (Nova's RAM
   weigher, what it does with KVM hosts).  Failures count "fragmentation"
   failures separately: the cluster's total free memory would have sufficed.
2. Balancing from a skewed start, compared with two published open-source
   strategies re-implemented here from their descriptions (both get the same
   capacity and rule checks as ours):
   * ProxLB-style greedy: move a guest from the busiest to the least busy
     node (the biggest one that does not overshoot) until the max-min load
     gap is under 10 percentage points;
   * OpenStack Watcher workload_stabilization: from the most loaded host, the
     single migration that minimizes the standard deviation of normalized
     host load, repeated until it is under 0.1.
   "LB" is the fractional ideal: the imbalance if load were perfectly
   divisible (immovable VMs aside), a lower bound for any strategy.
3. Maintenance evacuation of k hosts, and scheduling the moves in waves.
4. Making room for one big VM in a fragmented cluster, and max_unit.

Times are also given as ratios to a baseline measured in the same run (a
trivial pass computing per-host sums over the snapshot), since the machine
is shared and noisy: compare ratios across runs, not milliseconds.

Usage: python tools/bench/drs.py [--quick] [--seed N]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import statistics
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from nova_vsphere_driver.drs import (  # noqa: E402
    VM,
    Claims,
    ClusterSnapshot,
    Host,
    HostGroup,
    PlacementRequest,
    VMGroup,
    VMHostRule,
    VMVMRule,
    balance,
    evacuate,
    imbalance,
    load_policy,
    make_room,
    max_unit,
    place,
    schedule_waves,
)
from nova_vsphere_driver.drs.model import _host_usage, load_weights  # noqa: E402
from nova_vsphere_driver.drs.state import State  # noqa: E402

GB = 1024
#: (vCPUs, memory GB, weight): a general-purpose cloud mix.
FLAVORS = [(1, 2, 25), (2, 4, 30), (4, 8, 20), (4, 16, 10), (8, 32, 10), (16, 64, 5)]
#: The same with large VMs (in-memory databases, SAP) that fragment hosts.
LARGE_FLAVORS = [(2, 4, 30), (4, 16, 25), (8, 32, 15), (16, 128, 18), (32, 192, 12)]


@dataclasses.dataclass(frozen=True)
class Spec:
    id: str
    vcpus: int
    memory_mb: int
    cpu_mhz: int
    active_mb: int

    def vm(self, host: str | None) -> VM:
        return VM(self.id, host=host, vcpus=self.vcpus, memory_mb=self.memory_mb,
                  cpu_demand_mhz=self.cpu_mhz, active_memory_mb=self.active_mb,
                  instance_uuid=f"uuid-{self.id}")


# --------------------------------------------------------------------------
# synthetic clusters

def make_vms(rng: random.Random, n: int, flavors=FLAVORS) -> list[Spec]:
    weights = [w for _, _, w in flavors]
    specs = []
    for i in range(n):
        vcpus, mem_gb, _ = rng.choices(flavors, weights)[0]
        util = min(1.0, rng.lognormvariate(math.log(0.2), 0.8))
        specs.append(Spec(f"vm-{i:05d}", vcpus, mem_gb * GB, int(vcpus * 2400 * util),
                          int(mem_gb * GB * rng.uniform(0.3, 0.9))))
    return specs


def make_hosts(rng: random.Random, n: int, specs: list[Spec], fill: float,
               cpu_util: float = 0.45) -> tuple[list[Host], list[Spec]]:
    """Hosts whose memory the VMs fill to ``fill``; VM CPU scaled to ``cpu_util``."""
    base = sum(s.memory_mb for s in specs) / fill / n
    factors = [0.75, 1.0, 1.25]
    hosts = []
    for i in range(n):
        mem = max(64 * GB, round(base * factors[i % 3] / (16 * GB)) * 16 * GB)
        cores = rng.choice([32, 48, 64])
        hosts.append(Host(f"host-{i:03d}", f"esx{i:03d}", cpu_mhz_per_core=rng.choice(
            [2200, 2600, 3000]), cores=cores, threads=2 * cores, memory_mb=mem))
    # Fix the total exactly (rounding above) by adjusting the last host.
    capacity = sum(h.memory_mb for h in hosts)
    cpu_capacity = sum(h.cpu_capacity_mhz for h in hosts)
    scale = cpu_util * cpu_capacity / max(1, sum(s.cpu_mhz for s in specs))
    specs = [dataclasses.replace(s, cpu_mhz=int(s.cpu_mhz * scale)) for s in specs]
    assert capacity > 0
    return hosts, specs


class Ledger:
    """Harness-side truth: which VM is where, and per-host committed sums."""

    def __init__(self, hosts: list[Host], memory_ratio: float = 1.0, cpu_ratio: float = 16.0):
        self.hosts = hosts
        self.mem_limit = {h.id: int(h.memory_capacity_mb * memory_ratio) for h in hosts}
        self.vcpu_limit = {h.id: h.threads * cpu_ratio for h in hosts}
        self.threads = {h.id: h.threads for h in hosts}
        self.mem = Counter()
        self.vcpus = Counter()
        self.where: dict[str, str] = {}
        self.specs: dict[str, Spec] = {}

    def fits(self, h: str, s: Spec) -> bool:
        return (self.mem[h] + s.memory_mb <= self.mem_limit[h] and s.vcpus <= self.threads[h]
                and self.vcpus[h] + s.vcpus <= self.vcpu_limit[h])

    def total_would_fit(self, s: Spec) -> bool:
        free = sum(self.mem_limit[h.id] - self.mem[h.id] for h in self.hosts)
        return free >= s.memory_mb

    def add(self, h: str, s: Spec) -> None:
        self.where[s.id] = h
        self.specs[s.id] = s
        self.mem[h] += s.memory_mb
        self.vcpus[h] += s.vcpus

    def move(self, vm: str, target: str) -> None:
        s = self.specs[vm]
        src = self.where[vm]
        self.mem[src] -= s.memory_mb
        self.vcpus[src] -= s.vcpus
        self.add(target, s)

    def snapshot(self, **rules) -> ClusterSnapshot:
        return ClusterSnapshot(tuple(self.hosts), tuple(
            s.vm(self.where[vid]) for vid, s in self.specs.items()), **rules)


def skewed_ledger(rng: random.Random, hosts: list[Host], specs: list[Spec]) -> Ledger:
    """A hot spot: a quarter of the hosts got three times their share of VMs, and
    the VMs there have since become twice as busy (CPU)."""
    ledger = Ledger(hosts)
    hot = {h.id for h in hosts[: max(1, len(hosts) // 4)]}
    weights = [3 if h.id in hot else 1 for h in hosts]
    for s in specs:
        for _ in range(50):
            h = rng.choices(hosts, weights)[0].id
            if ledger.fits(h, s):
                ledger.add(h, dataclasses.replace(s, cpu_mhz=2 * s.cpu_mhz) if h in hot else s)
                break
    return ledger


def with_rules(rng: random.Random, ledger: Ledger) -> dict:
    """Rules the skewed start satisfies: server-group anti-affinity (must), affinity
    pairs (should), and a licensing pin (must run on a quarter of the hosts)."""
    by_host: dict[str, list[str]] = {}
    for vid, h in sorted(ledger.where.items()):
        by_host.setdefault(h, []).append(vid)
    hosts = sorted(by_host)
    rules = []
    for k in range(40):
        members = [rng.choice(by_host[h]) for h in rng.sample(hosts, 3)]
        rules.append(VMVMRule(f"sg-anti-{k}", frozenset(members), affinity=False))
    for k in range(20):
        h = rng.choice(hosts)
        if len(by_host[h]) >= 2:
            rules.append(VMVMRule(f"sg-aff-{k}", frozenset(rng.sample(by_host[h], 2)),
                                  affinity=True, mandatory=False))
    licensed = hosts[: max(2, len(hosts) // 4)]
    pinned = [vid for h in licensed for vid in by_host[h][:5]]
    return {"vm_groups": (VMGroup("licensed-vms", frozenset(pinned)),),
            "host_groups": (HostGroup("licensed-hosts", frozenset(licensed)),),
            "vm_vm_rules": tuple(rules),
            "vm_host_rules": (VMHostRule("license", "licensed-vms", "licensed-hosts"),)}


def must_violations(snap: ClusterSnapshot) -> int:
    """Broken must rules, counted independently of drs/ (VM pairs sharing a host for
    anti-affinity, VMs off the majority host for affinity, VMs on the wrong side)."""
    where = {vm.id: vm.host for vm in snap.vms}
    n = 0
    for rule in snap.vm_vm_rules:
        if not rule.mandatory:
            continue
        per_host = Counter(where[v] for v in rule.vms if v in where)
        if rule.affinity:
            n += sum(per_host.values()) - max(per_host.values(), default=0)
        else:
            n += sum(c - 1 for c in per_host.values() if c > 1)
    groups = {g.name: g for g in snap.vm_groups}
    hgroups = {g.name: g for g in snap.host_groups}
    for rule in snap.vm_host_rules:
        if rule.mandatory:
            hs = hgroups[rule.host_group].hosts
            n += sum(1 for v in groups[rule.vm_group].vms if (where[v] in hs) != rule.affine)
    return n


def fractional_ideal(snap: ClusterSnapshot) -> float:
    """Imbalance with perfectly divisible load: each resource water-filled over the
    usable hosts in proportion to capacity, VMs pinned to a single host fixed."""
    w_cpu, w_mem = load_weights(snap)
    usable = [h for h in snap.hosts if h.usable]
    pinned: dict[str, list[VM]] = {h.id: [] for h in usable}
    groups = {g.name: g for g in snap.vm_groups}
    hgroups = {g.name: g for g in snap.host_groups}
    single = {}
    for rule in snap.vm_host_rules:
        hs = hgroups[rule.host_group].hosts
        if rule.mandatory and rule.affine and len(hs) == 1:
            for v in groups[rule.vm_group].vms:
                single[v] = next(iter(hs))
    movable_cpu = movable_mem = 0
    for vm in snap.vms:
        if not vm.powered_on or vm.host is None:
            continue
        if vm.id in single and single[vm.id] in pinned:
            pinned[single[vm.id]].append(vm)
        else:
            movable_cpu += vm.cpu_demand_mhz
            movable_mem += vm.memory_demand_mb

    def fill(cap_of, fixed_of, total) -> dict[str, float]:
        # Find level L with sum(max(0, L - fixed_h) * cap_h) == total.
        lo, hi = 0.0, 10.0
        for _ in range(100):
            mid = (lo + hi) / 2
            if sum(max(0.0, mid - fixed_of(h)) * cap_of(h) for h in usable) < total:
                lo = mid
            else:
                hi = mid
        return {h.id: max(hi, fixed_of(h)) for h in usable}

    cpu = fill(lambda h: h.cpu_capacity_mhz,
               lambda h: sum(v.cpu_demand_mhz for v in pinned[h.id]) / h.cpu_capacity_mhz,
               movable_cpu)
    mem = fill(lambda h: h.memory_capacity_mb,
               lambda h: sum(v.memory_demand_mb for v in pinned[h.id]) / h.memory_capacity_mb,
               movable_mem)
    return statistics.pstdev([w_cpu * cpu[h.id] + w_mem * mem[h.id] for h in usable])


# --------------------------------------------------------------------------
# placement strategies

def place_baseline(ledger: Ledger, specs: list[Spec], how: str, rng: random.Random) -> dict:
    fails = frag = 0
    rr = 0
    ids = [h.id for h in ledger.hosts]
    start = time.perf_counter()
    for s in specs:
        fitting = [h for h in ids if ledger.fits(h, s)]
        if not fitting:
            fails += 1
            frag += ledger.total_would_fit(s)
            continue
        if how == "random":
            h = rng.choice(fitting)
        elif how == "round-robin":
            for k in range(len(ids)):
                cand = ids[(rr + k) % len(ids)]
                if ledger.fits(cand, s):
                    h, rr = cand, (rr + k + 1) % len(ids)
                    break
        elif how == "first-fit":
            h = fitting[0]
        else:  # most free RAM (Nova's RAMWeigher)
            h = max(fitting, key=lambda h: (ledger.mem_limit[h] - ledger.mem[h], h))
        ledger.add(h, s)
    elapsed = time.perf_counter() - start
    return {"fails": fails, "frag": frag, "moves": 0, "gib": 0.0, "time": elapsed,
            "imb": imbalance(ledger.snapshot())}


def place_ours(ledger: Ledger, specs: list[Spec], policy: str, migrations: bool,
               refresh: int = 50) -> dict:
    policy = load_policy(policy)  # stevedore once, outside the timed calls
    claims = Claims()
    fails = frag = moves = 0
    moved_mb = 0
    elapsed = 0.0
    snap = ledger.snapshot()
    for i, s in enumerate(specs):
        if i % refresh == 0:
            snap = ledger.snapshot()  # an inventory read; claims cover the gap
        request = PlacementRequest(s.id, s.vcpus, s.memory_mb)
        start = time.perf_counter()
        result = place(snap, request, policy, claims, allow_migrations=migrations)
        elapsed += time.perf_counter() - start
        if result.ok:
            for m in result.moves:
                ledger.move(m.vm, m.target)
                moves += 1
                moved_mb += m.memory_mb
            ledger.add(result.host_id, s)
            if result.moves:  # migrations done: read the inventory again
                snap = ledger.snapshot()
        else:
            fails += 1
            frag += ledger.total_would_fit(s)
    return {"fails": fails, "frag": frag, "moves": moves, "gib": moved_mb / GB,
            "time": elapsed, "imb": imbalance(ledger.snapshot())}


# --------------------------------------------------------------------------
# balancing strategies (ours, and two re-implemented baselines)

def proxlb_greedy(snap: ClusterSnapshot, gap: float = 0.10) -> list[tuple[str, str, str, int]]:
    st = State(snap)
    moves = []
    while True:
        order = sorted(st.usable_idx, key=lambda i: (st.load[i], i))
        lo, hi = order[0], order[-1]
        if st.load[hi] - st.load[lo] < gap:
            break
        chosen = None
        for v in sorted(st.on_host[hi], key=lambda v: (-st.vm_load(v, hi), st.vm_ids[v])):
            if not st.vm_movable[v] or not st.vm_on[v] or v >= st.n_real_vms:
                continue
            if st.load[lo] + st.vm_load(v, lo) > st.load[hi] - st.vm_load(v, hi):
                continue  # would overshoot: the biggest guest that keeps the order
            if st.vm_conflict(v, lo) is None:
                chosen = v
                break
        if chosen is None:
            break
        moves.append((st.vm_ids[chosen], st.ids[hi], st.ids[lo], st.vm_cfg_mem[chosen]))
        st.move(chosen, lo)
    return moves


def watcher_stabilization(snap: ClusterSnapshot,
                          threshold: float = 0.1) -> list[tuple[str, str, str, int]]:
    st = State(snap)
    moves = []
    while st.imbalance > threshold:
        hi = max(st.usable_idx, key=lambda i: (st.load[i], -i))
        best = None
        best_sd = st.imbalance
        for v in sorted(st.on_host[hi]):
            if not st.vm_movable[v] or not st.vm_on[v] or v >= st.n_real_vms:
                continue
            a_s = st.vm_load(v, hi)
            for t in st.usable_idx:
                if t == hi:
                    continue
                sd = st.imbalance_if_moved(hi, t, a_s, st.vm_load(v, t))
                if sd < best_sd and st.vm_conflict(v, t) is None:
                    best, best_sd = (v, t), sd
        if best is None:
            break
        v, t = best
        moves.append((st.vm_ids[v], st.ids[hi], st.ids[t], st.vm_cfg_mem[v]))
        st.move(v, t)
    return moves


def apply(snap: ClusterSnapshot, moves) -> ClusterSnapshot:
    where = {}
    for vm, _, target, _ in moves:
        where[vm] = target
    return dataclasses.replace(snap, vms=tuple(
        dataclasses.replace(v, host=where[v.id]) if v.id in where else v for v in snap.vms))


def run_balancers(snap: ClusterSnapshot) -> list[tuple]:
    rows = []
    base_ms = timed_ms(lambda: _host_usage(snap))

    def ours(threshold, budget=None):
        def run(s):
            plan = balance(s, threshold=threshold, max_moves=None, max_memory_mb=budget)
            return [(m.vm, m.source, m.target, m.memory_mb) for m in plan.moves]
        return run

    strategies = [("ProxLB greedy", proxlb_greedy), ("Watcher stabiliz.", watcher_stabilization),
                  ("ours thr=3", ours(3)), ("ours thr=5", ours(5))]
    results = {}
    for name, fn in strategies:
        start = time.perf_counter()
        moves = fn(snap)
        ms = (time.perf_counter() - start) * 1000
        after = apply(snap, moves)
        second = len(fn(after))
        results[name] = (moves, after, ms, second)
    # Ours again, allowed only the memory each baseline moved: equal-cost comparison.
    for base_name, label in (("ProxLB greedy", "ProxLB"), ("Watcher stabiliz.", "Watcher")):
        budget = sum(m[3] for m in results[base_name][0])
        start = time.perf_counter()
        moves = ours(5, budget)(snap)
        ms = (time.perf_counter() - start) * 1000
        results[f"ours thr=5 <= {label} GiB"] = (moves, apply(snap, moves), ms, None)
    lb = fractional_ideal(snap)
    before = imbalance(snap)
    for name, (moves, after, ms, second) in results.items():
        rows.append((name, before, imbalance(after), lb, len(moves),
                     sum(m[3] for m in moves) / GB, must_violations(after), ms, ms / base_ms,
                     "-" if second is None else second))
    return rows, base_ms


def timed_ms(fn, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


# --------------------------------------------------------------------------
# output

def table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(
        zip(header, widths, strict=True))))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(
            zip(r, widths, strict=True))))


def _fmt(c) -> str:
    if isinstance(c, float):
        if c == 0:
            return "0"
        return f"{c:.4f}" if abs(c) < 1 else f"{c:.1f}"
    return str(c)


# --------------------------------------------------------------------------
# scenarios

PLACERS = [("most free RAM", "ram"), ("random", "random"), ("round-robin", "round-robin"),
           ("first-fit", "first-fit"), ("ours balanced", "ours:balanced"),
           ("ours packed", "ours:packed"), ("ours balanced+room", "ours:balanced:+room")]


def bench_placement(scenarios, seed: int) -> None:
    rows = []
    for label, n_hosts, n_vms, flavors, fill in scenarios:
        rng = random.Random(seed)
        specs = make_vms(rng, n_vms, flavors)
        hosts, specs = make_hosts(rng, n_hosts, specs, fill)
        order = random.Random(seed + 1).sample(specs, len(specs))
        base = None
        for name, how in PLACERS:
            ledger = Ledger(hosts)
            if how.startswith("ours"):
                r = place_ours(ledger, order, how.split(":")[1], how.endswith(":+room"))
            else:
                r = place_baseline(ledger, order, how, random.Random(seed))
            us = r["time"] / len(order) * 1e6
            base = base or us
            rows.append([label, name, len(order) - r["fails"], r["fails"], r["frag"],
                         r["moves"], r["gib"], r["imb"], us, us / base])
        rows.append([""] * 10)
    table("Initial placement of every VM in random order "
          "(time ratio vs 'most free RAM' per placement)",
          ["scenario", "strategy", "placed", "failed", "frag.fail", "migr.", "GiB migr.",
           "imbalance", "us/place", "x base"], rows[:-1])


def bench_balancing(scenarios, seed: int) -> None:
    rows = []
    bases = []
    verdicts = []
    for label, n_hosts, n_vms, rules in scenarios:
        rng = random.Random(seed)
        specs = make_vms(rng, n_vms)
        hosts, specs = make_hosts(rng, n_hosts, specs, 0.72)
        ledger = skewed_ledger(rng, hosts, specs)
        extra = with_rules(rng, ledger) if rules else {}
        snap = ledger.snapshot(**extra)
        result, base_ms = run_balancers(snap)
        bases.append(f"{label}: {base_ms:.2f} ms")
        for r in result:
            rows.append([label, *r])
        rows.append([""] * 11)
        by_name = {r[0]: r for r in result}
        baselines = [by_name["ProxLB greedy"], by_name["Watcher stabiliz."]]
        for ours in ("ours thr=3", "ours thr=5"):
            o = by_name[ours]
            below = "below" if all(o[2] < b[2] for b in baselines) else "NOT below"
            at_equal = ", ".join(f"{by_name[n][2]:.4f} (vs {b[2]:.4f})" for n, b in zip(
                ("ours thr=5 <= ProxLB GiB", "ours thr=5 <= Watcher GiB"), baselines,
                strict=True))
            verdicts.append(
                f"{label}, {ours}: imbalance {below} every baseline's; moved {o[5]:.0f} GiB, "
                f"the thriftiest baseline {min(b[5] for b in baselines):.0f} GiB; "
                f"with each baseline's GiB ours reaches {at_equal}")
    table("Balancing from a skewed start, one pass (x base: time / trivial per-host-sums "
          "pass; " + "; ".join(bases) + ")",
          ["scenario", "strategy", "imb.before", "imb.after", "LB", "moves", "GiB moved",
           "must viol.", "ms/pass", "x base", "2nd pass"], rows[:-1])
    for v in verdicts:
        print(f"  {v}")


def bench_evacuation(n_hosts: int, n_vms: int, ks, seed: int) -> None:
    rng = random.Random(seed)
    specs = make_vms(rng, n_vms)
    hosts, specs = make_hosts(rng, n_hosts, specs, 0.7)
    ledger = skewed_ledger(rng, hosts, specs)
    snap = ledger.snapshot(**with_rules(rng, ledger))
    base_ms = timed_ms(lambda: _host_usage(snap))
    busiest = sorted(hosts, key=lambda h: (-ledger.mem[h.id], h.id))
    rows = []
    notes = []
    for k in ks:
        leaving = [h.id for h in busiest[:k]]
        start = time.perf_counter()
        plan = evacuate(snap, leaving)
        ms = (time.perf_counter() - start) * 1000
        waves = schedule_waves(snap, plan.moves, max_concurrent_per_host=2)
        after = snap.with_moves(plan.moves)
        rows.append([f"{n_hosts}x{n_vms}", k, sum(1 for v in snap.vms if v.host in leaving),
                     len(plan.moves),
                     plan.memory_mb / GB, len(plan.unplaceable), must_violations(after),
                     len(waves), imbalance(after), ms, ms / base_ms])
        if plan.unplaceable:
            notes.append(f"k={k}: {next(iter(sorted(plan.unplaceable.items())))}")
    table("Maintenance evacuation of the k busiest hosts (most memory committed), "
          "with server-group and license rules",
          ["cluster", "k", "VMs on them", "moves", "GiB moved", "unplaceable", "must viol.",
           "waves (2/host)", "imb.after", "ms", "x base"], rows)
    for note in notes:
        print(f"  e.g. {note}")


def bench_room(n_hosts: int, n_vms: int, seed: int) -> None:
    rng = random.Random(seed)
    specs = make_vms(rng, n_vms, LARGE_FLAVORS)
    hosts, specs = make_hosts(rng, n_hosts, specs, 0.85)
    ledger = Ledger(hosts)
    for s in random.Random(seed + 1).sample(specs, len(specs)):
        fitting = [h.id for h in hosts if ledger.fits(h.id, s)]
        if fitting:  # most-free-RAM spreading: the fragmenting case
            ledger.add(max(fitting, key=lambda h: (ledger.mem_limit[h] - ledger.mem[h], h)), s)
    snap = ledger.snapshot()
    base_ms = timed_ms(lambda: _host_usage(snap))
    rows = []
    start = time.perf_counter()
    unit = max_unit(snap, max_moves=4)
    unit_ms = (time.perf_counter() - start) * 1000
    free_total = sum(ledger.mem_limit[h.id] - ledger.mem[h.id] for h in hosts)
    for mem in sorted({unit.memory_mb_without_moves + 16 * GB,
                       (unit.memory_mb_without_moves + unit.memory_mb) // 2, unit.memory_mb}):
        request = PlacementRequest("big-vm", 8, mem)
        start = time.perf_counter()
        result = make_room(snap, request, max_moves=4)
        ms = (time.perf_counter() - start) * 1000
        rows.append([f"{n_hosts}x{len(snap.vms)}", mem // GB, place(snap, request).ok,
                     result.ok, len(result.moves), sum(m.memory_mb for m in result.moves) / GB,
                     ms, ms / base_ms])
    table(f"Making room for one big VM (cluster free in total {free_total // GB} GiB, "
          f"largest free on one host {unit.memory_mb_without_moves // GB} GiB; max_unit "
          f"after <=4 moves {unit.memory_mb // GB} GiB on {unit.memory_host}, computed in "
          f"{unit_ms:.0f} ms)",
          ["cluster", "VM GiB", "fits as is", "room made", "moves", "GiB moved", "ms",
           "x base"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller clusters only")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.quick:
        placement = [("8x500", 8, 500, FLAVORS, 0.75),
                     ("16x160 large", 16, 160, LARGE_FLAVORS, 0.95)]
        balancing = [("8x500", 8, 500, False), ("16x1000 rules", 16, 1000, True)]
        evac = (16, 1000, (1, 2))
        room = (16, 400)
    else:
        placement = [("8x500", 8, 500, FLAVORS, 0.75), ("32x2000", 32, 2000, FLAVORS, 0.75),
                     ("64x10000", 64, 10000, FLAVORS, 0.75),
                     ("16x160 large", 16, 160, LARGE_FLAVORS, 0.95)]
        balancing = [("8x500", 8, 500, False), ("32x2000", 32, 2000, False),
                     ("32x2000 rules", 32, 2000, True), ("64x10000", 64, 10000, False)]
        evac = (32, 2000, (1, 2, 4))
        room = (32, 800)
    start = time.perf_counter()
    bench_placement(placement, args.seed)
    bench_balancing(balancing, args.seed)
    bench_evacuation(*evac, args.seed)
    bench_room(*room, args.seed)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
